// The built-in engine: EICAR always, plus ClamAV hash (.hdb/.hsb) and body (.ndb) signatures loaded from
// a directory. Synchronous: one hash lookup by size, then one automaton pass over the bytes.
import type { Detection, Engine } from "../engine.ts";
import { BodyMatcher } from "../signatures/body.ts";
import { EICAR_NAME, isEicar } from "../signatures/eicar.ts";
import { HashDb } from "../signatures/hash.ts";
import { loadSignatureDir, type LoadReport, type SignatureSet } from "../signatures/load.ts";

export class BuiltinEngine implements Engine {
  readonly name = "builtin";
  readonly signatureCount: number;
  private readonly hashes: HashDb;
  private readonly allow: HashDb;
  private readonly body: BodyMatcher;

  constructor(set: SignatureSet) {
    this.hashes = set.hashes;
    this.allow = set.allow;
    this.body = new BodyMatcher(set.body);
    this.signatureCount = 1 + set.hashes.size + this.body.size;
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
