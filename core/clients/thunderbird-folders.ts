// Thunderbird folder URIs outside prefs.js: the filter rules of every server (msgFilterRules.dat in the
// server's directory) and the saved searches of the profile (virtualFolders.dat). When a server's URI
// authority changes (thunderbird.ts planFor), the folder URIs in these files must move with it, or
// Thunderbird disables the filters whose target folder no longer exists. Facts are from Thunderbird's
// source; see each comment. Edits are byte-exact and line-based: keys are "line N" (1-based), values the
// whole raw line without its line end; edits never add or remove lines, so keys stay valid.
import { isAbsolute, join } from "node:path";
import { isFile } from "./common.ts";
import { prefValues, serverUri, URI_ESCAPES, type PrefValue } from "./thunderbird.ts";
import type { MailProtocol } from "./types.ts";

// ---------------------------------------------------------------------------------------------
// Which files. A server's directory is mail.server.<key>.directory-rel ("[ProfD]ImapMail/host", a
// relative descriptor) and else mail.server.<key>.directory (absolute): NS_GetPersistentFile in
// nsMsgUtils.cpp reads the relative pref first. Its filters are <directory>/msgFilterRules.dat
// (nsMsgFilterList). The saved searches are <profile>/virtualFolders.dat
// (nsMsgAccountManager::GetVirtualFoldersFile).

const DIRECTORY_PREF = /^mail\.server\.(.+)\.directory(?:-rel)?$/;

/** A server's directory from its prefs, absolute, or null when neither pref is set. */
function serverDirectory(profileDir: string, prefs: Map<string, PrefValue>, key: string): string | null {
  const rel = prefs.get(`mail.server.${key}.directory-rel`);
  if (typeof rel === "string" && rel.startsWith("[ProfD]")) return join(profileDir, rel.slice("[ProfD]".length));
  const abs = prefs.get(`mail.server.${key}.directory`);
  return typeof abs === "string" && isAbsolute(abs) ? abs : null;
}

/** Files outside prefs.js holding folder URIs, for the profile of prefsText. Absolute paths; only those that exist. */
export async function folderFiles(profileDir: string, prefsText: string): Promise<string[]> {
  const prefs = prefValues(prefsText);
  const keys = new Set<string>();
  for (const name of prefs.keys()) {
    const key = DIRECTORY_PREF.exec(name)?.[1];
    if (key && key !== "default") keys.add(key);
  }
  const candidates = new Set<string>();
  // Every server's file: a filter of one server may move mail into another server's folder.
  for (const key of keys) {
    const dir = serverDirectory(profileDir, prefs, key);
    if (dir !== null) candidates.add(join(dir, "msgFilterRules.dat"));
  }
  candidates.add(join(profileDir, "virtualFolders.dat"));
  const found: string[] = [];
  for (const path of candidates) if (await isFile(path)) found.push(path);
  return found;
}

// ---------------------------------------------------------------------------------------------
// Server URI authorities, spelt as thunderbird.ts spells them (serverUri, URI_ESCAPES).

/**
 * The moves for folderMoves when a server's user/host change as in planFor: one per spelling of the
 * old authority (both escapings are recognized; a URI keeps its own spelling), deduplicated.
 */
export function authorityMoves(protocol: MailProtocol, from: { user: string; host: string }, to: { user: string; host: string }): { from: string; to: string }[] {
  const moves = new Map<string, string>();
  for (const escape of URI_ESCAPES) {
    const old = serverUri(protocol, from.user, from.host, escape);
    if (!moves.has(old)) moves.set(old, serverUri(protocol, to.user, to.host, escape));
  }
  return [...moves].map(([f, t]) => ({ from: f, to: t }));
}

// ---------------------------------------------------------------------------------------------
// Formats.
// msgFilterRules.dat (nsMsgFilterList.cpp): one attrib="value" per line, e.g. actionValue="imap://…".
// WriteStrAttr escapes only '"' (as \", nsMsgSearchTerm::EscapeQuotesInStr), not '\'; LoadValue reads up
// to the first unescaped '"' or line end; attribute names compare case-insensitively (PL_strcasecmp),
// whitespace before the name and the value is skipped. Folder URIs are in actionValue (Move/Copy to
// folder, and the template URI of "Reply with template", which starts with its folder's URI).
// virtualFolders.dat (nsMsgAccountManager Load/SaveVirtualFolders): lines "version=1", then per saved
// search "uri=<folder URI>", "searchFolderFlag=…", "scope=<folder URIs separated by |>", "terms=…",
// "searchOnline=…"; prefixes compared case-sensitively at the start of the line; no escaping.
// An authority prefix (escaped by encodeURIComponent) never holds '"', '\' or '|', so a prefix match on
// the raw text is the same as a match on the decoded value, and the rest of the line is left as it is.

const ACTION_VALUE = /^\s*actionvalue\s*=\s*"/i;

/** Line starts and the raw line texts (without "\n" or "\r\n"). */
function splitLines(text: string): { start: number; end: number }[] {
  const lines: { start: number; end: number }[] = [];
  let start = 0;
  while (start < text.length) {
    const nl = text.indexOf("\n", start);
    if (nl < 0) {
      lines.push({ start, end: text.length });
      break;
    }
    lines.push({ start, end: text[nl - 1] === "\r" && nl - 1 >= start ? nl - 1 : nl });
    start = nl + 1;
  }
  return lines;
}

function lineNumber(key: string): number | null {
  const m = /^line ([1-9]\d*)$/.exec(key);
  return m ? Number(m[1]) : null;
}

/** value with each URI at [i, …) that starts with a whole `from` authority moved to `to`; null when none. */
function moveUris(value: string, starts: number[], ends: string, moves: { from: string; to: string }[]): string | null {
  let out = "";
  let last = 0;
  let moved = false;
  for (const i of starts) {
    for (const { from, to } of moves) {
      if (!value.startsWith(from, i)) continue;
      const next = value[i + from.length];
      if (next !== undefined && !ends.includes(next)) continue; // imap://a@host must not match imap://a@host.evil
      out += value.slice(last, i) + to;
      last = i + from.length;
      moved = true;
      break;
    }
  }
  return moved ? out + value.slice(last) : null;
}

function checkMoves(moves: { from: string; to: string }[]): void {
  for (const { from, to } of moves) {
    for (const s of [from, to]) {
      if (!/^[a-z][a-z0-9+.-]*:\/\/[^\s"\\|/]+$/i.test(s)) throw new Error(`${JSON.stringify(s)} is not a folder URI authority`);
    }
  }
}

/** For one such file's text: the edits moving every folder URI of server `from` (its old URI authority) to `to`. */
export function folderMoves(text: string, moves: { from: string; to: string }[]): { key: string; value: string | null }[] {
  checkMoves(moves);
  const edits: { key: string; value: string | null }[] = [];
  splitLines(text).forEach(({ start, end }, n) => {
    const line = text.slice(start, end);
    let moved: string | null = null;
    const action = ACTION_VALUE.exec(line);
    if (action) moved = moveUris(line, [action[0].length], '/"', moves);
    else if (line.startsWith("uri=")) moved = moveUris(line, [4], "/", moves);
    else if (line.startsWith("scope=")) {
      const starts = [6];
      for (let i = line.indexOf("|", 6); i >= 0; i = line.indexOf("|", i + 1)) starts.push(i + 1);
      moved = moveUris(line, starts, "/|", moves);
    }
    if (moved !== null && moved !== line) edits.push({ key: `line ${n + 1}`, value: moved });
  });
  return edits;
}

/** The raw text of line N (key "line N") without its line end, or null when there is no such line. */
export function getValue(text: string, key: string): string | null {
  const n = lineNumber(key);
  const line = n === null ? undefined : splitLines(text)[n - 1];
  return line ? text.slice(line.start, line.end) : null;
}

/**
 * The text with line N replaced by value, its line end kept. Lines are never added or removed: null
 * is accepted only for a line that does not exist (restoring "was absent"), and leaves text as it is.
 */
export function setValue(text: string, key: string, value: string | null): string {
  const n = lineNumber(key);
  if (n === null) throw new Error(`"${key}" is not a line key`);
  const line = splitLines(text)[n - 1];
  if (!line) {
    if (value === null) return text;
    throw new Error(`${key}: the file has no such line`);
  }
  if (value === null) throw new Error(`${key}: lines are replaced, never removed`);
  if (value.includes("\n")) throw new Error(`${key}: a value cannot hold a line break`);
  // A value ending in "\r" before a lone "\n" would turn the line end into "\r\n" and read back shorter.
  if (value.endsWith("\r") && text[line.end] === "\n") throw new Error(`${key}: a value cannot end in a carriage return`);
  return text.slice(0, line.start) + value + text.slice(line.end);
}
