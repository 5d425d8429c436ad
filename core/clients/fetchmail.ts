// fetchmail's run control file (~/.fetchmailrc, or $FETCHMAILHOME/fetchmailrc when that is set): its
// poll/skip entries as accounts, and token edits that route one through mailsentry and back. Grammar
// facts are from fetchmail 6.4's rcfile_l.l and rcfile_y.y and fetchmail(1), checked against 6.4.37.
//
// Keys are "<ref>/<name>", the ref "poll <n>" counting poll/skip/server entries from 1 (a defaults
// entry is not counted):
//   poll 2/via, poll 2/port          server options; port is the value of the last port or service
//   poll 2/user#1                    the remote name of the entry's first user description
//   poll 2/sslcertfile#1, …/sslcommonname#1, …/sslfingerprint#1, …/sslproto#1, …/sslcertpath#1
//                                    that user description's options, by their value token
//   poll 2/sslcertck#1, poll 2/ssl#1 flags: the value is the words as written ("no sslcertck")
// An absent option that plan() sets is inserted right after the poll name or the user option, in a
// fixed order among the options inserted there, so removing it gives back the same bytes whatever
// else changed meanwhile. Removing an option that putting back would not write the same way leaves a
// comment line where it stood, and setting the option again restores it from there, byte for byte.
import { dirname, isAbsolute, join, resolve } from "node:path";
import { isLoopbackHost as isLoopback } from "../config/schema.ts";
import { isFile, splice } from "./common.ts";
import { listenerPort, routedUser } from "./route.ts";
import type { ClientAccount, ClientFormat, MailProtocol, ProxyTarget, Security, Setting } from "./types.ts";

// ---------------------------------------------------------------------------------------------
// Lexer (rcfile_l.l). Tokens: keywords (lower case only: "Poll" is a string), numbers, strings and
// "=". A string is "…" or '…' (no way to write the quote itself inside) or any run of characters
// other than = ; : , and blanks; ; : , and the noise words are skipped. After user, pass, is, to and
// = the next run is a string even when it spells a keyword; after auth, "password" is the auth type.
// Flex takes the longest match: "ab"cd is one bare string, quotes and all; 110x is a string.

interface Tok {
  kind: "word" | "string" | "number" | "map";
  start: number;
  end: number;
  /** word: the canonical keyword; string: the decoded value; number: the digits. */
  text: string;
}

/** Keywords as written → canonical name (the optional suffixes of rcfile_l.l folded together). */
const WORDS = new Map<string, string>([
  ...["set", "defaults", "poll", "skip", "via", "aka", "localdomains", "service", "port", "interval", "timeout", "idletimeout",
    "envelope", "qvirtual", "principal", "esmtpname", "esmtppassword", "bad-header", "interface", "monitor", "plugin", "plugout",
    "dns", "uidl", "checkalias", "tracepolls", "logfile", "idfile", "pidfile", "daemon", "syslog", "invisible", "showdots",
    "postmaster", "bouncemail", "spambounce", "softbounce", "warnings", "fetchdomains", "smtpaddress", "smtpname", "antispam",
    "mda", "bsmtp", "lmtp", "batchlimit", "fetchlimit", "fetchsizelimit", "fastuidl", "expunge", "properties", "is", "to", "no",
    "keep", "flush", "limitflush", "fetchall", "rewrite", "forcecr", "stripcr", "dropstatus", "dropdelivered", "idle", "forceidle",
    "ssl", "sslkey", "sslcert", "sslproto", "sslcertck", "sslcertfile", "sslcertpath", "sslcommonname", "sslfingerprint", "limit",
    "here", "there", "accept", "reject", "any", "gssapi", "kerberos", "ssh", "implicit", "external", "msn", "ntlm", "otp"].map((w) => [w, w] as const),
  ["server", "poll"], ["local", "localdomains"], ["proto", "proto"], ["protocol", "proto"],
  ["auth", "auth"], ["authenticate", "auth"], ["preauth", "auth"], ["preauthenticate", "auth"],
  ["kerberos4", "kerberos_v4"], ["kerberos_v4", "kerberos_v4"], ["kerberos5", "kerberos_v5"], ["kerberos_v5", "kerberos_v5"],
  ["opie", "otp"], ["cram", "cram-md5"], ["cram-md5", "cram-md5"],
  ["user", "user"], ["username", "user"], ["pass", "pass"], ["password", "pass"], ["folder", "folder"], ["folders", "folder"],
  ["smtp", "smtphost"], ["smtphost", "smtphost"], ["pre", "preconnect"], ["preconnect", "preconnect"], ["post", "postconnect"],
  ["postconnect", "postconnect"], ["pass8", "pass8bits"], ["pass8bits", "pass8bits"], ["mimedec", "mimedecode"], ["mimedecode", "mimedecode"],
  ...["auto", "pop2", "sdps", "pop3", "imap", "apop", "rpop", "etrn", "odmr", "kpop"].flatMap((p) => [[p, p], [p.toUpperCase(), p]] as const),
]);

/** Words that open a statement. */
const STATEMENTS = new Set(["set", "defaults", "poll", "skip"]);

/** Words that are another keyword's argument (protocol, auth type, here/there, accept/reject). */
const ARG_WORDS = new Set(["here", "there", "accept", "reject", "any", "gssapi", "kerberos", "kerberos_v4", "kerberos_v5", "ssh",
  "implicit", "external", "msn", "ntlm", "otp", "cram-md5", "password", "auto", "pop2", "sdps", "pop3", "imap", "apop", "rpop", "etrn", "odmr", "kpop"]);

const NOISE = new Set(["with", "and", "has", "wants", "options"]);

/** "nokeep" and friends lex as "no" + "keep" (yyless(2)); "nossl" and "nosslcertck" do not. */
const NO_JOINED = new Set(["nobouncemail", "nouidl", "nocheckalias", "nodns", "noenvelope", "nokeep", "noflush", "nolimitflush",
  "nofetchall", "norewrite", "noforcecr", "nostripcr", "nopass8", "nopass8bits", "nodropstatus", "nodropdelivered", "nomimedec",
  "nomimedecode", "nospambounce", "noidle", "noforceidle"]);

/** After these the next run is a string whatever it spells (the NAME start condition). */
const NAME_NEXT = new Set(["user", "pass", "is", "to"]);

const isDelim = (c: string) => c === "=" || c === ";" || c === ":" || c === "," || c === " " || c === "\t" || c === "\r" || c === "\n";

function runEnd(src: string, i: number): number {
  while (i < src.length && !isDelim(src[i]!)) i++;
  return i;
}

/** The escapes of rcfile_l.l's escapes(): \n \t \b \r \\, \xhh, \0ooo, \ddd, backslash-newline. */
function unescape(s: string): string {
  let out = "";
  let i = 0;
  while (i < s.length) {
    const c = s[i]!;
    if (c !== "\\") {
      out += c;
      i++;
      continue;
    }
    const d = s[i + 1];
    if (d === undefined) break;
    if (/[0-9xX]/.test(d)) {
      const [digits, base, max] = d === "x" || d === "X" ? [/[0-9a-fA-F]/, 16, 2] : d === "0" ? [/[0-7]/, 8, 3] : [/[0-9]/, 10, 3];
      let j = d === "x" || d === "X" ? i + 2 : i + 1;
      let v = 0;
      for (let n = 0; j < s.length && digits.test(s[j]!) && n < max; n++, j++) v = v * base + parseInt(s[j]!, base);
      out += String.fromCharCode(v);
      i = j;
      continue;
    }
    if (d !== "\n") out += ({ n: "\n", t: "\t", b: "\b", r: "\r" } as Record<string, string>)[d] ?? d;
    i += 2;
  }
  return out;
}

function lex(src: string): Tok[] {
  const out: Tok[] = [];
  let mode: "initial" | "name" | "auth" = "initial";
  let i = 0;
  while (i < src.length) {
    const c = src[i]!;
    if (c === " " || c === "\t" || c === "\r" || c === "\n" || c === ";" || c === ":" || c === ",") { i++; continue; }
    if (c === "\\" && src[i + 1] === "\n") { i += 2; continue; }
    if (c === "#") {
      // A comment runs to the end of the line (flex would lex one without a final newline as words,
      // which fetchmail rejects; such a file is broken either way).
      const nl = src.indexOf("\n", i);
      i = nl < 0 ? src.length : nl + 1;
      continue;
    }
    if (c === "=") {
      out.push({ kind: "map", start: i, end: i + 1, text: "=" });
      mode = "name";
      i++;
      continue;
    }
    const run = runEnd(src, i);
    const close = c === '"' || c === "'" ? src.indexOf(c, i + 1) : -1;
    if (close >= 0 && close + 1 >= run) {
      out.push({ kind: "string", start: i, end: close + 1, text: unescape(src.slice(i + 1, close)) });
      mode = "initial";
      i = close + 1;
      continue;
    }
    const w = src.slice(i, run);
    if (mode === "name") {
      out.push({ kind: "string", start: i, end: run, text: unescape(w) });
      mode = "initial";
    } else if (/^-?[0-9]+$/.test(w)) {
      out.push({ kind: "number", start: i, end: run, text: w });
    } else if (mode === "auth" && w === "password") {
      out.push({ kind: "word", start: i, end: run, text: "password" });
      mode = "initial";
    } else if (NO_JOINED.has(w)) {
      out.push({ kind: "word", start: i, end: i + 2, text: "no" });
      i += 2;
      continue;
    } else if (NOISE.has(w)) {
      // ignored
    } else if (WORDS.has(w)) {
      const name = WORDS.get(w)!;
      out.push({ kind: "word", start: i, end: run, text: name });
      if (NAME_NEXT.has(name)) mode = "name";
      else if (name === "auth") mode = "auth";
      else if (ARG_WORDS.has(name) && mode === "auth") mode = "initial";
    } else {
      out.push({ kind: "string", start: i, end: run, text: unescape(w) });
    }
    i = run;
  }
  return out;
}

/** Whether a value written bare lexes back as one string token of that value. */
function isBare(value: string): boolean {
  return /^[^=;:,\s"'#\\]+$/.test(value) && !WORDS.has(value) && !NOISE.has(value) && !NO_JOINED.has(value) && !/^-?[0-9]+$/.test(value);
}

/** A string value as a token: bare when allowed and possible, else quoted with `quote`. */
function fmString(value: string, quote: '"' | "'", bareIfPossible: boolean): string {
  if (bareIfPossible && isBare(value)) return value;
  // In quotes a backslash starts an escape and the quote ends the string, so \xhh stands for it.
  const escape = (ch: string) => {
    if (ch === "\\") return "\\\\";
    if (ch === "\n") return "\\n";
    if (ch === "\t") return "\\t";
    if (ch === "\r") return "\\r";
    if (ch === quote || /[\x00-\x1f\x7f]/.test(ch)) return `\\x${ch.charCodeAt(0).toString(16).padStart(2, "0")}`;
    return ch;
  };
  return quote + Array.from(value, escape).join("") + quote;
}

// ---------------------------------------------------------------------------------------------
// Structure (rcfile_y.y): statements start with set, poll/server/skip NAME or defaults. An entry has
// server options, then user descriptions each led by user/username (or, without one, user options
// for the calling user). An option is a keyword (or "no" + keyword) and the arguments after it.

interface Opt {
  /** Canonical keyword, "no <keyword>" for negations, "?" for a stray argument. */
  name: string;
  start: number;
  end: number;
  args: Tok[];
}

/** Server options, or one user description: where it is and where options get inserted. */
interface Area {
  opts: Opt[];
  /** Options below this index are not insertable ones (a user description's own user option). */
  floor: number;
  /** End of the token just before opts[floor] (the poll name, the user option). */
  headEnd: number;
  /** First byte of the area, and where the next area (or entry) begins: comments in between are its own. */
  start: number;
  until: number;
}

interface Entry {
  verb: "poll" | "skip" | "defaults";
  /** 1-based among poll/skip entries; 0 for defaults. */
  index: number;
  name: Tok | null;
  server: Area;
  /** Explicit user descriptions, or one area of user options without a user keyword. */
  users: Area[];
  explicitUsers: boolean;
  start: number;
  until: number;
}

const SERVER_OPTIONS = new Set(["via", "aka", "localdomains", "proto", "principal", "esmtpname", "esmtppassword", "uidl", "no uidl",
  "checkalias", "no checkalias", "service", "port", "interval", "auth", "timeout", "idletimeout", "envelope", "no envelope", "qvirtual",
  "interface", "monitor", "plugin", "plugout", "dns", "no dns", "tracepolls", "no tracepolls", "bad-header"]);

const opensOption = (t: Tok) => t.kind === "word" && !ARG_WORDS.has(t.text);

function options(toks: Tok[]): Opt[] {
  const out: Opt[] = [];
  let i = 0;
  while (i < toks.length) {
    const t = toks[i]!;
    let name = "?";
    let j = i + 1;
    if (opensOption(t)) {
      name = t.text;
      if (t.text === "no" && toks[j] && opensOption(toks[j]!)) name = `no ${toks[j++]!.text}`;
    }
    const argsFrom = j;
    while (j < toks.length && !opensOption(toks[j]!)) j++;
    out.push({ name, start: t.start, end: toks[j - 1]!.end, args: toks.slice(argsFrom, j) });
    i = j;
  }
  return out;
}

function entryOf(stmt: Tok[], index: number, until: number): Entry {
  const verb = stmt[0]!.text as Entry["verb"];
  const name = verb === "defaults" ? null : stmt[1] ?? null;
  const head = name ?? stmt[0]!;
  const opts = options(stmt.slice(name ? 2 : 1));
  let cut = opts.findIndex((o) => o.name === "user");
  const explicitUsers = cut >= 0;
  if (!explicitUsers) cut = opts.findIndex((o) => !SERVER_OPTIONS.has(o.name));
  const serverOpts = cut < 0 ? opts : opts.slice(0, cut);
  const groups: Opt[][] = [];
  for (const o of cut < 0 ? [] : opts.slice(cut)) {
    if (o.name === "user" || groups.length === 0) groups.push([o]);
    else groups.at(-1)!.push(o);
  }
  const serverEnd = serverOpts.at(-1)?.end ?? head.end;
  const users: Area[] = groups.map((g, k) => ({
    opts: g,
    floor: explicitUsers ? 1 : 0,
    headEnd: explicitUsers ? g[0]!.end : serverEnd,
    start: g[0]!.start,
    until: groups[k + 1]?.[0]!.start ?? until,
  }));
  const server: Area = { opts: serverOpts, floor: 0, headEnd: head.end, start: stmt[0]!.start, until: users[0]?.start ?? until };
  return { verb, index, name, server, users, explicitUsers, start: stmt[0]!.start, until };
}

/** Every entry, defaults included, in file order. */
function parse(text: string): Entry[] {
  const statements: Tok[][] = [];
  for (const t of lex(text)) {
    if (t.kind === "word" && STATEMENTS.has(t.text)) statements.push([t]);
    else statements.at(-1)?.push(t); // tokens before the first statement are a syntax error: dropped
  }
  const entries: Entry[] = [];
  let n = 0;
  statements.forEach((s, k) => {
    if (s[0]!.text === "set") return;
    const until = statements[k + 1]?.[0]!.start ?? text.length;
    entries.push(entryOf(s, s[0]!.text === "defaults" ? 0 : ++n, until));
  });
  return entries;
}

function lastOpt(area: Area | undefined, names: readonly string[]): Opt | undefined {
  return area?.opts.findLast((o) => names.includes(o.name));
}

/** The token that sets a user description's remote name: user NAME [there], or a later is NAME there. */
function remoteTok(area: Area): Tok | null {
  let found: Tok | null = null;
  for (const o of area.opts) {
    const [first, second] = o.args;
    const last = o.args.at(-1);
    if (o.name === "user" && first?.kind === "string" && !(last?.kind === "word" && last.text === "here")) found = first;
    if (o.name === "is" && o.args.length === 2 && first?.kind === "string" && second?.kind === "word" && second.text === "there") found = first;
  }
  return found;
}

// ---------------------------------------------------------------------------------------------
// Accounts. A defaults entry counts only as the file's first entry (load_params merges it into every
// later one; another one is an error), and an entry's own options win over it.

const SERVICE_PORTS: Record<string, number> = { pop3: 110, pop3s: 995, imap: 143, imap2: 143, imaps: 993, kpop: 1109 };

/** Protocols that are POP3 underneath but authenticate in a way the proxy cannot pass on. */
const POP3_VARIANTS: Record<string, string> = {
  apop: "uses APOP authentication, which mailsentry cannot pass on",
  rpop: "uses RPOP authentication, which mailsentry cannot pass on",
  kpop: "uses KPOP (Kerberos), which mailsentry cannot pass on",
  sdps: "uses Demon Internet's SDPS extensions, which mailsentry does not speak",
};

interface TlsSettings {
  security: Security;
  clientCert: boolean;
}

/**
 * ssl: TLS from the first byte. Otherwise sslproto '' turns STARTTLS off and any other sslproto
 * requires it; with neither, 6.4 still requires STARTTLS because sslcertck is on by default (tls.c
 * must_starttls: sslcertck or sslfingerprint), and only "no sslcertck" leaves it opportunistic.
 */
function tlsOf(area: Area | undefined, defaults: Area | undefined): TlsSettings {
  const opt = (names: string[]) => lastOpt(area, names) ?? lastOpt(defaults, names);
  const flag = (name: string) => {
    const o = opt([name, `no ${name}`]);
    return o ? o.name === name : undefined;
  };
  const proto = opt(["sslproto"])?.args[0]?.text;
  const security: Security = flag("ssl")
    ? "tls"
    : proto !== undefined
      ? proto === "" ? "plain" : "starttls"
      : (flag("sslcertck") ?? true) || opt(["sslfingerprint"]) ? "starttls" : "plain";
  return { security, clientCert: opt(["sslcert", "sslkey"]) !== undefined };
}

function portOf(o: Opt | undefined): number | null | undefined {
  const arg = o?.args[0];
  if (!arg) return undefined;
  if (/^\d+$/.test(arg.text)) return Number(arg.text);
  return SERVICE_PORTS[arg.text.toLowerCase()] ?? null;
}

function accountOf(e: Entry, defaults: Entry | null, file: string): ClientAccount | null {
  const server = (names: string[]) => lastOpt(e.server, names) ?? lastOpt(defaults?.server, names);
  const proto = server(["proto"])?.args[0]?.text ?? "auto";
  if (proto === "pop2" || proto === "etrn" || proto === "odmr") return null; // not mail fetched over POP3/IMAP
  const dUser = defaults?.users[0];
  const tls = e.users.length > 0 ? e.users.map((a) => tlsOf(a, dUser)) : [tlsOf(undefined, dUser)];
  const security = tls[0]!.security;
  const portOpt = portOf(server(["port", "service"]));
  const isPop = proto !== "imap" && proto !== "auto";
  const protocol: MailProtocol = proto === "auto" ? (portOpt === 110 || portOpt === 995 ? "pop3" : "imap") : isPop ? "pop3" : "imap";
  const port = portOpt ?? (proto === "kpop" ? 1109 : security === "tls" ? (protocol === "pop3" ? 995 : 993) : protocol === "pop3" ? 110 : 143);
  const remotes = e.explicitUsers ? e.users.map(remoteTok) : [];
  const users = remotes.filter((t): t is Tok => t !== null).map((t) => t.text);
  const via = server(["via"])?.args[0]?.text;
  const host = via ?? e.name?.text ?? "";
  const auth = server(["auth"])?.args[0]?.text;
  const unsupported =
    POP3_VARIANTS[proto] ??
    (proto === "auto" ? "has no protocol (fetchmail would try IMAP, then POP3): add proto pop3 or proto imap" : null) ??
    (auth && auth !== "any" && auth !== "password" ? `authenticates with ${auth}, which mailsentry cannot pass on` : null) ??
    (server(["plugin"]) ? "connects through a plugin command" : null) ??
    (portOpt === null ? "names a service that is not a port number mailsentry knows" : null) ??
    (!e.explicitUsers ? (defaults?.explicitUsers && remoteTok(dUser!) ? "takes its user from the defaults entry: give the poll its own user" : "names no user (fetchmail would log in as the local user)") : null) ??
    (remotes.includes(null) ? "has a user description with local names only (user … here)" : null) ??
    (tls.some((t) => t.security !== security) ? "has users with different TLS settings" : null) ??
    (tls.some((t) => t.clientCert) ? "logs in with a TLS client certificate (sslcert/sslkey)" : null) ??
    (lastOpt(dUser, ["sslfingerprint"]) ? "takes sslfingerprint from the defaults entry, and the proxy's certificate has another" : null);
  return {
    client: "fetchmail",
    ref: `poll ${e.index}`,
    file,
    label: e.name?.text ?? "",
    protocol,
    server: host,
    port,
    security,
    user: users[0] ?? "",
    proxied: isLoopback(host) && users.length > 0 && users.every((u) => /[/#]/.test(u)),
    unsupported,
  };
}

function accountsOf(text: string, file: string): ClientAccount[] {
  const entries = parse(text);
  const defaults = entries[0]?.verb === "defaults" ? entries[0] : null;
  const out: ClientAccount[] = [];
  for (const e of entries) {
    if (e.verb === "defaults") continue;
    const a = accountOf(e, defaults, file);
    if (a) out.push(a);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Plan. The poll name stays (it is the entry's label, and what `fetchmail NAME` polls); via routes it.
// fetchmail matches a certificate's DNS names and CN only, never an IP address (checked with 6.4.37:
// "Server CommonName mismatch: localhost != 127.0.0.1"), so a TLS account keeps connecting to the
// listener's address and is told the certificate's name (target.dnsName) with sslcommonname, which
// also replaces one naming the real server.

/** The settings that route `account` (read from `text`) through `target`. TLS mode stays as it is. */
export function planFor(text: string, account: ClientAccount, target: ProxyTarget): Setting[] {
  if (account.proxied) return [];
  const port = listenerPort(account, target);
  const entry = findEntry(text, account.ref);
  const key = (name: string) => `${account.ref}/${name}`;
  const settings: Setting[] = [
    { key: key("via"), value: fmString(target.host, '"', true) },
    { key: key("port"), value: String(port) },
  ];
  entry.users.forEach((area, i) => {
    const n = i + 1;
    const tok = remoteTok(area);
    if (!tok) throw new Error(`${account.label}: user description ${n} has no remote name`);
    settings.push({ key: key(`user#${n}`), value: fmString(routedUser(tok.text, account), text[tok.start] === "'" ? "'" : '"', false) });
    if (account.security === "plain") return;
    settings.push(
      { key: key(`sslcertfile#${n}`), value: fmString(target.caFile, '"', false) },
      // Explicit, so STARTTLS stays required whatever fetchmail's default (tls.c must_starttls).
      { key: key(`sslcertck#${n}`), value: "sslcertck" },
      { key: key(`sslcommonname#${n}`), value: fmString(target.dnsName, '"', true) },
      // The server's fingerprint: the proxy's certificate has another (null is a no-op when absent).
      { key: key(`sslfingerprint#${n}`), value: null },
    );
  });
  return settings;
}

function planAccount(account: ClientAccount, target: ProxyTarget, text: string): Setting[] {
  return planFor(text, account, target);
}

// ---------------------------------------------------------------------------------------------
// get/set.

interface KeyDef {
  area: "server" | "user";
  /** The option names that carry the value (the last one counts, as in fetchmail). */
  names: string[];
  /** Keyword written before an inserted value; null for a flag, whose value is its words. */
  insert: string | null;
  /**
   * The keys plan() inserts go right after the poll name or the user option, in this order; other
   * keys, inserted only when a value comes back, go after the area's last option (rank null).
   */
  rank: number | null;
}

const KEYS = new Map<string, KeyDef>([
  ["via", { area: "server", names: ["via"], insert: "via", rank: 0 }],
  ["port", { area: "server", names: ["port", "service"], insert: "port", rank: 1 }],
  ["sslcertck", { area: "user", names: ["sslcertck", "no sslcertck"], insert: null, rank: 0 }],
  ["sslcertfile", { area: "user", names: ["sslcertfile"], insert: "sslcertfile", rank: 1 }],
  ["sslcommonname", { area: "user", names: ["sslcommonname"], insert: "sslcommonname", rank: 2 }],
  ["sslfingerprint", { area: "user", names: ["sslfingerprint"], insert: "sslfingerprint", rank: null }],
  ["ssl", { area: "user", names: ["ssl", "no ssl"], insert: null, rank: null }],
  ["sslproto", { area: "user", names: ["sslproto"], insert: "sslproto", rank: null }],
  ["sslcertpath", { area: "user", names: ["sslcertpath"], insert: "sslcertpath", rank: null }],
]);

/** Marks where a removed option stood; the JSON after it is the option's exact text. */
const MARK = "# mailsentry removed this while proxied; revert puts it back: ";

function findEntry(text: string, ref: string): Entry {
  const m = /^poll (\d+)$/.exec(ref);
  const entry = m ? parse(text).find((e) => e.index === Number(m[1]) && e.verb !== "defaults") : undefined;
  if (!entry) throw new Error(`fetchmail: no entry ${ref} in this file`);
  return entry;
}

interface Target {
  area: Area;
  kind: "server" | "user";
  /** null: the user key (the remote name token). */
  def: KeyDef | null;
}

function locate(text: string, ref: string, key: string): Target {
  const slash = key.lastIndexOf("/");
  const [name, nth] = key.slice(slash + 1).split("#") as [string, string | undefined];
  if (key.slice(0, slash) !== ref) throw new Error(`fetchmail: key ${key} is not one of ${ref}`);
  const entry = findEntry(text, ref);
  const def = name === "user" ? null : KEYS.get(name);
  if (def === undefined) throw new Error(`fetchmail: unknown key ${key}`);
  if ((def?.area ?? "user") === "server") {
    if (nth !== undefined) throw new Error(`fetchmail: ${key}: a server option has no #n`);
    return { area: entry.server, kind: "server", def };
  }
  const area = nth !== undefined && /^[1-9]\d*$/.test(nth) ? entry.users[Number(nth) - 1] : undefined;
  if (!area || !entry.explicitUsers) throw new Error(`fetchmail: ${key}: ${ref} has no user description ${nth ?? "(missing #n)"}`);
  return { area, kind: "user", def };
}

/** The raw value of an option for its key: the value token, or a flag's words. */
function rawOf(text: string, o: Opt, def: KeyDef): string {
  if (def.insert === null) return text.slice(o.start, o.end);
  const arg = o.args[0];
  return arg ? text.slice(arg.start, arg.end) : "";
}

const optionText = (def: KeyDef, raw: string) => (def.insert === null ? raw : `${def.insert} ${raw}`);

function defOf(name: string, kind: Target["kind"]): KeyDef | undefined {
  return [...KEYS.values()].find((d) => d.area === kind && d.names.includes(name));
}

const prevEnd = (area: Area, i: number) => (i > area.floor ? area.opts[i - 1]!.end : area.headEnd);

/** s without the comments removeOption leaves ("\n", MARK, the JSON, "\n"). */
function withoutMarks(s: string): string {
  const head = `\n${MARK}`;
  let out = "";
  let i = 0;
  for (let at = s.indexOf(head); at >= 0; at = s.indexOf(head, i)) {
    const nl = s.indexOf("\n", at + head.length);
    if (nl < 0) break;
    out += s.slice(i, at);
    i = nl + 1;
  }
  return out + s.slice(i);
}

/**
 * Whether opts[i] is exactly what inserting it would write: one space and its text, right after the
 * option before it but for comments left by removals (which take the blanks before them along).
 */
function asInserted(text: string, area: Area, i: number, def: KeyDef): boolean {
  const o = area.opts[i]!;
  const from = prevEnd(area, i);
  return (def.insert === null || o.name === def.insert) && text.slice(o.start, o.end) === optionText(def, rawOf(text, o, def)) &&
    o.start > from && text[o.start - 1] === " " && withoutMarks(text.slice(from, o.start - 1)) === "";
}

/** Index just past the run of as-inserted options, in rank order, that opens the area. */
function chainEnd(text: string, area: Area, kind: Target["kind"]): number {
  let k = area.floor;
  let rank = -1;
  for (; k < area.opts.length; k++) {
    const def = defOf(area.opts[k]!.name, kind);
    if (def?.rank == null || def.rank <= rank || !asInserted(text, area, k, def)) break;
    rank = def.rank;
  }
  return k;
}

function insertOption(text: string, t: Target, raw: string): string {
  const def = t.def!;
  const { area } = t;
  let at = area.opts.length > area.floor ? area.opts.at(-1)!.end : area.headEnd;
  if (def.rank !== null) {
    const end = chainEnd(text, area, t.kind);
    let k = area.floor;
    while (k < end && defOf(area.opts[k]!.name, t.kind)!.rank! < def.rank) k++;
    at = prevEnd(area, k);
  }
  return splice(text, at, at, ` ${optionText(def, raw)}`);
}

/** Removes opts[i]: plainly when setting it again would write it back the same, else into a comment. */
function removeOption(text: string, ref: string, key: string, t: Target, i: number): string {
  const o = t.area.opts[i]!;
  const plain = splice(text, o.start - 1, o.end, "");
  if (text[o.start - 1] === " " && setValue(plain, ref, key, rawOf(text, o, t.def!)) === text) return plain;
  // The blanks before the option go into the comment too, so what follows keeps its own spacing.
  let from = o.start;
  while (from > prevEnd(t.area, i) && " \t\r\n".includes(text[from - 1]!)) from--;
  return splice(text, from, o.end, `\n${MARK}${JSON.stringify(text.slice(from, o.end))}\n`);
}

/** A comment left by removeOption for this key in this area: where it is and the option it held. */
function markerFor(text: string, t: Target): { from: number; to: number; option: string } | null {
  let found: { from: number; to: number; option: string } | null = null;
  const head = `\n${MARK}`;
  for (let at = text.indexOf(head, t.area.start); at >= 0 && at < t.area.until; at = text.indexOf(head, at + 1)) {
    const nl = text.indexOf("\n", at + head.length);
    if (nl < 0) break;
    try {
      const option = JSON.parse(text.slice(at + head.length, nl));
      const o = typeof option === "string" ? options(lex(option))[0] : undefined;
      if (o && t.def!.names.includes(o.name)) found = { from: at, to: nl + 1, option };
    } catch {
      // not ours after all
    }
  }
  return found;
}

function restoreMarker(m: { from: number; to: number; option: string }, text: string, def: KeyDef, raw: string): string {
  const o = options(lex(m.option))[0]!;
  const arg = o.args[0];
  const option = def.insert === null ? raw : arg ? splice(m.option, arg.start, arg.end, raw) : `${def.insert} ${raw}`;
  return splice(text, m.from, m.to, option);
}

function getValue(text: string, ref: string, key: string): string | null {
  const t = locate(text, ref, key);
  if (!t.def) {
    const tok = remoteTok(t.area);
    return tok ? text.slice(tok.start, tok.end) : null;
  }
  const o = lastOpt(t.area, t.def.names);
  return o ? rawOf(text, o, t.def) : null;
}

function setValue(text: string, ref: string, key: string, value: string | null): string {
  const t = locate(text, ref, key);
  if (!t.def) {
    const tok = remoteTok(t.area);
    if (!tok || value === null) throw new Error(`fetchmail: ${key} can only be replaced`);
    return splice(text, tok.start, tok.end, value);
  }
  const def = t.def;
  const i = t.area.opts.findLastIndex((o) => def.names.includes(o.name));
  if (i < 0) {
    if (value === null) return text;
    const m = markerFor(text, t);
    return m ? restoreMarker(m, text, def, value) : insertOption(text, t, value);
  }
  if (value === null) return removeOption(text, ref, key, t, i);
  const o = t.area.opts[i]!;
  const arg = o.args[0];
  if (def.insert === null) return splice(text, o.start, o.end, value);
  return arg ? splice(text, arg.start, arg.end, value) : splice(text, o.end, o.end, ` ${value}`);
}

// ---------------------------------------------------------------------------------------------
// The UID list. fetchmail keeps the POP3 UIDs it has seen in its idfile as lines "<remote user>@<via,
// or else the poll name> <uid>" (uid.c; user and host compared case-insensitively, split at the last
// "@"), so routing an entry changes its key and, with keep, every kept message would be fetched
// again. These let the caller carry the lines over (and back on revert).

/** The idfile key of each user description of entry `ref` ("" for one without a remote name). */
export function fetchidsKeys(text: string, ref: string): string[] {
  const entry = findEntry(text, ref);
  const entries = parse(text);
  const defaults = entries[0]?.verb === "defaults" ? entries[0] : null;
  const host = (lastOpt(entry.server, ["via"]) ?? lastOpt(defaults?.server, ["via"]))?.args[0]?.text ?? entry.name?.text ?? "";
  return entry.users.map((a) => {
    const tok = entry.explicitUsers ? remoteTok(a) : null;
    return tok ? `${tok.text}@${host}` : "";
  });
}

/** The idfile text with the keys renamed (each pair [from, to]); every other byte as it was. */
export function rekeyFetchids(ids: string, renames: ReadonlyArray<readonly [string, string]>): string {
  return ids.replace(/^[^\n]*/gm, (line) => {
    const at = line.indexOf("@");
    const sp = at < 0 ? -1 : line.indexOf(" ", at);
    if (sp < 0) return line;
    const key = line.slice(0, sp).replace(/[ \t]+$/, "");
    const hit = renames.find(([from]) => from !== "" && from.toLowerCase() === key.toLowerCase());
    return hit ? hit[1] + line.slice(key.length) : line;
  });
}

/** Where fetchmail keeps its UID list for `rcFile`: set idfile (relative to the rc file's directory), else beside the rc file's home. */
export function fetchidsFile(text: string, rcFile: string, env: NodeJS.ProcessEnv): string {
  const toks = lex(text);
  let idfile: string | undefined;
  toks.forEach((t, i) => {
    if (t.kind !== "word" || t.text !== "set" || toks[i + 1]?.text !== "idfile") return;
    const v = toks[i + 2]?.kind === "map" ? toks[i + 3] : toks[i + 2];
    if (v?.kind === "string") idfile = v.text;
  });
  if (idfile !== undefined) return isAbsolute(idfile) ? idfile : join(dirname(rcFile), idfile);
  return join(env.FETCHMAILHOME ? resolve(env.FETCHMAILHOME) : env.HOME ?? dirname(rcFile), ".fetchids");
}

// ---------------------------------------------------------------------------------------------
// Files. With FETCHMAILHOME set fetchmail reads $FETCHMAILHOME/fetchmailrc and nothing else
// (checked with 6.4.37: ~/.fetchmailrc is then ignored), else ~/.fetchmailrc.

async function findRcFiles(env: NodeJS.ProcessEnv): Promise<string[]> {
  const file = env.FETCHMAILHOME ? join(resolve(env.FETCHMAILHOME), "fetchmailrc") : env.HOME ? join(env.HOME, ".fetchmailrc") : null;
  return file && (await isFile(file)) ? [file] : [];
}

export const fetchmail: ClientFormat = {
  kind: "fetchmail",
  findFiles: findRcFiles,
  accounts: accountsOf,
  plan: planAccount,
  get: getValue,
  set: setValue,
};
