// Memory that big decoded bodies are written into, kept by this thread from one scan to the next.
// A body of megabytes decoded into a fresh buffer costs a page fault per 4 KiB (~11 µs each on the
// machines we measured): the 25 MB attachment of the benchmarks took 63–70 ms to scan on a worker
// whose earlier buffer had gone back to the system, 23–30 ms when its memory was reused. The
// allocator does not keep buffers this big for reuse, so the pipeline does, one lease at a time.

/** Bodies smaller than this are decoded into fresh memory: the allocator reuses small blocks itself. */
export const REUSE_FROM = 1024 * 1024;
/** A buffer over this is let go after its scan rather than kept (resident memory at rest). */
const KEEP_AT_MOST = 32 * 1024 * 1024;
/** Buffers kept per thread: a worker scans one message at a time, the event loop a few at once. */
const KEEP_COUNT = 2;

const kept: ArrayBuffer[] = [];

/** One decoded body's memory, held from the lease until release(); alloc may be called more than once. */
export interface DecodeLease {
  /** A Buffer of exactly n bytes over this lease's memory (contents undefined); earlier views are invalid. */
  alloc(n: number): Buffer;
  release(): void;
}

export function leaseDecodeBuffer(): DecodeLease {
  let buf: ArrayBuffer | null = kept.pop() ?? null;
  let released = false;
  return {
    alloc(n: number): Buffer {
      if (!buf || buf.byteLength < n) buf = new ArrayBuffer(Math.ceil(n / REUSE_FROM) * REUSE_FROM);
      return Buffer.from(buf, 0, n);
    },
    release(): void {
      if (released) return;
      released = true;
      if (buf && buf.byteLength <= KEEP_AT_MOST && kept.length < KEEP_COUNT) kept.push(buf);
      buf = null;
    },
  };
}

/** Bytes kept for reuse on this thread (for tests). */
export function keptDecodeBytes(): number {
  return kept.reduce((n, b) => n + b.byteLength, 0);
}
