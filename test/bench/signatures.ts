// Body-signature throughput: 10,000 generated .ndb signatures (binary and text-like, with every wildcard
// form) over mixed text + random binary data. Prints MB/s. Run: bun test/bench/signatures.ts [sigs] [MB]
import { BuiltinEngine } from "../../core/scan/engines/builtin.ts";
import { loadSignatureFiles } from "../../core/scan/signatures/load.ts";

/** Deterministic PRNG so runs are comparable. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x9e3779b9) >>> 0) / 2 ** 32);
}

const WORDS = "the of and to in is you that it he was for on are as with his they at be this have from or one had by word but not what all were we when your can said there use an each which she do how their if will up other about out many then them these so some her would make like him into time has look two more write go see number no way could people my than first water been call who oil its now find long down day did get come made may part".split(" ");

export function generateNdb(count: number, seed = 1): string {
  const r = rng(seed);
  const hex = (n: number) => Array.from({ length: n }, () => Math.floor(r() * 256).toString(16).padStart(2, "0")).join("");
  const PRINTABLE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789<>/=\"'();.%$_";
  const textHex = (n: number) =>
    Buffer.from(Array.from({ length: n }, () => PRINTABLE[Math.floor(r() * PRINTABLE.length)]).join("")).toString("hex");
  // A few signatures start with common words, so their keys do hit in text and the full check runs.
  const commonHex = () => Buffer.from(WORDS[Math.floor(r() * WORDS.length)] + " ").toString("hex");
  const gaps = ["??", "*", "{4}", "{-8}", "{2-}", "{3-9}", "(41|42|43)", "a?", "?b"];
  const lines: string[] = [];
  for (let i = 0; i < count; i++) {
    const part = () => (r() < 0.3 ? textHex(6 + Math.floor(r() * 10)) : hex(4 + Math.floor(r() * 12)));
    const g = gaps[Math.floor(r() * gaps.length)];
    if (r() < 0.02) { lines.push(`Bench.Common-${i}:0:*:${commonHex()}${g}${part()}`); continue; }
    const offset = r() < 0.9 ? "*" : r() < 0.5 ? String(Math.floor(r() * 64)) : `EOF-${Math.floor(r() * 64) + 16}`;
    lines.push(`Bench.Sig-${i}:0:${offset}:${part()}${g}${part()}`);
  }
  return lines.join("\n") + "\n";
}

export function mixedData(bytes: number, seed = 2): Uint8Array {
  const r = rng(seed);
  const out = new Uint8Array(bytes);
  let p = 0;
  while (p < bytes) {
    const len = Math.min(bytes - p, 4096 + Math.floor(r() * 65536));
    if (r() < 0.5) {
      for (let i = 0; i < len; i++) out[p + i] = Math.floor(r() * 256);
    } else {
      let i = 0;
      while (i < len) {
        const w = WORDS[Math.floor(r() * WORDS.length)] + (r() < 0.1 ? ".\r\n" : " ");
        for (let k = 0; k < w.length && i < len; k++, i++) out[p + i] = w.charCodeAt(k);
      }
    }
    p += len;
  }
  return out;
}

if (import.meta.main) {
  const sigs = Number(process.argv[2] ?? 10_000), mb = Number(process.argv[3] ?? 64);
  let t = performance.now();
  const { set, report } = loadSignatureFiles([{ name: "bench.ndb", data: new TextEncoder().encode(generateNdb(sigs)) }]);
  const engine = new BuiltinEngine(set);
  console.log(`loaded ${report.total} signatures in ${(performance.now() - t).toFixed(0)} ms`);
  const data = mixedData(mb * 1024 * 1024);
  const chunk = 1024 * 1024; // objects of 1 MB, like attachments
  engine.scan(data.subarray(0, chunk)); // warm up the JIT
  let hits = 0;
  t = performance.now();
  for (let p = 0; p < data.length; p += chunk) if (engine.scan(data.subarray(p, p + chunk))) hits++;
  const s = (performance.now() - t) / 1000;
  console.log(`${mb} MB mixed text + binary, ${sigs} body signatures: ${(mb / s).toFixed(0)} MB/s (${hits} objects matched)`);
}
