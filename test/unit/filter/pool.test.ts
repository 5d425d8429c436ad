// The scan workers: the same answers as scanning inline (verdicts, cleaned copies, identities), an
// unchanged message handed back as the very bytes the caller holds, and a worker that stops
// answering replaced without losing the next message. Small messages scanned on the event loop give
// the workers' answers, and go to a worker whenever the event loop's tighter budget was reached.
import { afterAll, describe, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { DEFAULT_CONFIG } from "../../../core/config/types.ts";
import { ScanPool } from "../../../core/filter/pool.ts";
import { inlineScanner, type ScanJob } from "../../../core/filter/scan-job.ts";
import { DEFAULT_LIMITS } from "../../../core/limits.ts";
import { policyFromConfig } from "../../../core/rewrite/index.ts";
import { BuiltinEngine } from "../../../core/scan/engines/builtin.ts";
import { makeZip } from "../../helpers/archives.ts";
import { writeSigDir } from "../../helpers/clamav.ts";
import { eicar } from "../../helpers/eicar.ts";
import { attachment, manyParts, message, multipart, pseudoRandom } from "../../helpers/messages.ts";

const enc = new TextEncoder();
const dec = (b: Uint8Array) => Buffer.from(b).toString("latin1");
const md5 = (b: Uint8Array) => new Bun.CryptoHasher("md5").update(b).digest("hex");

const job: ScanJob = { limits: DEFAULT_LIMITS, policy: policyFromConfig(DEFAULT_CONFIG, "mailsentry test", { sameSize: true }), partial: false };
const clean = enc.encode(message(multipart("b", [attachment("notes.txt", "hello")])));
const infected = enc.encode(message(multipart("b", [attachment("notes.txt", "hello"), attachment("x.com", eicar())])));
const blob = pseudoRandom(4096, 7);
const hashed = enc.encode(message(multipart("b", [attachment("blob.bin", blob)])));

/** The same bytes in shared memory, as the POP3 relay collects a big message. */
function shared(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(new SharedArrayBuffer(bytes.length));
  out.set(bytes);
  return out;
}

const sigDir = writeSigDir({ "local.hdb": `${md5(blob)}:${blob.length}:Local.Blob\n` });
const pools: ScanPool[] = [];
/** A pool; unless opts say otherwise, every message goes to a worker (these tests are about workers). */
async function open(dir: string | null, opts: Parameters<typeof ScanPool.open>[1] = {}): Promise<ScanPool> {
  const p = await ScanPool.open(dir, { inlineMaxBytes: 0, ...opts });
  pools.push(p);
  return p;
}
afterAll(() => {
  for (const p of pools) p.close();
  rmSync(sigDir, { recursive: true, force: true });
});

describe("scan pool", () => {
  test("a message in a Buffer (a view of a bigger buffer, or of the allocator's pool) is copied, never detached", async () => {
    const pool = await open(null, { size: 1 });
    const big = Buffer.concat([Buffer.from("x".repeat(100)), Buffer.from(dec(clean), "latin1")]);
    const view = big.subarray(100);
    const small = Buffer.from(dec(infected), "latin1"); // from the allocator's shared pool when small
    for (let round = 0; round < 2; round++) {
      expect((await pool.scan(view, job)).result.verdict.kind).toBe("clean");
      expect((await pool.scan(small, job)).result.verdict.kind).toBe("infected");
    }
    expect(dec(view)).toBe(dec(clean));
    expect(big.subarray(0, 100).toString()).toBe("x".repeat(100));
  });

  test("a clean message comes back as the very bytes the caller holds, shared or not", async () => {
    const pool = await open(null, { size: 1 });
    for (const raw of [clean, shared(clean)]) {
      const s = await pool.scan(raw, job);
      expect(s.result.verdict).toEqual({ kind: "clean" });
      expect(s.rewrite?.bytes).toBe(raw);
      expect(s.rewrite?.applied).toBe("none");
    }
  });

  test("an infected message: the same verdict and the same cleaned copy as scanning inline", async () => {
    const pool = await open(null, { size: 1 });
    const inline = await inlineScanner(BuiltinEngine.eicarOnly())(infected, job);
    for (const raw of [infected, shared(infected)]) {
      const s = await pool.scan(raw, job);
      expect(s.result).toEqual(inline.result);
      expect(s.result.verdict).toMatchObject({ kind: "infected", name: "Eicar-Test-Signature" });
      expect(s.rewrite?.quarantine).toBe(true);
      expect(dec(s.rewrite!.bytes)).toBe(dec(inline.rewrite!.bytes));
      expect(s.rewrite!.bytes.length).toBe(raw.length); // sameSize: the announced size holds
      expect(dec(s.rewrite!.bytes)).toContain("X-Virus-Status: Cleaned (Eicar-Test-Signature)");
    }
  });

  test("a partial job gives only the verdict", async () => {
    const pool = await open(null, { size: 1 });
    const s = await pool.scan(infected, { ...job, partial: true });
    expect(s.result.verdict.kind).toBe("infected");
    expect(s.rewrite).toBeUndefined();
  });

  test("each worker loads the signature directory: its detections and its identity are the inline engine's", async () => {
    const pool = await open(sigDir, { size: 2 });
    const inline = await BuiltinEngine.load(sigDir);
    expect(pool.identity).toBe(inline.engine.identity);
    expect(pool.loaded.report.total).toBe(inline.report.total);
    // Both workers answer (two jobs at once), both with the database's detection.
    const [a, b] = await Promise.all([pool.scan(hashed, job), pool.scan(shared(hashed), job)]);
    for (const s of [a, b]) expect(s.result.verdict).toMatchObject({ kind: "infected", name: "Local.Blob" });
  });

  test("a signature directory that cannot be read fails the start, naming the directory", async () => {
    const missing = join(sigDir, "no-such-dir");
    await expect(ScanPool.open(missing, { size: 1 })).rejects.toThrow(missing);
  });

  test("more messages than workers are queued and every one is answered, in any mix", async () => {
    const pool = await open(null, { size: 2 });
    const raws = Array.from({ length: 24 }, (_, i) => (i % 3 === 0 ? infected : i % 3 === 1 ? shared(clean) : hashed));
    const out = await Promise.all(raws.map((r) => pool.scan(r, job)));
    out.forEach((s, i) => expect(s.result.verdict.kind).toBe(i % 3 === 0 ? "infected" : "clean"));
  });

  test("a worker that does not answer in time is replaced: that job fails, the next one is scanned", async () => {
    const pool = await open(null, { size: 1, stuckGraceMs: 0 });
    const big = enc.encode(message(multipart("b", [attachment("big.bin", pseudoRandom(8 * 1024 * 1024, 3))])));
    const slow: ScanJob = { ...job, limits: { ...DEFAULT_LIMITS, maxScanTime: 1 } };
    await expect(pool.scan(big, slow)).rejects.toThrow(/did not answer within 1 ms/);
    const next = await pool.scan(infected, job);
    expect(next.result.verdict.kind).toBe("infected");
  });

  test("a retired pool lets its workers go, and still scans for a session that holds it", async () => {
    const pool = await open(null, { size: 1 });
    pool.retire();
    expect((await pool.scan(infected, job)).result.verdict.kind).toBe("infected");
  });

  test("closing the pool fails the queued jobs instead of leaving them waiting", async () => {
    const pool = await open(null, { size: 1 });
    const first = pool.scan(infected, job);
    const queued = pool.scan(clean, job);
    pool.close();
    await expect(queued).rejects.toThrow("scanner stopped");
    await expect(first).rejects.toThrow();
  });
});

describe("small messages on the event loop", () => {
  const opened = (dir: string | null = null, opts: Parameters<typeof ScanPool.open>[1] = {}) => open(dir, { size: 1, inlineMaxBytes: 128 * 1024, ...opts });

  test("clean and infected: the verdict and the cleaned copy a worker gives, without a worker", async () => {
    const pool = await opened();
    const workers = await open(null, { size: 1 });
    for (const raw of [clean, infected, hashed]) {
      const s = await pool.scan(raw, job);
      const w = await workers.scan(raw, job);
      expect(s.result).toEqual(w.result);
      expect(dec(s.rewrite!.bytes)).toBe(dec(w.rewrite!.bytes));
    }
    expect(pool.inlineScans).toBe(3);
    expect((await pool.scan(clean, job)).rewrite?.bytes).toBe(clean); // unchanged: the very bytes
  });

  test("a small zip that inflates past the event loop's budget is scanned by a worker, to the end", async () => {
    const pool = await opened();
    // 3 MiB of zeros deflate to a few KB (past the event loop's budget at a bomb's ratio, within
    // the job's limits); EICAR comes after them.
    const zip = await makeZip([{ name: "zeros.bin", data: new Uint8Array(3 * 1024 * 1024) }, { name: "x.com", data: eicar() }]);
    const raw = enc.encode(message(multipart("b", [attachment("files.zip", zip)])));
    expect(raw.length).toBeLessThan(64 * 1024);
    const s = await pool.scan(raw, job);
    expect(s.result.verdict).toMatchObject({ kind: "infected", name: "Eicar-Test-Signature" });
    expect(s.result.findings.filter((f) => f.verdict.kind === "unscanned")).toEqual([]);
    expect(pool.inlineScans).toBe(0);
  });

  test("a small message of many parts is scanned by a worker under the job's own file limit", async () => {
    const pool = await opened();
    const raw = enc.encode(manyParts(200));
    const s = await pool.scan(raw, job);
    expect(s.result.verdict).toEqual({ kind: "clean" });
    expect(pool.inlineScans).toBe(0);
    // A limit the job itself sets is the job's answer, wherever the message was scanned.
    const few = await pool.scan(raw, { ...job, limits: { ...DEFAULT_LIMITS, maxFiles: 10 } });
    expect(few.result.verdict).toMatchObject({ kind: "unscanned", reason: "too-many-files" });
  });

  test("by default a message up to 1 MiB is scanned on the event loop, infected or not, and a bigger one by a worker", async () => {
    const pool = await open(null, { size: 1, inlineMaxBytes: undefined });
    const sized = (bytes: number, payload: boolean) => enc.encode(message(multipart("s", [
      attachment("data.bin", pseudoRandom(bytes, 3)),
      ...(payload ? [attachment("x.com", eicar())] : []),
    ])));
    const mid = sized(700_000, true);
    expect(mid.length).toBeGreaterThan(900_000);
    expect(mid.length).toBeLessThan(1024 * 1024);
    expect((await pool.scan(mid, job)).result.verdict).toMatchObject({ kind: "infected", name: "Eicar-Test-Signature" });
    expect((await pool.scan(sized(700_000, false), job)).result.verdict).toEqual({ kind: "clean" });
    expect(pool.inlineScans).toBe(2);
    const over = sized(800_000, true);
    expect(over.length).toBeGreaterThan(1024 * 1024);
    expect((await pool.scan(over, job)).result.verdict).toMatchObject({ kind: "infected", name: "Eicar-Test-Signature" });
    expect(pool.inlineScans).toBe(2);
  });

  test("bigger messages and big signature sets go to the workers", async () => {
    const pool = await opened(null, { inlineMaxBytes: 100 });
    expect((await pool.scan(infected, job)).result.verdict.kind).toBe("infected");
    expect(pool.inlineScans).toBe(0);
    const big = await opened(sigDir, { inlineMaxSignatures: 1 });
    expect((await big.scan(hashed, job)).result.verdict).toMatchObject({ kind: "infected", name: "Local.Blob" });
    expect(big.inlineScans).toBe(0);
    const small = await opened(sigDir);
    expect((await small.scan(hashed, job)).result.verdict).toMatchObject({ kind: "infected", name: "Local.Blob" });
    expect(small.inlineScans).toBe(1);
  });
});
