// ClamAV .cvd/.cld containers: a 512-byte "ClamAV-VDB:" header, then a tar (gzip'd in .cvd; .cld may be
// plain). We check the header's MD5 of the .cvd body but not ClamAV's RSA signature over it.

export interface CvdHeader { built: string; version: number; signatures: number; flevel: number; md5: string }
export interface TarMember { name: string; data: Uint8Array }
export type CvdResult = { header: CvdHeader; members: TarMember[] } | { error: string };

const HEADER = 512;
const MAGIC = "ClamAV-VDB:";

export function parseCvdHeader(bytes: Uint8Array): CvdHeader | null {
  if (bytes.length < HEADER) return null;
  const text = Buffer.from(bytes.subarray(0, HEADER)).toString("latin1").trimEnd();
  if (!text.startsWith(MAGIC)) return null;
  const f = text.split(":");
  if (f.length < 6) return null;
  return { built: f[1], version: Number(f[2]), signatures: Number(f[3]), flevel: Number(f[4]), md5: f[5] };
}

/** Regular files of a ustar/GNU tar; other entry types are skipped. Stops at the zero block or a short entry. */
export function readTar(tar: Uint8Array): TarMember[] | null {
  const out: TarMember[] = [];
  let p = 0;
  while (p + 512 <= tar.length) {
    const h = tar.subarray(p, p + 512);
    if (h.every((b) => b === 0)) break;
    const str = (a: number, n: number) => {
      const s = Buffer.from(h.subarray(a, a + n)).toString("latin1");
      const z = s.indexOf("\0");
      return z < 0 ? s : s.slice(0, z);
    };
    const size = parseInt(str(124, 12).trim() || "0", 8);
    if (!Number.isFinite(size) || size < 0) return null;
    const type = str(156, 1) || "0";
    const prefix = str(257, 6).startsWith("ustar") ? str(345, 155) : "";
    const name = (prefix ? prefix + "/" : "") + str(0, 100);
    const start = p + 512;
    if (start + size > tar.length) return null;
    if (type === "0") out.push({ name, data: tar.subarray(start, start + size) });
    p = start + Math.ceil(size / 512) * 512;
  }
  return out;
}

/** Opens a .cvd/.cld container; checks the .cvd MD5 (a .cld keeps the header of the .cvd it came from). */
export function openCvd(bytes: Uint8Array, isCld: boolean): CvdResult {
  const header = parseCvdHeader(bytes);
  if (!header) return { error: "not a ClamAV-VDB container (bad 512-byte header)" };
  const body = bytes.subarray(HEADER);
  if (!isCld && header.md5 && new Bun.CryptoHasher("md5").update(body).digest("hex") !== header.md5.toLowerCase()) {
    return { error: "corrupt container (MD5 in header does not match)" };
  }
  let tar: Uint8Array;
  try {
    tar = body[0] === 0x1f && body[1] === 0x8b ? Bun.gunzipSync(body) : body;
  } catch {
    return { error: "corrupt container (gzip)" };
  }
  const members = readTar(tar);
  return members ? { header, members } : { error: "corrupt container (tar)" };
}
