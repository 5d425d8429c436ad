// The engine chain: the built-in pipeline (its own engine inside) and the message engines (clamd,
// ICAP) scan one message concurrently; the worst verdict wins (infected > error > unscanned >
// clean) and every finding names its engine. In first-detection mode the first engine that finds
// something infected settles the message and the others' answers are not waited for. The network
// engines themselves live in core/net/engines.
import type { Config } from "../config/types.ts";
import type { MimePart } from "../mime/types.ts";
import type { EngineResult, MessageEngine, StreamSource } from "./engine.ts";
import { scanMessage, type ScanContext } from "./pipeline.ts";
import { worse, type Finding, type ScanResult, type Verdict } from "./verdict.ts";

export interface Chain {
  /** Whether the built-in engine is in the chain (without it the pipeline still decodes, and reports its limits). */
  builtin: boolean;
  engines: MessageEngine[];
  mode: Config["engineMode"];
}

/** "builtin, ClamAV 1.4.6/27480" — what X-Virus-Scanned names after the product. */
export function describeChain(chain: Chain): string {
  return [...(chain.builtin ? ["builtin"] : []), ...chain.engines.map((e) => e.describe())].join(", ");
}

/** What one engine's answer adds to the findings (nothing for clean); path names what it scanned. */
export function engineFindings(engine: string, r: EngineResult, path = "message"): Finding[] {
  switch (r.kind) {
    case "clean": return [];
    // clamd and ICAP say the message is infected, not which part: the whole message answers for it.
    case "infected": return [{ verdict: { kind: "infected", name: r.name, path }, partId: "", engine }];
    case "unscanned": return [{ verdict: r.detail ? { kind: "unscanned", reason: r.reason, path, detail: r.detail } : { kind: "unscanned", reason: r.reason, path }, partId: "", engine }];
  }
}

/** The message engines' answers: their findings, and whether one of them scanned the whole message. */
export interface EngineScan {
  findings: Finding[];
  /** The engines that answered (clean, infected or over their own limits): what they read is covered. */
  answered: MessageEngine[];
}

/**
 * Every message engine on raw at once. first-detection resolves at the first infected answer
 * (stop, when it says so, is asked before each answer counts). A failing engine is one error finding.
 */
export async function scanWithEngines(chain: Chain, raw: Uint8Array | StreamSource, stop: () => boolean = () => false, path = "message"): Promise<EngineScan> {
  if (chain.engines.length === 0) return { findings: [], answered: [] };
  const found: Finding[] = [];
  const answered: MessageEngine[] = [];
  const { promise, resolve } = Promise.withResolvers<void>();
  let left = chain.engines.length;
  for (const e of chain.engines) {
    e.scanMessage(raw).then(
      (r) => {
        found.push(...engineFindings(e.name, r, path));
        answered.push(e);
      },
      (err) => found.push({ verdict: { kind: "error", reason: `engine ${e.name} failed: ${(err as Error).message}` }, partId: "", engine: e.name }),
    ).finally(() => {
      if (--left === 0 || (chain.mode === "first-detection" && (stop() || found.some((f) => f.verdict.kind === "infected")))) resolve();
    });
  }
  await promise;
  return { findings: [...found], answered: [...answered] };
}

/**
 * The built-in result with the message engines' findings added; the verdict is the worst of all.
 * An unsupported archive member that an engine which answered is known to read (clamd: BZip2,
 * Implode…) was scanned there: that finding goes. Others stay, whatever the engine said.
 */
export function mergeFindings(base: ScanResult, extra: EngineScan): ScanResult {
  const covered = (f: Finding) => f.verdict.kind === "unscanned" && f.verdict.reason === "unsupported" &&
    extra.answered.some((e) => e.reads?.((f.verdict as { detail?: string }).detail ?? "") ?? false);
  const own = base.findings.filter((f) => !covered(f));
  if (extra.findings.length === 0 && own.length === base.findings.length) return base;
  const all = [...own, ...extra.findings];
  const findings = [...all.filter((f) => f.verdict.kind === "infected"), ...all.filter((f) => f.verdict.kind !== "infected")];
  let verdict: Verdict = { kind: "clean" };
  for (const f of all) verdict = worse(verdict, f.verdict);
  return { ...base, verdict, findings };
}

/**
 * A whole scan on this thread (the CLI): the pipeline and the message engines concurrently, merged.
 * In first-detection mode a built-in detection makes the engines' answers not count.
 */
export async function scanMessageWithChain(raw: Uint8Array, ctx: ScanContext, chain: Chain): Promise<{ result: ScanResult; tree: MimePart }> {
  let builtinFound = false;
  const external = scanWithEngines(chain, raw, () => builtinFound);
  const scanned = await scanMessage(raw, ctx);
  builtinFound = scanned.result.verdict.kind === "infected";
  const extra = await external;
  if (chain.mode === "first-detection" && builtinFound) return scanned;
  return { result: mergeFindings(scanned.result, extra), tree: scanned.tree };
}
