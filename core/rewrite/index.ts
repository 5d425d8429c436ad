// Applies the configured action to a scanned message: deliver as is, tag, clean (replace infected
// parts by notices), replace by a notice message, or ask for a temporary failure. Pure: no I/O —
// the caller stores the original in quarantine when told to, before delivering.
import { walkParts } from "../mime/parse.ts";
import type { MimePart } from "../mime/types.ts";
import type { ScanResult } from "../scan/verdict.ts";
import { cleanTargets, noticeItem, replacePartEdit } from "./clean.ts";
import { detectionNames, describeFinding } from "./describe.ts";
import { encodeHeaderText, safeText, statusEdits } from "./headers.ts";
import { noticeMessage } from "./notice.ts";
import { ORIGINAL_KEPT_NOTE, quarantinesInfected, type ActionPolicy } from "./policy.ts";
import { lineEnding, splice } from "./splice.ts";

export { policyFromConfig, type ActionPolicy } from "./policy.ts";

export interface RewriteOutcome {
  /** tempfail: the protocol layer answers -ERR [SYS/TEMP] / NO [UNAVAILABLE]. */
  disposition: "deliver" | "tempfail";
  /** What the client gets (the input itself when unchanged). */
  bytes: Uint8Array;
  applied: "none" | "tag" | "clean" | "replace";
  /** The caller must store the original in quarantine BEFORE delivering. */
  quarantine: boolean;
  /** What was taken out: cleaned parts, or for a replaced message its findings (partId "" for the whole message). */
  removed: { partId: string; filename: string | null; detection: string }[];
}

interface Ctx {
  raw: Uint8Array;
  tree: MimePart;
  result: ScanResult;
  policy: ActionPolicy;
  eol: "\r\n" | "\n";
}

export function applyPolicy(raw: Uint8Array, tree: MimePart, result: ScanResult, policy: ActionPolicy): RewriteOutcome {
  const ctx: Ctx = { raw, tree, result, policy, eol: lineEnding(raw, tree.start, tree.headerEnd > tree.start ? tree.headerEnd : raw.length) };
  const v = result.verdict;
  switch (v.kind) {
    case "clean":
      return policy.tagClean ? tag(ctx, "Clean", false) : unchanged(raw, "deliver");
    case "infected":
      return infected(ctx);
    case "unscanned":
      return unscanned(ctx, v.reason, v.path);
    case "error":
      return scanError(ctx);
  }
}

function unscanned(ctx: Ctx, reason: string, path: string): RewriteOutcome {
  const status = `Unscanned (${reason})`;
  switch (ctx.policy.onUnscanned) {
    case "deliver":
      return tag(ctx, status, false);
    case "tempfail":
      return unchanged(ctx.raw, "tempfail");
    case "delete":
    case "quarantine":
      return replace(ctx, status, false, ctx.policy.onUnscanned === "quarantine", [
        `mailsentry could not scan this message completely (${reason}${path ? ` at ${safeText(path)}` : ""}),`,
        "so it was withheld as configured.",
      ]);
  }
}

function scanError(ctx: Ctx): RewriteOutcome {
  switch (ctx.policy.onError) {
    case "deliver":
      return tag(ctx, "Error", false);
    case "tempfail":
      return unchanged(ctx.raw, "tempfail");
    case "delete":
      // The internal reason (e.g. which clamd failed) stays in the log, never in the client's mail.
      return replace(ctx, "Error", false, false, ["mailsentry could not scan this message (scanner error), so it was withheld as configured."]);
  }
}

function unchanged(raw: Uint8Array, disposition: RewriteOutcome["disposition"]): RewriteOutcome {
  return { disposition, bytes: raw, applied: "none", quarantine: false, removed: [] };
}

function tag({ raw, tree, policy, eol }: Ctx, status: string, infected: boolean): RewriteOutcome {
  const edits = statusEdits(raw, tree, eol, { status, product: policy.product, subjectTag: infected ? subjectTag(policy) : "" });
  return { disposition: "deliver", bytes: splice(raw, edits), applied: "tag", quarantine: false, removed: [] };
}

function subjectTag(p: ActionPolicy): string {
  return p.subjectTag ? encodeHeaderText(p.subjectTag) : "";
}

function infected(ctx: Ctx): RewriteOutcome {
  const { raw, tree, result, policy, eol } = ctx;
  const names = detectionNames(result.findings, result.verdict);
  const quarantine = quarantinesInfected(policy.action);
  if (policy.action === "ignore") return tag(ctx, `Infected (${names})`, true);
  const targets = policy.action === "clean" || policy.action === "auto-clean" ? cleanTargets(tree, result.findings) : null;
  if (targets) {
    const edits = statusEdits(raw, tree, eol, { status: `Cleaned (${names})`, product: policy.product, subjectTag: subjectTag(policy) });
    const keptNote = quarantine ? ORIGINAL_KEPT_NOTE[policy.originalKept] : null;
    for (const t of targets) edits.push(replacePartEdit(raw, t, eol, keptNote));
    return {
      disposition: "deliver",
      bytes: splice(raw, edits),
      applied: "clean",
      quarantine,
      removed: targets.map((t) => ({ partId: t.part.id, filename: t.part.filename ?? null, detection: noticeItem(t).detections.join("; ") })),
    };
  }
  const found = result.findings.filter((f) => f.verdict.kind === "infected");
  const lines = [
    "mailsentry removed this message because it contained malware.",
    "",
    ...(found.length ? found.map((f) => `Detection: ${safeText(describeFinding(f), 400)}`) : [`Detection: ${safeText(names)}`]),
  ];
  return replace(ctx, `Infected (${names})`, true, quarantine, lines);
}

function replace(ctx: Ctx, status: string, infected: boolean, quarantine: boolean, lines: string[]): RewriteOutcome {
  const { raw, tree, result, policy, eol } = ctx;
  if (quarantine) lines = [...lines, "", ORIGINAL_KEPT_NOTE[policy.originalKept]];
  const bytes = noticeMessage(raw, tree, eol, { status, product: policy.product, subjectTag: infected ? subjectTag(policy) : "", lines });
  const relevant = result.findings.filter((f) => (infected ? f.verdict.kind === "infected" : f.verdict.kind !== "infected"));
  const removed = relevant.length
    ? relevant.map((f) => ({ partId: f.partId, filename: findFilename(tree, f.partId), detection: describeFinding(f) }))
    : [{ partId: "", filename: null, detection: status }];
  return { disposition: "deliver", bytes, applied: "replace", quarantine, removed };
}

function findFilename(tree: MimePart, id: string): string | null {
  for (const p of walkParts(tree)) if (p.id === id) return p.filename ?? null;
  return null;
}
