// The action policy: the slice of configuration that decides what happens to a scanned message.
// Kept apart from Config so callers (CLI --clean-to, proxy) can override one field without a config.
import type { Action, Config, ErrorAction, UnscannedAction } from "../config/types.ts";

export interface ActionPolicy {
  action: Action;
  onUnscanned: UnscannedAction;
  onError: ErrorAction;
  tagClean: boolean;
  subjectTag: string;
  /** For X-Virus-Scanned, e.g. "mailsentry 0.1.0". */
  product: string;
}

export function policyFromConfig(c: Config, product: string): ActionPolicy {
  return {
    action: c.action,
    onUnscanned: c.onUnscanned,
    onError: c.onError,
    tagClean: c.tagClean,
    subjectTag: c.subjectTag,
    product,
  };
}

/**
 * Whether an infected message's original goes to quarantine. Only `ignore` (delivered as is) and
 * an explicit `delete` (the administrator chose to lose it) skip it; `clean` keeps the original too,
 * because a notice part is all the client will ever see of the removed attachment.
 */
export function quarantinesInfected(action: Action): boolean {
  return action !== "ignore" && action !== "delete";
}
