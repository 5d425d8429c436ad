// The action policy: the slice of configuration that decides what happens to a scanned message.
// Kept apart from Config so callers (CLI --clean-to, proxy) can override one field without a config.
import { quarantineIdOfBytes } from "./quarantine-id.ts";
import type { Action, Config, ErrorAction, UnscannedAction, UnscannedPolicy } from "../config/types.ts";
import type { Finding } from "../scan/verdict.ts";
import type { KeptNotes } from "./notice.ts";

export interface ActionPolicy {
  action: Action;
  onUnscanned: UnscannedPolicy;
  onError: ErrorAction;
  tagClean: boolean;
  subjectTag: string;
  /** For X-Virus-Scanned, e.g. "mailsentry 0.1.0". */
  product: string;
  /**
   * Where the original of a replaced or cleaned message survives, for the notice's last line: the
   * proxy keeps it in quarantine; the CLI never modifies its input, so the original stays there.
   */
  originalKept: "quarantine" | "source";
  /**
   * A cleaned copy or notice message has exactly the original's octet count (padded, or cut to fit
   * when the original is tiny): the proxy has announced that size before the body (POP3 LIST,
   * IMAP RFC822.SIZE and chunked fetches), and clients throw away or truncate a body that
   * disagrees. The CLI writes files nobody announced, so it keeps copies unpadded.
   */
  sameSize: boolean;
  /**
   * Whether header-only verdict tags (tagClean, the unscanned and error tags, an ignored
   * detection) are written. IMAP turns them off: a message that is otherwise delivered unchanged
   * must keep its size and every byte, and there is no room to pad a copy that only grows.
   */
  addTags: boolean;
}

/**
 * The notice's closing sentence for where the original is kept; a quarantined one names its id
 * (derived from the original's bytes, so the notice is the same wherever it is made).
 */
export function originalKeptNote(kept: ActionPolicy["originalKept"], raw: Uint8Array): KeptNotes {
  if (kept !== "quarantine") return { note: "The original message is unchanged in the scanned file.", short: null };
  const id = quarantineIdOfBytes(raw);
  return { note: `The original message was kept in quarantine as ${id}.`, short: `Quarantine id: ${id}` };
}

/** The policy of a configuration; over lets a protocol or command set what is its own (sameSize, addTags, originalKept). */
export function policyFromConfig(c: Config, product: string, over: Partial<Pick<ActionPolicy, "sameSize" | "addTags" | "originalKept">> = {}): ActionPolicy {
  return {
    action: c.action,
    onUnscanned: c.onUnscanned,
    onError: c.onError,
    tagClean: c.tagClean,
    subjectTag: c.subjectTag,
    product,
    originalKept: "quarantine",
    sameSize: false,
    addTags: true,
    ...over,
  };
}

/** How far each unscanned action keeps a message from the client as it is; the strictest reason wins. */
const STRICTNESS: Record<UnscannedAction, number> = { deliver: 0, tempfail: 1, quarantine: 2, delete: 3 };

/**
 * The action for an unscanned result and the finding that decided it: every unscanned finding's
 * reason is looked up and the strictest action wins, so an encrypted archive (delivered) beside a
 * nesting bomb (quarantined) cannot carry the bomb through.
 */
export function unscannedDecision(policy: UnscannedPolicy, findings: readonly Finding[]): { action: UnscannedAction; finding: Finding | null } {
  let best: { action: UnscannedAction; finding: Finding | null } = { action: "deliver", finding: null };
  for (const f of findings) {
    if (f.verdict.kind !== "unscanned") continue;
    const action = policy[f.verdict.reason];
    if (best.finding === null || STRICTNESS[action] > STRICTNESS[best.action]) best = { action, finding: f };
  }
  return best;
}

/**
 * Whether an infected message's original goes to quarantine. Only `ignore` (delivered as is) and
 * an explicit `delete` (the administrator chose to lose it) skip it; `clean` keeps the original too,
 * because a notice part is all the client will ever see of the removed attachment.
 */
export function quarantinesInfected(action: Action): boolean {
  return action !== "ignore" && action !== "delete";
}
