import { describe, expect, test } from "bun:test";
import { SendQueue, type Sink } from "../../../core/net/queue.ts";

/** A socket that accepts at most `window` bytes until drained. */
function slowSink(window: number) {
  const got: number[] = [];
  let room = window;
  let ended = false;
  const sink: Sink = {
    write(d) { const n = Math.min(room, d.length); room -= n; for (let i = 0; i < n; i++) got.push(d[i]!); return n; },
    end() { ended = true; },
  };
  return { sink, got, open(n: number) { room += n; }, get ended() { return ended; } };
}

describe("SendQueue", () => {
  test("partial writes are kept and finished on drain, in order", () => {
    const s = slowSink(3);
    const q = new SendQueue(s.sink, { highWater: 100 });
    q.write(new Uint8Array([1, 2, 3, 4, 5]));
    q.write(new Uint8Array([6, 7]));
    expect(s.got).toEqual([1, 2, 3]);
    expect(q.pending).toBe(4);
    s.open(10);
    q.drain();
    expect(s.got).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(q.pending).toBe(0);
  });

  test("end waits until everything is written", () => {
    const s = slowSink(2);
    const q = new SendQueue(s.sink);
    q.write(new Uint8Array([1, 2, 3, 4]));
    q.end();
    expect(s.ended).toBe(false);
    s.open(2);
    q.drain();
    expect(s.ended).toBe(true);
    expect(s.got).toEqual([1, 2, 3, 4]);
  });

  test("over the high-water mark it reports pressure, and relief below half", async () => {
    const s = slowSink(0);
    const events: string[] = [];
    const q = new SendQueue(s.sink, { highWater: 10, onFull: () => events.push("full"), onRelief: () => events.push("relief") });
    expect(q.write(new Uint8Array(8))).toBe(true);
    expect(q.write(new Uint8Array(8))).toBe(false);
    let roomed = false;
    const room = q.room().then(() => { roomed = true; });
    s.open(8);
    q.drain();
    await Promise.resolve();
    expect(roomed).toBe(false); // 8 left: above half of 10
    s.open(8);
    q.drain();
    await room;
    expect(events).toEqual(["full", "relief"]);
    expect(q.pending).toBe(0);
  });

  test("small pieces of one reply go out as one write", () => {
    const writes: number[] = [];
    const q = new SendQueue({ write: (d) => { writes.push(d.length); return d.length; }, end() {} });
    q.write(new Uint8Array(3), new Uint8Array(2), new Uint8Array(5));
    expect(writes).toEqual([10]);
  });

  test("what a socket did not take of a joined reply stays intact while other queues write", () => {
    // Joined replies are built in one buffer shared by every queue: the rest kept must be its own copy.
    const s = slowSink(4);
    const q = new SendQueue(s.sink);
    q.write(new Uint8Array([1, 2, 3]), new Uint8Array([4, 5, 6]), new Uint8Array([7, 8]));
    const other: number[] = [];
    const q2 = new SendQueue({ write: (d) => { other.push(...d); return d.length; }, end() {} });
    q2.write(new Uint8Array([90, 91]), new Uint8Array([92, 93, 94, 95, 96, 97, 98, 99]));
    expect(other).toEqual([90, 91, 92, 93, 94, 95, 96, 97, 98, 99]);
    // A reply queued behind the rest is joined in memory of its own too.
    q.write(new Uint8Array([9]), new Uint8Array([10]));
    q2.write(new Uint8Array([0, 0, 0]), new Uint8Array([0, 0, 0]));
    s.open(100);
    q.drain();
    expect(s.got).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });

  test("gather: the writes of one turn go out as one write at its end; a new sink or flushGathered sends them first", async () => {
    const writes: number[][] = [];
    const sink = (label: number): Sink => ({ write: (d) => { writes.push([label, ...d]); return d.length; }, end() {} });
    const q = new SendQueue(sink(1), { gather: true });
    q.write(new Uint8Array([1, 2]));
    q.write(new Uint8Array([3]), new Uint8Array([4]));
    expect(writes).toEqual([]);
    await new Promise((r) => setImmediate(r));
    expect(writes).toEqual([[1, 1, 2, 3, 4]]);
    // A TLS upgrade swaps the sink: what was gathered belongs to the old one.
    q.write(new Uint8Array([5]));
    q.setSink(sink(2));
    q.write(new Uint8Array([6]));
    q.flushGathered();
    expect(writes).toEqual([[1, 1, 2, 3, 4], [1, 5], [2, 6]]);
    await new Promise((r) => setImmediate(r));
    expect(writes.length).toBe(3);
    // empty() waits for the gathered write; end() sends it before ending.
    let ended = false;
    const q2 = new SendQueue({ write: (d) => { writes.push([3, ...d]); return d.length; }, end() { ended = true; } }, { gather: true });
    q2.write(new Uint8Array([7]));
    q2.end();
    expect(ended).toBe(false);
    await q2.empty();
    expect(ended).toBe(true);
    expect(writes.at(-1)).toEqual([3, 7]);
  });

  test("a dead socket drops the queue and releases waiters", async () => {
    const q = new SendQueue({ write: () => -1, end() {} }, { highWater: 1 });
    q.write(new Uint8Array(5));
    expect(q.closed).toBe(true);
    await q.room();
    await q.empty();
  });
});

describe("Channel reading", () => {
  test("a socket that sends faster than one turn can take waits for the next turn: other sessions are served in between", async () => {
    const { listen } = await import("../../../core/net/listen.ts");
    const TOTAL = 8 * 1024 * 1024;
    const done = Promise.withResolvers<void>();
    let got = 0;
    let sinceTurn = 0;
    let most = 0;
    let turns = 0;
    // Counts the bytes delivered between two turns of the event loop (a chain of setImmediate).
    const tick = () => { most = Math.max(most, sinceTurn); sinceTurn = 0; turns++; if (got < TOTAL) setImmediate(tick); };
    const l = listen({
      address: "127.0.0.1:0",
      onChannel(ch) {
        setImmediate(tick);
        ch.attach({ push(c) { got += c.length; sinceTurn += c.length; if (got >= TOTAL) done.resolve(); }, close() { done.resolve(); } });
      },
    });
    const sender = Bun.spawn(["python3", "-c", `import socket; s=socket.create_connection(("127.0.0.1", ${l.port})); s.sendall(b"x" * ${TOTAL}); s.close()`]);
    try {
      await done.promise;
      expect(got).toBe(TOTAL);
      // One turn takes what a socket delivers up to the turn's budget plus the read that crossed it.
      expect(most).toBeLessThanOrEqual(1024 * 1024);
      expect(turns).toBeGreaterThanOrEqual(TOTAL / (1024 * 1024));
    } finally {
      await sender.exited;
      l.stop();
    }
  });
});
