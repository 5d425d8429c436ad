// mbsync's configuration (~/.mbsyncrc, and $XDG_CONFIG_HOME/isyncrc, which isync 1.5 reads first):
// its IMAP accounts (IMAPAccount sections, and IMAPStore sections that carry Host and User themselves)
// and line edits that route one through mailsentry and back. Grammar facts are from isync 1.4.4's
// config.c and drv_imap.c and mbsync(1), checked against mbsync 1.4.4.
//
// Keys are "<ref>/<Keyword>", the ref "IMAPAccount NAME" or "IMAPStore NAME": "IMAPAccount work/Host",
// …/Port, …/User, …/CertificateFile. The value is the argument as written, quotes and escapes kept.
// A missing keyword is inserted on a new line right after the section's header line, indented like
// the section's first line, in a fixed order among the lines inserted there, so removing it gives back
// the same bytes; a line removed from elsewhere becomes a comment from which setting it restores it.
import { realpath, stat } from "node:fs/promises";
import { isAbsolute, join } from "node:path";
import { isLoopbackHost as isLoopback } from "../config/schema.ts";
import { eolOf, splice } from "./common.ts";
import { listenerPort, routedUser } from "./route.ts";
import type { ClientAccount, ClientFormat, ProxyTarget, Security, Setting } from "./types.ts";

// ---------------------------------------------------------------------------------------------
// Lines (config.c get_arg/getcline). A line is a keyword and arguments separated by blanks; " quotes
// (toggled anywhere in an argument) keep blanks in, a backslash makes the next character literal, and
// # where an argument would start begins a comment to the end of the line. Keywords are
// case-insensitive. A line with nothing but blanks ends the current section; a comment line does not.

interface Word {
  /** The argument as written. */
  start: number;
  end: number;
  /** Quotes and escapes taken out. */
  text: string;
}

interface Line {
  start: number;
  /** End of the line's text, before its line break. */
  end: number;
  /** "\n", "\r\n", or "" for a last line without one. */
  eol: string;
  words: Word[];
  /** A line holding nothing but a comment. */
  comment: boolean;
}

function wordsOf(text: string, start: number, end: number): { words: Word[]; comment: boolean } {
  const words: Word[] = [];
  let i = start;
  for (;;) {
    while (i < end && /\s/.test(text[i]!)) i++;
    if (i >= end) return { words, comment: false };
    if (text[i] === "#") return { words, comment: words.length === 0 };
    const from = i;
    let value = "";
    let quoted = false;
    for (; i < end; i++) {
      const c = text[i]!;
      if (c === "\\" && i + 1 < end) value += text[++i];
      else if (c === '"') quoted = !quoted;
      else if (!quoted && /\s/.test(c)) break;
      else value += c;
    }
    words.push({ start: from, end: i, text: value });
  }
}

function linesOf(text: string): Line[] {
  const out: Line[] = [];
  for (let start = 0; start < text.length; ) {
    const nl = text.indexOf("\n", start);
    const next = nl < 0 ? text.length : nl + 1;
    const end = nl < 0 ? text.length : nl > start && text[nl - 1] === "\r" ? nl - 1 : nl;
    out.push({ start, end, eol: text.slice(end, next), ...wordsOf(text, start, end) });
    start = next;
  }
  return out;
}

/** A value as an argument: bare when it reads back as itself (and `quote` is not asked for), else quoted. */
function mbValue(value: string, quote: boolean): string {
  if (!quote && value !== "" && !/[\s"\\]/.test(value) && !value.startsWith("#")) return value;
  return `"${value.replace(/[\\"]/g, "\\$&")}"`;
}

// ---------------------------------------------------------------------------------------------
// Sections (config.c load_config). A section runs from its keyword line to a blank line or the end of
// the file. A section keyword inside another section is an error to mbsync; it starts a new one here,
// except Channel inside a Group, which names a member.

interface Section {
  /** The keyword, lower case: imapaccount, imapstore, maildirstore, channel, group. */
  type: string;
  name: string;
  header: Line;
  body: Line[];
}

const SECTION_WORDS = new Set(["imapaccount", "imapstore", "maildirstore", "channel", "group"]);

function sectionsOf(lines: Line[]): Section[] {
  const out: Section[] = [];
  let cur: Section | null = null;
  for (const line of lines) {
    if (line.words.length === 0) {
      if (!line.comment) cur = null;
      else cur?.body.push(line);
      continue;
    }
    const kw = line.words[0]!.text.toLowerCase();
    if (SECTION_WORDS.has(kw) && !(cur?.type === "group" && kw === "channel")) {
      cur = { type: kw, name: line.words[1]?.text ?? "", header: line, body: [] };
      out.push(cur);
    } else cur?.body.push(line);
  }
  return out;
}

/** The section's last line for keyword `kw` that has a value (getcline skips one without). */
function lastLine(sec: Section, kw: string): Line | undefined {
  const k = kw.toLowerCase();
  return sec.body.findLast((l) => l.words.length >= 2 && l.words[0]!.text.toLowerCase() === k);
}

const REF_TYPE: Record<string, string> = { imapaccount: "IMAPAccount", imapstore: "IMAPStore" };

/** IMAPAccount sections, and IMAPStore sections without Account (the account inline); first of a name. */
function accountSections(text: string): Section[] {
  const seen = new Set<string>();
  return sectionsOf(linesOf(text)).filter((s) => {
    const ref = `${REF_TYPE[s.type]} ${s.name}`;
    if (!REF_TYPE[s.type] || (s.type === "imapstore" && lastLine(s, "Account")) || seen.has(ref)) return false;
    seen.add(ref);
    return true;
  });
}

function findSection(text: string, ref: string): Section {
  const sec = accountSections(text).find((s) => `${REF_TYPE[s.type]} ${s.name}` === ref);
  if (!sec) throw new Error(`mbsync: no ${ref} in this file`);
  return sec;
}

// ---------------------------------------------------------------------------------------------
// Accounts (drv_imap.c imap_parse_store).

/** "imaps:" (which also means IMAPS), "imap:" and "//" before a Host: deprecated URL notation. */
const HOST_PREFIX = /^(imaps:|imap:)?(\/\/)?/;

const SSL_TYPES = new Map<string, Security>([["none", "plain"], ["starttls", "starttls"], ["imaps", "tls"]]);

function parseBool(v: string | undefined): boolean | undefined {
  if (v === undefined) return undefined;
  if (/^(yes|true|on|1)$/i.test(v)) return true;
  return /^(no|false|off|0)$/i.test(v) ? false : undefined;
}

/**
 * SSLType (TLSType from isync 1.5; Host imaps:… sets IMAPS too, the later line winning), else the
 * deprecated UseIMAPS/RequireSSL/UseTLSv1*, else STARTTLS, or None with a Tunnel.
 */
function securityOf(sec: Section): Security {
  let chosen: Security | undefined;
  for (const l of sec.body) {
    const [kw, arg] = [l.words[0]?.text.toLowerCase(), l.words[1]?.text];
    if (arg === undefined) continue;
    if (kw === "host" && arg.startsWith("imaps:")) chosen = "tls";
    if (kw === "ssltype" || kw === "tlstype") chosen = SSL_TYPES.get(arg.toLowerCase()) ?? chosen;
  }
  if (chosen) return chosen;
  const bool = (kw: string) => parseBool(lastLine(sec, kw)?.words[1]!.text);
  const [useImaps, requireSsl] = [bool("UseIMAPS"), bool("RequireSSL")];
  const tls = ["UseTLSv1", "UseTLSv1.1", "UseTLSv1.2", "UseTLSv1.3"].map(bool);
  if (useImaps !== undefined || requireSsl !== undefined || tls.some((b) => b !== undefined)) {
    if (useImaps) return "tls";
    // RequireSSL defaults to on; "RequireSSL no" counts only when no TLS version is left either.
    const versions = tls[0] !== false || tls.slice(1).some((b) => b === true);
    return requireSsl !== false || versions ? "starttls" : "plain";
  }
  return lastLine(sec, "Tunnel") ? "plain" : "starttls";
}

/** AuthMech(s) lines add up; RequireCRAM yes alone means CRAM-MD5. Empty: any ("*"). */
function authMechs(sec: Section): string[] {
  const mechs = sec.body.filter((l) => /^authmechs?$/i.test(l.words[0]?.text ?? "")).flatMap((l) => l.words.slice(1).map((w) => w.text));
  if (mechs.length === 0 && parseBool(lastLine(sec, "RequireCRAM")?.words[1]!.text)) return ["CRAM-MD5"];
  return mechs;
}

function unsupportedOf(sec: Section, port: number): string | null {
  const has = (kw: string) => lastLine(sec, kw) !== undefined;
  const mechs = authMechs(sec);
  if (has("Tunnel")) return "connects through a Tunnel command";
  if (has("UserCmd")) return "takes its user name from UserCmd, which runs at each connection";
  if (!has("Host")) return "has no Host";
  if (!has("User")) return "has no User";
  if (!Number.isInteger(port) || port < 1 || port > 65535) return "has a Port that is not a port number";
  if (mechs.length > 0 && !mechs.some((m) => /^(\*|LOGIN|PLAIN)$/i.test(m))) return `allows only AuthMechs ${mechs.join(" ")}, and mailsentry takes LOGIN and PLAIN`;
  if (has("ClientCertificate") || has("ClientKey")) return "logs in with a TLS client certificate";
  if (parseBool(lastLine(sec, "UseKeychain")?.words[1]!.text)) return "takes its password from the macOS Keychain, which files it under Host and User";
  return null;
}

function accountOf(sec: Section, file: string): ClientAccount {
  const security = securityOf(sec);
  const host = (lastLine(sec, "Host")?.words[1]!.text ?? "").replace(HOST_PREFIX, "");
  const portText = lastLine(sec, "Port")?.words[1]!.text;
  const port = portText === undefined ? (security === "tls" ? 993 : 143) : /^\d+$/.test(portText) ? Number(portText) : NaN;
  const user = lastLine(sec, "User")?.words[1]!.text ?? "";
  return {
    client: "mbsync",
    ref: `${REF_TYPE[sec.type]} ${sec.name}`,
    file,
    label: sec.name,
    protocol: "imap",
    server: host,
    port,
    security,
    user,
    proxied: isLoopback(host) && /[/#]/.test(user),
    unsupported: unsupportedOf(sec, port),
  };
}

function accountsOf(text: string, file: string): ClientAccount[] {
  return accountSections(text).map((sec) => accountOf(sec, file));
}

// ---------------------------------------------------------------------------------------------
// Plan. mbsync checks a certificate against Host by its DNS names and CN, never an IP address
// (checked with 1.4.4: "certificate owner does not match hostname 127.0.0.1"), and has no option
// naming the one to expect, so a TLS account connects by the certificate's name (target.dnsName). Its sync state is kept per channel and mailbox, not per
// server, so nothing is synced again.

/** "user/server:port", the routed name the proxy reads (core/net/routing.ts); IPv6 in brackets. */
function hostFor(account: ClientAccount, target: ProxyTarget): string {
  return account.security === "plain" ? target.host : target.dnsName;
}

/** The settings that route `account` (read from `text`) through `target`. TLS mode stays as it is. */
export function planFor(text: string, account: ClientAccount, target: ProxyTarget): Setting[] {
  if (account.proxied) return [];
  const port = listenerPort(account, target);
  const sec = findSection(text, account.ref);
  const host = lastLine(sec, "Host")!.words[1]!;
  const user = lastLine(sec, "User")!.words[1]!;
  const quoted = (w: Word) => text[w.start] === '"';
  const key = (kw: string) => `${account.ref}/${kw}`;
  const settings: Setting[] = [
    // An "imaps:" in front of the Host means IMAPS, so it stays.
    { key: key("Host"), value: mbValue(HOST_PREFIX.exec(host.text)![0] + hostFor(account, target), quoted(host)) },
    { key: key("Port"), value: String(port) },
    { key: key("User"), value: mbValue(routedUser(account.user, account), quoted(user)) },
  ];
  if (account.security !== "plain") settings.push({ key: key("CertificateFile"), value: mbValue(target.caFile, false) });
  return settings;
}

function planAccount(account: ClientAccount, target: ProxyTarget, text: string): Setting[] {
  return planFor(text, account, target);
}

// ---------------------------------------------------------------------------------------------
// get/set.

/** Keywords as inserted, in the order inserted lines keep after the header. */
const INSERTED = ["Host", "Port", "User", "CertificateFile"];

const spelling = (kw: string) => INSERTED.find((k) => k.toLowerCase() === kw.toLowerCase()) ?? kw;

function order(a: string, b: string): number {
  const rank = (k: string) => {
    const i = INSERTED.findIndex((x) => x.toLowerCase() === k.toLowerCase());
    return i < 0 ? INSERTED.length : i;
  };
  return rank(a) - rank(b) || a.toLowerCase().localeCompare(b.toLowerCase());
}

/** Marks a removed line; the JSON after it is the line as it was. */
const MARK = "# mailsentry removed this while proxied; revert puts it back: ";

/** Leading blanks of the section's first keyword line other than `except`. */
function indentOf(text: string, sec: Section, except?: Line): string {
  const l = sec.body.find((x) => x !== except && x.words.length > 0);
  return l ? text.slice(l.start, l.words[0]!.start) : "";
}

const lineText = (kw: string, indent: string, raw: string) => `${indent}${spelling(kw)} ${raw}`;

/** Whether body[i] is exactly what inserting it after the line before would write. */
function asInserted(text: string, sec: Section, i: number): boolean {
  const l = sec.body[i]!;
  const prev = i > 0 ? sec.body[i - 1]! : sec.header;
  const [kw, arg] = l.words;
  if (!kw || !arg || l.words.length !== 2) return false;
  return text.slice(prev.end, l.start) === (l.eol || eolOf(text)) && text.slice(l.start, l.end) === lineText(kw.text, indentOf(text, sec, l), text.slice(arg.start, arg.end));
}

/** How many lines after the header are as inserted, in order. */
function chainLength(text: string, sec: Section): number {
  let n = 0;
  while (n < sec.body.length && asInserted(text, sec, n) && (n === 0 || order(sec.body[n - 1]!.words[0]!.text, sec.body[n]!.words[0]!.text) < 0)) n++;
  return n;
}

function insertLine(text: string, sec: Section, kw: string, raw: string): string {
  const n = chainLength(text, sec);
  const before = sec.body.slice(0, n).findIndex((l) => order(l.words[0]!.text, kw) > 0);
  const prev = before < 0 ? (n > 0 ? sec.body[n - 1]! : sec.header) : before > 0 ? sec.body[before - 1]! : sec.header;
  return splice(text, prev.end, prev.end, (prev.eol || eolOf(text)) + lineText(kw, indentOf(text, sec), raw));
}

function removeLine(text: string, sec: Section, line: Line): string {
  const i = sec.body.indexOf(line);
  if (i < chainLength(text, sec)) return splice(text, (i > 0 ? sec.body[i - 1]! : sec.header).end, line.end, "");
  return splice(text, line.start, line.end, indentOf(text, sec) + MARK + JSON.stringify(text.slice(line.start, line.end)));
}

/** The last comment removeLine left in this section for keyword `kw`, and the line it holds. */
function markerFor(text: string, sec: Section, kw: string): { line: Line; was: string } | null {
  let found: { line: Line; was: string } | null = null;
  for (const line of sec.body) {
    const body = text.slice(line.start, line.end).trimStart();
    if (!line.comment || !body.startsWith(MARK)) continue;
    try {
      const was = JSON.parse(body.slice(MARK.length));
      if (typeof was === "string" && wordsOf(was, 0, was.length).words[0]?.text.toLowerCase() === kw.toLowerCase()) found = { line, was };
    } catch {
      // not ours after all
    }
  }
  return found;
}

function locate(text: string, ref: string, key: string): { sec: Section; kw: string } {
  const slash = key.lastIndexOf("/");
  const kw = key.slice(slash + 1);
  if (key.slice(0, slash) !== ref || !/^[A-Za-z][A-Za-z0-9.]*$/.test(kw)) throw new Error(`mbsync: key ${key} is not one of ${ref}`);
  return { sec: findSection(text, ref), kw };
}

function getValue(text: string, ref: string, key: string): string | null {
  const { sec, kw } = locate(text, ref, key);
  const arg = lastLine(sec, kw)?.words[1];
  return arg ? text.slice(arg.start, arg.end) : null;
}

function setValue(text: string, ref: string, key: string, value: string | null): string {
  const { sec, kw } = locate(text, ref, key);
  const line = lastLine(sec, kw);
  if (line && value !== null) return splice(text, line.words[1]!.start, line.words[1]!.end, value);
  if (line) return removeLine(text, sec, line);
  if (value === null) return text;
  const m = markerFor(text, sec, kw);
  if (!m) return insertLine(text, sec, kw, value);
  const arg = wordsOf(m.was, 0, m.was.length).words[1];
  return splice(text, m.line.start, m.line.end, arg ? splice(m.was, arg.start, arg.end, value) : `${m.was} ${value}`);
}

// ---------------------------------------------------------------------------------------------
// Files. mbsync 1.4 reads ~/.mbsyncrc (checked: it ignores ~/.config/isyncrc); 1.5 reads
// $XDG_CONFIG_HOME/isyncrc (default ~/.config/isyncrc) when it exists, else ~/.mbsyncrc. Many 1.4
// users keep an isyncrc and run mbsync -c on it, so both are set up; one linked to the other counts once.

async function findConfigFiles(env: NodeJS.ProcessEnv): Promise<string[]> {
  const xdg = env.XDG_CONFIG_HOME && isAbsolute(env.XDG_CONFIG_HOME) ? env.XDG_CONFIG_HOME : env.HOME ? join(env.HOME, ".config") : null;
  const candidates = [xdg && join(xdg, "isyncrc"), env.HOME && join(env.HOME, ".mbsyncrc")].filter((f): f is string => Boolean(f));
  const out: string[] = [];
  const seen = new Set<string>();
  for (const file of candidates) {
    try {
      if (!(await stat(file)).isFile()) continue;
      const real = await realpath(file);
      if (seen.has(real)) continue;
      seen.add(real);
      out.push(file);
    } catch {
      // absent
    }
  }
  return out;
}

export const mbsync: ClientFormat = {
  kind: "mbsync",
  findFiles: findConfigFiles,
  accounts: accountsOf,
  plan: planAccount,
  get: getValue,
  set: setValue,
};
