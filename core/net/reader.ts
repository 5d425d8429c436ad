// The wire layer under every protocol: bytes of one socket direction in, lines or exact byte counts out,
// on demand. It decides nothing about the protocol; it enforces the line cap while bytes arrive, applies
// the read timeout ("no bytes while a reply is awaited") and asks the socket to pause when too much waits.

export type ReadErrorCode = "eof" | "timeout" | "line-too-long";

export class ReadError extends Error {
  constructor(readonly code: ReadErrorCode, message: string) {
    super(message);
    this.name = "ReadError";
  }
}

/**
 * A hard deadline over several reads: when it passes, the reader fails its pending and later reads
 * with a timeout, and onExpire runs (the caller drops the connection). A peer trickling one byte at
 * a time resets every read's idle timer, never this. Returns the function that disarms it.
 */
export function readDeadline(reader: ByteReader, ms: number, what: string, onExpire: () => void): () => void {
  const timer = setTimeout(() => {
    reader.close(new ReadError("timeout", `${what} took over ${ms} ms`));
    onExpire();
  }, ms);
  return () => clearTimeout(timer);
}

export interface ByteReaderOptions {
  /** Buffered bytes above which the socket is paused (resumed below half of it). */
  highWater?: number;
  onPause?: () => void;
  onResume?: () => void;
}

const LF = 0x0a;
const CR = 0x0d;

export class ByteReader {
  protected chunks: Uint8Array[] = [];
  protected size = 0;
  private eof: Error | null = null;
  private wake: (() => void) | null = null;
  private paused = false;
  private readonly highWater: number;
  // How far takeLine looked without finding LF: the first `count` chunks (`seen` bytes, starting with
  // `first`). A long line arriving a few bytes at a time is then scanned once, not once per arrival.
  private scanned: { first: Uint8Array; count: number; seen: number } | null = null;

  constructor(private readonly opts: ByteReaderOptions = {}) {
    this.highWater = opts.highWater ?? 1024 * 1024;
  }

  get buffered(): number { return this.size; }
  get ended(): boolean { return this.eof !== null; }

  push(chunk: Uint8Array): void {
    if (this.eof || chunk.length === 0) return;
    this.chunks.push(chunk);
    this.size += chunk.length;
    if (!this.paused && this.size > this.highWater) { this.paused = true; this.opts.onPause?.(); }
    this.poke();
  }

  /** The peer closed (or the socket failed): pending and later reads fail once the buffer runs dry. */
  close(reason: Error = new ReadError("eof", "connection closed")): void {
    if (!this.eof) this.eof = reason;
    this.poke();
  }

  /** Drops everything buffered (bytes a peer sent after STLS/STARTTLS in the same packet). Returns the count. */
  discard(): number {
    return this.takeBuffered().reduce((n, c) => n + c.length, 0);
  }

  /** Hands out everything buffered (e.g. compressed bytes that came with the COMPRESS reply). */
  takeBuffered(): Uint8Array[] {
    const out = this.chunks;
    this.chunks = [];
    this.size = 0;
    this.relieve();
    return out;
  }

  /** Next line without its CRLF (a bare LF also ends a line). Throws ReadError. */
  async readLine(maxLength: number, timeoutMs = 0): Promise<Uint8Array> {
    for (;;) {
      const line = this.takeLine(maxLength);
      if (line) return line;
      await this.more(timeoutMs);
    }
  }

  /**
   * Exactly n bytes, handed to sink as they arrive (views of the socket's chunks, no copy). An awaited
   * sink slows reading down: that is how a slow client pauses the server.
   */
  async readExact(n: number, sink: (chunk: Uint8Array) => void | Promise<void>, timeoutMs = 0): Promise<void> {
    let left = n;
    while (left > 0) {
      if (this.chunks.length === 0) { await this.more(timeoutMs); continue; }
      let c = this.chunks.shift()!;
      if (c.length > left) { this.chunks.unshift(c.subarray(left)); c = c.subarray(0, left); }
      this.size -= c.length;
      left -= c.length;
      this.relieve();
      const r = sink(c);
      if (r) await r;
    }
  }

  /**
   * Exactly n bytes as one buffer (bounded by the caller): a view when they arrived in one chunk,
   * else gathered into alloc(n) (a fresh buffer unless the caller has one to reuse).
   */
  async readBytes(n: number, timeoutMs = 0, alloc: (n: number) => Uint8Array = (k) => new Uint8Array(k)): Promise<Uint8Array> {
    const first = this.chunks[0];
    if (first && first.length >= n) {
      const view = first.subarray(0, n);
      if (first.length > n) this.chunks[0] = first.subarray(n);
      else this.chunks.shift();
      this.size -= n;
      this.relieve();
      return view;
    }
    const out = alloc(n);
    let at = 0;
    await this.readExact(n, (c) => { out.set(c, at); at += c.length; }, timeoutMs);
    return out;
  }

  protected takeLine(maxLength: number): Uint8Array | null {
    let k = 0;
    let seen = 0;
    const s = this.scanned;
    // Only the front of the buffer is ever taken or replaced, so the same first chunk means the same prefix.
    if (s && this.chunks[0] === s.first && this.chunks.length >= s.count) { k = s.count; seen = s.seen; }
    for (; k < this.chunks.length; k++) {
      const c = this.chunks[k]!;
      const nl = c.indexOf(LF);
      if (nl < 0) {
        seen += c.length;
        // A CR at the end of what arrived may be the start of the line's CRLF: it is not part of the line yet.
        if (seen - (c[c.length - 1] === CR ? 1 : 0) > maxLength) throw tooLong(maxLength);
        continue;
      }
      const prev = this.chunks[k - 1];
      const cr = nl > 0 ? c[nl - 1] === CR : prev !== undefined && prev[prev.length - 1] === CR;
      if (seen + nl - (cr ? 1 : 0) > maxLength) throw tooLong(maxLength);
      let line: Uint8Array;
      if (k === 0) line = c.subarray(0, nl + 1); // the common case: no copy
      else {
        line = new Uint8Array(seen + nl + 1);
        let at = 0;
        for (let j = 0; j < k; j++) { line.set(this.chunks[j]!, at); at += this.chunks[j]!.length; }
        line.set(c.subarray(0, nl + 1), at);
      }
      const restOfChunk = c.subarray(nl + 1);
      this.chunks.splice(0, k + 1);
      if (restOfChunk.length) this.chunks.unshift(restOfChunk);
      this.scanned = null;
      this.size -= line.length;
      this.relieve();
      const end = cr ? line.length - 2 : line.length - 1;
      return line.subarray(0, end);
    }
    if (this.chunks.length > 0) this.scanned = { first: this.chunks[0]!, count: this.chunks.length, seen };
    if (this.eof) throw this.eof;
    return null;
  }

  protected more(timeoutMs: number): Promise<void> {
    if (this.eof) return Promise.reject(this.eof); // buffered bytes hold no complete unit and none will come
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    let timer: ReturnType<typeof setTimeout> | undefined;
    if (timeoutMs > 0 && Number.isFinite(timeoutMs)) {
      timer = setTimeout(() => { this.wake = null; reject(new ReadError("timeout", `no data for ${timeoutMs} ms`)); }, timeoutMs);
    }
    this.wake = () => { if (timer) clearTimeout(timer); resolve(); };
    return promise;
  }

  private poke(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  protected relieve(): void {
    if (this.paused && this.size <= this.highWater / 2) { this.paused = false; this.opts.onResume?.(); }
  }
}

function tooLong(maxLength: number): ReadError {
  return new ReadError("line-too-long", `line longer than ${maxLength} bytes`);
}

/** A protocol line as text, byte for byte (true latin1, so latin1Bytes gives the same bytes back). Lines are capped, so this is bounded. */
export function lineText(line: Uint8Array): string {
  return Buffer.from(line.buffer, line.byteOffset, line.byteLength).toString("latin1");
}

/** The bytes of a line built from lineText pieces. */
export function latin1Bytes(s: string): Uint8Array {
  return Buffer.from(s, "latin1");
}
