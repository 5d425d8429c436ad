// Multi-pattern filter for 4-byte keys: one bit per hashed 4-gram in a table small enough for the CPU
// cache, tested at every position (the loads do not depend on each other, unlike a large DFA's), and an
// open-addressed table from each real key to its signatures. The same idea as ClamAV's q-gram prefilter.

const MUL_FILTER = 0x9e3779b1 | 0;
const MUL_TABLE = 0x85ebca6b | 0;

export class Gram4Matcher {
  private readonly bits: Int32Array;
  private readonly shift: number;
  private readonly slotKey: Int32Array;
  /** Per slot: start of its ids in `ids`, -1 when empty; ids end at slotEnd. */
  private readonly slotStart: Int32Array;
  private readonly slotEnd: Int32Array;
  private readonly slotShift: number;
  private readonly ids: Int32Array;

  /** keys[i] is reported as id i; every key has exactly 4 bytes. */
  constructor(keys: Uint8Array[]) {
    const filterBits = Math.min(24, Math.max(16, Math.ceil(Math.log2(Math.max(1, keys.length) * 128))));
    this.shift = 32 - filterBits;
    this.bits = new Int32Array(1 << (filterBits - 5));
    const groups = new Map<number, number[]>();
    keys.forEach((k, id) => {
      const v = (k[0] << 24) | (k[1] << 16) | (k[2] << 8) | k[3];
      const h = Math.imul(v, MUL_FILTER) >>> this.shift;
      this.bits[h >>> 5] |= 1 << (h & 31);
      const g = groups.get(v);
      if (g) g.push(id); else groups.set(v, [id]);
    });
    const capBits = Math.max(4, Math.ceil(Math.log2(groups.size * 2 + 1)));
    this.slotShift = 32 - capBits;
    this.slotKey = new Int32Array(1 << capBits);
    this.slotStart = new Int32Array(1 << capBits).fill(-1);
    this.slotEnd = new Int32Array(1 << capBits);
    const ids: number[] = [];
    const mask = (1 << capBits) - 1;
    for (const [v, list] of groups) {
      let s = Math.imul(v, MUL_TABLE) >>> this.slotShift;
      while (this.slotStart[s] !== -1) s = (s + 1) & mask;
      this.slotKey[s] = v;
      this.slotStart[s] = ids.length;
      ids.push(...list);
      this.slotEnd[s] = ids.length;
    }
    this.ids = Int32Array.from(ids);
  }

  /** onHit(keyId, endIndex) for every key occurrence (endIndex = its last byte); stops when onHit returns true. */
  scan(data: Uint8Array, onHit: (id: number, end: number) => boolean): boolean {
    const n = data.length;
    if (n < 4) return false;
    const bits = this.bits, shift = this.shift;
    let v = (data[0] << 16) | (data[1] << 8) | data[2];
    for (let i = 3; i < n; i++) {
      v = (v << 8) | data[i];
      const h = Math.imul(v, MUL_FILTER) >>> shift;
      if ((bits[h >>> 5] & (1 << (h & 31))) !== 0 && this.lookup(v, i, onHit)) return true;
    }
    return false;
  }

  private lookup(v: number, end: number, onHit: (id: number, end: number) => boolean): boolean {
    const mask = this.slotStart.length - 1;
    for (let s = Math.imul(v, MUL_TABLE) >>> this.slotShift; this.slotStart[s] !== -1; s = (s + 1) & mask) {
      if (this.slotKey[s] !== v) continue;
      for (let k = this.slotStart[s], e = this.slotEnd[s]; k < e; k++) if (onHit(this.ids[k], end)) return true;
      return false;
    }
    return false;
  }

  get tableBytes(): number {
    return this.bits.byteLength + this.slotKey.byteLength * 3 + this.ids.byteLength;
  }
}
