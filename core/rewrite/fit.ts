// Same size: picks the richest draft of a rewritten copy that is not longer than the original and
// pads it to exactly the original's length; below every draft, a minimal message cut to fit.
import { encodeHeaderText } from "./headers.ts";
import { fillerLines, minPaddingField, NO_PAD, paddingField, type Pad } from "./padding.ts";
import { bytes, chunksLength, concat } from "./splice.ts";

/** One candidate copy: its chunks with the given padding applied. Must be pure (called more than once). */
export type Draft = (pad: Pad) => Uint8Array[];

/**
 * The most padding one header field carries. A cleaned copy of a 20 MB message whose 20 MB
 * attachment was removed must not become a 20 MB header block: postal-mime rejects headers over
 * 2 MiB in total and Postfix cuts them at 100 KiB when the message is sent on. Beyond this the
 * rest goes into a multipart preamble, which RFC 2046 tells every reader to ignore.
 */
export const HEADER_PADDING_MAX = 8192;
/** The share of a large gap that stays in the header field; the preamble takes the rest. */
const HEADER_PADDING_SPLIT = 4096;

/** The first draft that fits in size bytes, padded to exactly size (as chunks); null when none fits. */
export function fitDrafts(drafts: readonly Draft[], size: number, eol: string): Uint8Array[] | null {
  for (const draft of drafts) {
    const gap = size - chunksLength(draft(NO_PAD));
    if (gap < 0) continue;
    const out = draft(padFor(draft, gap, size, eol));
    // The arithmetic is tested for every gap; should it ever be wrong, refusing beats a size that lies.
    const length = chunksLength(out);
    if (length !== size) throw new Error(`padded copy is ${length} bytes, not ${size}`);
    return out;
  }
  return null;
}

function padFor(draft: Draft, gap: number, size: number, eol: string): Pad {
  if (gap === 0) return NO_PAD;
  if (gap < minPaddingField(eol)) return { ...NO_PAD, slack: gap };
  if (gap <= HEADER_PADDING_MAX) return { ...NO_PAD, field: paddingField(gap, eol) };
  // A preamble may cost bytes of its own (a notice message turns multipart): measure with it.
  const withPreamble = chunksLength(draft({ ...NO_PAD, preamble: new Uint8Array() }));
  return {
    field: paddingField(HEADER_PADDING_SPLIT, eol),
    slack: 0,
    preamble: fillerLines(size - withPreamble - HEADER_PADDING_SPLIT, eol),
  };
}

/**
 * A message of exactly size bytes for an original too small for any notice draft: our status
 * header (whole, then its first word, then cut) and the one-line notice (whole, then cut). It
 * holds nothing of the original. No Content-Type: the line is ASCII, text/plain is the default.
 */
export function cutMessage(size: number, status: string, line: string, eol: string): Uint8Array {
  const word = status.replace(/ \(.*$/s, "");
  for (const value of [encodeHeaderText(status), word]) {
    const head = `X-Virus-Status: ${value}${eol}`;
    const room = size - head.length - eol.length - line.length - eol.length;
    if (room < 0) continue;
    if (room >= minPaddingField(eol)) return concat([bytes(head), paddingField(room, eol), bytes(`${eol}${line}${eol}`)]);
    // Trailing spaces on a text/plain line: nothing a reader shows (line ≤ 50 + 24 characters).
    return bytes(`${head}${eol}${line}${" ".repeat(room)}${eol}`);
  }
  const head = `X-Virus-Status: ${word}${eol}${eol}`;
  if (size >= head.length) return bytes(head + cutText(line, size - head.length));
  const name = "X-Virus-Status:";
  const room = size - name.length - 2 * eol.length;
  if (room >= 0) return bytes(`${name}${room >= 2 ? ` ${word.slice(0, room - 1)}` : word.slice(0, room)}${eol}${eol}`);
  // Too small for our header: an empty header block and what fits of the line.
  if (size >= eol.length) return bytes(eol + line.slice(0, size - eol.length));
  return bytes("\n".repeat(size));
}

/** The first n characters of line, or all of it followed by spaces when n is longer. */
function cutText(line: string, n: number): string {
  return n <= line.length ? line.slice(0, n) : line + " ".repeat(n - line.length);
}
