// Seeded mutations of real mail for the fuzzing targets: bit flips, bytes that parsers care about,
// truncation, slices duplicated or dropped, boundary and header surgery, deep nesting and huge
// headers. Input i of a run with seed s is always the same bytes, so a finding replays from (s, i).

import { mulberry32 as rng } from "../helpers/splits.ts";

export { rng };

/** The generator of input i of a run: independent of how many inputs came before. */
export function inputRng(seed: number, i: number): () => number {
  return rng((Math.imul(seed, 0x9e3779b1) ^ Math.imul(i + 1, 0x85ebca6b)) >>> 0);
}

const pick = <T>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
const int = (r: () => number, n: number) => Math.floor(r() * n);

/** Bytes MIME, dot-stuffing and IMAP parsers branch on. */
const SPECIAL = [0x00, 0x0d, 0x0a, 0x2d, 0x3d, 0x3a, 0x2e, 0x22, 0x5c, 0x7b, 0x7d, 0x28, 0x29, 0x3b, 0x20, 0x09, 0x80, 0xff];
const TYPES = ["text/plain", "text/html", "multipart/mixed", "multipart/alternative", "multipart/digest", "message/rfc822", "message/news", "application/octet-stream", "application/zip", "multipart/mixed; boundary=\"\"", "message/rfc 822"];
const ENCODINGS = ["base64", "quoted-printable", "7bit", "8bit", "binary", "x-uuencode", "base64 (x)", "quoted-\0printable", "BASE64", "bogus"];

type Mutator = (b: Uint8Array, r: () => number) => Uint8Array;

/** A real copy: Buffer's slice() is a view, and a mutator writing through one would change the seed. */
const copy = (b: Uint8Array) => new Uint8Array(b);

function splice(b: Uint8Array, at: number, remove: number, insert: Uint8Array): Uint8Array {
  const out = new Uint8Array(b.length - remove + insert.length);
  out.set(b.subarray(0, at));
  out.set(insert, at);
  out.set(b.subarray(at + remove), at + insert.length);
  return out;
}

const latin1 = (s: string) => new Uint8Array(Buffer.from(s, "latin1"));
const text = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.length).toString("latin1");

/** Line starts of b (offsets), at most max of them. */
function lineStarts(b: Uint8Array, max = 4096): number[] {
  const out = [0];
  for (let i = 0; i < b.length && out.length < max; i++) if (b[i] === 0x0a && i + 1 < b.length) out.push(i + 1);
  return out;
}

const MUTATORS: Record<string, Mutator> = {
  bitFlip: (b, r) => {
    const out = copy(b);
    for (let k = 0, n = 1 + int(r, 8); k < n && out.length; k++) out[int(r, out.length)]! ^= 1 << int(r, 8);
    return out;
  },
  specialByte: (b, r) => {
    const out = copy(b);
    for (let k = 0, n = 1 + int(r, 4); k < n && out.length; k++) out[int(r, out.length)] = pick(r, SPECIAL);
    return out;
  },
  truncate: (b, r) => b.subarray(0, int(r, b.length + 1)),
  duplicateSlice: (b, r) => {
    const at = int(r, b.length + 1), len = int(r, Math.min(4096, b.length - at + 1));
    return splice(b, int(r, b.length + 1), 0, copy(b.subarray(at, at + len)));
  },
  dropSlice: (b, r) => {
    const at = int(r, b.length + 1);
    return splice(b, at, int(r, Math.min(4096, b.length - at + 1)), new Uint8Array());
  },
  boundarySurgery: (b, r) => {
    const starts = lineStarts(b).filter((s) => b[s] === 0x2d && b[s + 1] === 0x2d);
    if (starts.length === 0) return MUTATORS.specialByte!(b, r);
    const s = pick(r, starts);
    const end = b.indexOf(0x0a, s);
    const lineEnd = end < 0 ? b.length : end + 1;
    switch (int(r, 4)) {
      case 0: return splice(b, s, lineEnd - s, new Uint8Array()); // a delimiter gone
      case 1: return splice(b, s, 0, copy(b.subarray(s, lineEnd))); // a delimiter twice
      case 2: return splice(b, lineEnd - 2 > s ? lineEnd - 2 : s, 0, latin1("--")); // a delimiter turned close
      default: return splice(b, s + 2, 0, latin1(pick(r, ["x", "\0", " ", "-", "\r"]))); // a delimiter bent
    }
  },
  headerSurgery: (b, r) => {
    const starts = lineStarts(b).filter((s) => /^[A-Za-z-]+:/.test(text(b.subarray(s, s + 40))));
    if (starts.length === 0) return MUTATORS.specialByte!(b, r);
    const s = pick(r, starts);
    const end = b.indexOf(0x0a, s);
    const lineEnd = end < 0 ? b.length : end + 1;
    switch (int(r, 5)) {
      case 0: return splice(b, s, 0, copy(b.subarray(s, lineEnd))); // a field repeated
      case 1: return splice(b, s, 0, latin1(`Content-Type: ${pick(r, TYPES)}\r\n`));
      case 2: return splice(b, s, 0, latin1(`Content-Transfer-Encoding: ${pick(r, ENCODINGS)}\r\n`));
      case 3: return splice(b, lineEnd - 2 > s ? lineEnd - 2 : s, 1, latin1(pick(r, ["\r", "\0", "\r\r", ""]))); // odd line end
      default: return splice(b, s, lineEnd - s, new Uint8Array()); // a field gone
    }
  },
  deepNesting: (b, r) => {
    const levels = 5 + int(r, 40);
    const wrap = int(r, 2) === 0
      ? (inner: string, k: number) => `Content-Type: message/rfc822\r\n\r\nSubject: level ${k}\r\n${inner}`
      : (inner: string, k: number) => `Content-Type: multipart/mixed; boundary="n${k}"\r\n\r\n--n${k}\r\n${inner}\r\n--n${k}--\r\n`;
    let s = text(b);
    for (let k = 0; k < levels; k++) s = wrap(s, k);
    return latin1(s);
  },
  hugeHeader: (b, r) => {
    const one = int(r, 2) === 0;
    const field = one ? `X-Huge: ${"a".repeat(100_000 + int(r, 200_000))}\r\n` : Array.from({ length: 20_000 }, (_, k) => `X-${k}: v\r\n`).join("");
    return splice(b, 0, 0, latin1(field));
  },
};
const NAMES = Object.keys(MUTATORS);

/** One to three mutations of a seed message, chosen by r; the names say which (for a finding's report). */
export function mutate(seed: Uint8Array, r: () => number): { bytes: Uint8Array; how: string[] } {
  let bytes = seed;
  const how: string[] = [];
  for (let k = 0, n = 1 + int(r, 3); k < n; k++) {
    const name = pick(r, NAMES);
    bytes = MUTATORS[name]!(bytes, r);
    how.push(name);
  }
  return { bytes, how };
}

/** Random split points of n bytes: every byte alone, or pieces of random size. */
export function splits(n: number, r: () => number): number[] {
  if (n === 0) return [];
  if (int(r, 4) === 0) return Array.from({ length: n }, () => 1);
  const out: number[] = [];
  for (let left = n; left > 0; ) {
    const k = Math.min(left, 1 + int(r, int(r, 2) ? 7 : 4096));
    out.push(k);
    left -= k;
  }
  return out;
}
