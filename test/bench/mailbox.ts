// The benchmark mailboxes, the same bytes for the POP3 and the IMAP bench: about 200 mixed messages
// (text, HTML, base64 attachments) and one 25 MB attachment, CRLF as Dovecot stores them; also
// invoices with EICAR (built at run time from its parts) for load tests that clean.
import { eicar } from "../helpers/eicar.ts";
import { prng } from "./corpus.ts";

export const MB = 1024 * 1024;

/** `count` messages cycling through plain text, plain text, HTML and text plus a PDF-like attachment (20–320 KB). */
export function mixedMessages(count: number, seed: number): Uint8Array[] {
  const rand = prng(seed);
  const out: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const kind = i % 4;
    const text = "Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n".repeat(20 + Math.floor(rand() * 300));
    let body: string;
    if (kind === 3) {
      const b64 = base64Lines(randomBytes(rand, 20_000 + Math.floor(rand() * 300_000)));
      body = `Content-Type: multipart/mixed; boundary="b${i}"\r\n\r\n--b${i}\r\nContent-Type: text/plain\r\n\r\n${text}\r\n--b${i}\r\nContent-Type: application/pdf; name="doc${i}.pdf"\r\nContent-Disposition: attachment; filename="doc${i}.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n${b64}\r\n--b${i}--\r\n`;
    } else if (kind === 2) {
      body = `Content-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>${text}</p></body></html>\r\n`;
    } else {
      body = `Content-Type: text/plain; charset=utf-8\r\n\r\n${text}`;
    }
    out.push(Buffer.from(`From: a${i}@example.org\r\nTo: user@example.net\r\nSubject: bench ${i}\r\nMessage-ID: <${seed}.${i}@example.org>\r\nMIME-Version: 1.0\r\n${body}`));
  }
  return out;
}

export function randomBytes(rand: () => number, n: number): Uint8Array {
  const data = new Uint8Array(n);
  for (let j = 0; j < n; j++) data[j] = (rand() * 256) | 0;
  return data;
}

function base64Lines(data: Uint8Array): string {
  return Buffer.from(data).toString("base64").replace(/.{76}/g, "$&\r\n");
}

export function bigMessage(mb: number): Uint8Array {
  const rand = prng(25);
  const data = new Uint8Array(Math.floor(mb * MB * 0.74));
  for (let j = 0; j < data.length; j += 4) { const v = (rand() * 0x100000000) >>> 0; data[j] = v; data[j + 1] = v >> 8; data[j + 2] = v >> 16; data[j + 3] = v >> 24; }
  return Buffer.from(`From: big@example.org\r\nTo: user@example.net\r\nSubject: big\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="big"\r\n\r\n--big\r\nContent-Type: text/plain\r\n\r\nlarge file attached\r\n--big\r\nContent-Type: application/octet-stream; name="video.mp4"\r\nContent-Disposition: attachment; filename="video.mp4"\r\nContent-Transfer-Encoding: base64\r\n\r\n${base64Lines(data)}\r\n--big--\r\n`);
}

/** An invoice with EICAR as its attachment, after `padding` bytes of another attachment. */
export function infectedMessage(i: number, padding = 0): Uint8Array {
  const pad = padding ? `--v${i}\r\nContent-Type: application/pdf; name="scan${i}.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n${base64Lines(randomBytes(prng(900 + i), padding))}\r\n` : "";
  return Buffer.from(`From: billing${i}@example.org\r\nTo: user@example.net\r\nSubject: invoice ${i}\r\nMessage-ID: <infected.${i}@example.org>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="v${i}"\r\n\r\n--v${i}\r\nContent-Type: text/plain\r\n\r\nThe invoice is attached.\r\n${pad}--v${i}\r\nContent-Type: application/octet-stream; name="invoice${i}.com"\r\nContent-Disposition: attachment; filename="invoice${i}.com"\r\nContent-Transfer-Encoding: base64\r\n\r\n${base64Lines(eicar())}\r\n--v${i}--\r\n`);
}

/** A message of about `bytes` octets: a short text part and one base64 attachment of random bytes. */
export function sizedMessage(i: number, bytes: number): Uint8Array {
  const data = randomBytes(prng(5000 + i), Math.max(0, Math.floor((bytes - 400) * 0.75)));
  return Buffer.from(`From: sender${i}@example.org\r\nTo: user@example.net\r\nSubject: sized ${i}\r\nMessage-ID: <sized.${i}@example.org>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="s${i}"\r\n\r\n--s${i}\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--s${i}\r\nContent-Type: application/octet-stream; name="f${i}.bin"\r\nContent-Transfer-Encoding: base64\r\n\r\n${base64Lines(data)}\r\n--s${i}--\r\n`);
}
