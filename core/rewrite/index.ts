// Applies the configured action to a scanned message: deliver as is, tag, clean (replace infected
// parts by notices), replace by a notice message, or ask for a temporary failure. Pure: no I/O —
// the caller stores the original in quarantine when told to, before delivering.
import { walkParts } from "../mime/parse.ts";
import type { MimePart } from "../mime/types.ts";
import type { ScanResult } from "../scan/verdict.ts";
import { cleanTargets, noticeItem, replacePartEdit, type CleanTarget } from "./clean.ts";
import { detectionNames, describeFinding } from "./describe.ts";
import { cutMessage, fitDrafts, type Draft } from "./fit.ts";
import { encodeHeaderText, safeText, statusEdits } from "./headers.ts";
import { decorated, DETAILS, noticeMessage, partNotice, type Detail, type KeptNotes, type NoticeText } from "./notice.ts";
import { NO_PAD } from "./padding.ts";
import { originalKeptNote, quarantinesInfected, unscannedDecision, type ActionPolicy } from "./policy.ts";
import { concat, lineEnding, spliceChunks } from "./splice.ts";

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

/** The outcome with the copy still in pieces (views of raw and new bytes): chunks null means unchanged. */
export type RewriteDraft = Omit<RewriteOutcome, "bytes"> & { chunks: Uint8Array[] | null };

export function applyPolicy(raw: Uint8Array, tree: MimePart, result: ScanResult, policy: ActionPolicy): RewriteOutcome {
  const { chunks, ...rest } = applyPolicyChunks(raw, tree, result, policy);
  return { ...rest, bytes: chunks === null ? raw : concat(chunks) };
}

/**
 * applyPolicy without joining the copy: a message too big for memory is written out piece by piece
 * (its untouched ranges are views of the mapped original), never built whole.
 */
export function applyPolicyChunks(raw: Uint8Array, tree: MimePart, result: ScanResult, policy: ActionPolicy): RewriteDraft {
  const ctx: Ctx = { raw, tree, result, policy, eol: lineEnding(raw, tree.start, tree.headerEnd > tree.start ? tree.headerEnd : raw.length) };
  const v = result.verdict;
  switch (v.kind) {
    case "clean":
      return policy.tagClean ? tag(ctx, "Clean", false) : unchanged(raw, "deliver");
    case "infected":
      return infected(ctx);
    case "unscanned":
      return unscanned(ctx);
    case "error":
      return scanError(ctx);
  }
}

function unscanned(ctx: Ctx): RewriteDraft {
  const { action, finding } = unscannedDecision(ctx.policy.onUnscanned, ctx.result.findings);
  const v = finding?.verdict ?? ctx.result.verdict;
  const reason = v.kind === "unscanned" ? v.reason : "unknown";
  const path = v.kind === "unscanned" ? v.path : "";
  const status = `Unscanned (${reason})`;
  switch (action) {
    case "deliver":
      return tag(ctx, status, false);
    case "tempfail":
      return unchanged(ctx.raw, "tempfail");
    case "delete":
    case "quarantine": {
      const quarantine = action === "quarantine";
      const lines = [`mailsentry could not scan this message completely (${reason}${path ? ` at ${safeText(path)}` : ""}),`, "so it was withheld as configured."];
      return replace(ctx, status, false, quarantine, withheldText(lines, quarantine, ctx, "mailsentry withheld this message (not scanned)."));
    }
  }
}

function scanError(ctx: Ctx): RewriteDraft {
  switch (ctx.policy.onError) {
    case "deliver":
      return tag(ctx, "Error", false);
    case "tempfail":
      return unchanged(ctx.raw, "tempfail");
    case "delete":
      // The internal reason (e.g. which clamd failed) stays in the log, never in the client's mail.
      return replace(ctx, "Error", false, false, withheldText(["mailsentry could not scan this message (scanner error), so it was withheld as configured."], false, ctx, "mailsentry withheld this message (scan error)."));
  }
}

function unchanged(_raw: Uint8Array, disposition: RewriteOutcome["disposition"]): RewriteDraft {
  return { disposition, chunks: null, applied: "none", quarantine: false, removed: [] };
}

function tag({ raw, tree, policy, eol }: Ctx, status: string, infected: boolean): RewriteDraft {
  // Over IMAP a tag would be the only change, and it could not keep the size: deliver as is.
  if (!policy.addTags) return unchanged(raw, "deliver");
  const edits = statusEdits(raw, tree, eol, { status, product: policy.product, subjectTag: infected ? subjectTag(policy) : "" });
  return { disposition: "deliver", chunks: edits.length ? spliceChunks(raw, edits) : null, applied: "tag", quarantine: false, removed: [] };
}

function subjectTag(p: ActionPolicy): string {
  return p.subjectTag ? encodeHeaderText(p.subjectTag) : "";
}

function infected(ctx: Ctx): RewriteDraft {
  const { tree, result, policy } = ctx;
  const names = detectionNames(result.findings, result.verdict);
  const quarantine = quarantinesInfected(policy.action);
  if (policy.action === "ignore") return tag(ctx, `Infected (${names})`, true);
  const targets = policy.action === "clean" || policy.action === "auto-clean" ? cleanTargets(tree, result.findings) : null;
  const found = result.findings.filter((f) => f.verdict.kind === "infected");
  const text: NoticeText = {
    lead: ["mailsentry removed this message because it contained malware."],
    extra: [],
    detections: found.length ? found.map((f) => `Detection: ${safeText(describeFinding(f), 400)}`) : [`Detection: ${safeText(names)}`],
    names: [`Detection: ${safeText(names)}`],
    ...keptFields(quarantine ? originalKeptNote(policy.originalKept, ctx.raw) : null),
    minimal: "mailsentry removed this message (malware).",
  };
  if (targets) {
    const cleaned = clean(ctx, targets, names, quarantine);
    // A cleaned copy that cannot keep the size even with one-line notices becomes a notice message.
    if (cleaned) return cleaned;
  }
  return replace(ctx, `Infected (${names})`, true, quarantine, text);
}

/** The copy with each target replaced in place by its notice; null when sameSize finds no draft that fits. */
function clean(ctx: Ctx, targets: CleanTarget[], names: string, quarantine: boolean): RewriteDraft | null {
  const { raw, tree, policy, eol } = ctx;
  const keptNote = quarantine ? originalKeptNote(policy.originalKept, ctx.raw) : null;
  const texts = targets.map((t) => partNotice(noticeItem(t), keptNote));
  const draftAt = (detail: Detail): Draft => (pad) => {
    const deco = decorated(detail);
    const edits = statusEdits(raw, tree, eol, {
      status: `Cleaned (${names})`,
      product: deco ? policy.product : null,
      subjectTag: deco ? subjectTag(policy) : "",
    });
    // After our X-Virus-* fields (insertions at one offset keep their order); a preamble goes
    // before the root's first boundary, where every reader skips it (the root is a multipart:
    // cleanTargets replaces only parts below it).
    if (pad.field.length) edits.push({ start: tree.start, end: tree.start, bytes: pad.field });
    if (pad.preamble) edits.push({ start: tree.bodyStart, end: tree.bodyStart, bytes: pad.preamble });
    targets.forEach((t, i) => edits.push(replacePartEdit(raw, t, eol, texts[i]!, detail, i === 0 ? pad.slack : 0)));
    return spliceChunks(raw, edits);
  };
  const removed = targets.map((t) => ({ partId: t.part.id, filename: t.part.filename ?? null, detection: noticeItem(t).detections.join("; ") }));
  const out = policy.sameSize ? fitDrafts(DETAILS.map(draftAt), raw.length, eol) : draftAt("full")(NO_PAD);
  if (!out) return null;
  return { disposition: "deliver", chunks: out, applied: "clean", quarantine, removed };
}

function replace(ctx: Ctx, status: string, infected: boolean, quarantine: boolean, text: NoticeText): RewriteDraft {
  const { raw, tree, result, policy, eol } = ctx;
  const n = { status, product: policy.product, subjectTag: infected ? subjectTag(policy) : "", text };
  const draftAt = (detail: Detail): Draft => (pad) => noticeMessage(raw, tree, eol, n, detail, pad);
  const chunks = policy.sameSize
    ? (fitDrafts(DETAILS.map(draftAt), raw.length, eol) ?? [cutMessage(raw.length, status, text.minimal, eol)])
    : draftAt("full")(NO_PAD);
  const relevant = result.findings.filter((f) => (infected ? f.verdict.kind === "infected" : f.verdict.kind !== "infected"));
  const removed = relevant.length
    ? relevant.map((f) => ({ partId: f.partId, filename: findFilename(tree, f.partId), detection: describeFinding(f) }))
    : [{ partId: "", filename: null, detection: status }];
  return { disposition: "deliver", chunks, applied: "replace", quarantine, removed };
}

/** Notice text for a message withheld for a reason other than malware. */
function withheldText(lines: string[], quarantine: boolean, ctx: Ctx, minimal: string): NoticeText {
  return { lead: lines, extra: [], detections: [], names: [], ...keptFields(quarantine ? originalKeptNote(ctx.policy.originalKept, ctx.raw) : null), minimal };
}

function keptFields(k: KeptNotes | null): Pick<NoticeText, "kept" | "keptShort"> {
  return { kept: k?.note ?? null, keptShort: k?.short ?? null };
}

function findFilename(tree: MimePart, id: string): string | null {
  for (const p of walkParts(tree)) if (p.id === id) return p.filename ?? null;
  return null;
}
