// The scan workers: every downloaded message is scanned (and its cleaned copy made) on a worker
// thread, so a 25 MB attachment being decoded and matched never holds up the event loop that
// relays every other session's bytes. Each worker loads the signatures itself (an engine cannot
// cross threads), so the engine's memory is paid once per worker: the pool is sized to the cores
// left over by the event loop, and capped. A worker that dies or stops answering is replaced and
// its job fails (the caller answers a temporary failure: nothing passes unscanned).
// Small messages are the exception: scanned on the event loop, when the signature set is small
// enough to hold there too (see scanInline).
import { availableParallelism } from "node:os";
import type { Limits, UnscannedReason } from "../limits.ts";
import { BuiltinEngine } from "../scan/engines/builtin.ts";
import type { LoadReport } from "../scan/signatures/load.ts";
import { adoptRewrite, scanAndApply, type MessageBytes, type MessageScanner, type ScanJob, type Scanned } from "./scan-job.ts";
import { Spool } from "./spool.ts";
import type { FromWorker, ToWorker } from "./worker.ts";

/** Past maxScanTime the pipeline stops by itself; a worker still busy this much later is stuck. */
const STUCK_GRACE_MS = 10_000;
const MAX_WORKERS = 4;

/** One worker per core beyond the event loop's, at least one, at most MAX_WORKERS. */
export function defaultPoolSize(): number {
  return Math.max(1, Math.min(MAX_WORKERS, availableParallelism() - 1));
}

export interface PoolOptions {
  /** Workers (default: defaultPoolSize()). */
  size?: number;
  /** How long past maxScanTime a worker may take before it is replaced. */
  stuckGraceMs?: number;
  /** Messages up to this many bytes are scanned on the event loop (default INLINE_MAX_BYTES; 0: never). */
  inlineMaxBytes?: number;
  /** The event loop holds an engine of its own only for a set of at most this many signatures. */
  inlineMaxSignatures?: number;
}

/**
 * Handing a message to a worker and its answer back costs ~0.15 ms on an idle 2-core machine (two
 * thread wake-ups, the job cloned each way), and 2–3 ms when the client and the server share the
 * cores (an IMAP bulk download: a 300 KB message that scans in 0.3 ms came back after 2.5 ms, and
 * the relay waits for it). A message up to INLINE_MAX_BYTES scans in about a millisecond, so it is
 * scanned on the event loop, within a budget that keeps it to a few milliseconds whatever it holds
 * (a small zip can inflate to megabytes): past INLINE_SCAN_BUDGET decoded bytes, INLINE_MAX_FILES
 * objects or INLINE_MAX_TIME, the inline result is dropped and a worker scans the message under the
 * real limits.
 */
const INLINE_MAX_BYTES = 1024 * 1024;
const INLINE_SCAN_BUDGET = 2 * 1024 * 1024;
const INLINE_MAX_FILES = 64;
const INLINE_MAX_TIME = 50;
/**
 * The engine is held a second time on the event loop only for a small set: 2,000 body signatures
 * cost ~7 MB and 30 ms to load, a ClamAV database hundreds of MB (its users scan on the workers only).
 */
const INLINE_MAX_SIGNATURES = 2_000;
/**
 * Findings an inline scan's tighter limits may cause: then a worker scans the message again. "bomb"
 * too: an archive member is called one only when it outgrew a cap at a bomb's ratio, and the inline
 * budget is a lower cap (3 MiB of zeros in a zip is a bomb inline and scanned in full on a worker).
 */
const LIMIT_REASONS: ReadonlySet<UnscannedReason> = new Set(["too-large", "too-many-files", "time-limit", "bomb"]);

function inlineLimits(limits: Limits): Limits {
  return {
    ...limits,
    maxScanSize: Math.min(limits.maxScanSize, INLINE_SCAN_BUDGET),
    maxFiles: Math.min(limits.maxFiles, INLINE_MAX_FILES),
    maxScanTime: Math.min(limits.maxScanTime, INLINE_MAX_TIME),
  };
}

interface Pending {
  id: number;
  raw: MessageBytes;
  job: ScanJob;
  done: PromiseWithResolvers<Scanned>;
}

interface Loaded {
  identity: string;
  signatureCount: number;
  report: LoadReport;
}

/** Where the worker's module is: a compiled binary embeds it under the path build.ts gave it. */
function workerUrl(): string {
  return import.meta.url.includes("/$bunfs/") ? "./core/filter/worker.ts" : new URL("./worker.ts", import.meta.url).href;
}

class Slot {
  private worker: Worker | null = null;
  private loading: Promise<Loaded> | null = null;
  busy: Pending | null = null;
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(private readonly pool: ScanPool) {}

  /** Starts the worker and loads the signatures (once; again after the worker was replaced). */
  load(): Promise<Loaded> {
    if (this.loading) return this.loading;
    const worker = new Worker(workerUrl());
    this.worker = worker;
    const loaded = Promise.withResolvers<Loaded>();
    worker.onmessage = (e: MessageEvent<FromWorker>) => {
      const m = e.data;
      if (m.type === "loaded") loaded.resolve(m);
      else if (m.type === "load-failed") loaded.reject(new Error(m.message));
      else this.answer(m);
    };
    worker.onerror = (e) => this.lost(worker, new Error(`scan worker failed: ${e.message}`), loaded);
    worker.addEventListener("close", () => this.lost(worker, new Error("scan worker stopped"), loaded));
    worker.postMessage({ type: "load", signatures: this.pool.signatures } satisfies ToWorker);
    const loading = loaded.promise;
    this.loading = loading;
    // A worker that could not load is ended here; run() fails its job with the loader's error.
    loading.catch(() => {
      if (this.loading !== loading) return;
      this.worker?.terminate();
      this.worker = null;
      this.loading = null;
    });
    return loading;
  }

  async run(p: Pending): Promise<void> {
    this.busy = p;
    try {
      await this.load();
    } catch (e) {
      this.settle(p, e as Error);
      return;
    }
    if (this.busy !== p) return; // failed while loading
    const limit = p.job.limits.maxScanTime + this.pool.stuckGraceMs;
    if (limit < 2 ** 31) {
      this.timer = setTimeout(() => this.stop(new Error(`scan worker did not answer within ${limit} ms; it was restarted`)), limit);
    }
    // Bytes in shared memory (messageBuffer) go as they are: the worker only reads them, and the
    // caller keeps them to deliver unchanged. Others are copied into a buffer the worker then owns;
    // that copy is the one cost a big message puts on the event loop, so protocols collect into
    // messageBuffer.
    if (p.raw instanceof Spool) {
      this.worker!.postMessage({ type: "scan-file", id: p.id, path: p.raw.path, out: p.raw.outPath, job: p.job } satisfies ToWorker);
    } else if (p.raw.buffer instanceof SharedArrayBuffer) {
      this.worker!.postMessage({ type: "scan", id: p.id, raw: p.raw, job: p.job } satisfies ToWorker);
    } else {
      // A copy in a buffer of its own: Buffer#slice would be a view, and transferring its buffer
      // would detach the caller's bytes (and, for a small Buffer, the allocator's shared pool).
      const raw = new Uint8Array(p.raw);
      this.worker!.postMessage({ type: "scan", id: p.id, raw, job: p.job } satisfies ToWorker, [raw.buffer as ArrayBuffer]);
    }
  }

  private answer(m: Exclude<FromWorker, { type: "loaded" | "load-failed" }>): void {
    const p = this.busy;
    if (!p || p.id !== m.id) return;
    if (m.type === "failed") { this.settle(p, new Error(m.message)); return; }
    if (m.type === "done-file") {
      if (!(p.raw instanceof Spool)) { this.settle(p, new Error("scan worker answered a file job for a buffer")); return; }
      try {
        this.settle(p, null, adoptRewrite(p.raw, { ...m, rewriteError: m.rewriteError === undefined ? undefined : new Error(m.rewriteError) }));
      } catch (e) {
        this.settle(p, e as Error); // the copy's file could not be opened
      }
      return;
    }
    const scanned: Scanned = { result: m.result };
    if (m.rewrite) scanned.rewrite = { ...m.rewrite, bytes: m.rewrite.bytes ?? (p.raw as Uint8Array) };
    if (m.rewriteError !== undefined) scanned.rewriteError = new Error(m.rewriteError);
    this.settle(p, null, scanned);
  }

  private lost(worker: Worker, error: Error, loaded: PromiseWithResolvers<Loaded>): void {
    loaded.reject(error);
    if (worker === this.worker) this.stop(error);
  }

  private settle(p: Pending, error: Error | null, scanned?: Scanned): void {
    if (this.busy !== p) return;
    clearTimeout(this.timer);
    this.busy = null;
    if (error) p.done.reject(error);
    else p.done.resolve(scanned!);
    this.pool.next(this);
  }

  /** Ends the worker (its job, if any, fails with why); the next job starts a new one. */
  stop(why = new Error("scan worker stopped")): void {
    const w = this.worker;
    this.worker = null;
    this.loading = null;
    w?.terminate();
    if (this.busy) this.settle(this.busy, why);
  }

  get idle(): boolean { return this.busy === null; }
}

export class ScanPool {
  private readonly slots: Slot[];
  private readonly queue: Pending[] = [];
  private nextId = 1;
  private retired = false;
  /** The engine again on the event loop, for small messages; null: every message goes to a worker. */
  private inline: BuiltinEngine | null = null;
  private inlineMaxBytes = INLINE_MAX_BYTES;
  /** Messages whose inline result stood (for tests). */
  inlineScans = 0;

  private constructor(readonly signatures: string | null, size: number, readonly stuckGraceMs: number, readonly loaded: Loaded) {
    this.slots = Array.from({ length: size }, () => new Slot(this));
  }

  /**
   * Starts the workers and loads the signatures in each; rejects as loading them on this thread
   * would (a directory that cannot be read). Every worker must have read the same files.
   */
  static async open(signatures: string | null, opts: PoolOptions = {}): Promise<ScanPool> {
    const size = Math.max(1, opts.size ?? defaultPoolSize());
    const pool = new ScanPool(signatures, size, opts.stuckGraceMs ?? STUCK_GRACE_MS, { identity: "", signatureCount: 0, report: { files: [], unsupported: [], total: 0 } });
    let answers: Loaded[];
    try {
      answers = await Promise.all(pool.slots.map((s) => s.load()));
    } catch (e) {
      pool.close();
      throw e;
    }
    if (answers.some((a) => a.identity !== answers[0]!.identity)) {
      pool.close();
      throw new Error("the signature files changed while they were being loaded; try again");
    }
    Object.assign(pool.loaded, answers[0]);
    pool.inlineMaxBytes = opts.inlineMaxBytes ?? INLINE_MAX_BYTES;
    if (pool.inlineMaxBytes > 0 && pool.loaded.signatureCount <= (opts.inlineMaxSignatures ?? INLINE_MAX_SIGNATURES)) {
      // The same files again; should they have changed in between, the workers' set is the one used.
      const own = await BuiltinEngine.load(signatures).catch(() => null);
      if (own?.engine.identity === pool.identity) pool.inline = own.engine;
    }
    return pool;
  }

  get identity(): string { return this.loaded.identity; }
  get size(): number { return this.slots.length; }

  readonly scan: MessageScanner = (<B extends MessageBytes>(raw: B, job: ScanJob) => {
    if (this.inline && !(raw instanceof Spool) && raw.length <= this.inlineMaxBytes) {
      return this.scanInline(this.inline, raw, job) as Promise<Scanned<B>>;
    }
    return this.onWorker(raw, job);
  }) as MessageScanner;

  /**
   * A small message on the event loop, under inlineLimits. A finding those limits may have caused
   * sends it to a worker under the job's own: what the client gets never depends on where it was
   * scanned. A result that hit none of them is the one the worker would give. A job with its
   * result given only parses the message and applies the policy: that keeps the job's own limits.
   */
  private async scanInline(engine: BuiltinEngine, raw: Uint8Array, job: ScanJob): Promise<Scanned> {
    if (job.given) {
      this.inlineScans++;
      return scanAndApply(engine, raw, job);
    }
    const s = await scanAndApply(engine, raw, { ...job, limits: inlineLimits(job.limits) });
    if (s.result.findings.some((f) => f.verdict.kind === "unscanned" && LIMIT_REASONS.has(f.verdict.reason))) return this.onWorker(raw, job);
    this.inlineScans++;
    return s;
  }

  private onWorker<B extends MessageBytes>(raw: B, job: ScanJob): Promise<Scanned<B>> {
    const p: Pending = { id: this.nextId++, raw, job, done: Promise.withResolvers<Scanned>() };
    const slot = this.slots.find((s) => s.idle);
    if (slot) void slot.run(p);
    else this.queue.push(p);
    return p.done.promise as Promise<Scanned<B>>;
  }

  /** @internal A slot finished a job: give it the next one, or let it go if the pool is retired. */
  next(slot: Slot): void {
    const p = this.queue.shift();
    if (p) { void slot.run(p); return; }
    if (this.retired) slot.stop();
  }

  /**
   * No new sessions will use this pool (a reload built another): workers end as they go idle.
   * Sessions still holding it can scan; a job then starts a worker again.
   */
  retire(): void {
    this.retired = true;
    for (const s of this.slots) if (s.idle) s.stop();
  }

  /** Ends every worker now; jobs in flight fail. */
  close(): void {
    this.retired = true;
    for (const p of this.queue.splice(0)) p.done.reject(new Error("scanner stopped"));
    for (const s of this.slots) s.stop();
  }
}
