// ClamAV .cvd/.cld containers: a 512-byte "ClamAV-VDB:" header, then a tar (gzip'd in .cvd; .cld may be
// plain). We check the header's MD5 of the .cvd body but not ClamAV's RSA signature over it.
import { readTar } from "../archive/tar.ts";

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

/** Regular files of the container's tar, through the scanner's own tar reader; null when it is damaged. */
function tarMembers(tar: Uint8Array): TarMember[] | null {
  const out: TarMember[] = [];
  for (const m of readTar(tar, { maxFileSize: Infinity })) {
    if ("unscanned" in m) return null;
    out.push(m);
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
    tar = body[0] === 0x1f && body[1] === 0x8b ? Bun.gunzipSync(body as Uint8Array<ArrayBuffer>) : body;
  } catch {
    return { error: "corrupt container (gzip)" };
  }
  const members = tarMembers(tar);
  return members ? { header, members } : { error: "corrupt container (tar)" };
}
