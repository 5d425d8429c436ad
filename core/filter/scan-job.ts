// One message's CPU work, the same wherever it runs: scan it, then work out the action's copy. The
// proxy runs it on scan workers (pool.ts) so the event loop keeps relaying other sessions; tests
// with an injected engine run it inline. No I/O but a spooled message's own files: quarantine and
// logging stay with the caller.
import { closeSync, openSync, writeSync } from "node:fs";
import type { Limits } from "../limits.ts";
import { applyPolicy, applyPolicyChunks, type ActionPolicy, type RewriteOutcome } from "../rewrite/index.ts";
import type { Engine } from "../scan/engine.ts";
import { messageTree, NO_ENGINE, scanMessage } from "../scan/pipeline.ts";
import type { ScanResult } from "../scan/verdict.ts";
import { Spool } from "./spool.ts";

/** What a job needs besides the message: all plain data, so it crosses to a worker as it is. */
export interface ScanJob {
  limits: Limits;
  policy: ActionPolicy;
  /** Part of a message (TOP, a partial fetch): only the verdict is wanted, nothing is rewritten. */
  partial: boolean;
  /** false: the built-in engine is not in the chain (the pipeline still decodes and reports its limits). */
  builtin?: boolean;
  /**
   * The verdict is already known (the built-in result merged with clamd's or ICAP's): the message
   * is only parsed and the policy applied to this result.
   */
  given?: ScanResult;
}

/** The message a job reads: in memory, or spooled to a file (one over maxMessageSize). */
export type MessageBytes = Uint8Array | Spool;

export interface Scanned<B extends MessageBytes = MessageBytes> {
  result: ScanResult;
  /** The action's outcome (absent for a partial job, or when working it out failed: rewriteError). */
  rewrite?: Omit<RewriteOutcome, "bytes"> & { bytes: B };
  rewriteError?: Error;
}

/** Scans one message and applies the policy; rejects only when the scan itself failed. */
export type MessageScanner = <B extends MessageBytes>(raw: B, job: ScanJob) => Promise<Scanned<B>>;

/** The job's scan: the given result with the parsed tree, or a scan with the job's engine. */
function scanFor(engine: Engine, raw: Uint8Array, job: ScanJob, limits: Limits) {
  if (job.given) return { result: job.given, tree: messageTree(raw, limits) };
  return scanMessage(raw, { engine: job.builtin === false ? NO_ENGINE : engine, limits });
}

export async function scanAndApply(engine: Engine, raw: Uint8Array, job: ScanJob): Promise<Scanned<Uint8Array>> {
  const { result, tree } = await scanFor(engine, raw, job, job.limits);
  if (job.partial) return { result };
  try {
    return { result, rewrite: applyPolicy(raw, tree, result, job.policy) };
  } catch (e) {
    return { result, rewriteError: e as Error };
  }
}

/**
 * The limits for a spooled message: its budget is at least its own size, so every part of a message
 * that was spooled for being big is read (maxScanSize still caps what archives inflate beyond it).
 */
export function spooledLimits(limits: Limits, size: number): Limits {
  return size > limits.maxScanSize ? { ...limits, maxScanSize: size } : limits;
}

/** A spooled scan's rewrite as it travels: out names the file holding a changed copy (null: unchanged). */
export type FileRewrite = Omit<RewriteOutcome, "bytes"> & { out: string | null };

/**
 * Scans the spooled message at path from a memory map (pages come from the file, not the heap); a
 * changed copy is written piece by piece to out, its untouched ranges straight from the map.
 */
export async function scanSpoolFile(engine: Engine, path: string, out: string, job: ScanJob): Promise<{ result: ScanResult; rewrite?: FileRewrite; rewriteError?: Error }> {
  const raw = Bun.mmap(path, { shared: false });
  const { result, tree } = await scanFor(engine, raw, job, spooledLimits(job.limits, raw.length));
  if (job.partial) return { result };
  try {
    const { chunks, ...rest } = applyPolicyChunks(raw, tree, result, job.policy);
    if (chunks === null) return { result, rewrite: { ...rest, out: null } };
    const fd = openSync(out, "wx", 0o600);
    try {
      for (const c of chunks) for (let at = 0; at < c.length;) at += writeSync(fd, c, at, c.length - at);
    } finally {
      closeSync(fd);
    }
    return { result, rewrite: { ...rest, out } };
  } catch (e) {
    return { result, rewriteError: e as Error };
  }
}

/** The caller's side of a spooled scan: a changed copy becomes a Spool the caller owns. */
export function adoptRewrite(spool: Spool, s: { result: ScanResult; rewrite?: FileRewrite; rewriteError?: Error }): Scanned<Spool> {
  const scanned: Scanned<Spool> = { result: s.result, rewriteError: s.rewriteError };
  if (s.rewrite) {
    const { out, ...rest } = s.rewrite;
    scanned.rewrite = { ...rest, bytes: out === null ? spool : Spool.adopt(out) };
  }
  return scanned;
}

/** Runs every job on the calling thread with the given engine. */
export function inlineScanner(engine: Engine): MessageScanner {
  return (async (raw: MessageBytes, job: ScanJob) => {
    if (!(raw instanceof Spool)) return scanAndApply(engine, raw, job);
    return adoptRewrite(raw, await scanSpoolFile(engine, raw.path, raw.outPath, job));
  }) as MessageScanner;
}
