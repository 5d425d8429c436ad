// Editing a client format's text the way core/clients/apply.ts does, for the format unit tests:
// the settings in turn, each key's old value kept, so that writing the old values back (in any
// order) must give the file back byte for byte.
import { expect } from "bun:test";
import type { ClientAccount, ClientFormat, Setting } from "../../core/clients/types.ts";

/** The one account in text (fails the test when there are more or none). */
export function onlyAccount(format: ClientFormat, text: string, file: string): ClientAccount {
  const all = format.accounts(text, file);
  expect(all).toHaveLength(1);
  return all[0]!;
}

/** Applies settings in order; old holds each key's value before, in the same order. */
export function applySettings(format: ClientFormat, text: string, ref: string, settings: Setting[]): { text: string; old: Setting[] } {
  const old = settings.map((s) => ({ key: s.key, value: format.get(text, ref, s.key) }));
  for (const s of settings) text = format.set(text, ref, s.key, s.value);
  return { text, old };
}

/** Writes the old values back in the order of `order` (indexes into old; default newest first, as revert does). */
export function revertSettings(format: ClientFormat, text: string, ref: string, old: Setting[], order = old.map((_, i) => i).reverse()): string {
  for (const i of order) text = format.set(text, ref, old[i]!.key, old[i]!.value);
  return text;
}
