// ClamAV body-signature hex syntax → tokens, and the backtracking check of tokens against bytes.
// Parsing never throws: a bad signature comes back as { error } so the loader can report it by line.

/** One byte compared under a mask: exact (0xff), `a?` (0xf0), `?a` (0x0f), `??` (0x00). */
export interface ByteTok { t: 0; v: number; m: number }
/** `(aa|bbcc|d?)` — one of several byte strings (lengths may differ); `!(aa|bb)` negated, fixed length. */
export interface AltTok { t: 1; opts: { v: Uint8Array; m: Uint8Array }[]; neg: boolean }
/** `*`, `{n}`, `{-n}`, `{n-}`, `{n-m}`: between min and max arbitrary bytes (max may be Infinity). */
export interface GapTok { t: 2; min: number; max: number }
export type Token = ByteTok | AltTok | GapTok;

export type HexResult = { tokens: Token[] } | { error: string; unsupported?: boolean };

const HEX = (c: number): number =>
  c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : -1;

/** Reads one hex pair (with `?` nibble wildcards) at i; null when it is not one. */
function pair(s: string, i: number): ByteTok | null {
  if (i + 1 >= s.length) return null;
  const a = s.charCodeAt(i), b = s.charCodeAt(i + 1);
  const hi = a === 63 ? -2 : HEX(a), lo = b === 63 ? -2 : HEX(b);
  if (hi === -1 || lo === -1) return null;
  return { t: 0, v: (hi < 0 ? 0 : hi << 4) | (lo < 0 ? 0 : lo), m: (hi < 0 ? 0 : 0xf0) | (lo < 0 ? 0 : 0x0f) };
}

function parseGap(body: string): GapTok | null {
  const m = /^(\d*)(-?)(\d*)$/.exec(body);
  if (!m || (m[1] === "" && m[3] === "")) return null;
  if (m[2] === "") return { t: 2, min: Number(m[1]), max: Number(m[1]) };
  const min = m[1] === "" ? 0 : Number(m[1]);
  const max = m[3] === "" ? Infinity : Number(m[3]);
  return min <= max ? { t: 2, min, max } : null;
}

function parseAlt(body: string, neg: boolean): AltTok | HexResult {
  if (body === "B" || body === "L") return { error: `(${body}) boundary markers`, unsupported: true };
  const opts: AltTok["opts"] = [];
  for (const part of body.split("|")) {
    if (part.length === 0 || part.length % 2) return { error: "bad alternative" };
    const v = new Uint8Array(part.length / 2), mk = new Uint8Array(part.length / 2);
    for (let i = 0; i < part.length; i += 2) {
      const p = pair(part, i);
      if (!p) return { error: "bad alternative" };
      v[i / 2] = p.v; mk[i / 2] = p.m;
    }
    opts.push({ v, m: mk });
  }
  if (opts.length < 2 && !neg) return { error: "alternative with one choice" };
  if (neg && opts.some((o) => o.v.length !== opts[0].v.length)) return { error: "negated alternatives of different lengths" };
  return { t: 1, opts, neg };
}

/** Parses a ClamAV hex signature; `[n-m]` ranges and `(B)`/`(L)` markers are reported unsupported. */
export function parseHex(s: string): HexResult {
  const tokens: Token[] = [];
  let i = 0;
  while (i < s.length) {
    const c = s[i];
    if (c === "*") { tokens.push({ t: 2, min: 0, max: Infinity }); i++; continue; }
    if (c === "{") {
      const j = s.indexOf("}", i);
      const g = j < 0 ? null : parseGap(s.slice(i + 1, j));
      if (!g) return { error: "bad {n-m} gap" };
      tokens.push(g); i = j + 1; continue;
    }
    if (c === "[") return { error: "[n-m] anchored byte ranges", unsupported: true };
    if (c === "(" || (c === "!" && s[i + 1] === "(")) {
      const neg = c === "!";
      const start = i + (neg ? 2 : 1), j = s.indexOf(")", start);
      if (j < 0) return { error: "unclosed (" };
      const alt = parseAlt(s.slice(start, j), neg);
      if ("error" in alt) return alt;
      tokens.push(alt as AltTok); i = j + 1; continue;
    }
    const p = pair(s, i);
    if (!p) return { error: "bad hex digits" };
    tokens.push(p); i += 2;
  }
  if (tokens.length === 0) return { error: "empty signature" };
  if (tokens[0].t === 2 || tokens[tokens.length - 1].t === 2) return { error: "signature starts or ends with a gap" };
  return { tokens };
}

/** The same tokens in reverse order, for matching backwards from an anchor. An alternative's bytes keep
 *  their order: the backward matcher compares the whole block [p - len, p) front to back. */
export function reverseTokens(tokens: Token[]): Token[] {
  return tokens.slice().reverse();
}

/** Failures remembered across calls for one signature side over one object: a (token, position) pair
 *  that failed once fails again, and after an unbounded gap failed from p every later start fails too. */
export interface Memo { failed: Set<number>; gapFail: Map<number, number> }
export const newMemo = (): Memo => ({ failed: new Set(), gapFail: new Map() });

/** Does data match tokens[ti..] going in direction dir (+1 forward from pos, -1 backward ending at pos)?
 *  accept(pos) decides whether the final position is acceptable (offset rules for the left side) and must
 *  not change between calls sharing a memo. Memoised, so gaps cost O(tokens × bytes) at worst, never exponential. */
export function matchTokens(
  tokens: Token[], data: Uint8Array, pos: number, dir: 1 | -1, accept: (pos: number) => boolean, memo: Memo | null = null,
): boolean {
  const n = data.length, stride = n + 1;
  const go = (ti: number, p: number): boolean => {
    for (; ti < tokens.length; ti++) {
      const tok = tokens[ti];
      if (tok.t === 0) {
        const at = dir > 0 ? p : p - 1;
        if (at < 0 || at >= n || (data[at] & tok.m) !== tok.v) return false;
        p += dir;
      } else if (tok.t === 1) {
        if (tok.neg) {
          const len = tok.opts[0].v.length;
          if (dir > 0 ? p + len > n : p - len < 0) return false;
          const base = dir > 0 ? p : p - len;
          if (tok.opts.some((o) => eqMasked(data, base, o.v, o.m))) return false;
          p += dir * len;
        } else {
          for (const o of tok.opts) {
            const len = o.v.length, base = dir > 0 ? p : p - len;
            if (base < 0 || base + len > n || !eqMasked(data, base, o.v, o.m)) continue;
            if (go(ti + 1, p + dir * len)) return true;
          }
          return false;
        }
      } else {
        const room = dir > 0 ? n - p : p;
        if (tok.min > room) return false;
        memo ??= newMemo();
        const unbounded = tok.max >= room;
        if (unbounded) {
          const f = memo.gapFail.get(ti);
          if (f !== undefined && (dir > 0 ? p >= f : p <= f)) return false;
        }
        const max = Math.min(tok.max, room);
        const next = tokens[ti + 1];
        const lit = next && next.t === 0 && next.m === 0xff ? next.v : -1;
        for (let k = tok.min; k <= max; k++) {
          let q = p + dir * k;
          if (lit >= 0) {
            if (unbounded) {
              // Jump straight to the next place the following literal byte occurs (native search).
              q = dir > 0 ? data.indexOf(lit, q) : (q > 0 ? data.lastIndexOf(lit, q - 1) + 1 : -1);
              if (q < 0 || (dir < 0 && q === 0)) break;
              k = dir > 0 ? q - p : p - q;
            } else if (data[dir > 0 ? q : q - 1] !== lit) continue;
          }
          const key = (ti + 1) * stride + q;
          if (memo.failed.has(key)) continue;
          if (go(ti + 1, q)) return true;
          memo.failed.add(key);
        }
        if (unbounded) memo.gapFail.set(ti, p);
        return false;
      }
    }
    return accept(p);
  };
  return go(0, pos);
}

function eqMasked(data: Uint8Array, at: number, v: Uint8Array, m: Uint8Array): boolean {
  for (let i = 0; i < v.length; i++) if ((data[at + i] & m[i]) !== v[i]) return false;
  return true;
}
