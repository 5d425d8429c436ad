// POP3 multi-line body codec (RFC 1939 §3): the decoder removes dot-stuffing and finds the
// terminating ".\r\n" line; the encoder stuffs every line that starts with "." (the first line too)
// and appends the terminator; the terminator scanner only finds the end, for bytes relayed as they
// are. All keep their state across chunks, so any split gives the same result.

const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;

const enum D { LineStart, Mid, Dot, DotCr }

export interface DecodeStep {
  /** Unstuffed body bytes found in this chunk (views into the input; copy if you keep the input mutable). */
  chunks: Uint8Array[];
  /** True once the terminating line was seen. */
  done: boolean;
  /** Bytes after the terminating line (the next reply), when done. */
  rest: Uint8Array;
}

const EMPTY = new Uint8Array(0);
const LF_DOT = Buffer.from("\n.");

/**
 * Offset of the next "\n." at or after from, or -1. A native indexOf costs a call each time, which
 * dominates when dot-leading lines are dense; a short plain scan first keeps that case linear and
 * cheap, and memmem still skips the long stretches of ordinary mail.
 */
function nextLfDot(chunk: Uint8Array, from: number): number {
  const stop = Math.min(from + NEAR, chunk.length - 1);
  for (let i = from; i < stop; i++) if (chunk[i] === LF && chunk[i + 1] === DOT) return i;
  return stop >= chunk.length - 1 ? -1 : view(chunk).indexOf(LF_DOT, stop);
}
const NEAR = 32;

/** A Buffer view (no copy) for its native multi-byte indexOf. */
function view(c: Uint8Array): Buffer {
  return Buffer.isBuffer(c) ? c : Buffer.from(c.buffer, c.byteOffset, c.byteLength);
}
const CR_ONLY = new Uint8Array([CR]);
/** Past this many pieces in one chunk, one copy is cheaper than a view per stuffed line. */
const MAX_VIEWS = 64;

/**
 * Finds where a dot-terminated body ends, across any split of the stream. On its own it reads the
 * bytes as the server sent them, still stuffed, so a relay that changes nothing can pass them on
 * untouched; DotDecoder also has it record the unstuffed data.
 */
export class DotTerminatorScanner {
  private state = D.LineStart;

  /** The offset just past the terminating line in chunk, or -1 when the body goes on. */
  push(chunk: Uint8Array): number {
    return this.scan(chunk, null);
  }

  /**
   * The same, recording into ranges (when given) the [start, end) pieces of chunk that are body
   * data once unstuffed; a start of -1 stands for a lone CR.
   */
  scan(chunk: Uint8Array, ranges: number[] | null): number {
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      switch (this.state) {
        case D.Mid: {
          // Only a line that starts with "." needs work: jump from one "\n." to the next (memchr-fast).
          const at = nextLfDot(chunk, i);
          if (at < 0) {
            ranges?.push(i, n);
            this.state = chunk[n - 1] === LF ? D.LineStart : D.Mid;
            return -1;
          }
          ranges?.push(i, at + 1);
          i = at + 2;
          this.state = D.Dot;
          break;
        }
        case D.LineStart:
          if (chunk[i] === DOT) { this.state = D.Dot; i++; } else this.state = D.Mid;
          break;
        case D.Dot: {
          const b = chunk[i]!;
          if (b === CR) { this.state = D.DotCr; i++; break; }
          if (b === LF) return i + 1; // bare-LF server: ".\n" still ends the body
          // A stuffed dot (or a stray one): drop it, keep the rest of the line as data.
          this.state = D.Mid;
          break;
        }
        case D.DotCr:
          if (chunk[i] === LF) return i + 1;
          // ".\r" followed by something else is not a terminator; the dot was stuffing, keep the CR.
          ranges?.push(-1, -1);
          this.state = D.Mid;
          break;
      }
    }
    return -1;
  }
}

/**
 * Streaming dot-unstuffer. The body it yields keeps its line ends; the terminator line is not part of it.
 * The output of one chunk is recorded as [start, end) ranges of the chunk (start -1: a lone CR) and
 * handed out as views while there are few of them; a chunk dense with stuffed lines becomes one
 * unstuffed copy, so a body of millions of ".x" lines costs no object per line.
 */
export class DotDecoder {
  private readonly terminator = new DotTerminatorScanner();
  private finished = false;
  private ranges: number[] = [];

  get done(): boolean { return this.finished; }

  push(chunk: Uint8Array): DecodeStep {
    if (this.finished) return { chunks: [], done: true, rest: chunk };
    this.ranges.length = 0;
    const end = this.terminator.scan(chunk, this.ranges);
    if (end >= 0) return this.finish(chunk, end);
    return { chunks: this.output(chunk), done: false, rest: EMPTY };
  }

  private finish(chunk: Uint8Array, at: number): DecodeStep {
    this.finished = true;
    return { chunks: this.output(chunk), done: true, rest: chunk.subarray(at) };
  }

  private output(chunk: Uint8Array): Uint8Array[] {
    const r = this.ranges;
    if (r.length <= 2 * MAX_VIEWS) {
      const out: Uint8Array[] = [];
      for (let k = 0; k < r.length; k += 2) out.push(r[k]! < 0 ? CR_ONLY : chunk.subarray(r[k]!, r[k + 1]!));
      return out;
    }
    let size = 0;
    for (let k = 0; k < r.length; k += 2) size += r[k]! < 0 ? 1 : r[k + 1]! - r[k]!;
    const joined = new Uint8Array(size);
    let w = 0;
    for (let k = 0; k < r.length; k += 2) {
      if (r[k]! < 0) { joined[w++] = CR; continue; }
      joined.set(chunk.subarray(r[k]!, r[k + 1]!), w);
      w += r[k + 1]! - r[k]!;
    }
    return [joined];
  }
}

const TERMINATOR = new Uint8Array([DOT, CR, LF]);
const CRLF_TERMINATOR = new Uint8Array([CR, LF, DOT, CR, LF]);
const DOT_ONLY = new Uint8Array([DOT]);

/** Streaming dot-stuffer: push body bytes, then end() gives the terminator (after a CRLF if the body lacks one). */
export class DotEncoder {
  private atLineStart = true;
  private empty = true;

  push(chunk: Uint8Array): Uint8Array[] {
    if (chunk.length === 0) return [];
    this.empty = false;
    const n = chunk.length;
    const lead = this.atLineStart && chunk[0] === DOT ? 1 : 0;
    this.atLineStart = chunk[n - 1] === LF;
    // Count first (memchr-fast): a body whose every line starts with "." would otherwise become
    // millions of tiny views, costing far more memory than the bytes and overflowing the stack of
    // any caller that spreads them into one write.
    let count = lead;
    for (let at = nextLfDot(chunk, 0); at >= 0; at = nextLfDot(chunk, at + 1)) count++;
    if (count === 0) return [chunk];
    if (count <= MAX_VIEWS) {
      const out: Uint8Array[] = lead ? [DOT_ONLY] : [];
      let from = 0;
      for (let at = nextLfDot(chunk, 0); at >= 0; at = nextLfDot(chunk, at + 1)) {
        out.push(chunk.subarray(from, at + 1), DOT_ONLY);
        from = at + 1;
      }
      out.push(chunk.subarray(from));
      return out;
    }
    const stuffed = new Uint8Array(n + count);
    let w = 0;
    if (lead) stuffed[w++] = DOT;
    let from = 0;
    for (let at = nextLfDot(chunk, 0); at >= 0; at = nextLfDot(chunk, at + 1)) {
      stuffed.set(chunk.subarray(from, at + 1), w);
      w += at + 1 - from;
      stuffed[w++] = DOT;
      from = at + 1;
    }
    stuffed.set(chunk.subarray(from), w);
    return [stuffed];
  }

  /** The terminating line; a body that does not end in a line break gets CRLF first. */
  end(): Uint8Array {
    return this.atLineStart || this.empty ? TERMINATOR : CRLF_TERMINATOR;
  }
}

/** Joins byte chunks into one buffer. */
export function concatBytes(chunks: readonly Uint8Array[], total?: number): Uint8Array {
  const size = total ?? chunks.reduce((s, c) => s + c.length, 0);
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) { out.set(c, at); at += c.length; }
  return out;
}

/** One whole body stuffed and terminated, ready to follow a "+OK" line. */
export function stuffBody(body: Uint8Array): Uint8Array {
  const enc = new DotEncoder();
  const parts = enc.push(body);
  parts.push(enc.end());
  return concatBytes(parts);
}
