// The buffers downloaded messages are collected in. Shared memory, so a scan worker reads the very
// bytes instead of a copy made on the event loop (pool.ts); and reused, because memory the process
// has not touched before costs a page fault per 4 KiB, ~11 µs each on the virtual machines we
// measured: collecting a 25 MB message into new memory cost 70 ms of faults on every download.
// The garbage collector frees a big buffer too late for the allocator to hand it out again, so the
// protocol gives it back here once the client has been sent everything that pointed into it.

/** Below this a message is collected in ordinary memory: copying it for a worker costs nothing. */
const SHARED_FROM = 256 * 1024;
/** At most this much is kept for reuse (it stays resident); the rest goes to the collector. */
const KEEP_BYTES = 48 * 1024 * 1024;

/** Kept buffers by size class (a power of two). */
const kept = new Map<number, SharedArrayBuffer[]>();
let keptBytes = 0;

function sizeClass(size: number): number {
  return 2 ** Math.ceil(Math.log2(Math.max(size, SHARED_FROM)));
}

/** A buffer of exactly size bytes (contents undefined): shared memory from SHARED_FROM on, reused when one is kept. */
export function messageBuffer(size: number): Uint8Array {
  if (size < SHARED_FROM) return new Uint8Array(size);
  const cls = sizeClass(size);
  const reused = kept.get(cls)?.pop();
  if (reused) {
    keptBytes -= cls;
    return new Uint8Array(reused, 0, size);
  }
  return new Uint8Array(new SharedArrayBuffer(cls), 0, size);
}

/**
 * Gives a buffer from messageBuffer back for reuse. Only once nothing reads it any more: not the
 * scan worker, not the send queue (views of an unchanged message wait there until written).
 */
export function releaseMessageBuffer(view: Uint8Array): void {
  const buf = view.buffer;
  if (!(buf instanceof SharedArrayBuffer)) return;
  const cls = buf.byteLength;
  if (cls !== sizeClass(cls) || keptBytes + cls > KEEP_BYTES) return;
  const list = kept.get(cls) ?? [];
  if (list.includes(buf)) return; // given back twice: keep it once
  list.push(buf);
  kept.set(cls, list);
  keptBytes += cls;
}

/**
 * bytes itself when it is all of an unshared buffer, else a copy: what is kept beyond its moment
 * (a cache entry, a transfer) must not be a view that holds a bigger buffer alive, nor a message
 * buffer that will be given back and refilled. (Buffer#slice would be another view.)
 */
export function ownedBytes(bytes: Uint8Array): Uint8Array {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && !(bytes.buffer instanceof SharedArrayBuffer) ? bytes : new Uint8Array(bytes);
}

/** Bytes kept for reuse now (for tests). */
export function keptMessageBytes(): number {
  return keptBytes;
}
