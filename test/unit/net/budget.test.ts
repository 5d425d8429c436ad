// The shared byte budget: grants in arrival order, never more than the limit at once (a request larger
// than the limit alone), and a release wakes the waiters it makes room for.
import { describe, expect, test } from "bun:test";
import { ByteBudget } from "../../../core/net/budget.ts";

const tick = () => new Promise((r) => setTimeout(r, 0));

describe("ByteBudget", () => {
  test("holds at most the limit; waiters are granted in order as room is made", async () => {
    const b = new ByteBudget(100);
    const r1 = await b.acquire(60);
    const order: string[] = [];
    const p2 = b.acquire(50).then((r) => { order.push("second"); return r; });
    const p3 = b.acquire(10).then((r) => { order.push("third"); return r; }); // fits, but waits its turn
    await tick();
    expect(order).toEqual([]);
    expect(b.inUse).toBe(60);
    r1();
    r1(); // a second release changes nothing
    const r2 = await p2;
    const r3 = await p3;
    expect(order).toEqual(["second", "third"]);
    expect(b.inUse).toBe(60);
    r2(); r3();
    expect(b.inUse).toBe(0);
  });

  test("a request over the limit runs alone", async () => {
    const b = new ByteBudget(100);
    const small = await b.acquire(1);
    let big = false;
    const p = b.acquire(1_000).then((r) => { big = true; return r; });
    await tick();
    expect(big).toBe(false);
    small();
    const rb = await p;
    expect(b.inUse).toBe(100);
    let after = false;
    const q = b.acquire(1).then((r) => { after = true; return r; });
    await tick();
    expect(after).toBe(false);
    rb();
    (await q)();
    expect(b.inUse).toBe(0);
  });

  test("random acquire/release never exceeds the limit and leaves nothing held", async () => {
    const b = new ByteBudget(1000);
    let seed = 7;
    const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    let peak = 0;
    await Promise.all(Array.from({ length: 200 }, async () => {
      const release = await b.acquire(Math.floor(rand() * 1500));
      peak = Math.max(peak, b.inUse);
      await new Promise((r) => setTimeout(r, Math.floor(rand() * 3)));
      release();
    }));
    expect(peak).toBeLessThanOrEqual(1000);
    expect(b.inUse).toBe(0);
  });
  test("tryAcquire grants only what is to spare, leaving room, and never jumps the queue", async () => {
    const b = new ByteBudget(100);
    const r1 = b.tryAcquire(40, 50);
    expect(r1).not.toBeNull();
    expect(b.inUse).toBe(40);
    expect(b.spare(50)).toBe(10);
    expect(b.tryAcquire(20, 50)).toBeNull(); // 40 + 20 would leave fewer than 50 free
    expect(b.tryAcquire(1_000)).toBeNull(); // over the whole budget: never granted this way
    const held = await b.acquire(60);
    const waiting = b.acquire(10);
    expect(b.tryAcquire(0)).toBeNull(); // someone waits: no grant ahead of it
    expect(b.spare()).toBe(0);
    r1!();
    r1!();
    const r3 = await waiting;
    expect(b.inUse).toBe(70);
    held(); r3();
    expect(b.inUse).toBe(0);
    const r4 = b.tryAcquire(100);
    expect(b.inUse).toBe(100);
    r4!();
    expect(b.inUse).toBe(0);
  });
});
