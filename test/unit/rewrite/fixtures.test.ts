// Message fixtures for the rewrite tests, built at run time (the EICAR bytes come from the helper).
// Named .test.ts so it may live beside the tests; it holds one sanity test of its own.
import { expect, test } from "bun:test";
import { eicar } from "../../helpers/eicar.ts";
import { parseMessage } from "../../../core/mime/parse.ts";
import type { Finding, ScanResult } from "../../../core/scan/verdict.ts";

export const EOLS = ["\r\n", "\n"] as const;

export function b64(data: Uint8Array, eol: string): string {
  return Buffer.from(data).toString("base64").replace(/.{1,76}/g, (l) => l + eol);
}

/** multipart/mixed: text body (1), base64 eicar.com (2), a PDF-ish attachment (3); spoofed X-Virus-Status upstream. */
export function mixed(eol: string, opts: { subject?: string | null; filename?: string } = {}): Uint8Array {
  const subject = opts.subject === undefined ? "Quarterly report" : opts.subject;
  const lines = [
    "Received: from mx.example.org by mail.example.net; Mon, 1 Jan 2024 10:00:00 +0000",
    "X-Virus-Status: Clean",
    "X-Virus-Scanned: upstream",
    "\tcontinued",
    "From: Alice <alice@example.org>",
    "To: Bob <bob@example.net>",
    "Cc: carol@example.net",
    ...(subject === null ? [] : [`Subject: ${subject}`]),
    "Date: Mon, 1 Jan 2024 10:00:00 +0000",
    "Message-ID: <m1@example.org>",
    "X-Mailer: fixture",
    "MIME-Version: 1.0",
    'Content-Type: multipart/mixed; boundary="b1"',
    "",
    "preamble",
    "--b1",
    "Content-Type: text/plain; charset=us-ascii",
    "",
    "Hello Bob, see attached.",
    "--b1",
    `Content-Type: application/octet-stream; name="${opts.filename ?? "eicar.com"}"`,
    "Content-Transfer-Encoding: base64",
    `Content-Disposition: attachment; filename="${opts.filename ?? "eicar.com"}"`,
    "Content-ID: <att1@example.org>",
    "",
    b64(eicar(), eol) + "--b1",
    'Content-Type: application/pdf; name="report.pdf"',
    "Content-Transfer-Encoding: base64",
    'Content-Disposition: attachment; filename="report.pdf"',
    "",
    b64(new TextEncoder().encode("%PDF-1.4 harmless report " + "x".repeat(200)), eol) + "--b1--",
    "epilogue",
    "",
  ];
  return new TextEncoder().encode(lines.join(eol));
}

/** Plain single-part message whose body is the infection. */
export function plain(eol: string): Uint8Array {
  const text = [
    "Received: by mail.example.net",
    "From: Mallory <m@example.org>",
    "To: bob@example.net",
    "Subject: =?utf-8?B?w6lsw6lwaGFudA==?=",
    "Date: Mon, 1 Jan 2024 10:00:00 +0000",
    "Message-ID: <m2@example.org>",
    "",
    "",
  ].join(eol);
  return new Uint8Array([...new TextEncoder().encode(text), ...eicar(), ...new TextEncoder().encode(eol)]);
}

/** mixed(1 text, 2 multipart/alternative(2.1 text, 2.2 html), 3 message/rfc822(3.1 text, 3.2 eicar), 4 zip). */
export function nested(eol: string): Uint8Array {
  const inner = [
    "From: x@example.org",
    "Subject: forwarded",
    'Content-Type: multipart/mixed; boundary="in"',
    "",
    "--in",
    "Content-Type: text/plain",
    "",
    "inner text",
    "--in",
    'Content-Type: application/x-msdownload; name="e.exe"',
    "Content-Transfer-Encoding: base64",
    "",
    b64(eicar(), eol) + "--in--",
  ].join(eol);
  const lines = [
    "From: a@example.org",
    "To: b@example.net",
    "Subject: nested",
    "MIME-Version: 1.0",
    'Content-Type: multipart/mixed; boundary="outer"',
    "",
    "--outer",
    "Content-Type: text/plain",
    "",
    "first",
    "--outer",
    'Content-Type: multipart/alternative; boundary="alt"',
    "",
    "--alt",
    "Content-Type: text/plain",
    "",
    "alt text",
    "--alt",
    "Content-Type: text/html",
    "",
    "<p>alt html</p>",
    "--alt--",
    "--outer",
    "Content-Type: message/rfc822",
    'Content-Disposition: attachment; filename="fwd.eml"',
    "",
    inner,
    "--outer",
    'Content-Type: application/zip; name="a.zip"',
    "Content-Transfer-Encoding: base64",
    "",
    b64(new Uint8Array(64).fill(7), eol) + "--outer--",
    "",
  ];
  return new TextEncoder().encode(lines.join(eol));
}

export function infectedAt(...at: [partId: string, path: string][]): ScanResult {
  const findings: Finding[] = at.map(([partId, path]) => ({ partId, verdict: { kind: "infected", name: "Eicar-Test-Signature", path } }));
  return { verdict: findings[0]!.verdict, findings, bytesScanned: 1000, objects: 4 };
}

test("fixtures parse into the part ids the tests rely on", () => {
  for (const eol of EOLS) {
    const ids = (m: Uint8Array) => {
      const out: string[] = [];
      const walk = (p: ReturnType<typeof parseMessage>) => {
        out.push(`${p.id}:${p.contentType}`);
        p.children.forEach(walk);
        if (p.message) walk(p.message);
      };
      walk(parseMessage(m));
      return out;
    };
    expect(ids(mixed(eol))).toEqual([":multipart/mixed", "1:text/plain", "2:application/octet-stream", "3:application/pdf"]);
    expect(ids(nested(eol))).toEqual([
      ":multipart/mixed", "1:text/plain", "2:multipart/alternative", "2.1:text/plain", "2.2:text/html",
      "3:message/rfc822", "3:multipart/mixed", "3.1:text/plain", "3.2:application/x-msdownload", "4:application/zip",
    ]);
  }
});
