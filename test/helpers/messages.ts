// Generators of MIME messages for tests: built at test time so no fixture (and no malware) is
// committed, with knobs for the shapes parsers get wrong (line ends, preambles, missing closes).

export type Eol = "\r\n" | "\n";

/** Base64 in 76-character lines (RFC 2045 §6.8). */
export function base64Lines(data: Uint8Array | string, eol: Eol = "\r\n"): string {
  const b64 = Buffer.from(data).toString("base64");
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 76) lines.push(b64.slice(i, i + 76));
  return lines.join(eol);
}

export interface PartSpec {
  /** Header lines without line ends, e.g. "Content-Type: text/plain". */
  headers: string[];
  body: string;
}

/** A leaf part as text. */
export function leaf(spec: PartSpec, eol: Eol = "\r\n"): string {
  return spec.headers.map((h) => h + eol).join("") + eol + spec.body;
}

/** An attachment part, base64 encoded. */
export function attachment(filename: string, data: Uint8Array | string, eol: Eol = "\r\n", type = "application/octet-stream"): string {
  return leaf(
    {
      headers: [`Content-Type: ${type}; name="${filename}"`, `Content-Disposition: attachment; filename="${filename}"`, "Content-Transfer-Encoding: base64"],
      body: base64Lines(data, eol),
    },
    eol,
  );
}

export interface MultipartOptions {
  eol?: Eol;
  subtype?: string;
  preamble?: string;
  epilogue?: string;
  /** Write the close delimiter (default true). */
  close?: boolean;
  /** Extra header lines before Content-Type. */
  headers?: string[];
}

/** A multipart entity (headers + body) holding the given part texts. */
export function multipart(boundary: string, parts: string[], opts: MultipartOptions = {}): string {
  const eol = opts.eol ?? "\r\n";
  const head = [...(opts.headers ?? []), `Content-Type: multipart/${opts.subtype ?? "mixed"}; boundary="${boundary}"`].map((h) => h + eol).join("");
  let body = opts.preamble !== undefined ? opts.preamble + eol : "";
  for (const p of parts) body += `--${boundary}${eol}${p}${eol}`;
  if (opts.close !== false) body += `--${boundary}--${eol}${opts.epilogue ?? ""}`;
  return head + eol + body;
}

/** A top-level message: envelope-ish headers followed by an entity text. */
export function message(entity: string, eol: Eol = "\r\n", subject = "test"): string {
  return `From: a@example.org${eol}To: b@example.net${eol}Subject: ${subject}${eol}MIME-Version: 1.0${eol}` + entity;
}

/** A multipart message nested depth levels deep, each level with its own boundary, a text leaf at the bottom. */
export function deeplyNested(depth: number, eol: Eol = "\r\n"): string {
  let inner = leaf({ headers: ["Content-Type: text/plain"], body: "bottom" }, eol);
  for (let d = depth - 1; d >= 0; d--) inner = multipart(`b${d}`, [inner], { eol });
  return message(inner, eol);
}

/** A message with n small text parts. */
export function manyParts(n: number): string {
  const parts: string[] = [];
  for (let i = 0; i < n; i++) parts.push(`Content-Type: text/plain\r\n\r\npart ${i}`);
  return message(multipart("many", parts));
}

/** Classic uuencode of data (45 bytes a line, "`" for zero), as `uuencode` writes it. */
export function uuencode(data: Uint8Array, name: string, eol = "\n"): string {
  const c = (v: number) => String.fromCharCode(v === 0 ? 0x60 : v + 0x20);
  let out = `begin 644 ${name}${eol}`;
  for (let i = 0; i < data.length; i += 45) {
    const chunk = data.subarray(i, i + 45);
    let line = c(chunk.length);
    for (let k = 0; k < chunk.length; k += 3) {
      const a = chunk[k]!, b = chunk[k + 1] ?? 0, d = chunk[k + 2] ?? 0;
      line += c(a >> 2) + c(((a << 4) | (b >> 4)) & 63) + c(((b << 2) | (d >> 6)) & 63) + c(d & 63);
    }
    out += line + eol;
  }
  return out + "`" + eol + "end" + eol;
}

/** Deterministic pseudo-random bytes (xorshift32). */
export function pseudoRandom(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    out[i] = s & 0xff;
  }
  return out;
}

/**
 * A large message: `parts` attachments in nested multiparts (mixed › alternative text + attachments,
 * plus a forwarded message/rfc822 every 100 parts), about totalBytes in all.
 */
export function largeMessage(totalBytes: number, parts: number): Uint8Array {
  const per = Math.max(16, Math.floor((totalBytes / parts) * 0.74)); // base64 grows 4/3, plus line ends
  const pool = pseudoRandom(per + 4096, 7);
  const chunks: string[] = [];
  for (let i = 0; i < parts; i++) {
    const data = pool.subarray(i % 4096, (i % 4096) + per);
    let p = attachment(`file${i}.bin`, data);
    if (i % 100 === 99) p = `Content-Type: message/rfc822\r\n\r\n` + message(multipart(`fwd${i}`, [p]));
    chunks.push(p);
  }
  const alt = multipart("alt", ["Content-Type: text/plain\r\n\r\nhello", "Content-Type: text/html\r\n\r\n<p>hello</p>"], { subtype: "alternative" });
  return Buffer.from(message(multipart("outer", [alt, ...chunks])), "latin1");
}
