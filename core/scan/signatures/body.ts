// All body (.ndb) signatures matched in one pass per matcher: each signature contributes one literal key
// (4 bytes to the q-gram filter when it has a 4-byte exact run, else its 2–3 byte run to a small
// Aho-Corasick DFA), and only a key hit runs the full wildcard/offset check. Signatures without a key
// but with a fixed offset are checked directly at their few allowed positions.
import { Gram4Matcher } from "./gram.ts";
import { Automaton } from "./matcher.ts";
import { compileSig, keyBytes, newSigMemo, verifyAnchorless, verifyAtKey, type BodySig, type CompiledSig, type SigMemo } from "./ndb.ts";

/** Bytes that fill text and padding; a key made of them would hit often. */
const COMMON = new Uint8Array(256);
for (const b of [0x00, 0xff, 0x20, 0x0a, 0x0d, 0x09, 0x90, 0xcc, 0x2e, 0x2c]) COMMON[b] = 2;
for (let b = 0x61; b <= 0x7a; b++) COMMON[b] = 1;

/** Start of the least common window of length len inside the signature's exact-byte run. */
function bestWindow(sig: BodySig, len: number): number {
  let best = sig.runStart, bestCost = Infinity;
  for (let s = sig.runStart; s + len <= sig.runStart + sig.runLen; s++) {
    let cost = 0;
    for (let i = 0; i < len; i++) cost += COMMON[(sig.tokens[s + i] as { v: number }).v];
    if (cost < bestCost) { best = s; bestCost = cost; }
  }
  return best;
}

type Scanner = { scan(data: Uint8Array, onHit: (id: number, end: number) => boolean): boolean };

export class BodyMatcher {
  private readonly groups: { scanner: Scanner; sigs: CompiledSig[] }[] = [];
  private readonly anchorless: BodySig[];
  readonly size: number;
  readonly tableBytes: number;

  constructor(sigs: BodySig[]) {
    this.anchorless = sigs.filter((s) => s.runLen < 2);
    const long = sigs.filter((s) => s.runLen >= 4).map((s) => compileSig(s, bestWindow(s, 4), 4));
    const short = sigs.filter((s) => s.runLen >= 2 && s.runLen < 4).map((s) => compileSig(s, s.runStart, s.runLen));
    let bytes = 0;
    if (long.length) {
      const g = new Gram4Matcher(long.map((s) => keyBytes(s, s.keyStart, 4)));
      this.groups.push({ scanner: g, sigs: long });
      bytes += g.tableBytes;
    }
    if (short.length) {
      const a = Automaton.build(short.map((s) => keyBytes(s, s.keyStart, s.keyLen)));
      this.groups.push({ scanner: a, sigs: short });
      bytes += a.tableBytes;
    }
    this.size = sigs.length;
    this.tableBytes = bytes;
  }

  /** Name of the first signature that matches data, or null. */
  match(data: Uint8Array): string | null {
    for (const s of this.anchorless) if (verifyAnchorless(s, data)) return s.name;
    for (const { scanner, sigs } of this.groups) {
      let found: string | null = null;
      // Memos only for signatures hit more than once in this object: repeated hits then cost little.
      const memos = new Map<number, SigMemo | null>();
      scanner.scan(data, (id, end) => {
        let memo = memos.get(id);
        if (memo === undefined) memos.set(id, null);
        else if (memo === null) memos.set(id, (memo = newSigMemo()));
        if (!verifyAtKey(sigs[id], data, end, memo)) return false;
        found = sigs[id].name;
        return true;
      });
      if (found !== null) return found;
    }
    return null;
  }
}
