// The notices that stand in for what was removed: a text/plain part in a cleaned message, or a whole
// notice message that keeps the original's From, To, Cc, Date, Subject and Message-ID.
import type { MimePart } from "../mime/types.ts";
import { encodeHeaderText, safeText, subjectTagEdit } from "./headers.ts";
import { bytes, concat, splice } from "./splice.ts";

/** One removed object as the notice describes it. */
export interface NoticeItem {
  filename: string | null;
  contentType: string;
  partId: string;
  /** Detection names and where they were found, e.g. `Eicar-Test-Signature in attachment "a.zip" › x.com`. */
  detections: string[];
}

/** keptNote: the sentence saying where the original survives, or null when it does not. */
export function partNoticeText(item: NoticeItem, keptNote: string | null): string[] {
  const what = item.filename ? `the attachment "${safeText(item.filename)}"` : `a ${safeText(item.contentType, 80)} part (section ${item.partId})`;
  return [
    `mailsentry removed ${what} from this message because it contained malware.`,
    "",
    ...(item.filename ? [`File: ${safeText(item.filename)}`] : []),
    ...item.detections.map((d) => `Detection: ${safeText(d, 400)}`),
    ...(keptNote ? ["", keptNote] : []),
  ];
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
  lines: string[];
}

/** A complete message that replaces the original: kept headers, our headers, a text/plain notice. */
export function noticeMessage(raw: Uint8Array, root: MimePart, eol: string, n: NoticeMessage): Uint8Array {
  const chunks: Uint8Array[] = [bytes(`X-Virus-Status: ${encodeHeaderText(n.status)}${eol}X-Virus-Scanned: ${encodeHeaderText(n.product)}${eol}`)];
  const seen = new Set<string>();
  for (const f of root.headers) {
    const name = f.name.toLowerCase();
    if (!KEPT.includes(name) || seen.has(name)) continue;
    seen.add(name);
    let field = raw.subarray(f.start, f.end);
    if (name === "subject" && n.subjectTag) {
      const e = subjectTagEdit(raw, f, n.subjectTag);
      if (e) field = splice(field, [{ start: e.start - f.start, end: e.end - f.start, bytes: e.bytes }]);
    }
    chunks.push(field);
    if (field[field.length - 1] !== 0x0a) chunks.push(bytes(eol));
  }
  if (!seen.has("subject") && n.subjectTag) chunks.push(bytes(`Subject: ${n.subjectTag}${eol}`));
  if (!seen.has("date")) chunks.push(bytes(`Date: ${new Date().toUTCString().replace("GMT", "+0000")}${eol}`));
  const body = encodeNotice(n.lines, eol);
  chunks.push(
    bytes(
      `MIME-Version: 1.0${eol}Content-Type: text/plain; charset=utf-8${eol}` +
        `Content-Transfer-Encoding: ${body.transferEncoding}${eol}${eol}${body.body}`,
    ),
  );
  return concat(chunks);
}
