// The shared message cache as sessions rely on it: one entry per message of one mailbox generation,
// least recently used evicted first, never above its byte bound, one load per message at a time.
import { describe, expect, test } from "bun:test";
import { CACHE_ENTRY_OVERHEAD, MessageCache, type CachedMessage, type MessageKey } from "../../../core/imap/cache.ts";

const key = (uid: number, over: Partial<MessageKey> = {}): MessageKey => ({ server: "mail.example.org:993", user: "alice", mailbox: "INBOX", uidValidity: 7, uid, ...over });
const msg = (n: number, fill = 0x41): CachedMessage => ({ bytes: new Uint8Array(n).fill(fill), changed: false, size: n, verdict: "clean" });
/** Room for exactly `count` messages of n bytes. */
const roomFor = (count: number, n: number) => count * (n + CACHE_ENTRY_OVERHEAD);

describe("MessageCache keys", () => {
  test("a message is found by server, user, mailbox, UIDVALIDITY and UID, and by nothing less", () => {
    const c = new MessageCache(roomFor(10, 10));
    const m = msg(10);
    expect(c.put(key(1), m)).toBe(true);
    expect(c.get(key(1))).toEqual(m);
    for (const other of [key(2), key(1, { uidValidity: 8 }), key(1, { user: "bob" }), key(1, { server: "other.example.org:993" }), key(1, { mailbox: "Sent" })]) {
      expect(c.get(other)).toBeUndefined();
    }
  });

  test("INBOX is the same mailbox in any case; other names and user names are case-sensitive", () => {
    const c = new MessageCache(roomFor(10, 10));
    c.put(key(1), msg(10, 1));
    expect(c.get(key(1, { mailbox: "inbox" }))?.bytes[0]).toBe(1);
    expect(c.get(key(1, { mailbox: "InBoX" }))?.bytes[0]).toBe(1);
    c.put(key(1, { mailbox: "Work" }), msg(10, 2));
    expect(c.get(key(1, { mailbox: "work" }))).toBeUndefined();
    expect(c.get(key(1, { user: "Alice" }))).toBeUndefined();
    expect(c.get(key(1, { server: "MAIL.example.org:993" }))?.bytes[0]).toBe(1);
  });

  test("names holding separators or quotes never collide", () => {
    const c = new MessageCache(roomFor(10, 10));
    c.put(key(1, { user: "a\0b", mailbox: "c" }), msg(10, 1));
    expect(c.get(key(1, { user: "a", mailbox: "b\0c" }))).toBeUndefined();
    c.put(key(1, { user: 'x"', mailbox: "y" }), msg(10, 2));
    expect(c.get(key(1, { user: "x", mailbox: '"y' }))).toBeUndefined();
  });
});

describe("MessageCache bound", () => {
  test("the least recently used goes first, and get counts as use", () => {
    const c = new MessageCache(roomFor(3, 100));
    for (const uid of [1, 2, 3]) expect(c.put(key(uid), msg(100))).toBe(true);
    expect(c.get(key(1))).toBeDefined(); // 2 is now the oldest
    c.put(key(4), msg(100));
    expect([1, 2, 3, 4].map((u) => c.get(key(u)) !== undefined)).toEqual([true, false, true, true]);
    expect(c.entries).toBe(3);
    expect(c.bytes).toBe(roomFor(3, 100));
  });

  test("an entry larger than the bound is refused and evicts nothing; replacing an entry recharges it", () => {
    const c = new MessageCache(roomFor(2, 100));
    c.put(key(1), msg(100));
    expect(c.put(key(2), msg(roomFor(2, 100)))).toBe(false);
    expect(c.get(key(2))).toBeUndefined();
    expect(c.get(key(1))).toBeDefined();
    c.put(key(1), msg(10));
    expect(c.bytes).toBe(10 + CACHE_ENTRY_OVERHEAD);
    expect(c.entries).toBe(1);
    expect(c.delete(key(1))).toBe(true);
    expect(c.delete(key(1))).toBe(false);
    expect([c.bytes, c.entries]).toEqual([0, 0]);
    expect(new MessageCache(0).put(key(1), msg(0))).toBe(false);
  });

  test("a view into a larger buffer is stored as its own copy, charged at its length", () => {
    const c = new MessageCache(roomFor(1, 100));
    const big = new Uint8Array(1 << 20).fill(0x42);
    const view = big.subarray(1000, 1100);
    expect(c.put(key(1), { bytes: view, changed: true, size: 100, verdict: "cleaned" })).toBe(true);
    const got = c.get(key(1))!;
    expect(got.bytes).toEqual(view);
    expect(got.bytes.buffer.byteLength).toBe(100);
    expect(got).toMatchObject({ changed: true, size: 100, verdict: "cleaned" });
    expect(c.bytes).toBe(100 + CACHE_ENTRY_OVERHEAD);
  });

  test("many random puts, gets and deletes: never over the bound, exactly the LRU model's entries, the peak tracked", () => {
    const max = 64 * 1024;
    const c = new MessageCache(max);
    const model: { uid: number; charge: number }[] = []; // oldest first
    let seed = 12345;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) % n;
    let peak = 0;
    for (let i = 0; i < 20_000; i++) {
      const uid = rand(300);
      const at = model.findIndex((e) => e.uid === uid);
      const op = rand(10);
      if (op < 5) {
        const n = rand(8) === 0 ? rand(2 * max) : rand(4000);
        const charge = n + CACHE_ENTRY_OVERHEAD;
        if (at >= 0) model.splice(at, 1);
        const stored = c.put(key(uid), msg(n));
        expect(stored).toBe(charge <= max);
        if (stored) {
          let total = model.reduce((s, e) => s + e.charge, 0);
          while (total + charge > max) total -= model.shift()!.charge;
          model.push({ uid, charge });
        }
      } else if (op < 9) {
        expect(c.get(key(uid)) !== undefined).toBe(at >= 0);
        if (at >= 0) model.push(...model.splice(at, 1));
      } else {
        expect(c.delete(key(uid))).toBe(at >= 0);
        if (at >= 0) model.splice(at, 1);
      }
      expect(c.bytes).toBeLessThanOrEqual(max);
      expect(c.bytes).toBe(model.reduce((s, e) => s + e.charge, 0));
      expect(c.entries).toBe(model.length);
      peak = Math.max(peak, c.bytes);
      expect(c.peakBytes).toBe(peak);
    }
    expect(peak).toBeGreaterThan(max / 2);
    c.clear();
    expect(c.bytes).toBe(0);
    expect(c.peakBytes).toBe(peak); // the most ever held survives a clear: status reports it
  });
});

describe("MessageCache.getOrLoad", () => {
  test("two sessions asking at once share one load; later asks hit the cache", async () => {
    const c = new MessageCache(roomFor(10, 100));
    let loads = 0;
    const gate = Promise.withResolvers<void>();
    const load = async () => {
      loads++;
      await gate.promise;
      return msg(100, 7);
    };
    const a = c.getOrLoad(key(1), load), b = c.getOrLoad(key(1, { mailbox: "inbox" }), load);
    gate.resolve();
    const [ra, rb] = await Promise.all([a, b]);
    expect(ra).toBe(rb);
    expect(ra?.bytes[0]).toBe(7);
    expect(await c.getOrLoad(key(1), load)).toEqual(ra);
    expect(loads).toBe(1);
  });

  test("a rejected load reaches every waiter, is not cached, and the next ask loads again", async () => {
    const c = new MessageCache(roomFor(10, 100));
    let loads = 0;
    const gate = Promise.withResolvers<void>();
    const failing = async (): Promise<CachedMessage | null> => {
      loads++;
      await gate.promise;
      throw new Error("upstream closed");
    };
    const waiters = [c.getOrLoad(key(1), failing), c.getOrLoad(key(1), failing), c.getOrLoad(key(1), failing)];
    gate.resolve();
    for (const w of waiters) await expect(w).rejects.toThrow("upstream closed");
    expect(loads).toBe(1);
    expect(c.entries).toBe(0);
    const throwsAtOnce = (): Promise<CachedMessage | null> => {
      loads++;
      throw new Error("no connection");
    };
    await expect(c.getOrLoad(key(1), throwsAtOnce)).rejects.toThrow("no connection");
    expect(await c.getOrLoad(key(1), async () => msg(100))).toEqual(msg(100));
    expect(loads).toBe(2);
  });

  test("a null result (message gone) is shared but not cached; a result too big is returned, not kept", async () => {
    const c = new MessageCache(roomFor(1, 100));
    expect(await c.getOrLoad(key(1), async () => null)).toBeNull();
    expect(c.entries).toBe(0);
    const huge = await c.getOrLoad(key(2), async () => msg(roomFor(1, 100)));
    expect(huge?.bytes.length).toBe(roomFor(1, 100));
    expect(c.entries).toBe(0);
  });

  test("a load that began before clear() answers its caller but is not kept", async () => {
    const c = new MessageCache(roomFor(10, 100));
    c.put(key(9), msg(100));
    const gate = Promise.withResolvers<void>();
    const old = c.getOrLoad(key(1), async () => {
      await gate.promise;
      return msg(100, 1);
    });
    c.clear();
    expect([c.entries, c.bytes]).toEqual([0, 0]);
    const fresh = c.getOrLoad(key(1), async () => msg(100, 2));
    gate.resolve();
    expect((await old)?.bytes[0]).toBe(1);
    expect((await fresh)?.bytes[0]).toBe(2);
    expect(c.get(key(1))?.bytes[0]).toBe(2);
  });

  test("1,000 sessions loading 300 messages at once: one load per message, the bound always held", async () => {
    const max = roomFor(50, 10_000);
    const c = new MessageCache(max);
    const loads = new Map<number, number>();
    let peak = 0;
    const gate = Promise.withResolvers<void>();
    const sessions = Array.from({ length: 1000 }, (_, s) => {
      const uid = (s * 7) % 300;
      return c.getOrLoad(key(uid), async () => {
        loads.set(uid, (loads.get(uid) ?? 0) + 1);
        await gate.promise;
        return msg(10_000, uid & 0xff);
      }).then((m) => {
        peak = Math.max(peak, c.bytes);
        return m?.bytes[0] === (uid & 0xff);
      });
    });
    gate.resolve();
    expect((await Promise.all(sessions)).every(Boolean)).toBe(true);
    expect(loads.size).toBe(300);
    expect([...loads.values()].every((n) => n === 1)).toBe(true);
    expect(peak).toBeLessThanOrEqual(max);
    expect(c.entries).toBe(50);
  });
});
