// ClamAV .ndb body signatures: line parsing, offsets, target types, anchor choice and the full check.
// Lines never throw: each bad or unsupported line comes back with a reason the loader counts and reports.
import { matchTokens, newMemo, parseHex, reverseTokens, type Memo, type Token } from "./hex.ts";

/** The functionality level we claim, as ClamAV 1.4 (216): signatures outside their min/max level are skipped
 *  as ClamAV would skip them; syntax we do not implement is reported by the parser, whatever its level. */
export const FLEVEL = 216;

/** Where the first byte of a match may sit. shift: extra allowed positions after the base (ClamAV `n,m`). */
export type Offset =
  | { kind: "any" }
  | { kind: "abs"; n: number; shift: number }
  | { kind: "eof"; n: number; shift: number };

export interface BodySig {
  name: string;
  target: number;
  offset: Offset;
  tokens: Token[];
  /** Longest run of exact bytes: [start token, length); length 0 when there is none. */
  runStart: number;
  runLen: number;
}

export type LineResult = { sig: BodySig } | { error: string; unsupported: boolean };

/** Target types and why: the engine sees one decoded object at a time and knows neither its role in the
 *  message nor ClamAV's normalised forms. 0 (any) and 4 (mail: the raw message is one of the objects scanned)
 *  apply to every object; executable/document types are recognised by their magic bytes (a superset of
 *  ClamAV's stricter parsing); 3 (normalised HTML), 7 (normalised text) and the rest would need ClamAV's
 *  normalisers or parsers and are reported unsupported rather than matched against the wrong bytes. */
const TARGET_TYPES = new Set([0, 1, 2, 4, 5, 6, 9, 10]);
const TARGET_NAMES: Record<number, string> = { 3: "normalised HTML", 7: "normalised text", 8: "unused", 11: "Flash", 12: "Java class" };

const startsWith = (d: Uint8Array, ...b: number[]): boolean => b.every((x, i) => d[i] === x);

/** Does an object of these bytes belong to target type t? (Only called after a signature matched.) */
export function isTargetType(t: number, d: Uint8Array): boolean {
  switch (t) {
    case 0: case 4: return true;
    case 1: return startsWith(d, 0x4d, 0x5a); // "MZ"
    case 2: return startsWith(d, 0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1);
    case 5: return startsWith(d, 0x47, 0x49, 0x46, 0x38) || startsWith(d, 0x89, 0x50, 0x4e, 0x47) || startsWith(d, 0xff, 0xd8, 0xff);
    case 6: return startsWith(d, 0x7f, 0x45, 0x4c, 0x46);
    case 9: {
      const m = d.length >= 4 ? ((d[0] << 24) | (d[1] << 16) | (d[2] << 8) | d[3]) >>> 0 : 0;
      return [0xfeedface, 0xfeedfacf, 0xcefaedfe, 0xcffaedfe, 0xcafebabe].includes(m);
    }
    case 10: return Buffer.from(d.buffer, d.byteOffset, Math.min(d.length, 1024)).indexOf("%PDF-") >= 0;
    default: return false;
  }
}

function parseOffset(s: string): Offset | { error: string; unsupported: boolean } {
  if (s === "*") return { kind: "any" };
  let m = /^(\d+)(?:,(\d+))?$/.exec(s);
  if (m) return { kind: "abs", n: Number(m[1]), shift: Number(m[2] ?? 0) };
  m = /^EOF-(\d+)(?:,(\d+))?$/.exec(s);
  if (m) return { kind: "eof", n: Number(m[1]), shift: Number(m[2] ?? 0) };
  if (/^(EP[+-]\d+|S\d+[+-]\d+|SE\d+|SL[+-]\d+|VI|\$\d+)/.test(s)) {
    return { error: "EP/section/version offsets (need executable parsing)", unsupported: true };
  }
  return { error: "bad offset", unsupported: false };
}

/** Parses one .ndb line `Name:TargetType:Offset:HexSignature[:min_flevel[:max_flevel]]`. */
export function parseNdbLine(line: string): LineResult {
  const f = line.split(":");
  if (f.length < 4 || f.length > 6 || f[0] === "") return { error: "malformed line (expected 4 to 6 fields)", unsupported: false };
  const [name, tt, off, hex, minFl, maxFl] = f;
  if (minFl && !/^\d+$/.test(minFl) || maxFl && !/^\d+$/.test(maxFl)) return { error: "bad functionality level", unsupported: false };
  if ((minFl && Number(minFl) > FLEVEL) || (maxFl && Number(maxFl) < FLEVEL)) {
    return { error: `outside functionality level ${FLEVEL} (ClamAV skips these too)`, unsupported: true };
  }
  if (!/^\d+$/.test(tt)) return { error: "bad target type", unsupported: false };
  const target = Number(tt);
  if (!TARGET_TYPES.has(target)) return { error: `target type ${target} (${TARGET_NAMES[target] ?? "needs a file parser"})`, unsupported: true };
  const offset = parseOffset(off);
  if ("error" in offset) return offset;
  const h = parseHex(hex);
  if ("error" in h) return { error: h.unsupported ? h.error : `malformed hex signature: ${h.error}`, unsupported: !!h.unsupported };
  const tokens = h.tokens;
  let runStart = 0, runLen = 0;
  for (let i = 0; i < tokens.length;) {
    let j = i;
    while (j < tokens.length && tokens[j].t === 0 && (tokens[j] as { m: number }).m === 0xff) j++;
    if (j - i > runLen) { runStart = i; runLen = j - i; }
    i = j === i ? i + 1 : j;
  }
  if (runLen < 2 && offset.kind === "any") {
    return { error: "no literal anchor of 2+ bytes with a floating offset (one search per position would be too slow)", unsupported: true };
  }
  return { sig: { name, target, offset, tokens, runStart, runLen } };
}

/** Inclusive range of positions where a match of sig may start in an object of `size` bytes; null: none. */
export function startRange(o: Offset, size: number): [number, number] | null {
  if (o.kind === "any") return [0, size];
  const lo = o.kind === "abs" ? o.n : size - o.n;
  if (lo < 0 || lo > size) return null;
  return [lo, Math.min(size, lo + o.shift)];
}

/** Prepared, for verification: tokens right of the key and tokens left of it reversed. */
export interface CompiledSig extends BodySig {
  keyStart: number;
  keyLen: number;
  right: Token[];
  left: Token[];
  /** Fewest bytes the tokens left of the key can take. */
  minLeft: number;
}

export function compileSig(sig: BodySig, keyStart: number, keyLen: number): CompiledSig {
  return {
    ...sig, keyStart, keyLen,
    right: sig.tokens.slice(keyStart + keyLen),
    left: reverseTokens(sig.tokens.slice(0, keyStart)),
    minLeft: minLength(sig.tokens.slice(0, keyStart)),
  };
}

/** Key bytes of a compiled signature (the exact run window the automaton looks for). */
export function keyBytes(sig: BodySig, keyStart: number, keyLen: number): Uint8Array {
  const out = new Uint8Array(keyLen);
  for (let i = 0; i < keyLen; i++) out[i] = (sig.tokens[keyStart + i] as { v: number }).v;
  return out;
}

/** What one object's earlier key hits of a signature proved impossible (see Memo). */
export interface SigMemo { right: Memo; left: Memo }
export const newSigMemo = (): SigMemo => ({ right: newMemo(), left: newMemo() });

/** Full check once the key was seen ending at data[keyEnd] (inclusive). memo must be this signature's, for this data. */
export function verifyAtKey(s: CompiledSig, data: Uint8Array, keyEnd: number, memo: SigMemo | null = null): boolean {
  const keyBegin = keyEnd - s.keyLen + 1;
  // Cheap rejects before any wildcard work: the neighbours of the key, then the offset window.
  const r0 = s.right[0], l0 = s.left[0];
  if (r0 !== undefined && r0.t === 0 && (keyEnd + 1 >= data.length || (data[keyEnd + 1] & r0.m) !== r0.v)) return false;
  if (l0 !== undefined && l0.t === 0 && (keyBegin < 1 || (data[keyBegin - 1] & l0.m) !== l0.v)) return false;
  let lo = 0, hi = data.length;
  if (s.offset.kind !== "any") {
    const range = startRange(s.offset, data.length);
    if (!range || keyBegin - s.minLeft < range[0]) return false;
    [lo, hi] = range;
  }
  if (s.right.length && !matchTokens(s.right, data, keyEnd + 1, 1, () => true, memo?.right)) return false;
  if (s.left.length ? !matchTokens(s.left, data, keyBegin, -1, (p) => p >= lo && p <= hi, memo?.left) : keyBegin < lo || keyBegin > hi) return false;
  return isTargetType(s.target, data);
}

/** Fewest bytes tokens can match. */
function minLength(tokens: Token[]): number {
  let n = 0;
  for (const t of tokens) n += t.t === 0 ? 1 : t.t === 2 ? t.min : Math.min(...t.opts.map((o) => o.v.length));
  return n;
}

/** Check of a signature without a key (only allowed with a fixed offset): try each allowed start. */
export function verifyAnchorless(s: BodySig, data: Uint8Array): boolean {
  const range = startRange(s.offset, data.length);
  if (!range) return false;
  for (let p = range[0]; p <= range[1]; p++) {
    if (matchTokens(s.tokens, data, p, 1, () => true)) return isTargetType(s.target, data);
  }
  return false;
}
