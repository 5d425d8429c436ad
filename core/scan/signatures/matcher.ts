// Multi-pattern matcher: an Aho-Corasick DFA over short keys, every failure link resolved into a flat
// 256-wide transition table, so scanning is one table load per byte and no allocation.
// States with output are numbered last, so "did something end here?" is one comparison.

export class Automaton {
  private constructor(
    /** delta[(state << 8) | byte] → next state. */
    private readonly delta: Uint16Array | Int32Array,
    /** States >= firstOut have outputs. */
    private readonly firstOut: number,
    /** Outputs of state s (s >= firstOut): outIds[outStart[s - firstOut] .. outStart[s - firstOut + 1]). */
    private readonly outStart: Int32Array,
    private readonly outIds: Int32Array,
    readonly states: number,
  ) {}

  /** Builds the DFA; key i is reported as id i. Keys must be non-empty. */
  static build(keys: Uint8Array[]): Automaton {
    // Trie with sparse children first (cheap to build), then a dense table once the size is known.
    const kids: Map<number, number>[] = [new Map()];
    const own: number[][] = [[]];
    keys.forEach((k, id) => {
      let s = 0;
      for (const b of k) {
        let t = kids[s].get(b);
        if (t === undefined) { t = kids.length; kids.push(new Map()); own.push([]); kids[s].set(b, t); }
        s = t;
      }
      own[s].push(id);
    });
    const n = kids.length;
    const delta = new Int32Array(n * 256);
    const fail = new Int32Array(n);
    const outs: number[][] = own;
    const order: number[] = [0];
    for (const [b, t] of kids[0]) delta[b] = t; // missing root edges stay 0 (back to root)
    for (const t of kids[0].values()) { fail[t] = 0; order.push(t); }
    for (let qi = 1; qi < order.length; qi++) {
      const s = order[qi];
      const f = fail[s];
      if (outs[f].length) outs[s] = outs[s].concat(outs[f]);
      const row = s << 8, frow = f << 8;
      for (let b = 0; b < 256; b++) {
        const t = kids[s].get(b);
        if (t === undefined) delta[row | b] = delta[frow | b];
        else { fail[t] = delta[frow | b]; delta[row | b] = t; order.push(t); }
      }
    }
    // Renumber: states without output first (root stays 0), then those with output.
    const plain: number[] = [], withOut: number[] = [];
    for (let s = 0; s < n; s++) (outs[s].length ? withOut : plain).push(s);
    const perm = new Int32Array(n);
    [...plain, ...withOut].forEach((s, i) => { perm[s] = i; });
    const final = n <= 0x10000 ? new Uint16Array(n * 256) : new Int32Array(n * 256);
    for (let s = 0; s < n; s++) {
      const src = s << 8, dst = perm[s] << 8;
      for (let b = 0; b < 256; b++) final[dst | b] = perm[delta[src | b]];
    }
    const outStart = new Int32Array(withOut.length + 1);
    const ids: number[] = [];
    withOut.forEach((s, i) => { outStart[i] = ids.length; ids.push(...outs[s]); });
    outStart[withOut.length] = ids.length;
    return new Automaton(final, plain.length, outStart, Int32Array.from(ids), n);
  }

  /** Runs over data; onHit(keyId, endIndex) for every key occurrence (endIndex = its last byte);
   *  stops and returns true as soon as onHit returns true. */
  scan(data: Uint8Array, onHit: (id: number, end: number) => boolean): boolean {
    const d = this.delta, first = this.firstOut;
    let s = 0;
    for (let i = 0, n = data.length; i < n; i++) {
      s = d[(s << 8) | data[i]];
      if (s >= first) {
        const o = s - first;
        for (let k = this.outStart[o], e = this.outStart[o + 1]; k < e; k++) if (onHit(this.outIds[k], i)) return true;
      }
    }
    return false;
  }

  /** Bytes held by the transition table. */
  get tableBytes(): number {
    return this.delta.byteLength;
  }
}
