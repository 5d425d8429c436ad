// The built-in engine: EICAR always, plus ClamAV hash (.hdb/.hsb) and body (.ndb) signatures loaded from
// a directory. Synchronous: one hash lookup by size, then one automaton pass over the bytes.
import { randomBytes } from "node:crypto";
import type { Detection, Engine } from "../engine.ts";
import { BodyMatcher } from "../signatures/body.ts";
import { EICAR_NAME, isEicar } from "../signatures/eicar.ts";
import { HashDb } from "../signatures/hash.ts";
import { loadSignatureDir, signatureDigest, type LoadReport, type SignatureSet } from "../signatures/load.ts";

/** Bump when a code change makes the same database files detect something else (a new target type,
 *  a matcher fix): identities then change, and clean verdicts remembered under the old ones lapse. */
const IDENTITY_FORMAT = 1;

export class BuiltinEngine implements Engine {
  readonly name = "builtin";
  readonly signatureCount: number;
  readonly identity: string;
  private readonly hashes: HashDb;
  private readonly allow: HashDb;
  private readonly body: BodyMatcher;

  constructor(set: SignatureSet) {
    this.hashes = set.hashes;
    this.allow = set.allow;
    this.body = new BodyMatcher(set.body);
    this.signatureCount = 1 + set.hashes.size + this.body.size;
    this.identity = identityOf(set);
  }

  /** Loads every ClamAV database in dir (null: EICAR only). Rejects only when dir cannot be read. */
  static async load(dir: string | null): Promise<{ engine: BuiltinEngine; report: LoadReport }> {
    if (dir === null) return { engine: BuiltinEngine.eicarOnly(), report: { files: [], unsupported: [], total: 0 } };
    const { set, report } = await loadSignatureDir(dir);
    return { engine: new BuiltinEngine(set), report };
  }

  static eicarOnly(): BuiltinEngine {
    return new BuiltinEngine({ hashes: new HashDb(), allow: new HashDb(), body: [] });
  }

  scan(data: Uint8Array): Detection | null {
    if (isEicar(data)) return { name: EICAR_NAME };
    const name = this.hashes.match(data) ?? this.body.match(data);
    if (name === null || (this.allow.size > 0 && this.allow.match(data) !== null)) return null;
    return { name };
  }
}

/** A set built by hand without a digest cannot be named, so it gets a random identity: nothing
 *  remembered under it is trusted by any other engine. An empty one is the EICAR-only set. */
function identityOf(set: SignatureSet): string {
  const empty = set.hashes.size === 0 && set.allow.size === 0 && set.body.length === 0;
  const digest = set.digest ?? (empty ? signatureDigest([]) : randomBytes(32).toString("hex"));
  return new Bun.CryptoHasher("sha256").update(`builtin\0${IDENTITY_FORMAT}\0${digest}`).digest("hex").slice(0, 32);
}
