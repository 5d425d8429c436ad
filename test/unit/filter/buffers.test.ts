// Message buffers: shared memory a scan worker can read in place, given out again once released so
// a big download does not fault in fresh pages every time, and never kept beyond their bound.
import { expect, test } from "bun:test";
import { keptMessageBytes, messageBuffer, releaseMessageBuffer } from "../../../core/filter/buffers.ts";

test("small messages use ordinary memory; from 256 KiB on, shared memory of exactly the size asked", () => {
  expect(messageBuffer(1024).buffer).toBeInstanceOf(ArrayBuffer);
  const big = messageBuffer(300 * 1024);
  expect(big.buffer).toBeInstanceOf(SharedArrayBuffer);
  expect(big.length).toBe(300 * 1024);
});

test("a released buffer is handed out again for a message of its size class, once", () => {
  const a = messageBuffer(3 * 1024 * 1024);
  a[0] = 42;
  releaseMessageBuffer(a);
  releaseMessageBuffer(a); // twice: kept once
  const before = keptMessageBytes();
  const b = messageBuffer(2.5 * 1024 * 1024);
  expect(b.buffer).toBe(a.buffer);
  expect(b.length).toBe(2.5 * 1024 * 1024);
  expect(keptMessageBytes()).toBe(before - 4 * 1024 * 1024);
  expect(messageBuffer(3 * 1024 * 1024).buffer).not.toBe(a.buffer); // not given out twice
});

test("what is kept stays under its bound; ordinary buffers are not kept", () => {
  releaseMessageBuffer(new Uint8Array(512 * 1024));
  const many = Array.from({ length: 10 }, () => messageBuffer(16 * 1024 * 1024));
  for (const m of many) releaseMessageBuffer(m);
  expect(keptMessageBytes()).toBeLessThanOrEqual(48 * 1024 * 1024);
  expect(keptMessageBytes()).toBeGreaterThan(0);
});
