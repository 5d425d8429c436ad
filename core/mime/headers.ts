// Header decoding: splitting a header block into fields with offsets, RFC 2047 encoded-words and
// RFC 2045/2231 parameters. Everything here is lenient and never throws: hostile mail is normal input.
import { asBuffer, trimEol } from "./bytes.ts";
import type { HeaderField } from "./types.ts";

const LF = 0x0a;
const CR = 0x0d;
const SP = 0x20;
const TAB = 0x09;
const COLON = 0x3a;

/**
 * Offset just past the line that starts at pos in b: after its LF, or, with bareCr, after a CR that
 * no LF follows (some readers end header lines there, so an alternative reading must too).
 */
export function headerLineEnd(b: Buffer, pos: number, bareCr: boolean): number {
  const nl = b.indexOf(LF, pos);
  const end = nl === -1 ? b.length : nl + 1;
  if (!bareCr) return end;
  const line = b.subarray(pos, end);
  for (let cr = line.indexOf(CR); cr !== -1; cr = line.indexOf(CR, cr + 1)) {
    if (line[cr + 1] !== LF) return pos + cr + 1;
  }
  return end;
}

/** True when buf[start, end) holds a CR that no LF follows: readers disagree on where its lines end. */
export function hasBareCr(buf: Uint8Array, start: number, end: number): boolean {
  const b = asBuffer(buf).subarray(start, end);
  for (let cr = b.indexOf(CR); cr !== -1; cr = b.indexOf(CR, cr + 1)) {
    if (b[cr + 1] !== LF) return true;
  }
  return false;
}

/**
 * Splits buf[start, end) into header fields. Folded lines join the field above; a line that is
 * neither a field nor a fold (no colon, or a space in the name) is skipped, as mail clients do.
 * Values are latin1 views of the bytes with fold line ends removed and leading blanks trimmed.
 * bareCr: a lone CR also ends a line (the reading of clients that split on any line break).
 */
export function parseHeaderBlock(buf: Uint8Array, start: number, end: number, bareCr = false): HeaderField[] {
  // Work on a view of exactly [start, end) so no search ever runs past the block (a huge body
  // after a short header must not be scanned once per field).
  const b = asBuffer(buf).subarray(start, end);
  const len = b.length;
  const fields: HeaderField[] = [];
  let cur: HeaderField | null = null;
  let parts: string[] = [];
  const finish = () => {
    if (!cur) return;
    cur.value = (parts.length === 1 ? parts[0]! : parts.join("")).replace(/^[ \t]+/, "");
    fields.push(cur);
    cur = null;
    parts = [];
  };
  let pos = 0;
  while (pos < len) {
    const lineEnd = headerLineEnd(b, pos, bareCr);
    const textEnd = trimEol(b, pos, lineEnd);
    if (textEnd === pos) break; // blank line: end of the block
    const first = b[pos];
    if (first === SP || first === TAB) {
      if (cur) {
        parts.push(b.toString("latin1", pos, textEnd));
        (cur as HeaderField).end = start + lineEnd;
      }
    } else {
      finish();
      const colon = b.subarray(pos, textEnd).indexOf(COLON);
      if (colon > 0) {
        let nameEnd = pos + colon;
        while (nameEnd > pos && (b[nameEnd - 1] === SP || b[nameEnd - 1] === TAB)) nameEnd--; // "Subject : x"
        const name = b.toString("latin1", pos, nameEnd);
        if (name.length > 0 && !/\s/.test(name)) {
          cur = { name, value: "", start: start + pos, end: start + lineEnd };
          parts = [b.toString("latin1", pos + colon + 1, textEnd)];
        }
      }
    }
    pos = lineEnd;
  }
  finish();
  return fields;
}

/** Decodes bytes in a charset by label; unknown labels fall back to UTF-8, then latin1. */
export function decodeCharset(bytes: Uint8Array, charset: string): string {
  const label = charset.trim().toLowerCase().replace(/\*.*$/, ""); // RFC 2231 §5: charset*lang
  try {
    // Any WHATWG label works (the cast only quiets the typings); an unknown label throws.
    return new TextDecoder((label || "utf-8") as "utf-8").decode(bytes);
  } catch {
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch {
      return Buffer.from(bytes).toString("latin1");
    }
  }
}

/**
 * A header value is a latin1 view of raw bytes. Raw 8-bit text (RFC 6532 UTF-8 headers) is shown
 * as UTF-8 when it is valid UTF-8, otherwise left as latin1. Strings with characters past U+00FF
 * are already decoded and are returned as they are.
 */
export function decodeRawText(s: string): string {
  if (!/[\x80-\xff]/.test(s) || /[^\x00-\xff]/.test(s)) return s;
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(Buffer.from(s, "latin1"));
  } catch {
    return s;
  }
}

const ENCODED_WORD = /=\?([^?\s]+)\?([BbQq])\?([^?]*)\?=/g;

function wordBytes(enc: string, text: string): Uint8Array {
  if (enc === "B" || enc === "b") return Buffer.from(text, "base64");
  const s = text.replace(/_/g, " ").replace(/=([0-9A-Fa-f]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16)));
  return Buffer.from(s, "latin1");
}

/**
 * RFC 2047: replaces B and Q encoded-words by their text. Adjacent words (only whitespace between)
 * are joined, and their bytes are concatenated before decoding when they share a charset, so a
 * multi-byte character split across two words still decodes. Never throws.
 */
export function decodeEncodedWords(s: string): string {
  return decodeWords(s, true);
}

/** decodeEncodedWords; with raw false, text outside encoded-words is left as it is (already decoded). */
export function decodeWords(s: string, raw: boolean): string {
  const plain = raw ? decodeRawText : (t: string) => t;
  if (s.indexOf("=?") === -1) return plain(s);
  let out = "";
  let last = 0;
  let pendingCharset = "";
  let pending: Uint8Array[] = [];
  const flush = () => {
    if (pending.length === 0) return;
    out += decodeCharset(pending.length === 1 ? pending[0]! : Buffer.concat(pending), pendingCharset);
    pending = [];
  };
  ENCODED_WORD.lastIndex = 0;
  for (let m = ENCODED_WORD.exec(s); m; m = ENCODED_WORD.exec(s)) {
    const between = s.slice(last, m.index);
    const charset = m[1]!.toLowerCase().replace(/\*.*$/, "");
    if (pending.length > 0 && /^[ \t\r\n]*$/.test(between)) {
      if (charset !== pendingCharset) flush(); // whitespace between adjacent words is dropped
    } else {
      flush();
      out += plain(between);
    }
    pendingCharset = charset;
    pending.push(wordBytes(m[2]!, m[3]!));
    last = m.index + m[0].length;
  }
  flush();
  return out + plain(s.slice(last));
}

/** Splits on ';' outside double quotes. */
function splitParams(value: string): string[] {
  const out: string[] = [];
  let start = 0;
  let quoted = false;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 0x5c && quoted) i++; // backslash escape inside quotes
    else if (c === 0x22) quoted = !quoted;
    else if (c === 0x3b && !quoted) {
      out.push(value.slice(start, i));
      start = i + 1;
    }
  }
  out.push(value.slice(start));
  return out;
}

function unquote(v: string): string {
  v = v.trim();
  if (!v.startsWith('"')) return v;
  const close = v.lastIndexOf('"');
  const inner = close > 0 ? v.slice(1, close) : v.slice(1); // missing closing quote: take the rest
  return inner.replace(/\\(.)/g, "$1");
}

function percentBytes(s: string): Uint8Array {
  return Buffer.from(s.replace(/%([0-9A-Fa-f]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16))), "latin1");
}

interface Segment { index: number; extended: boolean; text: string }

/**
 * Parses `type/subtype; a=1; b="two"` into the value and lower-cased parameter names. RFC 2231:
 * name*=charset'lang'%XX values and name*0 / name*1* continuations are joined and decoded. The first
 * occurrence of a parameter wins; an RFC 2231 value wins over a plain one. Plain values stay latin1
 * views of the raw bytes (a boundary must match byte for byte); RFC 2047 words are left for the caller.
 */
export function parseHeaderValueWithParams(value: string): { value: string; params: Record<string, string> } {
  const { value: v, params } = parseParams(value);
  return { value: v, params };
}

export interface ParsedParams {
  value: string;
  params: Record<string, string>;
  /** Parameters that came in RFC 2231 form (already text). */
  extended: Set<string>;
  /** Parameters given more than once with different values (plain and RFC 2231 forms included): readers disagree on them. */
  conflicting: Set<string>;
}

/**
 * parseHeaderValueWithParams, also naming the parameters that came in RFC 2231 form and those given
 * twice. last: the other reading of a repeated parameter — the last plain occurrence wins, and a
 * plain value wins over an RFC 2231 one (what readers that ignore RFC 2231 see).
 */
export function parseParams(value: string, last = false): ParsedParams {
  const pieces = splitParams(value);
  const params: Record<string, string> = Object.create(null);
  const conflicting = new Set<string>();
  const extended = new Set<string>();
  const continued = new Map<string, Map<number, Segment>>();
  for (let i = 1; i < pieces.length; i++) {
    const piece = pieces[i]!;
    const eq = piece.indexOf("=");
    if (eq === -1) continue;
    const rawName = piece.slice(0, eq).trim().toLowerCase();
    if (!rawName) continue;
    const rawValue = unquote(piece.slice(eq + 1));
    const m = /^([^*]+)\*(?:(\d+)(\*)?)?$/.exec(rawName);
    if (!m) {
      if (rawName in params && params[rawName] !== rawValue) conflicting.add(rawName);
      if (last || !(rawName in params)) params[rawName] = rawValue;
      continue;
    }
    const name = m[1]!;
    const index = m[2] === undefined ? 0 : Number(m[2]);
    const encoded = m[2] === undefined ? true : m[3] === "*";
    let segs = continued.get(name);
    if (!segs) continued.set(name, (segs = new Map()));
    // First segment of each index wins; indexes are capped so a hostile header cannot make a huge sparse join.
    if (index < 10_000 && !segs.has(index)) segs.set(index, { index, extended: encoded, text: rawValue });
  }
  for (const [name, bySegment] of continued) {
    const plain = params[name];
    const segs = [...bySegment.values()].sort((a, b) => a.index - b.index);
    let charset = "";
    const bytes: Uint8Array[] = [];
    for (const seg of segs) {
      let text = seg.text;
      if (seg.extended && seg.index === 0) {
        const q1 = text.indexOf("'");
        const q2 = q1 === -1 ? -1 : text.indexOf("'", q1 + 1);
        if (q2 !== -1) {
          charset = text.slice(0, q1);
          text = text.slice(q2 + 1);
        }
      }
      bytes.push(seg.extended ? percentBytes(text) : Buffer.from(text, "latin1"));
    }
    const joined = Buffer.concat(bytes);
    const text = charset ? decodeCharset(joined, charset) : decodeRawText(joined.toString("latin1"));
    if (plain !== undefined && plain !== text) conflicting.add(name);
    if (plain === undefined || !last) {
      params[name] = text;
      extended.add(name);
    }
  }
  return { value: (pieces[0] ?? "").trim(), params: { ...params }, extended, conflicting };
}
