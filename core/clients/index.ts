// The mail clients mailsentry can set up, in the order they are listed.
import { fetchmail } from "./fetchmail.ts";
import { mbsync } from "./mbsync.ts";
import { thunderbird } from "./thunderbird.ts";
import type { ClientFormat, ClientKind } from "./types.ts";

export const FORMATS: readonly ClientFormat[] = [thunderbird, fetchmail, mbsync];

export const CLIENT_KINDS: readonly ClientKind[] = FORMATS.map((f) => f.kind);

export function formatOf(kind: ClientKind): ClientFormat {
  return FORMATS.find((f) => f.kind === kind)!;
}
