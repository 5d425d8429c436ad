// The record of every value `clients apply` changed (file, key, old, new) and every CA it trusted,
// kept in <state>/clients/journal.json. Revert reads it back; entries leave it once handled, so
// reverting twice does nothing the second time.
import { chmod, mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { ClientKind } from "./types.ts";

export interface JournalChange {
  client: ClientKind;
  file: string;
  ref: string;
  /** The account's name at the time, for messages. */
  label: string;
  key: string;
  old: string | null;
  new: string | null;
  at: string;
}

/** A CA certificate added to a client's own trust store (Thunderbird's NSS database). */
export interface JournalTrust {
  client: ClientKind;
  dir: string;
  nickname: string;
  at: string;
}

/** Keys renamed in a fetchmail UID list (.fetchids) so kept messages are not fetched again. */
export interface JournalRename {
  file: string;
  from: string;
  to: string;
  at: string;
}

export interface Journal {
  version: 1;
  changes: JournalChange[];
  trust: JournalTrust[];
  renames: JournalRename[];
}

export function clientsDir(stateDir: string): string {
  return join(stateDir, "clients");
}

export function journalPath(stateDir: string): string {
  return join(clientsDir(stateDir), "journal.json");
}

export async function readJournal(stateDir: string): Promise<Journal> {
  const file = journalPath(stateDir);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return { version: 1, changes: [], trust: [], renames: [] };
    throw e;
  }
  let j: Partial<Journal>;
  try {
    j = JSON.parse(text);
  } catch {
    // Never guess at what to put back: a broken journal stops revert with its path.
    throw new Error(`${file}: not valid JSON; fix or remove it (the backups beside it hold the original files)`);
  }
  const list = <T>(v: T[] | undefined): T[] => (Array.isArray(v) ? v : []);
  return { version: 1, changes: list(j.changes), trust: list(j.trust), renames: list(j.renames) };
}

export async function writeJournal(stateDir: string, j: Journal): Promise<void> {
  const dir = clientsDir(stateDir);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const file = journalPath(stateDir);
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(j, null, 2)}\n`, { mode: 0o600 });
  await chmod(tmp, 0o600);
  await rename(tmp, file);
}
