// Padding that makes a rewritten copy exactly as long as the original, placed where every MIME
// reader looks past it: a header field, spaces inside our own Content-Type, a multipart preamble.
// Only the byte arithmetic lives here; which copy gets which padding is fit.ts's business.

/** The header field that carries padding; its name says why it is there. */
export const PADDING_FIELD = "X-Mailsentry-Padding";

/** RFC 5322's recommended line limit, kept by every padding line (line end not counted). */
const MAX_LINE = 78;
const FILL = 0x78; // "x": no whitespace-only line (some parsers end a header there), never "-" or "." at a line start

/** Padding for one draft of a rewritten copy; NO_PAD is none. */
export interface Pad {
  /** A complete padding header field (or nothing), placed right after our X-Virus-* fields. */
  field: Uint8Array;
  /** Extra spaces inside our text/plain Content-Type, for gaps too small for a field. */
  slack: number;
  /** Filler lines for a multipart preamble; null: none (a notice message stays single-part). */
  preamble: Uint8Array | null;
}

export const NO_PAD: Pad = { field: new Uint8Array(), slack: 0, preamble: null };

/** Most slack a Content-Type line takes and stays within 78 characters. */
export const MAX_SLACK = MAX_LINE - "Content-Type: text/plain; charset=utf-8".length;

/** The smallest padding field, `X-Mailsentry-Padding: x` and its line end; smaller gaps use slack. */
export function minPaddingField(eol: string): number {
  return PADDING_FIELD.length + 3 + eol.length;
}

/**
 * Our notice's Content-Type line. Whitespace between a parameter's ";" and its name is folding
 * white space that every parser skips, so `slack` extra spaces change no reader's view of it.
 */
export function textPlainType(slack: number, eol: string): string {
  if (!Number.isInteger(slack) || slack < 0 || slack > MAX_SLACK) throw new RangeError(`slack ${slack}`);
  return `Content-Type: text/plain;${" ".repeat(1 + slack)}charset=utf-8${eol}`;
}

/**
 * A header field of exactly n bytes (n ≥ minPaddingField): filler folded into lines of at most 78
 * characters, each continuation line a space and at least one filler character.
 */
export function paddingField(n: number, eol: string): Uint8Array {
  if (!Number.isInteger(n) || n < minPaddingField(eol)) throw new RangeError(`padding field of ${n} bytes`);
  const head = `${PADDING_FIELD}: `;
  const full = MAX_LINE + eol.length;
  // Every full line, the first and each continuation, is 78 characters and its line end; the
  // fewest lines that hold n bytes always leave at least one filler character per line.
  const lines = Math.ceil(n / full);
  let filler = n - head.length - eol.length - (lines - 1) * (1 + eol.length);
  const out = new Uint8Array(n).fill(FILL);
  const put = (s: string, at: number) => {
    for (let i = 0; i < s.length; i++) out[at + i] = s.charCodeAt(i);
    return at + s.length;
  };
  let at = put(head, 0);
  for (let line = 0; line < lines; line++) {
    if (line > 0) at = put(" ", at);
    const room = line === 0 ? MAX_LINE - head.length : MAX_LINE - 1;
    const take = Math.min(room, filler - (lines - 1 - line));
    at = put(eol, at + take);
    filler -= take;
  }
  return out;
}

/** Lines of filler, exactly n bytes (n ≥ 1 + eol length), for a multipart preamble. */
export function fillerLines(n: number, eol: string): Uint8Array {
  if (!Number.isInteger(n) || n < 1 + eol.length) throw new RangeError(`filler of ${n} bytes`);
  const lines = Math.ceil(n / (MAX_LINE + eol.length));
  let filler = n - lines * eol.length;
  const out = new Uint8Array(n).fill(FILL);
  let at = 0;
  for (let line = 0; line < lines; line++) {
    const take = Math.min(MAX_LINE, filler - (lines - 1 - line));
    at += take;
    for (let i = 0; i < eol.length; i++) out[at++] = eol.charCodeAt(i);
    filler -= take;
  }
  return out;
}
