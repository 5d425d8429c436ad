// Transfer decoding of part bodies (base64, quoted-printable, uuencode). Lenient like mail clients:
// what a client would still show or save must reach the scanner, so junk is skipped, never fatal.
import { asBuffer, trimEol } from "./bytes.ts";
import type { MimePart } from "./types.ts";

const LF = 0x0a;
const CR = 0x0d;
const SP = 0x20;
const TAB = 0x09;
const EQ = 0x3d;

// Base64 value of each byte. MIME's alphabet (RFC 2045 §6.8) is what mail readers decode: "-" and
// "_" are junk there and skipped. The URL-safe alphabet (RFC 4648 §5), where they are 62 and 63, is
// what Buffer and readers built on it take; the pipeline decodes a body holding them both ways.
const B64_JUNK = -1;
const B64_PAD = -2;
const table = (url: boolean) => {
  const t = new Int8Array(256).fill(B64_JUNK);
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (let i = 0; i < 64; i++) t[alphabet.charCodeAt(i)] = i;
  if (url) {
    t[0x2d] = 62; // "-"
    t[0x5f] = 63; // "_"
  }
  t[EQ] = B64_PAD;
  return t;
};
const B64_VALUE = table(false);
const B64_VALUE_URL = table(true);
/**
 * The native decoder takes a string, the text's latin1 copy: a body is handed over a block at a
 * time, so no string the size of a 34 MB attachment is made.
 */
const NATIVE_BLOCK = 256 * 1024;
/**
 * The block strings are garbage at once but held until the collector runs, which it does late for
 * memory outside its heap: a 25 MB attachment raised the proxy's peak RSS by 18 MB. A minor
 * collection after every this many bytes of them keeps that to a few MB, and costs less than the
 * table loop would (25 MB: 16-24 ms natively with the collections, 52 ms in the loop). Only bodies
 * over this size pay it; in the proxy those are decoded on the scan workers, never the event loop.
 */
const COLLECT_EVERY = 2 * 1024 * 1024;

/** True when base64 text holds "-" or "_": readers then disagree on what it decodes to. */
export function hasUrlAlphabet(bytes: Uint8Array): boolean {
  const b = asBuffer(bytes);
  return b.indexOf(0x2d) !== -1 || b.indexOf(0x5f) !== -1;
}

/**
 * Lenient base64: junk and whitespace are skipped, missing padding is accepted, and an "=" ends a
 * piece (its 2 or 3 leftover characters give 1 or 2 bytes) after which decoding goes on, so
 * concatenated encodings are all decoded — what Buffer's decoder does piece by piece. Past max the
 * output is cut (one byte over, so the caller sees it was): a part that decodes to more than the
 * scanner would take is never decoded whole, whatever the message's size.
 *
 * A body that is nothing but the alphabet and whitespace with its padding at the end (nearly every
 * attachment) is decoded natively (Uint8Array#setFromBase64: two to three times the JS loop's speed
 * with the latin1 strings it needs); anything else goes through decodeBase64Lenient, which gives the
 * same bytes for what both accept.
 */
export function decodeBase64(bytes: Uint8Array, urlAlphabet = false, max = Infinity, alloc: (n: number) => Uint8Array = Buffer.allocUnsafe): Uint8Array {
  const len = bytes.length;
  const cap = Math.min(Math.ceil(len / 4) * 3, max + 1);
  const out = alloc(cap + 3);
  const native = urlAlphabet || len === 0 ? null : decodeNatively(asBuffer(bytes), cap, out);
  return native ?? decodeBase64Lenient(bytes, urlAlphabet, cap, out);
}

/**
 * The native reading, a block at a time (a group cut by a block's end waits for the next block);
 * null when the text is not plain base64 (junk, an "=" before the end, a lone last character).
 * out has room for cap + 3: whole groups are decoded while one fits, so a body cut at max fills
 * past cap.
 */
function decodeNatively(b: Buffer, cap: number, out: Uint8Array): Uint8Array | null {
  let i = 0;
  let o = 0;
  let uncollected = 0;
  try {
    while (i < b.length && o <= cap) {
      const last = b.length - i <= NATIVE_BLOCK;
      const text = b.toString("latin1", i, last ? b.length : i + NATIVE_BLOCK);
      const { read, written } = out.subarray(o, cap + 3).setFromBase64(text, { lastChunkHandling: last ? "loose" : "stop-before-partial" });
      o += written;
      if (o > cap) break; // cut at max
      if (read === 0 || (last && read < text.length)) return null;
      i += read;
      if ((uncollected += text.length) >= COLLECT_EVERY && !last) {
        Bun.gc(false);
        uncollected = 0;
      }
    }
  } catch {
    return null;
  }
  return out.subarray(0, Math.min(cap, o));
}

/**
 * decodeBase64 over the bytes with a table, into out (cap + 3 long): no copy of the encoded text,
 * whatever it holds; the URL-safe alphabet (RFC 4648 §5) too.
 */
export function decodeBase64Lenient(bytes: Uint8Array, urlAlphabet: boolean, cap: number, out: Uint8Array): Uint8Array {
  const b = bytes;
  const len = b.length;
  const T = urlAlphabet ? B64_VALUE_URL : B64_VALUE;
  let o = 0;
  let acc = 0;
  let n = 0; // characters in acc
  let i = 0;
  while (i < len && o < cap) {
    if (n === 0) {
      // The bulk of a body: four alphabet characters at a time (any junk or "=" makes the OR negative).
      while (i + 4 <= len && o < cap) {
        const c0 = T[b[i]!]!, c1 = T[b[i + 1]!]!, c2 = T[b[i + 2]!]!, c3 = T[b[i + 3]!]!;
        if ((c0 | c1 | c2 | c3) < 0) break;
        out[o] = (c0 << 2) | (c1 >> 4);
        out[o + 1] = ((c1 << 4) | (c2 >> 2)) & 0xff;
        out[o + 2] = ((c2 << 6) | c3) & 0xff;
        o += 3;
        i += 4;
      }
      if (i >= len) break;
    }
    const v = T[b[i++]!]!;
    if (v >= 0) {
      acc = (acc << 6) | v;
      if (++n === 4) {
        out[o] = acc >> 16;
        out[o + 1] = (acc >> 8) & 0xff;
        out[o + 2] = acc & 0xff;
        o += 3;
        acc = 0;
        n = 0;
      }
    } else if (v === B64_PAD) {
      o = flushBase64(out, o, acc, n);
      acc = 0;
      n = 0;
    }
  }
  return out.subarray(0, Math.min(cap, flushBase64(out, o, acc, n)));
}

/** Writes the bytes a partial group of n characters holds (2 → 1, 3 → 2, 1 → none); returns the new end. */
function flushBase64(out: Uint8Array, o: number, acc: number, n: number): number {
  if (n === 2) out[o++] = (acc >> 4) & 0xff;
  else if (n === 3) {
    out[o++] = (acc >> 10) & 0xff;
    out[o++] = (acc >> 2) & 0xff;
  }
  return o;
}

function hexVal(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

/**
 * Quoted-printable (RFC 2045 §6.7): =XX becomes a byte, "=" before a line end (blanks allowed in
 * between) is a soft break, and a "=" that starts neither stays as it is. Runs without "=" are
 * copied natively; only the escapes are handled in JS.
 */
export function decodeQuotedPrintable(bytes: Uint8Array, max = Infinity): Uint8Array {
  const b = asBuffer(bytes);
  const cap = Math.min(b.length, max + 1); // as for base64: cut one byte past max
  const out = Buffer.allocUnsafe(cap);
  let o = 0;
  let pos = 0;
  const len = b.length;
  while (pos < len && o < cap) {
    let eq = b.indexOf(EQ, pos);
    if (eq === -1) eq = len;
    if (eq > pos) {
      o += b.copy(out, o, pos, Math.min(eq, pos + cap - o));
    }
    if (eq >= len || o >= cap) break;
    const h = hexVal(b[eq + 1] ?? -1);
    const l = h >= 0 ? hexVal(b[eq + 2] ?? -1) : -1;
    if (h >= 0 && l >= 0) {
      out[o++] = (h << 4) | l;
      pos = eq + 3;
      continue;
    }
    let k = eq + 1;
    while (k < len && (b[k] === SP || b[k] === TAB)) k++;
    if (k >= len) { pos = len; continue; } // "=" at the very end: a soft break with nothing after
    if (b[k] === LF) { pos = k + 1; continue; }
    if (b[k] === CR && b[k + 1] === LF) { pos = k + 2; continue; }
    out[o++] = EQ; // not an escape: keep it literally
    pos = eq + 1;
  }
  return out.subarray(0, o);
}

/**
 * The body of part decoded by its Content-Transfer-Encoding; identity encodings return a view (no
 * copy). Decoding stops one byte past max: longer means "more than max", and memory stays bounded.
 * alloc gives the memory a base64 body is decoded into (the scan pipeline's reused buffers).
 */
export function decodePartBody(buf: Uint8Array, part: MimePart, max = Infinity, alloc?: (n: number) => Uint8Array): Uint8Array {
  const body = buf.subarray(part.bodyStart, part.bodyEnd);
  switch (part.transferEncoding) {
    case "base64":
      return decodeBase64(body, false, max, alloc);
    case "quoted-printable":
      return decodeQuotedPrintable(body, max);
    case "x-uuencode":
    case "x-uue":
    case "uuencode":
    case "uue": {
      const blocks = findUuencoded(body);
      return blocks.length > 0 ? blocks[0]!.data : body;
    }
    default:
      return body;
  }
}

export interface UuBlock {
  filename: string;
  data: Uint8Array;
  /** Offsets in body: the "begin" line start and just past the "end" line (or where decoding stopped). */
  start: number;
  end: number;
}

const BEGIN = Buffer.from("begin");
const BEGIN_LINE = /^begin(-base64)? +[0-7]{1,4} +(.+?)\s*$/;

/**
 * Finds uuencoded files in a body: "begin <mode> <name>" at a line start, encoded lines, then
 * "end"; and the base64 form "begin-base64 <mode> <name>" … "====" (POSIX uuencode -m). Lenient:
 * a missing end ends the block at the first line that is not encoded data or at the end of the
 * body; short or over-long lines decode what they hold.
 */
export function findUuencoded(body: Uint8Array): UuBlock[] {
  const b = asBuffer(body);
  const blocks: UuBlock[] = [];
  let pos = 0;
  while (pos < b.length) {
    const i = b.indexOf(BEGIN, pos);
    if (i === -1) break;
    pos = i + 1;
    if (i > 0 && b[i - 1] !== LF) continue;
    const headEnd = lineEnd(b, i);
    const head = b.toString("latin1", i, trimEol(b, i, headEnd));
    const m = BEGIN_LINE.exec(head);
    if (!m) continue;
    const { data, end } = m[1] ? decodeBase64Lines(b, headEnd) : decodeUuLines(b, headEnd);
    blocks.push({ filename: m[2]!, data, start: i, end });
    pos = end;
  }
  return blocks;
}

/** The lines of a begin-base64 block up to "====" (or the first line that is not base64), decoded. */
function decodeBase64Lines(b: Buffer, from: number): { data: Uint8Array; end: number } {
  let pos = from;
  while (pos < b.length) {
    const next = lineEnd(b, pos);
    const textEnd = trimEol(b, pos, next);
    if (textEnd - pos === 4 && b.toString("latin1", pos, textEnd) === "====") {
      return { data: decodeBase64(b.subarray(from, pos)), end: next };
    }
    for (let k = pos; k < textEnd; k++) {
      if (B64_VALUE[b[k]!] === B64_JUNK && b[k] !== SP && b[k] !== TAB) return { data: decodeBase64(b.subarray(from, pos)), end: pos };
    }
    pos = next;
  }
  return { data: decodeBase64(b.subarray(from, pos)), end: pos };
}

function lineEnd(b: Buffer, pos: number): number {
  const nl = b.indexOf(LF, pos);
  return nl === -1 ? b.length : nl + 1;
}

function decodeUuLines(b: Buffer, from: number): { data: Uint8Array; end: number } {
  const out: number[] = [];
  const chunks: Uint8Array[] = [];
  let pos = from;
  while (pos < b.length) {
    const next = lineEnd(b, pos);
    const textEnd = trimEol(b, pos, next);
    const n = textEnd - pos;
    if (n === 3 && b[pos] === 0x65 && b[pos + 1] === 0x6e && b[pos + 2] === 0x64) return { data: join(chunks, out), end: next }; // "end"
    if (n === 0) { pos = next; continue; }
    const count = (b[pos]! - SP) & 0x3f;
    if (count === 0) { pos = next; continue; } // "`" or " ": the zero-length line before "end"
    // A data line holds its length character plus ceil(count/3)*4 characters in the range 0x20..0x60.
    let valid = true;
    for (let k = pos; k < textEnd; k++) if (b[k]! < 0x20 || b[k]! > 0x60) { valid = false; break; }
    if (!valid) return { data: join(chunks, out), end: pos };
    const line: number[] = [];
    for (let k = pos + 1; k + 1 < textEnd && line.length < count; k += 4) {
      const c0 = (b[k]! - SP) & 0x3f, c1 = (b[k + 1]! - SP) & 0x3f;
      const c2 = k + 2 < textEnd ? (b[k + 2]! - SP) & 0x3f : 0, c3 = k + 3 < textEnd ? (b[k + 3]! - SP) & 0x3f : 0;
      line.push(((c0 << 2) | (c1 >> 4)) & 0xff, ((c1 << 4) | (c2 >> 2)) & 0xff, ((c2 << 6) | c3) & 0xff);
    }
    for (let k = 0; k < Math.min(count, line.length); k++) out.push(line[k]!);
    if (out.length >= 65536) { chunks.push(Uint8Array.from(out)); out.length = 0; }
    pos = next;
  }
  return { data: join(chunks, out), end: b.length };
}

function join(chunks: Uint8Array[], tail: number[]): Uint8Array {
  if (tail.length) chunks.push(Uint8Array.from(tail));
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
}
