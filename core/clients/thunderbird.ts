// Thunderbird: its profiles (profiles.ini), the POP3/IMAP accounts of a prefs.js, the pref changes that
// route an account through mailsentry, byte-exact edits of prefs.js, the profile lock, and CA trust in
// the profile's NSS store (certutil). Facts about Thunderbird are from its source; see each comment.
import { lstat, readFile, readdir, readlink, realpath, stat } from "node:fs/promises";
import { networkInterfaces } from "node:os";
import { dirname, isAbsolute, join } from "node:path";
import { isLoopbackHost as isLoopback } from "../config/schema.ts";
import { eolOf, isFile } from "./common.ts";
import { listenerPort, routedUser } from "./route.ts";
import type { ClientAccount, ClientFormat, MailProtocol, ProxyTarget, Security, Setting } from "./types.ts";

// ---------------------------------------------------------------------------------------------
// prefs.js syntax (Gecko modules/libpref/parser/src/lib.rs): user_pref("name", value); where value is a
// string literal ('…' or "…" with \" \' \\ \n \r \xNN \uNNNN), true/false or a signed 32-bit integer.
// Comments: #…, //…, /*…*/. A statement with a syntax error is skipped up to the next ';'.

export type PrefValue = string | number | boolean;

/** One user_pref statement, with the offsets edits need. */
interface Pref {
  name: string;
  value: PrefValue;
  /** The statement, from "user_pref" to just after ";". */
  start: number;
  end: number;
  /** The value literal as written. */
  valueStart: number;
  valueEnd: number;
}

interface Token {
  kind: "word" | "string" | "int" | "punct" | "bad";
  start: number;
  end: number;
  /** word: the word; string: the decoded value; int: the digits; punct: the character. */
  text: string;
}

const WORD_START = /[A-Za-z_]/;
const WORD_CHAR = /[A-Za-z0-9_]/;

function* tokens(text: string): Generator<Token> {
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (" \t\v\f\r\n".includes(c)) i++;
    else if (c === "#" || text.startsWith("//", i)) i = lineEnd(text, i);
    else if (text.startsWith("/*", i)) {
      const close = text.indexOf("*/", i + 2);
      i = close < 0 ? text.length : close + 2;
    } else if (c === '"' || c === "'") {
      const t = stringToken(text, i);
      yield t;
      i = t.end;
    } else if (c >= "0" && c <= "9") {
      let j = i;
      while (j < text.length && text[j]! >= "0" && text[j]! <= "9") j++;
      // "123abc" is one malformed token, not a number and a word.
      const bad = j < text.length && WORD_START.test(text[j]!);
      yield { kind: bad ? "bad" : "int", start: i, end: j, text: text.slice(i, j) };
      i = j;
    } else if (WORD_START.test(c)) {
      let j = i + 1;
      while (j < text.length && WORD_CHAR.test(text[j]!)) j++;
      yield { kind: "word", start: i, end: j, text: text.slice(i, j) };
      i = j;
    } else {
      yield { kind: "(),;+-".includes(c) ? "punct" : "bad", start: i, end: i + 1, text: c };
      i++;
    }
  }
}

function lineEnd(text: string, i: number): number {
  const nl = text.slice(i).search(/[\r\n]/);
  return nl < 0 ? text.length : i + nl;
}

const SIMPLE_ESCAPES: Record<string, string> = { '"': '"', "'": "'", "\\": "\\", n: "\n", r: "\r" };

/** A quoted literal from text[i]; "bad" when unterminated or holding an escape Gecko rejects. */
function stringToken(text: string, i: number): Token {
  const quote = text[i]!;
  let out = "";
  let ok = true;
  let j = i + 1;
  for (;;) {
    if (j >= text.length) return { kind: "bad", start: i, end: text.length, text: out };
    const c = text[j]!;
    if (c === quote) return { kind: ok ? "string" : "bad", start: i, end: j + 1, text: out };
    if (c !== "\\") {
      out += c;
      j++;
      continue;
    }
    const e = text[j + 1] ?? "";
    const hexLen = e === "x" ? 2 : e === "u" ? 4 : 0;
    if (SIMPLE_ESCAPES[e] !== undefined) {
      out += SIMPLE_ESCAPES[e];
      j += 2;
    } else if (hexLen && new RegExp(`^[0-9A-Fa-f]{${hexLen}}$`).test(text.slice(j + 2, j + 2 + hexLen))) {
      const code = parseInt(text.slice(j + 2, j + 2 + hexLen), 16);
      if (code === 0) ok = false; // \x00 and \u0000 are refused: C++ strings would end there
      out += String.fromCharCode(code);
      j += 2 + hexLen;
    } else {
      ok = false;
      j += 1; // keep scanning for the closing quote, as Gecko does before reporting
    }
  }
}

/** Every well-formed user_pref statement of a prefs.js, in file order. */
function parsePrefs(text: string): Pref[] {
  const toks = [...tokens(text)];
  const out: Pref[] = [];
  let k = 0;
  while (k < toks.length) {
    const stmt = userPrefAt(toks, k);
    if (stmt) {
      out.push(stmt.pref);
      k = stmt.next;
      continue;
    }
    // Error recovery as Gecko's: drop everything up to and including the next ';'.
    while (k < toks.length && !(toks[k]!.kind === "punct" && toks[k]!.text === ";")) k++;
    k++;
  }
  return out;
}

function userPrefAt(toks: Token[], k: number): { pref: Pref; next: number } | null {
  const is = (j: number, kind: Token["kind"], text?: string) =>
    toks[j]?.kind === kind && (text === undefined || toks[j]!.text === text);
  if (!is(k, "word", "user_pref") || !is(k + 1, "punct", "(") || !is(k + 2, "string") || !is(k + 3, "punct", ",")) return null;
  const v = valueAt(toks, k + 4);
  if (!v || !is(v.next, "punct", ")") || !is(v.next + 1, "punct", ";")) return null;
  const pref: Pref = {
    name: toks[k + 2]!.text,
    value: v.value,
    start: toks[k]!.start,
    end: toks[v.next + 1]!.end,
    valueStart: toks[k + 4]!.start,
    valueEnd: toks[v.next - 1]!.end,
  };
  return { pref, next: v.next + 2 };
}

function valueAt(toks: Token[], k: number): { value: PrefValue; next: number } | null {
  const t = toks[k];
  if (!t) return null;
  if (t.kind === "string") return { value: t.text, next: k + 1 };
  if (t.kind === "word" && (t.text === "true" || t.text === "false")) return { value: t.text === "true", next: k + 1 };
  const signed = t.kind === "punct" && (t.text === "-" || t.text === "+");
  const digits = signed ? toks[k + 1] : t;
  if (digits?.kind !== "int") return null;
  const n = Number(digits.text) * (signed && t.text === "-" ? -1 : 1);
  if (n < -(2 ** 31) || n > 2 ** 31 - 1) return null; // Gecko prefs are int32
  return { value: n, next: k + (signed ? 2 : 1) };
}

/** Name → the statement that counts (the last one: a later user_pref overrides an earlier one). */
function prefMap(text: string): Map<string, Pref> {
  return new Map(parsePrefs(text).map((p) => [p.name, p]));
}

/** Every pref of a prefs.js with its value decoded, as Thunderbird reads them (the last one wins). */
export function prefValues(text: string): Map<string, PrefValue> {
  return new Map(parsePrefs(text).map((p) => [p.name, p.value]));
}

/**
 * A JS string literal the way Thunderbird writes prefs.js (Preferences.cpp StrEscape, checked against
 * Thunderbird 153): double quotes, only \\ \" \n \r escaped, everything else raw UTF-8. JSON.stringify
 * is not the same: its \t \b \f are escapes the pref parser rejects.
 */
export function prefString(s: string): string {
  if (s.includes("\0")) throw new Error("a pref value cannot hold a NUL character");
  if (/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s)) {
    throw new Error("a pref value cannot hold a lone UTF-16 surrogate");
  }
  const escaped = s.replace(/[\\"\n\r]/g, (c) => ({ "\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r" })[c]!);
  return `"${escaped}"`;
}

/** True when raw is exactly one pref value literal (so set() cannot be made to write a statement). */
function isPrefLiteral(raw: string): boolean {
  if (/^(true|false|[+-]?\d+)$/.test(raw)) return valueAt([...tokens(raw)], 0) !== null;
  const t = raw[0] === '"' || raw[0] === "'" ? stringToken(raw, 0) : null;
  return t?.kind === "string" && t.end === raw.length;
}

// ---------------------------------------------------------------------------------------------
// Text edits. Only user_pref statements are touched; every other byte stays as it is.

function getPref(text: string, _ref: string, key: string): string | null {
  const p = prefMap(text).get(key);
  return p ? text.slice(p.valueStart, p.valueEnd) : null;
}

function setPref(text: string, _ref: string, key: string, value: string | null): string {
  // ref names the server, but plan() also moves identity prefs (folder URIs), so any key is allowed.
  if (!key || /[\x00-\x1f"\\]/.test(key)) throw new Error(`"${key}" is not a pref name this module writes`);
  if (value !== null && !isPrefLiteral(value)) throw new Error(`${key}: ${value} is not a pref value literal`);
  const p = prefMap(text).get(key);
  if (p && value !== null) return text.slice(0, p.valueStart) + value + text.slice(p.valueEnd);
  if (p) return removeStatement(text, p);
  if (value === null) return text;
  return appendLine(text, `user_pref(${prefString(key)}, ${value});`);
}

/**
 * Adds a statement as the last line. A file without a final newline gets the newline before the
 * statement and none after it, so that removing the statement again (removeStatement drops the
 * newline before a last line that has none) gives back the original bytes.
 */
function appendLine(text: string, line: string): string {
  const eol = eolOf(text);
  if (text === "" || text.endsWith("\n")) return text + line + eol;
  return text + eol + line;
}

/** Removes a statement: its whole line when it stands alone there, else only the statement. */
function removeStatement(text: string, p: Pref): string {
  const lineStart = text.lastIndexOf("\n", p.start - 1) + 1;
  const nl = text.indexOf("\n", p.end);
  const lineStop = nl < 0 ? text.length : nl + 1;
  const before = text.slice(lineStart, p.start);
  const after = text.slice(p.end, nl < 0 ? text.length : nl);
  if (before.trim() !== "" || after.trim() !== "") return text.slice(0, p.start) + text.slice(p.end);
  if (nl >= 0 || lineStart === 0) return text.slice(0, lineStart) + text.slice(lineStop);
  // The last line, without a newline of its own: the newline that ended the line before goes too.
  const eolStart = text[lineStart - 2] === "\r" ? lineStart - 2 : lineStart - 1;
  return text.slice(0, eolStart);
}

// ---------------------------------------------------------------------------------------------
// Accounts. Values as Thunderbird reads them (mailnews/base/src/MsgIncomingServer.sys.mjs, mailnews.js
// defaults): a mail.server.<key>.<attr> pref, else mail.server.default.<attr>, else the built-in default.

const SOCKET_SECURITY: Record<number, Security> = {
  0: "plain", // nsMsgSocketType.plain
  1: "starttls", // trySTARTTLS: removed from MailNewsTypes2.idl; old profiles may still say it
  2: "starttls", // alwaysSTARTTLS
  3: "tls", // SSL
};

/**
 * nsMsgAuthMethod (MailNewsTypes2.idl) values a routing proxy cannot pass on: it must read the user
 * name (to pick the server) and relay the password, so only password logins in the clear work
 * (2 old USER/PASS or LOGIN, 3 passwordCleartext, 9 anything: Thunderbird then picks among the
 * proxy's own mechanisms, which are PLAIN/LOGIN/USER).
 */
const AUTH_UNSUPPORTED: Record<number, string> = {
  1: "signs in without a password (authentication: none), so the proxy cannot tell which server it is for",
  4: "uses encrypted password sign-in (CRAM-MD5), which a proxy cannot relay; choose \"Normal password\" to use it",
  5: "uses Kerberos/GSSAPI sign-in, which a proxy cannot relay",
  6: "uses NTLM sign-in, which a proxy cannot relay",
  7: "signs in with a TLS client certificate, which a proxy cannot relay",
  8: "uses \"secure authentication\" (Kerberos, NTLM or CRAM-MD5), which a proxy cannot relay",
  10: "uses OAuth2 sign-in, which a proxy cannot relay",
};
const AUTH_RELAYABLE = new Set([2, 3, 9]);

const DEFAULT_PORT: Record<MailProtocol, { plain: number; tls: number }> = {
  pop3: { plain: 110, tls: 995 },
  imap: { plain: 143, tls: 993 },
};

/** One server's prefs as Thunderbird resolves them. */
function serverPrefs(prefs: Map<string, Pref>, key: string) {
  const own = (attr: string) => prefs.get(`mail.server.${key}.${attr}`)?.value;
  const withDefault = (attr: string) => own(attr) ?? prefs.get(`mail.server.default.${attr}`)?.value;
  const str = (v: PrefValue | undefined) => (typeof v === "string" ? v : undefined);
  const int = (v: PrefValue | undefined) => (typeof v === "number" ? v : undefined);
  return {
    type: str(own("type")),
    name: str(own("name")),
    hostname: str(own("hostname")) ?? "",
    userName: str(own("userName")) ?? "",
    realhostname: str(own("realhostname")),
    realuserName: str(own("realuserName")),
    port: int(withDefault("port")),
    // No socketType: the old isSecure=true meant SSL (MsgIncomingServer.socketType).
    socketType: int(withDefault("socketType")) ?? (withDefault("isSecure") === true ? 3 : 0),
    authMethod: int(withDefault("authMethod")) ?? 3,
  };
}

/**
 * Thunderbird before 102 connected to realhostname/realuserName when set (its Account Settings wrote
 * them instead of changing hostname/userName). 102 dropped them (bug 1483485): some versions moved them
 * into hostname/userName at startup (MailnewsMigrator), 153 ignores them altogether.
 */
function usesRealNames(prefs: Map<string, Pref>): boolean {
  const v = prefs.get("extensions.lastAppVersion")?.value;
  const major = typeof v === "string" ? parseInt(v, 10) : NaN;
  return major < 102;
}

/** The server keys of the accounts Thunderbird loads, in its order; every typed server when no list. */
function serverKeys(prefs: Map<string, Pref>): string[] {
  const list = prefs.get("mail.accountmanager.accounts")?.value;
  const keys =
    typeof list === "string"
      ? list.split(",").map((a) => prefs.get(`mail.account.${a.trim()}.server`)?.value)
      : [...prefs.keys()].map((n) => /^mail\.server\.([^.]+)\.type$/.exec(n)?.[1]).filter((k) => k !== "default");
  return [...new Set(keys.filter((k): k is string => typeof k === "string" && k !== ""))];
}

function securityProblem(socketType: number): string | null {
  return SOCKET_SECURITY[socketType] ? null : `uses an unknown connection security setting (socketType ${socketType})`;
}

function authProblem(authMethod: number): string | null {
  if (AUTH_RELAYABLE.has(authMethod)) return null;
  return AUTH_UNSUPPORTED[authMethod] ?? `uses an unknown sign-in method (authMethod ${authMethod})`;
}


function accountsOf(text: string, file: string): ClientAccount[] {
  const prefs = prefMap(text);
  const realNames = usesRealNames(prefs);
  const out: ClientAccount[] = [];
  for (const ref of serverKeys(prefs)) {
    const s = serverPrefs(prefs, ref);
    if (s.type !== "pop3" && s.type !== "imap") continue; // none (Local Folders), nntp, rss, …
    const server = (realNames && s.realhostname) || s.hostname;
    const user = (realNames && s.realuserName) || s.userName;
    const security = SOCKET_SECURITY[s.socketType] ?? "plain";
    // MsgIncomingServer.port: values below 2 mean "the protocol's default".
    const port = s.port !== undefined && s.port > 1 ? s.port : DEFAULT_PORT[s.type][security === "tls" ? "tls" : "plain"];
    const unsupported =
      securityProblem(s.socketType) ??
      authProblem(s.authMethod) ??
      (server === "" ? "has no server name" : user === "" ? "has no user name" : null);
    const account: ClientAccount = {
      client: "thunderbird",
      ref,
      file,
      label: s.name || (user ? `${user}@${server}` : server),
      protocol: s.type,
      server,
      port,
      security,
      user,
      proxied: isLoopback(server) && /[/#]/.test(user),
      unsupported,
    };
    out.push(account);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Plan. Current Thunderbird connects to hostname/userName and nothing else, so those are what change.
// They also name the server in folder URIs (mailbox://user@host/Sent, imap://…), which prefs keep in
// identities and spam settings; Thunderbird's own Account Settings moves those when it changes a
// server's name (migrateServerUris in MsgIncomingServer.sys.mjs), and so does this plan.

/**
 * A server's URI in folder URIs: localStoreType://escaped-user@escaped-host. The JS servers (POP3)
 * escape with encodeURIComponent; the C++ ones (IMAP, nsMsgIncomingServer::GetServerURI) with
 * ESCAPE_XALPHAS, which also escapes ! ' ( ) ~. Both spellings are recognized; a URI keeps its own.
 */
export const URI_ESCAPES = [
  (s: string) => encodeURIComponent(s),
  (s: string) => encodeURIComponent(s).replace(/[!'()~]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`),
];

export function serverUri(protocol: MailProtocol, user: string, host: string, escape: (s: string) => string): string {
  const h = host.includes(":") ? `[${host}]` : host;
  return `${protocol === "pop3" ? "mailbox" : "imap"}://${user ? `${escape(user)}@` : ""}${escape(h)}`;
}

/** Prefs that hold folder URIs of some server (the ones migrateServerUris moves). */
const URI_PREF = /^(mail\.identity\.[^.]+\.(fcc_folder|draft_folder|archive_folder|stationery_folder)|mail\.server\.[^.]+\.(spamActionTargetAccount|spamActionTargetFolder))$/;

function uriMoves(prefs: Map<string, Pref>, protocol: MailProtocol, from: { user: string; host: string }, to: { user: string; host: string }): Setting[] {
  const moves: Setting[] = [];
  for (const p of prefs.values()) {
    if (!URI_PREF.test(p.name) || typeof p.value !== "string") continue;
    for (const escape of URI_ESCAPES) {
      const old = serverUri(protocol, from.user, from.host, escape);
      // A whole authority only: imap://a@host must not match imap://a@host.example.
      if (p.value !== old && !p.value.startsWith(`${old}/`)) continue;
      moves.push({ key: p.name, value: prefString(serverUri(protocol, to.user, to.host, escape) + p.value.slice(old.length)) });
      break;
    }
  }
  return moves;
}

/** The settings that route `account` (read from `text`) through `target`. Socket type stays as it is. */
export function planFor(text: string, account: ClientAccount, target: ProxyTarget): Setting[] {
  if (account.proxied) return [];
  const port = listenerPort(account, target);
  const prefs = prefMap(text);
  const key = (attr: string) => `mail.server.${account.ref}.${attr}`;
  const s = serverPrefs(prefs, account.ref);
  const user = routedUser(account.user, account);
  const settings: Setting[] = [
    { key: key("hostname"), value: prefString(target.host) },
    { key: key("userName"), value: prefString(user) },
    { key: key("port"), value: String(port) },
  ];
  // Left as they are they would win over the new names in Thunderbird before 102, or be moved into
  // hostname/userName by the versions that migrated them. Set to the same values rather than removed,
  // so the edit stays in place and reverting it gives back the same bytes.
  if (s.realhostname !== undefined) settings.push({ key: key("realhostname"), value: settings[0]!.value });
  if (s.realuserName !== undefined) settings.push({ key: key("realuserName"), value: settings[1]!.value });
  settings.push(...uriMoves(prefs, account.protocol, { user: s.userName, host: s.hostname }, { user, host: target.host }));
  return settings;
}

function planAccount(account: ClientAccount, target: ProxyTarget, text: string): Setting[] {
  if (account.proxied) return [];
  return planFor(text, account, target);
}

// ---------------------------------------------------------------------------------------------
// Profiles: profiles.ini in each place a Linux Thunderbird keeps them (deb/tarball, Debian's old
// Icedove, snap, flatpak). [ProfileN] has Path= (relative to the ini when IsRelative=1); [Install…]
// has Default=, the same profiles again, which dedupe away.

const PROFILE_ROOTS = [".thunderbird", ".mozilla-thunderbird", "snap/thunderbird/common/.thunderbird", ".var/app/org.mozilla.Thunderbird/.thunderbird"];

function parseIni(text: string): Map<string, Map<string, string>> {
  const sections = new Map<string, Map<string, string>>();
  let current: Map<string, string> | undefined;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    const head = /^\[(.+)\]$/.exec(line);
    if (head) sections.set(head[1]!, (current = new Map()));
    else if (current && line && !line.startsWith(";") && !line.startsWith("#") && line.includes("=")) {
      const eq = line.indexOf("=");
      current.set(line.slice(0, eq).trim(), line.slice(eq + 1).trim());
    }
  }
  return sections;
}

/** Profile directories profiles.ini names, absolute. */
export function profileDirs(iniText: string, iniDir: string): string[] {
  const dirs: string[] = [];
  for (const [name, keys] of parseIni(iniText)) {
    const path = /^Profile\d+$/i.test(name) ? keys.get("Path") : /^Install/i.test(name) ? keys.get("Default") : undefined;
    if (!path) continue;
    const relative = keys.get("IsRelative") === "1" || !isAbsolute(path);
    dirs.push(relative ? join(iniDir, path) : path);
  }
  return dirs;
}

async function findPrefsFiles(env: NodeJS.ProcessEnv): Promise<string[]> {
  const home = env.HOME;
  if (!home) return [];
  const found = new Set<string>();
  for (const root of PROFILE_ROOTS) {
    const iniDir = join(home, root);
    const ini = await readFile(join(iniDir, "profiles.ini"), "utf8").catch(() => null);
    if (ini === null) continue;
    for (const dir of profileDirs(ini, iniDir)) {
      const prefs = join(dir, "prefs.js");
      // realpath: Debian linked ~/.thunderbird and ~/.mozilla-thunderbird, one profile under two names.
      if (await isFile(prefs)) found.add(await realpath(prefs));
    }
  }
  return [...found].sort();
}

/** The profile directory of a prefs.js. */
export function profileDirOf(prefsFile: string): string {
  return dirname(prefsFile);
}

// ---------------------------------------------------------------------------------------------
// The profile lock (toolkit/profile/nsProfileLock.cpp): on Linux Thunderbird takes an fcntl lock on
// .parentlock and also makes a symlink "lock" → "IP:+PID" ("+" when it holds the fcntl lock too),
// removed on exit, also on SIGTERM/SIGINT (its signal handler). Gecko calls a lock stale when the
// target is unreadable, or names this machine and a pid kill(pid, 0) reports gone (ESRCH).
// It must be checked because Thunderbird writes all of prefs.js from memory while it runs and on exit,
// which would undo an edit made meanwhile.

export function parseLockTarget(target: string): { ip: string; pid: number } | null {
  const m = /^([0-9.]+):\+?(\d+)$/.exec(target);
  return m && Number(m[2]) > 0 ? { ip: m[1]!, pid: Number(m[2]) } : null;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"; // exists, but not ours to signal
  }
}

function isLocalAddress(ip: string): boolean {
  if (/^127\./.test(ip)) return true; // Debian resolves the host name to 127.0.1.1
  return Object.values(networkInterfaces()).some((list) => list?.some((a) => a.address === ip));
}

/**
 * Flatpak runs Thunderbird in its own pid namespace, so the lock's pid means nothing out here: any
 * running Thunderbird program counts instead (by its argv[0], so that a command line merely naming
 * Thunderbird, like this program's own, does not).
 */
async function anyThunderbirdRunning(): Promise<boolean> {
  const pids = (await readdir("/proc").catch(() => [] as string[])).filter((n) => /^\d+$/.test(n) && Number(n) !== process.pid);
  for (const pid of pids) {
    const argv0 = (await readFile(`/proc/${pid}/cmdline`, "latin1").catch(() => "")).split("\0")[0]!;
    if (/^thunderbird(-bin)?$/i.test(argv0.slice(argv0.lastIndexOf("/") + 1))) return true;
  }
  return false;
}

async function profileBusy(prefsFile: string): Promise<string | null> {
  const dir = profileDirOf(prefsFile);
  const link = join(dir, "lock");
  const isLink = (await lstat(link).catch(() => null))?.isSymbolicLink() ?? false;
  if (!isLink) return null;
  const lock = parseLockTarget(await readlink(link).catch(() => ""));
  if (!lock) return null;
  if (!isLocalAddress(lock.ip)) {
    return `Thunderbird on another machine (${lock.ip}) has profile ${dir} open; quit it there first`;
  }
  const alive = dir.includes("/.var/app/") ? await anyThunderbirdRunning() : pidAlive(lock.pid);
  return alive ? `Thunderbird is running on profile ${dir} (pid ${lock.pid}); quit it first` : null;
}

// ---------------------------------------------------------------------------------------------
// CA trust: the profile's NSS database (cert9.db, "sql:" format) through NSS's certutil. "C,," trusts
// the CA to issue TLS server certificates, which is what the proxy's leaf needs. Run it while
// Thunderbird is closed: it reads the database at start.

interface Run {
  code: number;
  out: string;
  err: string;
}

async function run(cmd: string[]): Promise<Run> {
  const proc = Bun.spawn(cmd, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, out, err };
}

async function mustRun(cmd: string[]): Promise<Run> {
  const r = await run(cmd);
  if (r.code !== 0) throw new Error(`${cmd.slice(0, 2).join(" ")} failed: ${(r.err || r.out).trim()}`);
  return r;
}

/** The base64 of a PEM's first certificate, whitespace removed, for comparing two PEMs. */
function pemBody(pem: string): string | null {
  const m = /-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/.exec(pem);
  return m ? m[1]!.replace(/\s+/g, "") : null;
}

/** The nickname's certificate as PEM, or null when the database has none by that name. */
async function certByName(certutil: string, db: string, nickname: string): Promise<string | null> {
  const r = await run([certutil, "-L", "-n", nickname, "-d", db, "-a"]);
  if (r.code === 0) return r.out;
  if (/could not find cert/i.test(r.err)) return null;
  throw new Error(`certutil -L failed on ${db}: ${r.err.trim()}`);
}

/** Trusts caFile in the profile (replacing a different certificate by the same nickname). */
export async function trustCa(profileDir: string, caFile: string, nickname: string): Promise<"added" | "present" | "no-certutil"> {
  const certutil = Bun.which("certutil");
  if (!certutil) return "no-certutil";
  const db = `sql:${profileDir}`;
  // A profile Thunderbird never started has no database yet; it makes this same empty-password one.
  if (!(await isFile(join(profileDir, "cert9.db")))) await mustRun([certutil, "-N", "--empty-password", "-d", db]);
  const existing = await certByName(certutil, db, nickname);
  if (existing !== null) {
    if (pemBody(existing) === pemBody(await readFile(caFile, "utf8"))) return "present";
    await mustRun([certutil, "-D", "-n", nickname, "-d", db]);
  }
  await mustRun([certutil, "-A", "-n", nickname, "-t", "C,,", "-i", caFile, "-d", db]);
  return "added";
}

/** Removes every certificate by that nickname from the profile. */
export async function untrustCa(profileDir: string, nickname: string): Promise<"removed" | "absent" | "no-certutil"> {
  const certutil = Bun.which("certutil");
  if (!certutil) return "no-certutil";
  const db = `sql:${profileDir}`;
  if (!(await isFile(join(profileDir, "cert9.db")))) return "absent";
  let removed = false;
  // certutil -D takes one certificate per call; the bound only guards against a database that lies.
  for (let i = 0; i < 16 && (await certByName(certutil, db, nickname)) !== null; i++) {
    await mustRun([certutil, "-D", "-n", nickname, "-d", db]);
    removed = true;
  }
  return removed ? "removed" : "absent";
}

// ---------------------------------------------------------------------------------------------

export const thunderbird: ClientFormat = {
  kind: "thunderbird",
  findFiles: findPrefsFiles,
  busy: profileBusy,
  accounts: accountsOf,
  plan: planAccount,
  get: getPref,
  set: setPref,
};
