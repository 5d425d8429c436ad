// The persistent clean index as the proxy relies on it across restarts: what was added is known after
// reopening, only under the same signature identity and size, bounded, private, and any damage to the
// file costs entries (rescans), never an error.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { watch } from "node:fs";
import { appendFile, chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CleanIndex, type CleanKey } from "../../../core/imap/clean-index.ts";

const ID = "0123456789abcdef0123456789abcdef";
const key = (uid: number, over: Partial<CleanKey> = {}): CleanKey => ({ server: "imap.example.org:993", user: "alice.secret", mailbox: "Projects/Confidential", uidValidity: 1700000000, uid, size: 1000 + uid, ...over });
let dir: string;
let file: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "clean-index-"));
  file = join(dir, "state", "imap-clean.idx");
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function reopen(identity = ID, opts?: { maxEntries?: number }): Promise<CleanIndex> {
  return CleanIndex.open(file, identity, opts);
}

describe("CleanIndex across a restart", () => {
  test("open, add, close, open again: the entries are known, others are not", async () => {
    const a = await reopen();
    expect(a.size).toBe(0);
    for (let uid = 1; uid <= 100; uid++) a.add(key(uid));
    expect(a.has(key(5))).toBe(true);
    await a.close();
    const b = await reopen();
    expect(b.size).toBe(100);
    expect(b.has(key(1)) && b.has(key(100))).toBe(true);
    expect(b.has(key(101))).toBe(false);
    // RFC822.SIZE is part of the key: a server that reused a UID for another message is not trusted.
    expect(b.has(key(1, { size: 999 }))).toBe(false);
    expect(b.has(key(1, { uidValidity: 1700000001 }))).toBe(false);
    expect(b.has(key(1, { mailbox: "projects/confidential" }))).toBe(false);
    await b.close();
  });

  test("INBOX in any case is one mailbox, as in the message cache", async () => {
    const a = await reopen();
    a.add(key(1, { mailbox: "inbox" }));
    expect(a.has(key(1, { mailbox: "INBOX" }))).toBe(true);
    await a.close();
  });

  test("another signature identity drops every entry and rewrites the file for itself", async () => {
    const a = await reopen();
    for (let uid = 1; uid <= 50; uid++) a.add(key(uid));
    await a.close();
    const before = (await stat(file)).size;
    const other = "fedcba9876543210fedcba9876543210";
    const b = await reopen(other);
    expect(b.size).toBe(0);
    expect(b.has(key(1))).toBe(false);
    b.add(key(1));
    await b.close();
    expect((await stat(file)).size).toBeLessThan(before);
    expect((await readFile(file, "latin1")).split("\n")[0]).toContain(other);
    const c = await reopen(ID); // and back: the old entries are gone for good
    expect(c.has(key(2))).toBe(false);
    expect(c.size).toBe(0);
    await c.close();
  });

  test("the file is owner-only and names no user, mailbox or server", async () => {
    const a = await reopen();
    for (let uid = 1; uid <= 20; uid++) a.add(key(uid));
    await a.close();
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const text = await readFile(file, "latin1");
    for (const secret of ["alice", "Confidential", "Projects", "imap.example.org", "1700000000"]) expect(text).not.toContain(secret);
  });

  test("a file left with a wider mode by something else is made owner-only on open", async () => {
    await (await reopen()).close();
    await chmod(file, 0o644);
    await (await reopen()).close();
    expect((await stat(file)).mode & 0o777).toBe(0o600);
  });
});

describe("CleanIndex damage", () => {
  test("a torn last record is ignored; every whole one is kept and the file is repaired", async () => {
    const a = await reopen();
    for (let uid = 1; uid <= 10; uid++) a.add(key(uid));
    await a.close();
    const whole = (await stat(file)).size;
    await appendFile(file, new Uint8Array([1, 2, 3, 4, 5, 6, 7]));
    const b = await reopen();
    expect(b.size).toBe(10);
    expect(b.has(key(10))).toBe(true);
    expect((await stat(file)).size).toBe(whole);
    b.add(key(11));
    await b.close();
    const c = await reopen();
    expect(c.size).toBe(11);
    expect(c.has(key(11))).toBe(true);
    await c.close();
  });

  test("zeroed blocks (what a crash can leave) and repeated records are dropped", async () => {
    const a = await reopen();
    for (let uid = 1; uid <= 3; uid++) a.add(key(uid));
    await a.close();
    const data = await readFile(file);
    const last = data.subarray(data.length - 16);
    await appendFile(file, Buffer.concat([new Uint8Array(64), last]));
    const b = await reopen();
    expect(b.size).toBe(3);
    expect([1, 2, 3].every((u) => b.has(key(u)))).toBe(true);
    await b.close();
    expect((await stat(file)).size).toBe(data.length);
  });

  test("garbage, an empty file, a bad header or a header without its end: an empty index, no error", async () => {
    const cases = [crypto.getRandomValues(new Uint8Array(5000)), new Uint8Array(0), new TextEncoder().encode(`mailsentry-clean-index 9 ${ID} 00\n${"x".repeat(32)}`), new TextEncoder().encode("mailsentry-clean-index 1 ".padEnd(2000, "a"))];
    for (const bytes of cases) {
      await mkdir(join(dir, "state"), { recursive: true });
      await writeFile(file, bytes);
      const idx = await reopen();
      expect(idx.size).toBe(0);
      idx.add(key(1));
      await idx.close();
      const again = await reopen();
      expect(again.has(key(1))).toBe(true);
      await again.close();
    }
  });

  test("open rejects only when the file itself cannot be read, and refuses an identity it cannot store", async () => {
    await mkdir(file, { recursive: true });
    await expect(reopen()).rejects.toThrow();
    await expect(CleanIndex.open(join(dir, "x.idx"), "has space")).rejects.toThrow(TypeError);
    await expect(CleanIndex.open(join(dir, "x.idx"), "")).rejects.toThrow(TypeError);
  });
});

describe("CleanIndex bound and writes", () => {
  test("at most maxEntries, the oldest dropped first, the same after reopening", async () => {
    const a = await reopen(ID, { maxEntries: 100 });
    for (let uid = 1; uid <= 1000; uid++) a.add(key(uid));
    expect(a.size).toBe(100);
    expect(a.has(key(900))).toBe(false);
    expect(a.has(key(901)) && a.has(key(1000))).toBe(true);
    await a.close();
    const b = await reopen(ID, { maxEntries: 100 });
    expect(b.size).toBe(100);
    expect(b.has(key(900))).toBe(false);
    expect(b.has(key(901))).toBe(true);
    await b.close();
    const smaller = await reopen(ID, { maxEntries: 10 });
    expect(smaller.size).toBe(10);
    expect(smaller.has(key(990))).toBe(false);
    expect(smaller.has(key(991)) && smaller.has(key(1000))).toBe(true);
    await smaller.close();
  });

  test("random adds and re-adds against a model: exactly the newest distinct maxEntries are kept", async () => {
    const max = 37;
    const idx = await reopen(ID, { maxEntries: max });
    const model: number[] = []; // insertion order, distinct
    let seed = 99;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) % n;
    for (let i = 0; i < 20_000; i++) {
      const uid = rand(120);
      idx.add(key(uid));
      if (!model.includes(uid)) {
        model.push(uid);
        if (model.length > max) model.shift();
      }
      if (i % 97 === 0) for (let u = 0; u < 120; u++) expect(idx.has(key(u))).toBe(model.includes(u));
    }
    expect(idx.size).toBe(max);
    await idx.close();
    const again = await reopen(ID, { maxEntries: max });
    for (let u = 0; u < 120; u++) expect(again.has(key(u))).toBe(model.includes(u));
    await again.close();
  });

  test("add never writes at once; flush appends; the background flush comes by itself", async () => {
    const a = await CleanIndex.open(file, ID, { flushMs: 1 });
    const empty = (await stat(file)).size;
    a.add(key(1));
    expect((await stat(file)).size).toBe(empty);
    await a.flush();
    expect((await stat(file)).size).toBe(empty + 16);
    const changed = Promise.withResolvers<void>();
    const w = watch(file, () => changed.resolve());
    a.add(key(2));
    await changed.promise;
    w.close();
    await a.flush(); // the background write may still be finishing
    expect((await stat(file)).size).toBe(empty + 32);
    await a.close();
    a.add(key(3)); // closed: ignored
    const b = await reopen();
    expect(b.size).toBe(2);
    await b.close();
  });

  test("evictions do not grow the file without bound: it is compacted", async () => {
    const a = await reopen(ID, { maxEntries: 100 });
    for (let uid = 1; uid <= 100_000; uid++) {
      a.add(key(uid));
      if (uid % 1000 === 0) await a.flush();
    }
    await a.close();
    expect((await stat(file)).size).toBeLessThan(20_000 * 16);
    const b = await reopen(ID, { maxEntries: 100 });
    expect(b.has(key(100_000)) && b.has(key(99_901)) && !b.has(key(99_900))).toBe(true);
    await b.close();
  });
});
