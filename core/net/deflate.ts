// COMPRESS=DEFLATE (RFC 4978) on one Channel: everything it sends is raw deflate (RFC 1951) with a sync
// flush per write, everything it receives is inflated before its reader sees it. It sits above TLS.
import zlib from "node:zlib";
import type { ByteTransform, Channel, Sink } from "./queue.ts";

/** The peer's compressed stream is corrupt, or bytes follow its end: the channel closes with this. */
export class CompressionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CompressionError";
  }
}

export interface CompressionStats {
  /** Bytes handed to the socket (compressed) and the bytes they carry. */
  wireOut: number;
  plainOut: number;
  /** Bytes received from the socket (compressed) and what they inflated to. */
  wireIn: number;
  plainIn: number;
}

export interface CompressionOptions {
  /** zlib level for what we send (default 6, as Dovecot and zlib use). */
  level?: number;
}

// Plaintext compressed per step: bounds both the event-loop stall and the compressed bytes held
// back when the socket is full (they are counted in the queue's pending until the kernel has them).
const DEFLATE_SLICE = 64 * 1024;
// zlib output buffer; one inflate step yields at most this much, which is what bounds an inflate
// bomb: after each step we stop if the reader paused the channel.
const OUT_BUFFER = 64 * 1024;
const MIN_ROOM = 8 * 1024;

/** What the zlib handle inside node:zlib's stream objects offers (Node's and Bun's alike). */
interface ZlibHandle {
  writeSync(flush: number, input: Uint8Array, inOff: number, inLen: number, out: Uint8Array, outOff: number, outLen: number): void;
  close(): void;
  onerror: (message: string, errno: number, code: string) => void;
}

/**
 * One zlib stream driven synchronously with a persistent context. node:zlib has no public API for
 * that (its sync functions close the context after one call, its streams run every flush through
 * the thread pool: 30x slower for a command line), so this uses the handle its streams are built on.
 * deflateAvailable() checks that the handle still looks like this.
 */
class ZStream {
  private handle: ZlibHandle | null;
  private readonly state: Uint32Array; // after each call: [output room left, input left]
  private out = new Uint8Array(OUT_BUFFER);
  private outAt = 0;
  error: Error | null = null;

  constructor(kind: "deflate" | "inflate", level?: number) {
    const stream = kind === "deflate" ? zlib.createDeflateRaw({ level }) : zlib.createInflateRaw();
    const inner = stream as unknown as { _handle?: ZlibHandle; _writeState?: Uint32Array };
    if (typeof inner._handle?.writeSync !== "function" || !(inner._writeState instanceof Uint32Array)) {
      throw new Error("node:zlib offers no synchronous stream handle in this runtime");
    }
    this.handle = inner._handle;
    this.state = inner._writeState;
    // zlib reports a corrupt stream through this callback, synchronously, during writeSync.
    this.handle.onerror = (message, _errno, code) => { this.error ??= new CompressionError(`${kind}: ${message} (${code})`); };
  }

  /**
   * One zlib call on input[from..]. `out` is a fresh view (it may be kept without copying); `full`
   * means zlib had more output than room: call again (with the rest of the input, maybe none).
   */
  step(input: Uint8Array, from: number, flush: number): { out: Uint8Array; used: number; full: boolean } {
    if (!this.handle) throw new CompressionError("compression stream closed");
    if (this.out.length - this.outAt < MIN_ROOM) { this.out = new Uint8Array(OUT_BUFFER); this.outAt = 0; }
    const room = this.out.length - this.outAt;
    const inLen = input.length - from;
    this.handle.writeSync(flush, input, from, inLen, this.out, this.outAt, room);
    if (this.error) throw this.error;
    const roomLeft = this.state[0]!;
    const used = inLen - this.state[1]!;
    const out = this.out.subarray(this.outAt, this.outAt + room - roomLeft);
    this.outAt += out.length;
    return { out, used, full: roomLeft === 0 };
  }

  close(): void {
    this.handle?.close();
    this.handle = null;
  }
}

let available: boolean | undefined;

/** Whether this runtime can compress a channel (check before sending COMPRESS DEFLATE upstream). */
export function deflateAvailable(): boolean {
  if (available === undefined) {
    try {
      const d = new ZStream("deflate");
      const i = new ZStream("inflate");
      const probe = new TextEncoder().encode("a1 NOOP\r\na1 NOOP\r\n");
      const packed = d.step(probe, 0, zlib.constants.Z_SYNC_FLUSH).out.slice();
      const back = i.step(packed, 0, zlib.constants.Z_SYNC_FLUSH).out;
      available = Buffer.from(back).equals(probe);
      d.close();
      i.close();
    } catch {
      available = false;
    }
  }
  return available;
}

/**
 * The send queue's sink while compressing. Plaintext is reported written only once its compressed
 * form is in the kernel: until then the queue still holds it, so pending/isFull/room() keep meaning
 * "not sent yet" and a slow server still pauses the producer.
 */
class DeflateSink implements Sink {
  private backlog: Uint8Array | null = null; // compressed bytes the socket did not take
  private owed = 0; // plaintext at the head of the queue already compressed into backlog

  constructor(private readonly socket: Sink, private readonly z: ZStream, private readonly stats: CompressionStats,
    private readonly fail: (e: Error) => void) {}

  write(data: Uint8Array): number {
    try {
      if (this.backlog) {
        const n = this.socket.write(this.backlog);
        if (n < 0) return -1;
        this.stats.wireOut += n;
        if (n < this.backlog.length) { this.backlog = this.backlog.subarray(n); return 0; }
        this.backlog = null;
      }
      // The queue hands the same bytes again after a short count: the owed ones are now sent.
      let done = this.owed;
      this.owed = 0;
      while (done < data.length) {
        const slice = data.subarray(done, done + DEFLATE_SLICE);
        const packed = this.compress(slice);
        const n = this.socket.write(packed);
        if (n < 0) return -1;
        this.stats.wireOut += n;
        this.stats.plainOut += slice.length;
        if (n < packed.length) { this.backlog = packed.subarray(n); this.owed = slice.length; return done; }
        done += slice.length;
      }
      return done;
    } catch (e) {
      this.fail(e as Error);
      return -1;
    }
  }

  end(): void { this.socket.end(); }

  /** The slice deflated and sync-flushed: it ends on a byte boundary, so the peer can inflate all of it now. */
  private compress(slice: Uint8Array): Uint8Array {
    const pieces: Uint8Array[] = [];
    let from = 0;
    for (;;) {
      const r = this.z.step(slice, from, zlib.constants.Z_SYNC_FLUSH);
      from += r.used;
      if (r.out.length) pieces.push(r.out);
      if (!r.full) break;
    }
    return pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces);
  }
}

/** Inflates socket bytes into the channel's reader, one bounded step at a time, stopping while it is paused. */
class DeflateTransform implements ByteTransform {
  private held: Uint8Array[] = [];
  private heldAt = 0;
  private dead = false;
  private scheduled = false;
  readonly stats: CompressionStats = { wireOut: 0, plainOut: 0, wireIn: 0, plainIn: 0 };
  private readonly deflater: ZStream;
  private readonly inflater: ZStream;

  constructor(private readonly ch: Channel, opts: CompressionOptions) {
    this.deflater = new ZStream("deflate", opts.level);
    this.inflater = new ZStream("inflate");
    ch.closed.then(() => this.stop());
  }

  wrapSink(socket: Sink): Sink {
    return new DeflateSink(socket, this.deflater, this.stats, (e) => this.fail(e));
  }

  input(chunk: Uint8Array): void {
    if (this.dead || chunk.length === 0) return;
    this.stats.wireIn += chunk.length;
    this.held.push(chunk);
    this.pump();
  }

  resumed(): void {
    // Called from inside the reader's bookkeeping: push more only after it has returned.
    if (this.scheduled || this.dead) return;
    this.scheduled = true;
    queueMicrotask(() => { this.scheduled = false; this.pump(); });
  }

  private pump(): void {
    try {
      while (this.held.length > 0 && !this.dead && !this.ch.isPaused) {
        const chunk = this.held[0]!;
        const r = this.inflater.step(chunk, this.heldAt, zlib.constants.Z_SYNC_FLUSH);
        this.heldAt += r.used;
        if (r.out.length) { this.stats.plainIn += r.out.length; this.ch.deliver(r.out); }
        if (r.full) continue;
        if (this.heldAt < chunk.length) throw new CompressionError("data after the end of the compressed stream");
        this.held.shift();
        this.heldAt = 0;
      }
    } catch (e) {
      this.fail(e as Error);
    }
  }

  private fail(e: Error): void {
    if (this.dead) return;
    const reason = e instanceof CompressionError ? e : new CompressionError(e.message);
    this.stop();
    this.ch.onClose(reason); // the reader sees why
    this.ch.destroy();
  }

  private stop(): void {
    this.dead = true;
    this.held = [];
    this.deflater.close();
    this.inflater.close();
  }
}

/**
 * Compresses ch from now on. Call right after reading the tagged OK of COMPRESS DEFLATE, in the same
 * synchronous step, with whatever the reader still holds after that line (take it out of the
 * reader: it is compressed data and is inflated first). Nothing may be queued unsent on ch.out.
 * Returns live byte counts of both directions (for the log).
 */
export function startCompression(ch: Channel, alreadyBuffered: Uint8Array[] = [], opts: CompressionOptions = {}): CompressionStats {
  if (ch.out.pending > 0) throw new Error("startCompression: plaintext is still queued on the channel");
  const t = new DeflateTransform(ch, opts);
  ch.setTransform(t);
  for (const c of alreadyBuffered) t.input(c);
  return t.stats;
}
