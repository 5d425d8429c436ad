// Byte-range splicing: the only way a message is changed. Everything outside the edited ranges is
// copied as is, so untouched parts stay byte-identical.

export interface Edit {
  /** [start, end) of the original bytes to replace; start === end inserts. */
  start: number;
  end: number;
  bytes: Uint8Array;
}

/** Applies non-overlapping edits (any order; insertions at one offset keep their given order). */
export function splice(raw: Uint8Array, edits: readonly Edit[]): Uint8Array {
  if (edits.length === 0) return raw;
  return concat(spliceChunks(raw, edits));
}

/**
 * The edited message as a list of chunks: views into raw between the edits, the edits' bytes in
 * between. Nothing is copied, so a caller can measure a candidate rewrite before building it.
 */
export function spliceChunks(raw: Uint8Array, edits: readonly Edit[]): Uint8Array[] {
  const sorted = edits.map((e, i) => ({ e, i })).sort((a, b) => a.e.start - b.e.start || a.e.end - b.e.end || a.i - b.i);
  const out: Uint8Array[] = [];
  let pos = 0;
  for (const { e } of sorted) {
    if (e.start < pos || e.end < e.start || e.end > raw.length) throw new RangeError(`bad edit [${e.start}, ${e.end}) after ${pos}`);
    if (e.start > pos) out.push(raw.subarray(pos, e.start));
    if (e.bytes.length > 0) out.push(e.bytes);
    pos = e.end;
  }
  if (pos < raw.length) out.push(raw.subarray(pos));
  return out;
}

/** Total length of a list of chunks. */
export function chunksLength(chunks: readonly Uint8Array[]): number {
  let n = 0;
  for (const c of chunks) n += c.length;
  return n;
}

/** The line ending the message uses, judged by the first line break in [from, to); CRLF when there is none. */
export function lineEnding(raw: Uint8Array, from = 0, to = raw.length): "\r\n" | "\n" {
  const i = raw.subarray(from, to).indexOf(0x0a);
  if (i < 0) return "\r\n";
  return i > 0 && raw[from + i - 1] === 0x0d ? "\r\n" : "\n";
}

const utf8 = new TextEncoder();
export function bytes(s: string): Uint8Array {
  return utf8.encode(s);
}

export function concat(chunks: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunksLength(chunks));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}
