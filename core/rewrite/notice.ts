// The notices that stand in for what was removed: a text/plain part in a cleaned message, or a whole
// notice message that keeps the original's From, To, Cc, Date, Subject and Message-ID.
import type { MimePart } from "../mime/types.ts";
import { encodeHeaderText, safeText, subjectTagEdit } from "./headers.ts";
import { textPlainType, type Pad } from "./padding.ts";
import { bytes, splice } from "./splice.ts";

/** One removed object as the notice describes it. */
export interface NoticeItem {
  filename: string | null;
  contentType: string;
  partId: string;
  /** Detection names and where they were found, e.g. `Eicar-Test-Signature in attachment "a.zip" › x.com`. */
  detections: string[];
  /** The distinct detection names, e.g. "Eicar-Test-Signature". */
  names: string;
}

/** A notice's text in pieces, so that a copy which must keep the original's size can drop some. */
/** Where the original survives, as a sentence and in a few words (null: the sentence is short enough to lose). */
export interface KeptNotes {
  note: string;
  short: string | null;
}

export interface NoticeText {
  /** What was removed and why: written at every detail but the smallest. */
  lead: string[];
  /** Lines that repeat what the lead says (File:), the first to go. */
  extra: string[];
  /** One line per finding, with where it was found. */
  detections: string[];
  /** The same, shortened to the detection names. */
  names: string[];
  /** Where the original survives, or null when it does not. */
  kept: string | null;
  /** The same in a few words ("Quarantine id: …"), kept down to the last rung above minimal. */
  keptShort: string | null;
  /** ASCII, at most 50 characters: the whole notice when nothing else fits. */
  minimal: string;
}

/**
 * How much of a notice a copy carries, richest first. Each step drops what a reader misses least:
 * blank lines, File: and the kept note; then where a detection was found; then our X-Virus-Scanned
 * field and the subject tag (X-Virus-Status stays); then the notice part's other header fields;
 * then the quarantine id (what was removed matters more to a reader: the id is also found by
 * `mailsentry quarantine list`); then all but one line and the id; then all but one line.
 */
export const DETAILS = ["full", "compact", "names", "bare", "stripped", "stripped-unkept", "minimal-kept", "minimal"] as const;
export type Detail = (typeof DETAILS)[number];

export function noticeLines(t: NoticeText, detail: Detail): string[] {
  switch (detail) {
    case "full": {
      const details = [...t.extra, ...t.detections];
      return [...t.lead, ...(details.length ? ["", ...details] : []), ...(t.kept ? ["", t.kept] : [])];
    }
    // The quarantine id is what lets a user get the original back: it goes last, with the detail.
    case "compact":
      return [...t.lead, ...t.detections, ...(t.keptShort ? [t.keptShort] : [])];
    case "names":
    case "bare":
    case "stripped":
      return [...t.lead, ...t.names, ...(t.keptShort ? [t.keptShort] : [])];
    case "stripped-unkept":
      return [...t.lead, ...t.names];
    case "minimal-kept":
      return t.keptShort ? [t.minimal, t.keptShort] : [t.minimal];
    case "minimal":
      return [t.minimal];
  }
}

/** Whether X-Virus-Scanned and the subject tag are written at this detail. */
export function decorated(detail: Detail): boolean {
  return detail === "full" || detail === "compact" || detail === "names";
}

/** The Content-Transfer-Encoding field, left out when it would say the default (7bit) of a copy cut to fit. */
export function transferEncodingField(body: EncodedBody, detail: Detail, eol: string): string {
  return detail !== "full" && body.transferEncoding === "7bit" ? "" : `Content-Transfer-Encoding: ${body.transferEncoding}${eol}`;
}

/** kept: the sentences saying where the original survives, or null when it does not. */
export function partNotice(item: NoticeItem, kept: KeptNotes | null): NoticeText {
  const what = item.filename ? `the attachment "${safeText(item.filename)}"` : `a ${safeText(item.contentType, 80)} part (section ${item.partId})`;
  return {
    lead: [`mailsentry removed ${what} from this message because it contained malware.`],
    extra: item.filename ? [`File: ${safeText(item.filename)}`] : [],
    detections: item.detections.map((d) => `Detection: ${safeText(d, 400)}`),
    names: [`Detection: ${safeText(item.names)}`],
    kept: kept?.note ?? null,
    keptShort: kept?.short ?? null,
    minimal: "mailsentry removed this part (malware).",
  };
}

export interface EncodedBody {
  transferEncoding: "7bit" | "quoted-printable";
  body: string;
}

/**
 * Encodes notice lines for a MIME body. ASCII stays 7bit (each line starts with our own words and
 * foreign text has no line breaks, so no line can look like a boundary); anything else becomes
 * quoted-printable, where a "-" starting a line is encoded too, for the same reason.
 */
export function encodeNotice(lines: readonly string[], eol: string): EncodedBody {
  const ascii = lines.every((l) => /^[\x20-\x7e]*$/.test(l) && l.length <= 900 && !l.startsWith("-"));
  if (ascii) return { transferEncoding: "7bit", body: lines.map((l) => l + eol).join("") };
  return { transferEncoding: "quoted-printable", body: lines.map((l) => qpLine(l, eol) + eol).join("") };
}

function qpLine(line: string, eol: string): string {
  const b = Buffer.from(line, "utf8");
  const out: string[] = [];
  let cur = "";
  for (let i = 0; i < b.length; i++) {
    const c = b[i]!;
    const last = i === b.length - 1;
    const plain = c >= 0x21 && c <= 0x7e && c !== 0x3d && !(c === 0x2d && cur === "") || (c === 0x20 && !last);
    const tok = plain ? String.fromCharCode(c) : `=${c.toString(16).toUpperCase().padStart(2, "0")}`;
    if (cur.length + tok.length > 75) {
      out.push(`${cur}=`);
      cur = tok === "-" ? "=2D" : tok;
    } else cur += tok;
  }
  out.push(cur);
  return out.join(eol);
}

/** Root header fields a notice message keeps, in the original order (first of each name). */
const KEPT = ["from", "to", "cc", "date", "subject", "message-id"];

export interface NoticeMessage {
  status: string;
  product: string;
  /** Header-safe tag for the Subject; "" for none. */
  subjectTag: string;
  text: NoticeText;
}

/** Separates the notice from a long preamble of padding; "=_" cannot occur in quoted-printable text. */
const NOTICE_BOUNDARY = "=_mailsentry_notice";

/**
 * A complete message that replaces the original, as chunks: kept headers, our headers, a
 * text/plain notice; with a preamble to pad, a multipart/mixed holding that one text part.
 * No Date field is invented when the original has none: the notice must be the same bytes at
 * every download and after a restart, and readers show the arrival date instead.
 */
export function noticeMessage(raw: Uint8Array, root: MimePart, eol: string, n: NoticeMessage, detail: Detail, pad: Pad): Uint8Array[] {
  const deco = decorated(detail);
  const ours = `X-Virus-Status: ${encodeHeaderText(n.status)}${eol}` + (deco ? `X-Virus-Scanned: ${encodeHeaderText(n.product)}${eol}` : "");
  const chunks: Uint8Array[] = [bytes(ours), pad.field];
  const tag = deco ? n.subjectTag : "";
  const seen = new Set<string>();
  for (const f of root.headers) {
    const name = f.name.toLowerCase();
    if (!KEPT.includes(name) || seen.has(name)) continue;
    seen.add(name);
    let field = raw.subarray(f.start, f.end);
    if (name === "subject" && tag) {
      const e = subjectTagEdit(raw, f, tag);
      if (e) field = splice(field, [{ start: e.start - f.start, end: e.end - f.start, bytes: e.bytes }]);
    }
    chunks.push(field);
    if (field[field.length - 1] !== 0x0a) chunks.push(bytes(eol));
  }
  if (!seen.has("subject") && tag) chunks.push(bytes(`Subject: ${tag}${eol}`));
  const body = encodeNotice(noticeLines(n.text, detail), eol);
  const part = `${textPlainType(pad.slack, eol)}${transferEncodingField(body, detail, eol)}${eol}${body.body}`;
  const mime = (detail === "minimal" || detail === "minimal-kept") && body.transferEncoding === "7bit" ? "" : `MIME-Version: 1.0${eol}`;
  if (!pad.preamble) {
    chunks.push(bytes(mime + part));
    return chunks;
  }
  chunks.push(bytes(`MIME-Version: 1.0${eol}Content-Type: multipart/mixed; boundary="${NOTICE_BOUNDARY}"${eol}${eol}`), pad.preamble);
  chunks.push(bytes(`--${NOTICE_BOUNDARY}${eol}${part}--${NOTICE_BOUNDARY}--${eol}`));
  return chunks;
}
