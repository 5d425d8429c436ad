// One-line, user-facing descriptions of findings and verdicts for notices and X-Virus-Status.
import type { Finding, Verdict } from "../scan/verdict.ts";

/** "Eicar-Test-Signature in attachment "a.zip" › eicar.com" */
export function describeFinding(f: Finding): string {
  const v = f.verdict;
  switch (v.kind) {
    case "infected": return v.path ? `${v.name} in ${v.path}` : v.name;
    case "unscanned": return v.path ? `not scanned (${v.reason}) at ${v.path}` : `not scanned (${v.reason})`;
    case "error": return "scanner error";
  }
}

/** Distinct detection names, in order, for "Infected (<names>)". */
export function detectionNames(findings: readonly Finding[], verdict: Verdict): string {
  const names = new Set<string>();
  for (const f of findings) if (f.verdict.kind === "infected") names.add(f.verdict.name);
  if (names.size === 0 && verdict.kind === "infected") names.add(verdict.name);
  const list = [...names];
  return list.length > 5 ? `${list.slice(0, 5).join(", ")}, …` : list.join(", ");
}
