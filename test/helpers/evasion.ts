// Evasion messages: each carries EICAR so that at least one common reading of the message (a
// lenient MIME parser, a client that takes the last of two headers, one that splits on a lone CR,
// a browser opening a data: URI, unzip finding a prefixed archive) extracts it, while the plain
// first-reading of the structure does not. Built at test time from parts; nothing is committed.
import { deflateRawSync } from "node:zlib";
import { makeZip } from "./archives.ts";
import { eicar } from "./eicar.ts";
import { base64Lines, uuencode } from "./messages.ts";

export interface Evasion {
  name: string;
  raw: Uint8Array;
}

const CRLF = "\r\n";
const HEAD = ["From: attacker@example.org", "To: victim@example.org", "Date: Mon, 7 Dec 2026 10:00:00 +0000", "MIME-Version: 1.0"];

/** Every byte as =XX in 72-character lines with soft breaks: the text never shows the payload, only a QP decoder does. */
export function qpAllEscaped(data: Uint8Array): string {
  const escaped = [...data].map((b) => "=" + b.toString(16).toUpperCase().padStart(2, "0")).join("");
  const lines: string[] = [];
  for (let i = 0; i < escaped.length; i += 72) lines.push(escaped.slice(i, i + 72));
  return lines.join("=" + CRLF);
}

const b64 = (data: Uint8Array) => base64Lines(data, CRLF);
function msg(subject: string, headers: string[], body: string): Uint8Array {
  return Buffer.from([...HEAD, `Subject: ${subject}`, ...headers].join(CRLF) + CRLF + CRLF + body, "latin1");
}

/** A part whose payload is QP, every byte escaped. */
function qpPart(name = "e.com"): string {
  return [`Content-Type: application/octet-stream; name="${name}"`, "Content-Transfer-Encoding: quoted-printable", "", qpAllEscaped(eicar())].join(CRLF);
}

function mixed(boundary: string, parts: string[]): string {
  return ["This is a multi-part message in MIME format.", ...parts.flatMap((p) => [`--${boundary}`, p]), `--${boundary}--`, ""].join(CRLF);
}

/** A small inner message whose only attachment is the QP payload. */
function innerMessage(): string {
  return ["From: a@example.org", "Subject: inner", "MIME-Version: 1.0", 'Content-Type: multipart/mixed; boundary="IN"', "", mixed("IN", ["Content-Type: text/plain", "", "see attachment", qpPart()])].join(CRLF);
}

/** The corpus. Async because the archive cases deflate through zip.js. */
export async function evasionCorpus(): Promise<Evasion[]> {
  const e = eicar();
  const zipped = await makeZip([{ name: "eicar.com", data: e }]);
  const stub = Buffer.concat([Buffer.from("MZ"), Buffer.alloc(4094, 0x90)]); // a self-extractor's stub in front
  const uri64 = Buffer.from(e).toString("base64");
  const uriPct = [...e].map((b) => "%" + b.toString(16).padStart(2, "0")).join("");
  const html = (inner: string) => `<html><body><p>Invoice</p>${inner}</body></html>`;
  const cases: Array<[string, Uint8Array]> = [
    ["two Content-Type at the top, text/plain first", msg("dup ct", ["Content-Type: text/plain", 'Content-Type: multipart/mixed; boundary="XX"'], mixed("XX", [qpPart()]))],
    ["two Content-Type inside a part, text/plain first", msg("dup ct part", ['Content-Type: multipart/mixed; boundary="OUT"'],
      mixed("OUT", ["Content-Type: text/plain\r\n\r\nhello", ["Content-Type: text/plain", 'Content-Type: multipart/mixed; boundary="YY"', "", mixed("YY", [qpPart()])].join(CRLF)]))],
    ["two Content-Transfer-Encoding, 7bit first then quoted-printable", msg("dup cte", ['Content-Type: multipart/mixed; boundary="XX"'],
      mixed("XX", [["Content-Type: application/octet-stream; name=\"e.com\"", "Content-Transfer-Encoding: 7bit", "Content-Transfer-Encoding: quoted-printable", "", qpAllEscaped(e)].join(CRLF)]))],
    ["two Content-Transfer-Encoding, quoted-printable first then base64", msg("dup cte b64", ['Content-Type: multipart/mixed; boundary="XX"'],
      mixed("XX", [["Content-Type: application/octet-stream; name=\"e.com\"", "Content-Transfer-Encoding: quoted-printable", "Content-Transfer-Encoding: base64", "", b64(zipped)].join(CRLF)]))],
    ["boundary given twice, the body uses the second", msg("dup boundary", ['Content-Type: multipart/mixed; boundary="AA"; boundary="BB"'], mixed("BB", [qpPart()]))],
    ["boundary and boundary* disagree, the body uses the plain one", msg("2231 boundary", ["Content-Type: multipart/mixed; boundary=\"AA\"; boundary*=us-ascii''BB"], mixed("AA", [qpPart()]))],
    ["Content-Transfer-Encoding with a comment: quoted-printable (fast)", msg("cte comment", ['Content-Type: multipart/mixed; boundary="XX"'],
      mixed("XX", [["Content-Type: application/octet-stream; name=\"e.com\"", "Content-Transfer-Encoding: quoted-printable (fast)", "", qpAllEscaped(e)].join(CRLF)]))],
    ["Content-Transfer-Encoding with a comment: base64 (fast), zip inside", msg("cte comment b64", ['Content-Type: multipart/mixed; boundary="XX"'],
      mixed("XX", [["Content-Type: application/octet-stream; name=\"e.zip\"", "Content-Transfer-Encoding: base64 (fast)", "", b64(zipped)].join(CRLF)]))],
    ["NUL inside the Content-Transfer-Encoding", msg("cte nul", ['Content-Type: multipart/mixed; boundary="XX"'],
      mixed("XX", [["Content-Type: application/octet-stream; name=\"e.com\"", "Content-Transfer-Encoding: quoted-\0printable", "", qpAllEscaped(e)].join(CRLF)]))],
    ["NUL inside the boundary, the body cut at it", msg("boundary nul", ['Content-Type: multipart/mixed; boundary="AA\0BB"'], mixed("AA", [qpPart()]))],
    ["a lone CR ends the Subject, hiding the Content-Type behind it", msg("bare cr\rContent-Type: multipart/mixed; boundary=\"XX\"", [], mixed("XX", [qpPart()]))],
    ["a lone CR folds the Content-Type", msg("bare cr fold", ['Content-Type: multipart/mixed;\r boundary="XX"'], mixed("XX", [qpPart()]))],
    ["a boundary that never occurs: parts as text, base64 and all", msg("no boundary", ['Content-Type: multipart/mixed; boundary="NEVER"'],
      mixed("OTHER", [["Content-Type: application/zip; name=\"e.zip\"", "Content-Transfer-Encoding: base64", "", b64(zipped)].join(CRLF)]))],
    ["begin-base64 block in a text body", msg("begin-base64", ["Content-Type: text/plain"], ["Here it is:", "", "begin-base64 644 e.zip", Buffer.from(zipped).toString("base64").replace(/.{60}/g, "$&\r\n"), "====", ""].join(CRLF))],
    ["uuencoded data in an application/octet-stream 7bit part", msg("uu octet", ['Content-Type: multipart/mixed; boundary="XX"'],
      mixed("XX", [["Content-Type: application/octet-stream; name=\"e.uue\"", "Content-Transfer-Encoding: 7bit", "", uuencode(zipped, "e.zip", CRLF)].join(CRLF)]))],
    ["a zip behind a self-extractor stub, found by its end record", msg("sfx zip", ['Content-Type: multipart/mixed; boundary="XX"'],
      mixed("XX", [["Content-Type: application/octet-stream; name=\"setup.exe\"", "Content-Transfer-Encoding: base64", "", b64(Buffer.concat([stub, zipped]))].join(CRLF)]))],
    ["a data: URI in base64-encoded HTML", msg("data uri b64", ['Content-Type: multipart/alternative; boundary="XX"'],
      mixed("XX", [["Content-Type: text/html; charset=utf-8", "Content-Transfer-Encoding: base64", "", b64(Buffer.from(html(`<a href="data:application/zip;base64,${Buffer.from(zipped).toString("base64")}">open</a>`)))].join(CRLF)]))],
    ["a data: URI in quoted-printable HTML, split by soft breaks", msg("data uri qp", ['Content-Type: multipart/alternative; boundary="XX"'],
      mixed("XX", [["Content-Type: text/html; charset=utf-8", "Content-Transfer-Encoding: quoted-printable", "", html(`<a href=3D"data:application/octet-stream;base64,${uri64}">x</a>`).replace(/.{70}/g, "$&=\r\n")].join(CRLF)]))],
    ["a percent-encoded data: URI in HTML", msg("data uri pct", ["Content-Type: text/html"], html(`<iframe src="data:application/octet-stream,${uriPct}"></iframe>`))],
    ["an attached message as message/news", msg("news", ['Content-Type: multipart/mixed; boundary="XX"'], mixed("XX", [["Content-Type: message/news", "", innerMessage()].join(CRLF)]))],
    ["an attached message as message/x-forwarded", msg("x-forwarded", ['Content-Type: multipart/mixed; boundary="XX"'], mixed("XX", [["Content-Type: message/x-forwarded", "", innerMessage()].join(CRLF)]))],
    ["an attached message as the malformed message/rfc 822", msg("rfc 822", ['Content-Type: multipart/mixed; boundary="XX"'], mixed("XX", [["Content-Type: message/rfc 822", "", innerMessage()].join(CRLF)]))],
    ["a message/rfc822 labelled base64 whose body is plain text", msg("rfc822 b64 label", ['Content-Type: multipart/mixed; boundary="XX"'],
      mixed("XX", [["Content-Type: message/rfc822", "Content-Transfer-Encoding: base64", "", innerMessage()].join(CRLF)]))],
    ["junk before the Content-Transfer-Encoding name: `quoted-printable", msg("cte junk", ['Content-Type: multipart/mixed; boundary="XX"'],
      mixed("XX", [["Content-Type: application/octet-stream; name=\"e.com\"", "Content-Transfer-Encoding:`quoted-printable", "", qpAllEscaped(e)].join(CRLF)]))],
    ["a multipart with a bent subtype: multipart/m(xed", msg("bent subtype", ['Content-Type: multipart/m(xed; boundary="XX"'], mixed("XX", [qpPart()]))],
    ["'-' in a base64 body: MIME readers skip it, so the bytes after it shift", msg("dash in base64", ['Content-Type: multipart/mixed; boundary="XX"'],
      mixed("XX", [["Content-Type: application/zip; name=\"e.zip\"", "Content-Transfer-Encoding: base64", "", "--" + b64(zipped)].join(CRLF)]))],
    ["a raw deflate stream behind a zip-looking stub is not a zip, but a zip after junk is", msg("junk zip", ["Content-Type: application/octet-stream; name=\"x.bin\"", "Content-Transfer-Encoding: base64"],
      b64(Buffer.concat([Buffer.from(deflateRawSync(Buffer.alloc(100))), Buffer.alloc(300, 0x41), zipped])))],
  ];
  return cases.map(([name, raw]) => ({ name, raw }));
}
