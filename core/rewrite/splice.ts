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
  const sorted = edits.map((e, i) => ({ e, i })).sort((a, b) => a.e.start - b.e.start || a.e.end - b.e.end || a.i - b.i);
  let total = raw.length;
  for (const { e } of sorted) total += e.bytes.length - (e.end - e.start);
  const out = new Uint8Array(total);
  let pos = 0;
  let at = 0;
  for (const { e } of sorted) {
    if (e.start < pos || e.end < e.start || e.end > raw.length) throw new RangeError(`bad edit [${e.start}, ${e.end}) after ${pos}`);
    out.set(raw.subarray(pos, e.start), at);
    at += e.start - pos;
    out.set(e.bytes, at);
    at += e.bytes.length;
    pos = e.end;
  }
  out.set(raw.subarray(pos), at);
  return out;
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
  let n = 0;
  for (const c of chunks) n += c.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}
