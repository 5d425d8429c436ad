// The proxy's message filter, shared by every protocol: scan → action → quarantine for one
// downloaded message. It answers with an outcome; each protocol turns a refusal into its own reply.
import type { Logger } from "../log.ts";
import type { Limits } from "../limits.ts";
import type { QuarantineStore } from "../quarantine/store.ts";
import type { ActionPolicy } from "../rewrite/index.ts";
import { describeVerdict, type Verdict } from "../scan/verdict.ts";
import { describeChain, mergeFindings, scanWithEngines, type Chain } from "../scan/chain.ts";
import type { MessageBytes, MessageScanner, ScanJob, Scanned } from "./scan-job.ts";
import { Spool } from "./spool.ts";

export interface FilterInfo {
  /** Message number (or UID) as the client named it. */
  msg: string;
  /** Part of a message (POP3 TOP, an IMAP partial fetch), not the whole of it. */
  partial: boolean;
  log: Logger;
}

/**
 * Why a message is withheld: "tempfail" (scanner or quarantine failed, or policy says so: try
 * again later) or "infected-partial" (part of an infected message; the whole one gets cleaned).
 */
export type Refusal = "tempfail" | "infected-partial";

/**
 * What becomes of one downloaded message. bytes is the input itself when unchanged; a spooled
 * message's changed copy is another Spool, which the caller then owns (and removes).
 */
export type FilterOutcome<B extends MessageBytes = Uint8Array> =
  /** clean: scanned completely and nothing found (a cache may remember that the bytes are safe). */
  | { kind: "deliver"; bytes: B; detected: boolean; clean: boolean }
  | { kind: "refuse"; why: Refusal; detected: boolean };

export type MessageFilter = <B extends MessageBytes>(raw: B, info: FilterInfo) => Promise<FilterOutcome<B>>;

/** What the filter needs from one configuration generation. */
export interface FilterContext {
  /** Scans and works out the action's copy: on the scan workers, or inline (scan-job.ts). */
  scanner: MessageScanner;
  limits: Limits;
  policy: ActionPolicy;
  quarantine: QuarantineStore;
  /** The engine chain; absent: the built-in engine alone. */
  chain?: Chain;
}

/**
 * Scan → action → quarantine for one downloaded message. The original is in quarantine before a
 * cleaned or replaced copy leaves, so the client's DELE (or EXPUNGE) loses nothing. A scanner
 * failure and a failed quarantine write are temporary failures: nothing unscanned slips through,
 * nothing is lost. source names the message in the quarantine ("pop3 user@server:port #3").
 */
export async function filterMessage<B extends MessageBytes>(ctx: FilterContext, raw: B, info: FilterInfo, source: string): Promise<FilterOutcome<B>> {
  const { log } = info;
  const chain = ctx.chain;
  // X-Virus-Scanned names every engine and its version as it is now (clamd's database changes).
  const policy = chain ? { ...ctx.policy, product: `${ctx.policy.product} (${describeChain(chain)})` } : ctx.policy;
  const job: ScanJob = { limits: ctx.limits, policy, partial: info.partial, builtin: chain?.builtin ?? true };
  let scanned;
  try {
    scanned = await scanWithChain(ctx.scanner, raw, job, chain);
  } catch (e) {
    log.error("scanner failed", { number: info.msg, error: e });
    return { kind: "refuse", why: "tempfail", detected: false };
  }
  const v = scanned.result.verdict;
  if (info.partial) return partialOutcome(raw, v, info, policy);
  const outcome = scanned.rewrite;
  if (!outcome) {
    log.error("applying the action failed", { number: info.msg, error: scanned.rewriteError });
    return { kind: "refuse", why: "tempfail", detected: v.kind === "infected" };
  }
  if (outcome.disposition === "tempfail") {
    log.warn("message withheld (temporary failure)", { number: info.msg, verdict: describeVerdict(v) });
    return { kind: "refuse", why: "tempfail", detected: v.kind === "infected" };
  }
  let quarantineId: string | undefined;
  if (outcome.quarantine) {
    try {
      quarantineId = (await ctx.quarantine.put(raw, { verdict: v, source, findings: scanned.result.findings })).id;
    } catch (e) {
      log.error("quarantine write failed: message withheld", { number: info.msg, error: e });
      return { kind: "refuse", why: "tempfail", detected: v.kind === "infected" };
    }
  }
  if (v.kind === "infected") {
    log.warn("detection", { number: info.msg, verdict: describeVerdict(v), action: outcome.applied, ...(quarantineId ? { quarantine: quarantineId } : {}) });
  } else if (v.kind !== "clean") {
    log.info("message not fully scanned", { number: info.msg, verdict: describeVerdict(v), action: outcome.applied, ...(quarantineId ? { quarantine: quarantineId } : {}) });
  }
  return { kind: "deliver", bytes: outcome.bytes, detected: v.kind === "infected", clean: v.kind === "clean" };
}

/**
 * The scan worker's built-in scan and the message engines (clamd, ICAP) run at once on the same
 * bytes. When the engines add nothing (the usual case) the worker's copy stands; when they add a
 * finding, the worker applies the policy again to the merged result (no second scan). In
 * first-detection mode a built-in detection does not wait for the engines.
 */
async function scanWithChain<B extends MessageBytes>(scanner: MessageScanner, raw: B, job: ScanJob, chain: Chain | undefined): Promise<Scanned<B>> {
  if (!chain || chain.engines.length === 0) return scanner(raw, job);
  let builtinFound = false;
  const external = scanWithEngines(chain, raw, () => builtinFound);
  const first = await scanner(raw, job);
  builtinFound = first.result.verdict.kind === "infected";
  if (chain.mode === "first-detection" && builtinFound) return first;
  let extra = await external;
  if (mergeFindings(first.result, extra) === first.result) return first;
  // clamd and ICAP name no part. When the built-in engine cleaned parts, the cleaned copy is asked
  // again: if the engines find nothing in it, their detection was in those parts and the cleaned
  // copy stands; otherwise the whole message answers for it (replaced).
  const copy = first.rewrite?.applied === "clean" ? first.rewrite.bytes : null;
  if (copy && copy !== raw && extra.findings.some((f) => f.verdict.kind === "infected")) {
    const again = await scanWithEngines(chain, copy);
    if (!again.findings.some((f) => f.verdict.kind === "infected" || f.verdict.kind === "error")) {
      extra = { ...extra, findings: extra.findings.filter((f) => f.verdict.kind !== "infected") };
      if (mergeFindings(first.result, extra) === first.result) return first;
    }
  }
  const result = mergeFindings(first.result, extra);
  if (job.partial) return { result };
  if (first.rewrite && first.rewrite.bytes !== raw && first.rewrite.bytes instanceof Spool) first.rewrite.bytes.remove();
  return scanner(raw, { ...job, given: result });
}

/**
 * TOP output is part of a message: a notice or a cleaned copy would look like a complete message,
 * so nothing is rewritten. Clean/unscanned output passes unchanged; infected output is refused
 * (RETR delivers the cleaned copy and quarantines the original) unless the action is `ignore`,
 * under which RETR too would deliver it as it is; a scanner error is a temp failure.
 */
function partialOutcome<B extends MessageBytes>(raw: B, v: Verdict, info: FilterInfo, policy: ActionPolicy): FilterOutcome<B> {
  if (v.kind === "infected" && policy.action === "ignore") {
    info.log.warn("detection", { number: info.msg, verdict: describeVerdict(v), action: "none (TOP, ignore)" });
    return { kind: "deliver", bytes: raw, detected: true, clean: false };
  }
  if (v.kind === "infected") {
    info.log.warn("detection", { number: info.msg, verdict: describeVerdict(v), action: "refused (TOP)" });
    return { kind: "refuse", why: "infected-partial", detected: true };
  }
  if (v.kind === "error") return { kind: "refuse", why: "tempfail", detected: false };
  return { kind: "deliver", bytes: raw, detected: false, clean: v.kind === "clean" };
}
