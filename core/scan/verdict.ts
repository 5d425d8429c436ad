// What a scan found, as data. The action taken on it is decided elsewhere (core/rewrite), from
// configuration; a verdict never says what to do. Over-limit is its own verdict, never "clean".

import type { UnscannedReason } from "../limits.ts";

export type { UnscannedReason };

export type Verdict =
  | { kind: "clean" }
  /** name: the detection (e.g. "Eicar-Test-Signature"); path: where, e.g. `attachment "a.zip" › inner.zip › eicar.com`. */
  | { kind: "infected"; name: string; path: string }
  /** detail: what the reason rests on (an unsupported member's compression method, an engine's limit). */
  | { kind: "unscanned"; reason: UnscannedReason; path: string; detail?: string }
  | { kind: "error"; reason: string };

/** One result for one scanned object. partId names the MIME part it belongs to ("" is the whole message). */
export interface Finding {
  verdict: Exclude<Verdict, { kind: "clean" }>;
  /** IMAP-style section number of the top-level MIME part that holds the object: "" whole message/body, "1", "2.1", … */
  partId: string;
  /** The engine that said it ("builtin", "clamd", "icap"); absent for what the pipeline itself found (limits). */
  engine?: string;
}

export interface ScanResult {
  /** The worst verdict over all objects: infected > error > unscanned > clean. */
  verdict: Verdict;
  /** Every non-clean object; infected first. */
  findings: Finding[];
  /** Bytes handed to engines. */
  bytesScanned: number;
  /** Objects handed to engines. */
  objects: number;
}

const RANK: Record<Verdict["kind"], number> = { clean: 0, unscanned: 1, error: 2, infected: 3 };

/** The worse of two verdicts by the order infected > error > unscanned > clean. */
export function worse(a: Verdict, b: Verdict): Verdict {
  return RANK[b.kind] > RANK[a.kind] ? b : a;
}

/** A one-line human description: "infected: Eicar-Test-Signature in attachment "x.zip" › eicar.com". */
export function describeVerdict(v: Verdict): string {
  switch (v.kind) {
    case "clean": return "clean";
    case "infected": return `infected: ${v.name}${v.path ? ` in ${v.path}` : ""}`;
    case "unscanned": return `unscanned (${v.reason}${v.detail ? `: ${v.detail}` : ""})${v.path ? ` at ${v.path}` : ""}`;
    case "error": return `error: ${v.reason}`;
  }
}
