// Objects a reader can find in a body that its MIME structure does not announce: runs of base64
// lines in text (a multipart whose boundary never occurs shows its parts as text, and a lenient
// reader still decodes them), data: URIs in HTML, and the delimiter lines of a multipart whose
// declared boundary is wrong. Pure byte functions, bounded by the body's size; never throw.
import { decodeBase64 } from "./decode.ts";
import { asBuffer, trimEol } from "./bytes.ts";

const LF = 0x0a;
const SP = 0x20;
const TAB = 0x09;
const EQ = 0x3d;
const DASH = 0x2d;

/**
 * Both base64 alphabets (RFC 4648 §4 and §5), as the decoder accepts them; the value says the
 * character's class (upper 1, lower 2, digit 4, sign 8) and 0 is not base64.
 */
const B64_CLASS = (() => {
  const t = new Uint8Array(256);
  for (let c = 0x41; c <= 0x5a; c++) t[c] = 1;
  for (let c = 0x61; c <= 0x7a; c++) t[c] = 2;
  for (let c = 0x30; c <= 0x39; c++) t[c] = 4;
  for (const c of "+/-_") t[c.charCodeAt(0)] = 8;
  return t;
})();
/** Encoded data mixes upper case, lower case and digits; a word, a rule or a hex digest does not. */
const MIXED = 1 | 2 | 4;

/** A line this long made only of base64 characters starts a run; prose lines hold spaces or punctuation long before. */
const MIN_LINE = 16;
/** A run shorter than this decodes to under 48 bytes: too little to hold anything a signature names. */
const MIN_RUN = 64;

export interface Span {
  start: number;
  end: number;
}

/**
 * The runs of base64 lines in a text body, as [start, end) offsets: consecutive lines made only of
 * base64 characters (up to two "=" at the end), MIN_RUN in all. The first line is at least MIN_LINE
 * long and mixes upper case, lower case and digits; the next ones have its width (encoders write
 * fixed-width lines, and a line of "AAAA…" inside a binary is still data), the last may be shorter.
 */
export function findBase64Runs(body: Uint8Array): Span[] {
  const b = asBuffer(body);
  const len = b.length;
  const runs: Span[] = [];
  let runStart = -1;
  let runEnd = 0;
  let runChars = 0;
  let width = 0;
  const close = () => {
    if (runStart >= 0 && runChars >= MIN_RUN) runs.push({ start: runStart, end: runEnd });
    runStart = -1;
    runChars = 0;
  };
  let pos = 0;
  while (pos < len) {
    const nl = b.indexOf(LF, pos);
    const next = nl === -1 ? len : nl + 1;
    let end = trimEol(b, pos, next);
    while (end > pos && (b[end - 1] === SP || b[end - 1] === TAB)) end--;
    let textEnd = end;
    if (textEnd > pos && b[textEnd - 1] === EQ) textEnd--;
    if (textEnd > pos && b[textEnd - 1] === EQ) textEnd--;
    let k = pos;
    let classes = 0;
    for (; k < textEnd; k++) {
      const c = B64_CLASS[b[k]!]!;
      if (c === 0) break;
      classes |= c;
    }
    const n = end - pos;
    const isB64 = k === textEnd && n >= 2;
    if (isB64 && runStart >= 0 && n <= width) {
      runEnd = next;
      runChars += n;
      if (n < width || end > textEnd) close(); // a short line or padding ends an encoding
    } else {
      close();
      if (isB64 && n >= MIN_LINE && (classes & MIXED) === MIXED) {
        runStart = pos;
        runEnd = next;
        runChars = n;
        width = n;
        if (end > textEnd) close();
      }
    }
    pos = next;
  }
  close();
  return runs;
}

/** Every base64 run of a text body, decoded. */
export function decodeBase64Runs(body: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const run of findBase64Runs(body)) {
    const data = decodeBase64(body.subarray(run.start, run.end));
    if (data.length > 0) out.push(data);
  }
  return out;
}

/** At most this many data: URIs are taken from one body; each is an object against maxFiles anyway. */
const MAX_DATA_URIS = 1000;
/**
 * The media type is everything up to the first comma and may hold junk, "<" and ">" included (inside
 * a quoted attribute they are plain characters): browsers still honour its ";base64".
 */
const DATA_URI = /data:([^,"']{0,200}),([^"'<>()]*)/gi;

const A_COLON = Buffer.from("a:");
const UPPER_A_COLON = Buffer.from("A:");

/** Whether "data:" occurs in any letter case, found natively: every "a:" is looked back from. */
function mayHoldDataUri(b: Buffer): boolean {
  for (const probe of [A_COLON, UPPER_A_COLON]) {
    for (let i = b.indexOf(probe, 3); i !== -1; i = b.indexOf(probe, i + 1)) {
      if ((b[i - 3]! | 0x20) === 0x64 && (b[i - 2]! | 0x20) === 0x61 && (b[i - 1]! | 0x20) === 0x74) return true;
    }
  }
  return false;
}

/**
 * The data: URIs of an HTML (or any text) body, decoded (RFC 2397): base64 ones with whitespace
 * and junk skipped as browsers do, the others by their %XX escapes.
 */
export function findDataUris(body: Uint8Array): Uint8Array[] {
  const b = asBuffer(body);
  if (!mayHoldDataUri(b)) return []; // most text parts: no string copy of the body at all
  const text = b.toString("latin1");
  const out: Uint8Array[] = [];
  DATA_URI.lastIndex = 0;
  for (let m = DATA_URI.exec(text); m && out.length < MAX_DATA_URIS; m = DATA_URI.exec(text)) {
    const meta = m[1]!.toLowerCase();
    const payload = m[2]!;
    if (payload.length === 0) continue;
    const bytes = /;\s*base64\s*$/.test(meta)
      ? decodeBase64(Buffer.from(payload, "latin1"))
      : Buffer.from(payload.replace(/%([0-9A-Fa-f]{2})/g, (_s, h: string) => String.fromCharCode(parseInt(h, 16))), "latin1");
    if (bytes.length > 0) out.push(bytes);
  }
  return out;
}

/**
 * The boundary a multipart body's own delimiter lines suggest, for one whose declared boundary
 * never occurs (wrong, or holding a NUL some readers cut it at): the first line "--x" followed by a
 * header field. null when there is none or it is the declared one.
 */
export function guessBoundary(body: Uint8Array, declared: string): string | null {
  const b = asBuffer(body);
  const len = b.length;
  let pos = 0;
  for (let lines = 0; pos < len && lines < 10_000; lines++) {
    const nl = b.indexOf(LF, pos);
    const next = nl === -1 ? len : nl + 1;
    if (b[pos] === DASH && b[pos + 1] === DASH) {
      let end = trimEol(b, pos, next);
      while (end > pos && (b[end - 1] === SP || b[end - 1] === TAB)) end--;
      const following = b.toString("latin1", next, Math.min(len, next + 200));
      if (end - pos > 2 && /^[!-9;-~]+[ \t]*:/.test(following)) {
        let candidate = b.toString("latin1", pos + 2, end);
        if (candidate.endsWith("--")) candidate = candidate.slice(0, -2);
        return candidate && candidate !== declared ? candidate : null;
      }
    }
    pos = next;
  }
  return null;
}
