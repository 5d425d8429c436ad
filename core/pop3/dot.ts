// POP3 multi-line body codec (RFC 1939 §3): the decoder removes dot-stuffing and finds the
// terminating ".\r\n" line; the encoder stuffs every line that starts with "." (the first line too)
// and appends the terminator. Both keep their state across chunks, so any split gives the same bytes.

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

/** A Buffer view (no copy) for its native multi-byte indexOf. */
function view(c: Uint8Array): Buffer {
  return Buffer.isBuffer(c) ? c : Buffer.from(c.buffer, c.byteOffset, c.byteLength);
}
const CR_ONLY = new Uint8Array([CR]);

/** Streaming dot-unstuffer. The body it yields keeps its line ends; the terminator line is not part of it. */
export class DotDecoder {
  private state = D.LineStart;
  private finished = false;

  get done(): boolean { return this.finished; }

  push(chunk: Uint8Array): DecodeStep {
    if (this.finished) return { chunks: [], done: true, rest: chunk };
    const out: Uint8Array[] = [];
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      switch (this.state) {
        case D.Mid: {
          // Only a line that starts with "." needs work: jump from one "\n." to the next (memchr-fast).
          const at = view(chunk).indexOf(LF_DOT, i);
          if (at < 0) {
            out.push(chunk.subarray(i));
            this.state = chunk[n - 1] === LF ? D.LineStart : D.Mid;
            i = n;
            break;
          }
          out.push(chunk.subarray(i, at + 1));
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
          if (b === LF) return this.finish(out, chunk, i + 1); // bare-LF server: ".\n" still ends the body
          // A stuffed dot (or a stray one): drop it, keep the rest of the line as data.
          this.state = D.Mid;
          break;
        }
        case D.DotCr:
          if (chunk[i] === LF) return this.finish(out, chunk, i + 1);
          // ".\r" followed by something else is not a terminator; the dot was stuffing, keep the CR.
          out.push(CR_ONLY);
          this.state = D.Mid;
          break;
      }
    }
    return { chunks: out, done: false, rest: EMPTY };
  }

  private finish(out: Uint8Array[], chunk: Uint8Array, at: number): DecodeStep {
    this.finished = true;
    return { chunks: out, done: true, rest: chunk.subarray(at) };
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
    const out: Uint8Array[] = [];
    const n = chunk.length;
    if (this.atLineStart && chunk[0] === DOT) out.push(DOT_ONLY);
    let from = 0;
    const b = view(chunk);
    for (let at = b.indexOf(LF_DOT); at >= 0; at = b.indexOf(LF_DOT, at + 1)) {
      out.push(chunk.subarray(from, at + 1), DOT_ONLY);
      from = at + 1;
    }
    out.push(chunk.subarray(from));
    this.atLineStart = chunk[n - 1] === LF;
    return out;
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
