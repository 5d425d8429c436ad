// Detect, apply and revert: the one place that reads and writes mail-client files. Every client
// gets the same safety: refuse while the client holds the file, refuse when the file changed since
// it was read, back the file up, write it atomically (through symlinks, keeping its mode), and
// journal each value so revert puts back exactly the old one, and only where ours is still there.
import { chmod, copyFile, mkdir, open, readFile, realpath, rename, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { clientsDir, readJournal, writeJournal, type JournalChange } from "./journal.ts";
import { FORMATS, formatOf } from "./index.ts";
import { fetchidsFile, fetchidsKeys, rekeyFetchids } from "./fetchmail.ts";
import { trustCa, untrustCa } from "./thunderbird.ts";
import { authorityMoves, folderFiles, folderMoves, getValue as folderGet, setValue as folderSet } from "./thunderbird-folders.ts";
import { routedUser } from "./route.ts";
import type { ClientAccount, ClientFormat, ClientKind, ProxyTarget } from "./types.ts";

/** Thunderbird files outside prefs.js that hold folder URIs (filter targets, saved searches). */
const FOLDER_FILES = new Set(["msgFilterRules.dat", "virtualFolders.dat"]);

/** How a journalled file is read and edited: its client's format, or the folder-URI line editor. */
function editorFor(client: ClientKind, file: string): Pick<ClientFormat, "get" | "set"> {
  if (client === "thunderbird" && FOLDER_FILES.has(basename(file))) return { get: (t, _r, k) => folderGet(t, k), set: (t, _r, k, v) => folderSet(t, k, v) };
  return formatOf(client);
}

/** The name our CA gets in a client's own trust store. */
export const CA_NICKNAME = "mailsentry local CA";

/** An id a user can type: client, the profile or file it lives in, and its ref ("thunderbird:default:server2"). */
export function accountId(a: Pick<ClientAccount, "client" | "file" | "ref">): string {
  const where = a.client === "thunderbird" ? basename(dirname(a.file)) : basename(a.file);
  return `${a.client}:${where}:${a.ref.replace(/\s+/g, "-")}`;
}

export interface FoundFile {
  client: ClientKind;
  file: string;
  accounts: ClientAccount[];
  /** The text the accounts were read from: what a write expects to find still there. */
  text: string;
  /** Why the file could not be read, or null. */
  error: string | null;
}

/** Every config file of the chosen clients with its POP3/IMAP accounts. */
export async function detectClients(env: NodeJS.ProcessEnv, kinds: readonly ClientKind[] = FORMATS.map((f) => f.kind)): Promise<FoundFile[]> {
  const out: FoundFile[] = [];
  for (const fmt of FORMATS) {
    if (!kinds.includes(fmt.kind)) continue;
    for (const file of await fmt.findFiles(env)) {
      try {
        const text = await readFile(file, "utf8");
        out.push({ client: fmt.kind, file, accounts: fmt.accounts(text, file), text, error: null });
      } catch (e) {
        out.push({ client: fmt.kind, file, accounts: [], text: "", error: (e as Error).message });
      }
    }
  }
  return out;
}

/** One value changed (apply) or put back (revert). */
export interface ValueChange {
  account: string;
  key: string;
  from: string | null;
  to: string | null;
}

export interface FileOutcome {
  client: ClientKind;
  file: string;
  /** Values written. */
  changes: ValueChange[];
  /** Accounts (or values, on revert) left alone, and why. */
  skipped: { account: string; reason: string }[];
  /** Why nothing was written to this file, or null. */
  refused: string | null;
  /** Copy of the file as it was before this run wrote it. */
  backup: string | null;
  /** The CA in the client's own store: added/removed, already so, or what the user must do. */
  trust: string | null;
  /** Other files kept in step (fetchmail's UID list). */
  notes: string[];
}

export interface ApplyOptions {
  env: NodeJS.ProcessEnv;
  stateDir: string;
  target: ProxyTarget;
  kinds?: readonly ClientKind[];
  /** Account ids or labels; empty: every account found. */
  accounts?: readonly string[];
  /** Report what would change, write nothing. */
  dryRun?: boolean;
}

/** Which of `wanted` match no account: a typo must not silently change nothing. */
export function unknownAccounts(found: readonly FoundFile[], wanted: readonly string[]): string[] {
  const all = found.flatMap((f) => f.accounts);
  return wanted.filter((w) => !all.some((a) => accountId(a) === w || a.label === w));
}

export async function applyClients(o: ApplyOptions): Promise<FileOutcome[]> {
  const found = await detectClients(o.env, o.kinds);
  const wanted = o.accounts ?? [];
  const journal = await readJournal(o.stateDir);
  const stamp = new Date().toISOString();
  const outcomes: FileOutcome[] = [];
  for (const f of found) {
    const outcome: FileOutcome = { client: f.client, file: f.file, changes: [], skipped: [], refused: f.error, backup: null, trust: null, notes: [] };
    outcomes.push(outcome);
    if (f.error) continue;
    const chosen = f.accounts.filter((a) => wanted.length === 0 || wanted.includes(accountId(a)) || wanted.includes(a.label));
    if (chosen.length === 0) continue;
    const fmt = formatOf(f.client);
    const busy = (await fmt.busy?.(f.file)) ?? null;
    if (busy) {
      outcome.refused = busy;
      continue;
    }
    const original = f.text;
    let text = original;
    const journalled: JournalChange[] = [];
    let needsCa = false;
    for (const a of chosen) {
      const id = accountId(a);
      if (a.unsupported) { outcome.skipped.push({ account: id, reason: a.unsupported }); continue; }
      if (a.proxied) { outcome.skipped.push({ account: id, reason: "already goes through mailsentry" }); continue; }
      let plan;
      try {
        plan = fmt.plan(a, o.target, text);
      } catch (e) {
        outcome.skipped.push({ account: id, reason: (e as Error).message });
        continue;
      }
      for (const s of plan) {
        const old = fmt.get(text, a.ref, s.key);
        if (old === s.value) continue;
        text = fmt.set(text, a.ref, s.key, s.value);
        outcome.changes.push({ account: id, key: s.key, from: old, to: s.value });
        journalled.push({ client: f.client, file: f.file, ref: a.ref, label: a.label, key: s.key, old, new: s.value, at: stamp });
      }
      if (a.security !== "plain") needsCa = true;
    }
    if (o.dryRun || text === original) continue;
    try {
      outcome.backup = await writeChecked(f.file, original, text, o.stateDir, stamp, f.client);
    } catch (e) {
      outcome.refused = (e as Error).message;
      outcome.changes = [];
      continue;
    }
    journal.changes.push(...journalled);
    // Journalled as soon as the file is written: a later failure must not lose what revert needs.
    await writeJournal(o.stateDir, journal);
    if (f.client === "fetchmail") {
      const refs = [...new Set(journalled.map((c) => c.ref))];
      const renames = refs.flatMap((ref) => zip(fetchidsKeys(original, ref), fetchidsKeys(text, ref)));
      const idfile = fetchidsFile(text, f.file, o.env);
      if (await renameKeys(idfile, renames)) {
        journal.renames.push(...renames.map(([from, to]) => ({ file: idfile, from, to, at: stamp })));
        await writeJournal(o.stateDir, journal);
        outcome.notes.push(`${idfile}: the list of messages already seen now names the routed account, so kept messages are not fetched again`);
      }
    }
    if (f.client === "thunderbird") {
      const moved = chosen.filter((a) => journalled.some((c) => c.ref === a.ref));
      await moveFolderUris(f.file, original, moved, o, stamp, journal, outcome);
    }
    if (f.client === "thunderbird" && needsCa) {
      const dir = dirname(f.file);
      let r: Awaited<ReturnType<typeof trustCa>>;
      try {
        r = await trustCa(dir, o.target.caFile, CA_NICKNAME);
      } catch (e) {
        // The accounts are set up; only the trust step is left to the user.
        outcome.trust = `could not add ${CA_NICKNAME} (${(e as Error).message}): import ${o.target.caFile} in Thunderbird's certificate manager`;
        continue;
      }
      if (r === "added") {
        journal.trust.push({ client: "thunderbird", dir, nickname: CA_NICKNAME, at: stamp });
        await writeJournal(o.stateDir, journal);
        outcome.trust = `trusted ${CA_NICKNAME} in the profile's certificate store`;
      } else if (r === "present") outcome.trust = `${CA_NICKNAME} already trusted in this profile`;
      else outcome.trust = `certutil (Debian: libnss3-tools) is not installed: in Thunderbird, Settings › Privacy & Security › Manage Certificates › Authorities › Import ${o.target.caFile}, and tick "Trust this CA to identify websites"`;
    }
  }
  return outcomes;
}

export interface RevertOptions {
  env: NodeJS.ProcessEnv;
  stateDir: string;
  kinds?: readonly ClientKind[];
}

/**
 * Puts back every journalled value whose current value is still the one apply wrote (a value the
 * user changed since is left as it is, with a warning), newest first, and removes trusted CAs.
 */
export async function revertClients(o: RevertOptions): Promise<FileOutcome[]> {
  const journal = await readJournal(o.stateDir);
  const kinds = o.kinds ?? FORMATS.map((f) => f.kind);
  const stamp = new Date().toISOString();
  const files = [...new Set(journal.changes.filter((c) => kinds.includes(c.client)).map((c) => c.file))];
  const outcomes: FileOutcome[] = [];
  for (const file of files) {
    const entries = journal.changes.filter((c) => c.file === file);
    const client = entries[0]!.client;
    const outcome: FileOutcome = { client, file, changes: [], skipped: [], refused: null, backup: null, trust: null, notes: [] };
    outcomes.push(outcome);
    const fmt = editorFor(client, file);
    // A folder file's entries name its profile (ref): Thunderbird's lock is checked there.
    const busyFile = FOLDER_FILES.has(basename(file)) && client === "thunderbird" ? join(entries[0]!.ref, "prefs.js") : file;
    let original: string;
    try {
      original = await readFile(file, "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") {
        outcome.refused = (e as Error).message;
        continue;
      }
      outcome.skipped.push({ account: "(all)", reason: "the file is gone; nothing to put back" });
      journal.changes = journal.changes.filter((c) => c.file !== file);
      continue;
    }
    const busy = (await formatOf(client).busy?.(busyFile)) ?? null;
    if (busy) {
      outcome.refused = busy;
      continue;
    }
    let text = original;
    for (const c of [...entries].reverse()) {
      const id = accountId(c);
      const now = fmt.get(text, c.ref, c.key);
      if (now !== c.new) {
        outcome.skipped.push({ account: id, reason: `${c.key} is ${now ?? "unset"} now, not the ${c.new ?? "unset"} mailsentry wrote: left as it is` });
        continue;
      }
      text = fmt.set(text, c.ref, c.key, c.old);
      outcome.changes.push({ account: id, key: c.key, from: c.new, to: c.old });
    }
    if (text !== original) {
      try {
        outcome.backup = await writeChecked(file, original, text, o.stateDir, stamp, client);
      } catch (e) {
        outcome.refused = (e as Error).message;
        outcome.changes = [];
        continue;
      }
    }
    journal.changes = journal.changes.filter((c) => c.file !== file);
    await writeJournal(o.stateDir, journal);
  }
  if (kinds.includes("fetchmail")) {
    for (const r of [...journal.renames].reverse()) {
      if (!(await renameKeys(r.file, [[r.to, r.from]]))) continue;
      const outcome = outcomes.find((x) => x.client === "fetchmail");
      const line = `${r.file}: the list of messages already seen names ${r.from} again`;
      if (outcome && !outcome.notes.includes(line)) outcome.notes.push(line);
    }
    journal.renames = [];
  }
  for (const t of journal.trust.filter((t) => kinds.includes(t.client))) {
    const r = await untrustCa(t.dir, t.nickname);
    const outcome = outcomes.find((x) => dirname(x.file) === t.dir);
    const line = r === "removed" ? `removed ${t.nickname} from the profile's certificate store` : r === "absent" ? `${t.nickname} was no longer in the profile` : `certutil is not installed: remove ${t.nickname} in Thunderbird's certificate manager`;
    if (outcome) outcome.trust = line;
    else outcomes.push({ client: t.client, file: join(t.dir, "prefs.js"), changes: [], skipped: [], refused: null, backup: null, trust: line, notes: [] });
    if (r !== "no-certutil") journal.trust = journal.trust.filter((x) => x !== t);
  }
  await writeJournal(o.stateDir, journal);
  return outcomes;
}

/**
 * Thunderbird keeps folder URIs outside prefs.js too: filter targets (msgFilterRules.dat of every
 * server, since a filter may move mail to another account) and saved searches
 * (virtualFolders.dat). They name the server by user and host, so they move with the account, or
 * Thunderbird disables a filter whose target folder is gone. Journalled per line, as prefs are.
 */
async function moveFolderUris(prefsFile: string, prefsText: string, moved: ClientAccount[], o: ApplyOptions, stamp: string, journal: Awaited<ReturnType<typeof readJournal>>, outcome: FileOutcome): Promise<void> {
  if (moved.length === 0) return;
  const profile = dirname(prefsFile);
  const moves = moved.flatMap((a) => authorityMoves(a.protocol, { user: a.user, host: a.server }, { user: routedUser(a.user, a), host: o.target.host }));
  for (const file of await folderFiles(profile, prefsText)) {
    const before = await readFile(file, "utf8");
    let text = before;
    const entries: JournalChange[] = [];
    for (const s of folderMoves(before, moves)) {
      const old = folderGet(text, s.key);
      text = folderSet(text, s.key, s.value);
      entries.push({ client: "thunderbird", file, ref: profile, label: "folder URIs", key: s.key, old, new: s.value, at: stamp });
    }
    if (text === before) continue;
    try {
      await writeChecked(file, before, text, o.stateDir, stamp, "thunderbird");
    } catch (e) {
      outcome.notes.push(`${file}: folder URIs not moved (${(e as Error).message})`);
      continue;
    }
    journal.changes.push(...entries);
    await writeJournal(o.stateDir, journal);
    outcome.notes.push(`${file}: ${entries.length} folder URI line${entries.length === 1 ? "" : "s"} moved with the account`);
  }
}

/** Pairs of fetchmail UID-list keys that differ ("" means the user has no remote name: no key). */
function zip(before: string[], after: string[]): [string, string][] {
  return before.flatMap((from, i): [string, string][] => (from && after[i] && after[i] !== from ? [[from, after[i]!]] : []));
}

/**
 * Renames keys in a fetchmail UID list, written atomically with its mode. fetchmail stores the
 * UIDs it has seen under "<remote user>@<host>", both of which routing changes: without this, an
 * account that keeps mail on the server would download every kept message again. False when there
 * was nothing to rename (no list yet, or no key in it).
 */
async function renameKeys(idfile: string, renames: readonly (readonly [string, string])[]): Promise<boolean> {
  if (renames.length === 0) return false;
  let ids: string;
  try {
    ids = await readFile(idfile, "utf8");
  } catch {
    return false;
  }
  const next = rekeyFetchids(ids, renames);
  if (next === ids) return false;
  await writeAtomic(await realpath(idfile), next);
  return true;
}

/** Writes text beside path and renames it into place, keeping path's mode (fsync'd first). */
async function writeAtomic(real: string, text: string): Promise<void> {
  const mode = (await stat(real)).mode & 0o7777;
  const tmp = join(dirname(real), `.${basename(real)}.mailsentry-${process.pid}.tmp`);
  const fh = await open(tmp, "w", mode);
  try {
    await fh.writeFile(text);
    await fh.chmod(mode); // the umask may have narrowed it
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, real);
}

/**
 * Writes text over file if it still holds `expected` (a file changed since it was read is refused,
 * its new content kept), after copying the old content to the backup directory. The real file is
 * written (a dotfile symlinked from a dotfiles repository stays a symlink), with its own mode
 * (fetchmail refuses an rc file others can read).
 */
export async function writeChecked(file: string, expected: string, text: string, stateDir: string, stamp: string, client: ClientKind): Promise<string> {
  const real = await realpath(file);
  if ((await readFile(real, "utf8")) !== expected) throw new Error(`${file} changed while mailsentry was reading it; nothing written, run the command again`);
  const backups = join(clientsDir(stateDir), "backups", stamp.replace(/[:.]/g, "-"));
  await mkdir(backups, { recursive: true, mode: 0o700 });
  const backup = join(backups, `${client}-${basename(dirname(real))}-${basename(real)}`);
  await copyFile(real, backup);
  await chmod(backup, 0o600);
  await writeAtomic(real, text);
  return backup;
}
