// ClamAV .hdb/.hsb whole-object hash signatures (MD5, SHA1, SHA256 told apart by length).
// Keyed by size then digest, so a digest is computed only when some signature has the object's size
// (or a `*`-size signature of that algorithm exists).
import { FLEVEL } from "./ndb.ts";

export type HashAlgo = "md5" | "sha1" | "sha256";
const ALGOS: HashAlgo[] = ["md5", "sha1", "sha256"];
const BY_LENGTH: Record<number, HashAlgo> = { 32: "md5", 40: "sha1", 64: "sha256" };
/** ClamAV refuses a `*` size unless the signature declares at least this functionality level. */
const WILDCARD_MIN_FLEVEL = 73;

export interface HashSig { algo: HashAlgo; digest: string; size: number | "*"; name: string }
export type HashLineResult = { sig: HashSig } | { error: string; unsupported: boolean };

/** Parses `HashString:FileSize:MalwareName[:MinFL[:MaxFL]]`. */
export function parseHashLine(line: string): HashLineResult {
  const f = line.split(":");
  if (f.length < 3 || f.length > 5) return { error: "malformed line (expected 3 to 5 fields)", unsupported: false };
  const [hex, size, name, minFl, maxFl] = f;
  const algo = BY_LENGTH[hex.length];
  if (!algo || !/^[0-9a-fA-F]+$/.test(hex)) return { error: "bad hash (need 32, 40 or 64 hex digits)", unsupported: false };
  if (!name) return { error: "missing name", unsupported: false };
  if ((minFl && !/^\d+$/.test(minFl)) || (maxFl && !/^\d+$/.test(maxFl))) return { error: "bad functionality level", unsupported: false };
  if ((minFl && Number(minFl) > FLEVEL) || (maxFl && Number(maxFl) < FLEVEL)) {
    return { error: `outside functionality level ${FLEVEL} (ClamAV skips these too)`, unsupported: true };
  }
  if (size === "*") {
    if (!minFl || Number(minFl) < WILDCARD_MIN_FLEVEL) return { error: `"*" size without a minimum functionality level of ${WILDCARD_MIN_FLEVEL}`, unsupported: false };
    return { sig: { algo, digest: hex.toLowerCase(), size: "*", name } };
  }
  if (!/^\d+$/.test(size)) return { error: "bad size", unsupported: false };
  return { sig: { algo, digest: hex.toLowerCase(), size: Number(size), name } };
}

type DigestMap = Map<string, string>;

export class HashDb {
  /** size → algorithm → digest → name. */
  private readonly bySize = new Map<number, Partial<Record<HashAlgo, DigestMap>>>();
  private readonly anySize: Partial<Record<HashAlgo, DigestMap>> = {};
  size = 0;

  add(s: HashSig): void {
    let slot = this.anySize;
    if (s.size !== "*") {
      slot = this.bySize.get(s.size) ?? {};
      this.bySize.set(s.size, slot);
    }
    (slot[s.algo] ??= new Map()).set(s.digest, s.name);
    this.size++;
  }

  /** Name of the signature whose hash matches data, or null. */
  match(data: Uint8Array): string | null {
    const sized = this.bySize.get(data.length);
    for (const algo of ALGOS) {
      const a = sized?.[algo], b = this.anySize[algo];
      if (!a && !b) continue;
      const digest = new Bun.CryptoHasher(algo).update(data).digest("hex");
      const hit = a?.get(digest) ?? b?.get(digest);
      if (hit !== undefined) return hit;
    }
    return null;
  }
}
