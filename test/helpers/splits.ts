// Every way TCP can cut a stream, for parser tests: the bytes whole, one byte per chunk and in seeded
// random splits (a failure names its seed and cuts so it can be replayed), fed to an ImapReader either
// all at once or one chunk per event-loop turn, each chunk a view into a bigger buffer as from a socket.
import { ImapReader } from "../../core/imap/wire.ts";
import type { ByteReaderOptions } from "../../core/net/reader.ts";

/** mulberry32: a small seeded PRNG. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface Split { label: string; chunks: Uint8Array[] }

/** bytes cut at the given ascending offsets. */
export function cutAt(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let at = 0;
  for (const c of cuts) { out.push(bytes.subarray(at, c)); at = c; }
  out.push(bytes.subarray(at));
  return out;
}

/** The stream whole, one byte per chunk (unless byteByByte is false), then `random` seeded random splits (1 to 64 cuts each). */
export function splits(bytes: Uint8Array, seed: number, random = 200, byteByByte = true): Split[] {
  const out: Split[] = [{ label: "whole", chunks: [bytes] }];
  if (byteByByte) out.push({ label: "one byte per chunk", chunks: Array.from(bytes, (_, i) => bytes.subarray(i, i + 1)) });
  for (let k = 0; k < random; k++) {
    const s = (seed + Math.imul(k, 0x9e3779b9)) >>> 0;
    const rnd = mulberry32(s);
    const n = 1 + Math.floor(rnd() * Math.min(64, bytes.length - 1));
    const cuts = new Set<number>();
    for (let i = 0; i < n; i++) cuts.add(1 + Math.floor(rnd() * (bytes.length - 1)));
    const sorted = [...cuts].sort((a, b) => a - b);
    out.push({ label: `random split, seed ${s} (cuts at ${sorted.join(",")})`, chunks: cutAt(bytes, sorted) });
  }
  return out;
}

/** A chunk as a socket hands it over: a view into a bigger buffer (code that ignores byteOffset shows). */
function asSocketChunk(c: Uint8Array): Uint8Array {
  const b = new Uint8Array(c.length + 8).fill(0x23);
  b.set(c, 4);
  return b.subarray(4, 4 + c.length);
}

const macrotask = () => new Promise<void>((r) => setImmediate(r));

/**
 * "buffered": every chunk is there before reading starts; "trickled": one chunk per event-loop turn
 * while the consumer waits, as data arrives from a socket.
 */
export type Mode = "buffered" | "trickled";
export const MODES: Mode[] = ["buffered", "trickled"];

export async function feed<T>(chunks: Uint8Array[], mode: Mode, consume: (r: ImapReader) => Promise<T>, opts: ByteReaderOptions = {}): Promise<T> {
  const reader = new ImapReader(opts);
  const pieces = chunks.map(asSocketChunk);
  if (mode === "buffered") {
    for (const c of pieces) reader.push(c);
    reader.close();
    return consume(reader);
  }
  const result = consume(reader).then((v) => ({ ok: true as const, v }), (e: unknown) => ({ ok: false as const, e }));
  for (const c of pieces) { await macrotask(); reader.push(c); }
  await macrotask();
  reader.close();
  const r = await result;
  if (!r.ok) throw r.e;
  return r.v;
}

/** Runs check for every split and mode; a failure names the split (its seed and cuts) and the mode. Returns the runs. */
export async function everySplit(bytes: Uint8Array, seed: number, check: (chunks: Uint8Array[], mode: Mode) => Promise<void>, random = 200, byteByByte = true): Promise<number> {
  let runs = 0;
  for (const s of splits(bytes, seed, random, byteByByte)) {
    for (const mode of MODES) {
      try {
        await check(s.chunks, mode);
      } catch (e) {
        throw new Error(`${s.label}, ${mode}: ${(e as Error).message}`);
      }
      runs++;
    }
  }
  return runs;
}
