// The X-Virus-* headers, the subject tag and safe header text. Our headers go at the top of the
// root header block in the message's own line ending; upstream X-Virus-* fields are removed so a
// sender cannot forge a verdict the client trusts.
import { headerField } from "../mime/parse.ts";
import type { HeaderField, MimePart } from "../mime/types.ts";
import { bytes, type Edit } from "./splice.ts";

/** Longest piece of foreign text (detection name, filename, tag) we copy into a header or notice. */
const MAX_TEXT = 200;

/** Foreign text made safe for one header or notice line: no control characters (CR/LF/NUL…), bounded. */
export function safeText(s: string, max = MAX_TEXT): string {
  const clean = s.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g, " ").replace(/\s+/g, " ").trim();
  return clean.length > max ? `${clean.slice(0, max - 1)}…` : clean;
}

/** A header value from text: ASCII as is, anything else as one RFC 2047 UTF-8 encoded-word. */
export function encodeHeaderText(s: string): string {
  const t = safeText(s, 900);
  if (/^[\x20-\x7e]*$/.test(t)) return t;
  return `=?utf-8?B?${Buffer.from(t, "utf8").toString("base64")}?=`;
}

export function isVirusHeader(f: HeaderField): boolean {
  return f.name.toLowerCase().startsWith("x-virus-");
}

/** The edit that prefixes the Subject field with tag, or null when already tagged. Offsets index raw. */
export function subjectTagEdit(raw: Uint8Array, field: HeaderField, tag: string): Edit | null {
  if (field.value.startsWith(tag)) return null;
  let pos = raw.subarray(field.start, field.end).indexOf(0x3a);
  if (pos < 0) return null;
  pos += field.start + 1;
  const afterColon = pos;
  while (pos < field.end && (raw[pos] === 0x20 || raw[pos] === 0x09)) pos++;
  // "Subject:x" or "Subject:<fold>": supply the space after the colon ourselves.
  const text = pos > afterColon ? `${tag} ` : ` ${tag} `;
  return { start: pos, end: pos, bytes: bytes(text) };
}

export interface StatusHeaders {
  /** X-Virus-Status value, e.g. "Infected (Eicar-Test-Signature)". */
  status: string;
  /** For X-Virus-Scanned; null leaves that field out (a copy cut to keep its size). */
  product: string | null;
  /** Already header-safe tag to prefix the Subject with; "" for none. */
  subjectTag: string;
}

/** Edits that remove upstream X-Virus-* fields, add ours at the top and tag the subject. */
export function statusEdits(raw: Uint8Array, root: MimePart, eol: string, h: StatusHeaders): Edit[] {
  let top = `X-Virus-Status: ${encodeHeaderText(h.status)}${eol}` + (h.product !== null ? `X-Virus-Scanned: ${encodeHeaderText(h.product)}${eol}` : "");
  const edits: Edit[] = [];
  for (const f of root.headers) if (isVirusHeader(f)) edits.push({ start: f.start, end: f.end, bytes: new Uint8Array() });
  if (h.subjectTag) {
    const subject = headerField(root, "subject");
    if (!subject) top += `Subject: ${h.subjectTag}${eol}`;
    else {
      const e = subjectTagEdit(raw, subject, h.subjectTag);
      if (e) edits.push(e);
    }
  }
  edits.unshift({ start: root.start, end: root.start, bytes: bytes(top) });
  return edits;
}

/** A Content-Disposition/Content-Type filename parameter: quoted ASCII, or RFC 2231 UTF-8. */
export function filenameParam(name: string): string {
  const t = safeText(name);
  if (/^[\x20-\x7e]*$/.test(t)) return `filename="${t.replace(/[\\"]/g, "\\$&")}"`;
  return `filename*=utf-8''${encodeURIComponent(t).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)}`;
}
