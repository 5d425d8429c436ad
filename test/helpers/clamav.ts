// Test helpers for ClamAV databases: write signature files to a temp dir, build .cvd containers
// (header + gzip'd tar), and run the real clamscan on files for agreement checks.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Writes files into a fresh temp directory and returns its path. */
export function writeSigDir(files: Record<string, string | Uint8Array>): string {
  const dir = mkdtempSync(join(tmpdir(), "mailsentry-sigs-"));
  for (const [name, data] of Object.entries(files)) writeFileSync(join(dir, name), data);
  return dir;
}

const enc = new TextEncoder();

/** A minimal ustar archive of regular files. */
export function tar(members: { name: string; data: string | Uint8Array }[]): Uint8Array {
  const blocks: Uint8Array[] = [];
  for (const m of members) {
    const data = typeof m.data === "string" ? enc.encode(m.data) : m.data;
    const h = new Uint8Array(512);
    const put = (s: string, at: number) => h.set(enc.encode(s), at);
    put(m.name, 0);
    put("0000644\0", 100); put("0000000\0", 108); put("0000000\0", 116);
    put(data.length.toString(8).padStart(11, "0") + "\0", 124);
    put("00000000000\0", 136);
    put("        ", 148);
    put("0", 156);
    put("ustar\0" + "00", 257);
    let sum = 0;
    for (const b of h) sum += b;
    put(sum.toString(8).padStart(6, "0") + "\0 ", 148);
    blocks.push(h, data, new Uint8Array((512 - (data.length % 512)) % 512));
  }
  blocks.push(new Uint8Array(1024));
  return Buffer.concat(blocks);
}

/** A .cvd: 512-byte "ClamAV-VDB:" header (with the body's MD5) then the gzip'd tar. gzip=false gives a .cld-style body. */
export function buildCvd(
  members: { name: string; data: string | Uint8Array }[],
  opts: { gzip?: boolean; version?: number; badMd5?: boolean } = {},
): Uint8Array {
  const t = tar(members);
  const body = opts.gzip === false ? t : Bun.gzipSync(t as Uint8Array<ArrayBuffer>);
  const md5 = opts.badMd5 ? "0".repeat(32) : new Bun.CryptoHasher("md5").update(body).digest("hex");
  const header = `ClamAV-VDB:01 Jan 2025 00-00 +0000:${opts.version ?? 1}:${members.length}:216:${md5}:X:test:1735689600`;
  const h = new Uint8Array(512).fill(0x20);
  h.set(enc.encode(header), 0);
  return Buffer.concat([h, body]);
}

export const CLAMSCAN = Bun.which("clamscan");

/** Runs clamscan with only the databases in dbDir; returns file → detection name (without .UNOFFICIAL) or null. */
export async function clamscan(dbDir: string, files: string[]): Promise<Map<string, string | null>> {
  if (!CLAMSCAN) throw new Error("clamscan is not installed");
  const p = Bun.spawn([CLAMSCAN, "--no-summary", "--stdout", "-d", dbDir, ...files], { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (code !== 0 && code !== 1) throw new Error(`clamscan exited ${code}: ${err}${out}`);
  const result = new Map<string, string | null>();
  for (const line of out.split("\n")) {
    const m = /^(.*): (?:(.+) FOUND|OK)$/.exec(line);
    if (m) result.set(m[1], m[2] ? m[2].replace(/\.UNOFFICIAL$/, "") : null);
  }
  for (const f of files) if (!result.has(f)) throw new Error(`clamscan said nothing about ${f}: ${out}${err}`);
  return result;
}
