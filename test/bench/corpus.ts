// Generates benchmark inputs: an mbox of mixed mail (text, HTML, binary attachments, zips, a few
// EICAR-infected messages) and a ClamAV signature directory that mailsentry and clamscan both load.
// Everything is derived from a seeded PRNG so two runs measure the same bytes.
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { BlobReader, BlobWriter, TextReader, ZipWriter, configure } from "@zip.js/zip.js";

configure({ useWebWorkers: false });

/** xorshift32: reproducible, fast, good enough for filler bytes. */
export function prng(seed: number) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s / 0x100000000;
  };
}

const EICAR = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + "EICAR-STANDARD-ANTIVIRUS" + "-TEST-FILE!$H+H*";
const WORDS = "the quick brown fox jumps over lazy dog invoice meeting report quarterly please find attached regards thanks schedule project update budget review".split(" ");

function words(rand: () => number, bytes: number): string {
  const out: string[] = [];
  let n = 0, line = 0;
  while (n < bytes) {
    const w = WORDS[Math.floor(rand() * WORDS.length)]!;
    out.push(w); n += w.length + 1; line += w.length + 1;
    if (line > 70) { out.push("\r\n"); line = 0; } else out.push(" ");
  }
  return out.join("");
}

function base64Lines(data: Uint8Array): string {
  const b64 = Buffer.from(data).toString("base64");
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 76) lines.push(b64.slice(i, i + 76));
  return lines.join("\r\n");
}

async function zipOf(files: Record<string, string | Uint8Array>): Promise<Uint8Array> {
  const w = new ZipWriter(new BlobWriter("application/zip"));
  for (const [name, content] of Object.entries(files)) {
    await w.add(name, typeof content === "string" ? new TextReader(content) : new BlobReader(new Blob([content])));
  }
  return new Uint8Array(await (await w.close()).arrayBuffer());
}

export interface Corpus { mbox: string; sigDir: string; bytes: number; messages: number; infected: number }

/** Writes dir/<name> (about targetMB; with or without infected messages) and dir/sigs/ (ndbCount .ndb signatures plus some .hdb). */
export async function makeCorpus(dir: string, targetMB = 200, ndbCount = 10_000, withInfected = true, name = "bench.mbox"): Promise<Corpus> {
  await mkdir(join(dir, "sigs"), { recursive: true });
  const rand = prng(20261122);
  const pool = new Uint8Array(8 * 1024 * 1024);
  for (let i = 0; i < pool.length; i += 4) {
    const v = (rand() * 0x100000000) >>> 0;
    pool[i] = v; pool[i + 1] = v >>> 8; pool[i + 2] = v >>> 16; pool[i + 3] = v >>> 24;
  }
  const slice = (n: number) => { const at = Math.floor(rand() * (pool.length - n)); return pool.subarray(at, at + n); };
  const zips = [
    await zipOf({ "report.txt": words(rand, 40_000), "data.bin": slice(60_000) }),
    await zipOf({ "inner.zip": await zipOf({ "notes.txt": words(rand, 20_000) }) }),
  ];
  const infectedZip = await zipOf({ "eicar.com": EICAR });

  const target = targetMB * 1024 * 1024;
  const sink = Bun.file(join(dir, name)).writer({ highWaterMark: 4 * 1024 * 1024 });
  let bytes = 0, messages = 0, infected = 0;
  while (bytes < target) {
    const r = rand();
    const id = `<${messages}.bench@example.org>`;
    const head = `From: sender${messages % 97}@example.org\r\nTo: user@example.net\r\nSubject: message ${messages}\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\nMessage-ID: ${id}\r\nMIME-Version: 1.0\r\n`;
    let body: string;
    if (r < 0.4) {
      body = `Content-Type: text/plain; charset=utf-8\r\n\r\n${words(rand, 2_000 + rand() * 20_000)}\r\n`;
    } else if (r < 0.6) {
      const text = words(rand, 5_000 + rand() * 30_000);
      body = `Content-Type: multipart/alternative; boundary="alt"\r\n\r\n--alt\r\nContent-Type: text/plain\r\n\r\n${text}\r\n--alt\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<html><body><p>${text.replace(/=/g, "=3D")}</p></body></html>\r\n--alt--\r\n`;
    } else {
      let name: string, data: Uint8Array;
      if (r < 0.9) { name = `scan${messages}.pdf`; data = slice(Math.floor(50_000 + rand() * 400_000)); }
      else if (r < 0.985 || !withInfected) { name = `archive${messages}.zip`; data = zips[messages % zips.length]!; }
      else { name = `invoice${messages}.zip`; data = infectedZip; infected++; }
      body = `Content-Type: multipart/mixed; boundary="mix"\r\n\r\n--mix\r\nContent-Type: text/plain\r\n\r\n${words(rand, 1_000)}\r\n--mix\r\nContent-Type: application/octet-stream; name="${name}"\r\nContent-Disposition: attachment; filename="${name}"\r\nContent-Transfer-Encoding: base64\r\n\r\n${base64Lines(data)}\r\n--mix--\r\n`;
    }
    const msg = `From sender@example.org Sun Nov 22 10:00:00 2026\n${(head + body).replace(/\r\n/g, "\n").replace(/^(>*From )/gm, ">$1")}\n`;
    sink.write(msg);
    bytes += msg.length; messages++;
  }
  await sink.end();

  // Signatures: random hex bodies with every wildcard form, none of which occur in the corpus by
  // construction (they start with a byte sequence that the generator never writes).
  const ndb: string[] = [];
  const hex = (n: number) => Array.from({ length: n }, () => Math.floor(rand() * 256).toString(16).padStart(2, "0")).join("");
  for (let i = 0; i < ndbCount; i++) {
    const forms = [`${hex(6)}??${hex(4)}`, `${hex(5)}*${hex(4)}`, `${hex(4)}{2-8}${hex(6)}`, `${hex(8)}(aa|bb)${hex(3)}`, `${hex(10)}`];
    ndb.push(`Bench.Sig.${i}:0:*:${forms[i % forms.length]}`);
  }
  const eicarHex = Buffer.from(EICAR.slice(0, 40)).toString("hex");
  ndb.push(`Bench.Eicar:0:0:${eicarHex}`);
  await writeFile(join(dir, "sigs", "bench.ndb"), ndb.join("\n") + "\n");
  const hdb: string[] = [];
  for (let i = 0; i < 1000; i++) hdb.push(`${hex(16)}:${1000 + i}:Bench.Hash.${i}`);
  await writeFile(join(dir, "sigs", "bench.hdb"), hdb.join("\n") + "\n");
  return { mbox: join(dir, name), sigDir: join(dir, "sigs"), bytes, messages, infected };
}
