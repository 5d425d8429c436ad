// One message's CPU work, the same wherever it runs: scan it, then work out the action's copy. The
// proxy runs it on scan workers (pool.ts) so the event loop keeps relaying other sessions; tests
// with an injected engine run it inline. No I/O: quarantine and logging stay with the caller.
import type { Limits } from "../limits.ts";
import { applyPolicy, type ActionPolicy, type RewriteOutcome } from "../rewrite/index.ts";
import type { Engine } from "../scan/engine.ts";
import { scanMessage } from "../scan/pipeline.ts";
import type { ScanResult } from "../scan/verdict.ts";

/** What a job needs besides the message: all plain data, so it crosses to a worker as it is. */
export interface ScanJob {
  limits: Limits;
  policy: ActionPolicy;
  /** Part of a message (TOP, a partial fetch): only the verdict is wanted, nothing is rewritten. */
  partial: boolean;
}

export interface Scanned {
  result: ScanResult;
  /** The action's outcome (absent for a partial job, or when working it out failed: rewriteError). */
  rewrite?: RewriteOutcome;
  rewriteError?: Error;
}

/** Scans one message and applies the policy; rejects only when the scan itself failed. */
export type MessageScanner = (raw: Uint8Array, job: ScanJob) => Promise<Scanned>;

export async function scanAndApply(engine: Engine, raw: Uint8Array, job: ScanJob): Promise<Scanned> {
  const { result, tree } = await scanMessage(raw, { engine, limits: job.limits });
  if (job.partial) return { result };
  try {
    return { result, rewrite: applyPolicy(raw, tree, result, job.policy) };
  } catch (e) {
    return { result, rewriteError: e as Error };
  }
}

/** Runs every job on the calling thread with the given engine. */
export function inlineScanner(engine: Engine): MessageScanner {
  return (raw, job) => scanAndApply(engine, raw, job);
}
