// Real IMAP clients for the e2e tests: python3 imaplib (every fetch shape of IMAP-NOTES, and IDLE),
// mbsync, curl imap://, fetchmail and imapflow, each handing back the message bytes it got.
// Nothing here knows about the proxy: tests point these at Dovecot or at the proxy's port.
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run, type RunResult } from "./clients.ts";

export { have } from "./clients.ts";

export interface ImapConnect {
  /** Address to connect to; TLS checks the certificate for it (127.0.0.1 or localhost). */
  host: string;
  port: number;
  /** plain: no TLS; starttls: STARTTLS before login; imaps: TLS from the first byte. */
  mode: "plain" | "starttls" | "imaps";
  /** May hold "/", "#" and ":" (a routed name); each client passes it through as it is. */
  user: string;
  password: string;
  /** CA to verify the server with (required for starttls/imaps). */
  caFile?: string;
}

const b64 = (s: string) => new Uint8Array(Buffer.from(s, "base64"));

function failure(what: string, o: ImapConnect, r: RunResult): Error {
  const tail = (r.err + new TextDecoder().decode(r.out)).trim().split("\n").slice(-4).join(" | ");
  return new Error(`${what} (${o.mode}, port ${o.port}) exited ${r.code}: ${tail}`);
}

// ---------------------------------------------------------------------------------------------
// python3 imaplib

/**
 * whole: `UID FETCH n BODY.PEEK[]`; rfc822 / rfc822peek: `RFC822` / `RFC822.PEEK`; chunked:
 * Thunderbird's header sync, then `(UID RFC822.SIZE BODY.PEEK[]<start.65536>)` until a short chunk;
 * parts: BODYSTRUCTURE, then `BODY.PEEK[n.MIME] BODY.PEEK[n]` for every leaf; text-preview:
 * `BODY.PEEK[TEXT]<0.2048>`; bulk: `UID FETCH 1:* BODY.PEEK[]` in one command.
 */
export type FetchShape = "whole" | "rfc822" | "rfc822peek" | "chunked" | "parts" | "text-preview" | "bulk";

export interface ImaplibOptions {
  /** quoted: LOGIN with quoted strings; literal: LOGIN with the password as a {n} literal (the
   * default for a non-ASCII password, which imaplib cannot quote); plain: AUTHENTICATE PLAIN. */
  login?: "quoted" | "literal" | "plain";
  mailbox?: string;
  /** EXAMINE instead of SELECT: RFC822 then leaves \Seen unset. */
  readonly?: boolean;
  /** Only these UIDs (default: every message in the mailbox). */
  uids?: number[];
  /** Chunk size of the chunked shape (default 65536, Thunderbird's). */
  chunkSize?: number;
}

export interface ImapFetched {
  uid: number;
  /** RFC822.SIZE from the sync before the fetches (the chunked shape: from its header sync). */
  size: number;
  flags: string[];
  /**
   * Every body item as the server labelled it ("BODY[]", "RFC822", "BODY[2.1.MIME]", "BODY[TEXT]<0>",
   * "BODY[HEADER.FIELDS (...)]"), in arrival order; null for NIL. The chunked shape joins its
   * chunks under "BODY[]".
   */
  items: Record<string, Uint8Array | null>;
  /** The chunked shape: each chunk's literal length, in order. */
  chunks?: number[];
  /** The server's NO or BAD to this message's fetch (imaplib's wording, holding the server's text). */
  error?: string;
  /** The parts shape: BODYSTRUCTURE in canonical form (quoted strings, NIL) and the leaf sections. */
  bodystructure?: string;
  sections?: string[];
}

export interface ImaplibRun {
  greeting: string;
  /** CAPABILITY asked for after login. */
  capabilities: string[];
  messages: ImapFetched[];
}

// Literals arrive from imaplib as (head, bytes) pairs and the rest of a response as a plain line; the
// lexer below turns one response into tokens (literal and quoted strings as bytes) and the parser
// into nested lists, so items are found by structure, never by searching text.
const IMAPLIB_SCRIPT = String.raw`
import base64, imaplib, json, re, ssl, sys
cfg = json.loads(sys.argv[1])

class Str(bytes): pass

def lex(b, toks):
    i, n = 0, len(b)
    while i < n:
        c = b[i:i+1]
        if c == b" ":
            i += 1
        elif c in (b"(", b")"):
            toks.append(c.decode()); i += 1
        elif c == b'"':
            j, buf = i + 1, bytearray()
            while b[j:j+1] != b'"':
                if b[j:j+1] == b"\\": j += 1
                buf += b[j:j+1]; j += 1
            toks.append(Str(buf)); i = j + 1
        elif c == b"{" and re.match(rb"\{\d+\+?\}$", b[i:]):
            i = n  # a literal marker: the literal itself is the next piece
        else:
            j, depth = i, 0
            while j < n:
                ch = b[j:j+1]
                if ch == b"[": depth += 1
                elif ch == b"]": depth -= 1
                elif depth == 0 and ch in (b" ", b"(", b")"): break
                j += 1
            toks.append(b[i:j].decode("latin1")); i = j

def parse(toks, k):
    out = []
    while k < len(toks):
        t = toks[k]
        if t == "(":
            sub, k = parse(toks, k + 1); out.append(sub)
        elif t == ")":
            return out, k + 1
        else:
            out.append(None if t == "NIL" else t); k += 1
    return out, k

def responses(data):
    groups, cur = [], []
    for d in data:
        if d is None: continue
        if isinstance(d, tuple):
            cur += [d[0], Str(d[1])]
        else:
            cur.append(d); groups.append(cur); cur = []
    if cur: groups.append(cur)
    out = []
    for g in groups:
        toks = []
        for piece in g:
            if isinstance(piece, Str): toks.append(piece)
            else: lex(piece, toks)
        tree, _ = parse(toks, 0)
        if len(tree) >= 2 and isinstance(tree[1], list):
            att = tree[1]
            out.append({att[i].upper(): att[i + 1] for i in range(0, len(att) - 1, 2)} | {"_order": [att[i] for i in range(0, len(att) - 1, 2)]})
    return out

def canon(x):
    if x is None: return "NIL"
    if isinstance(x, list): return "(" + " ".join(canon(e) for e in x) + ")"
    if isinstance(x, Str): return '"' + x.decode("latin1").replace("\\", "\\\\").replace('"', '\\"') + '"'
    return x

mode, host, port = cfg["mode"], cfg["host"], cfg["port"]
ctx = ssl.create_default_context(cafile=cfg.get("caFile")) if mode != "plain" else None
if mode == "imaps":
    M = imaplib.IMAP4_SSL(host, port, ssl_context=ctx, timeout=30)
else:
    M = imaplib.IMAP4(host, port, timeout=30)
greeting = M.welcome.decode("latin1")
if mode == "starttls":
    M.starttls(ctx)
user, pw = cfg["user"], cfg["password"]
how = cfg.get("login") or ("quoted" if pw.isascii() else "literal")
if how == "quoted":
    M.login(M._quote(user), pw)
elif how == "literal":
    M.literal = pw.encode()
    typ, dat = M._simple_command("LOGIN", M._quote(user))
    if typ != "OK": raise imaplib.IMAP4.error(dat[-1])
    M.state = "AUTH"
else:
    M.authenticate("PLAIN", lambda _: b"\0" + user.encode() + b"\0" + pw.encode())
typ, dat = M.capability()
caps = dat[-1].decode("latin1").split()
typ, dat = M.select(cfg.get("mailbox") or "INBOX", readonly=bool(cfg.get("readonly")))
if typ != "OK": raise imaplib.IMAP4.error("SELECT: %r" % dat)

def fetch(uidset, items):
    typ, data = M.uid("FETCH", uidset, items)
    if typ != "OK": raise imaplib.IMAP4.error("UID FETCH %s %s: %s %r" % (uidset, items, typ, data))
    return responses(data)

class Refused(Exception): pass
def fetch_or_refused(uidset, items):
    # A NO or BAD to a message's fetch is the result, as a client would show it; a dropped connection is not.
    try:
        return fetch(uidset, items)
    except imaplib.IMAP4.abort:
        raise
    except imaplib.IMAP4.error as e:
        raise Refused(str(e))

msgs, trees = {}, {}
def record(resps, keep_items=True):
    for r in resps:
        if "UID" not in r: continue  # an unsolicited flag update
        m = msgs.setdefault(int(r["UID"]), {"uid": int(r["UID"]), "size": 0, "flags": [], "items": []})
        if "RFC822.SIZE" in r: m["size"] = int(r["RFC822.SIZE"])
        if "FLAGS" in r: m["flags"] = r["FLAGS"]
        if "BODYSTRUCTURE" in r:
            trees[m["uid"]] = r["BODYSTRUCTURE"]
            m["bodystructure"] = canon(r["BODYSTRUCTURE"])
        if keep_items:
            for name in r["_order"]:
                if name.upper() in ("UID", "RFC822.SIZE", "FLAGS", "BODYSTRUCTURE", "MODSEQ"): continue
                v = r[name.upper()]
                m["items"].append([name, None if v is None else base64.b64encode(v).decode()])

def leaves(body, path, out):
    if isinstance(body[0], list):  # multipart: children, then the subtype and extensions
        i = 0
        while isinstance(body[i], list):
            leaves(body[i], path + [i + 1], out); i += 1
    elif body[0].upper() == b"MESSAGE" and body[1].upper() in (b"RFC822", b"GLOBAL") and len(body) > 8 and isinstance(body[8], list):
        inner = body[8]
        if isinstance(inner[0], list): leaves(inner, path, out)
        else: out.append(".".join(map(str, path + [1])))
    else:
        out.append(".".join(map(str, path or [1])))

shape = cfg["shape"]
if shape == "chunked":
    record(fetch("1:*", "(UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Subject Date Message-ID)])"))
else:
    record(fetch("1:*", "(UID RFC822.SIZE FLAGS)"), keep_items=False)
uids = [u for u in sorted(msgs) if not cfg.get("uids") or u in cfg["uids"]]
for u in list(msgs):
    if u not in uids: del msgs[u]

def per_message(u):
    s = str(u)
    if shape == "whole": record(fetch_or_refused(s, "BODY.PEEK[]"))
    elif shape == "rfc822": record(fetch_or_refused(s, "RFC822"))
    elif shape == "rfc822peek": record(fetch_or_refused(s, "RFC822.PEEK"))
    elif shape == "text-preview": record(fetch_or_refused(s, "(BODY.PEEK[TEXT]<0.2048>)"))
    elif shape == "chunked":
        size = cfg.get("chunkSize") or 65536
        start, chunks, body = 0, [], []
        while True:
            rs = [r for r in fetch_or_refused(s, "(UID RFC822.SIZE BODY.PEEK[]<%d.%d>)" % (start, size)) if r.get("UID") == s]
            names = [n for r in rs for n in r["_order"] if n.upper().startswith("BODY[]")]
            if names != ["BODY[]<%d>" % start]: raise ValueError("chunk at %d came back as %r" % (start, names))
            data = rs[0][names[0].upper()] or b""
            chunks.append(len(data)); body.append(data)
            if len(data) < size: break
            start += size
        msgs[u]["items"].append(["BODY[]", base64.b64encode(b"".join(body)).decode()])
        msgs[u]["chunks"] = chunks
    elif shape == "parts":
        record(fetch_or_refused(s, "(BODYSTRUCTURE)"))
        secs = []
        leaves(trees[u], [], secs)
        msgs[u]["sections"] = secs
        for sec in secs: record(fetch_or_refused(s, "(BODY.PEEK[%s.MIME] BODY.PEEK[%s])" % (sec, sec)))
    else:
        raise ValueError("unknown shape " + shape)

if shape == "bulk":
    try:
        record(fetch_or_refused(",".join(map(str, uids)) if cfg.get("uids") else "1:*", "BODY.PEEK[]"))
    except Refused as e:
        for u in uids: msgs[u]["error"] = str(e)
else:
    for u in uids:
        try:
            per_message(u)
        except Refused as e:
            msgs[u]["error"] = str(e)

M.logout()
print(json.dumps({"greeting": greeting, "capabilities": caps, "messages": [msgs[u] for u in uids]}))
`;

/** One imaplib session: login, (EXAMINE|SELECT), a size sync, then the fetches of `shape`; throws with stderr on failure. */
export async function imaplib(o: ImapConnect & ImaplibOptions, shape: FetchShape): Promise<ImaplibRun> {
  const r = await run(["python3", "-c", IMAPLIB_SCRIPT, JSON.stringify({ ...o, shape })]);
  if (r.code !== 0) throw failure(`imaplib ${shape}`, o, r);
  const parsed = JSON.parse(new TextDecoder().decode(r.out)) as Omit<ImaplibRun, "messages"> & {
    messages: (Omit<ImapFetched, "items"> & { items: [string, string | null][] })[];
  };
  return {
    ...parsed,
    messages: parsed.messages.map((m) => ({
      ...m,
      items: Object.fromEntries(m.items.map(([k, v]) => [k, v === null ? null : b64(v)])),
    })),
  };
}

/** The whole-message bytes of a run of the whole, rfc822, rfc822peek, chunked or bulk shape, by UID order. */
export function bodiesOf(r: ImaplibRun): Uint8Array[] {
  return r.messages.map((m) => {
    const body = m.items["BODY[]"] ?? m.items["RFC822"];
    if (!body) throw new Error(`UID ${m.uid}: ${m.error ?? `no whole-message item among ${Object.keys(m.items).join(", ")}`}`);
    return body;
  });
}

// IDLE is not in imaplib before Python 3.14: the script sends it by hand and says IDLING on its
// own line once the server's continuation arrived, so the test delivers mail only then.
const IDLE_SCRIPT = String.raw`
import imaplib, json, re, ssl, sys, time
cfg = json.loads(sys.argv[1])
mode, host, port = cfg["mode"], cfg["host"], cfg["port"]
ctx = ssl.create_default_context(cafile=cfg.get("caFile")) if mode != "plain" else None
M = imaplib.IMAP4_SSL(host, port, ssl_context=ctx, timeout=30) if mode == "imaps" else imaplib.IMAP4(host, port, timeout=30)
if mode == "starttls": M.starttls(ctx)
user, pw = cfg["user"], cfg["password"]
if pw.isascii():
    M.login(M._quote(user), pw)
else:
    M.authenticate("PLAIN", lambda _: b"\0" + user.encode() + b"\0" + pw.encode())
typ, dat = M.select(cfg.get("mailbox") or "INBOX")
exists_before = int(dat[-1])
tag = M._new_tag()
M.send(tag + b" IDLE\r\n")
cont = M._get_line().decode("latin1")
if not cont.startswith("+"): raise imaplib.IMAP4.error("IDLE refused: " + cont)
print("IDLING", flush=True)
sys.stdin.readline()  # the test has delivered
t0 = time.monotonic()
untagged = []
while True:
    line = M._get_line().decode("latin1")
    untagged.append(line)
    if re.match(r"\* \d+ EXISTS$", line): break
waited = (time.monotonic() - t0) * 1000
M.send(b"DONE\r\n")
after = []
while True:
    line = M._get_line()
    if line.startswith(tag + b" "):
        done = line.decode("latin1"); break
    after.append(line.decode("latin1"))
M.logout()
print(json.dumps({"existsBefore": exists_before, "continuation": cont, "untagged": untagged, "afterDone": after, "done": done, "waitedMs": waited}))
`;

export interface IdleRun {
  /** EXISTS count SELECT reported. */
  existsBefore: number;
  /** The server's "+ idling" line. */
  continuation: string;
  /** Untagged lines while idling, up to and including the first "* N EXISTS". */
  untagged: string[];
  /** Lines between DONE and the tagged reply, and the tagged reply itself. */
  afterDone: string[];
  done: string;
  /** From the test's delivery to the EXISTS line. */
  waitedMs: number;
}

/** SELECT, IDLE; once idling, awaits `onIdling` (deliver a message there), then waits for EXISTS and sends DONE. */
export async function imaplibIdle(o: ImapConnect & { mailbox?: string }, onIdling: () => Promise<void> | void): Promise<IdleRun> {
  const proc = Bun.spawn(["python3", "-c", IDLE_SCRIPT, JSON.stringify(o)], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
  const errText = new Response(proc.stderr).text();
  const reader = proc.stdout.getReader();
  const dec = new TextDecoder();
  let text = "";
  let signalled = false;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    text += dec.decode(value, { stream: true });
    if (!signalled && text.includes("IDLING\n")) {
      signalled = true;
      try {
        await onIdling();
      } catch (e) {
        proc.kill(); // it would wait for an EXISTS that is not coming
        throw e;
      }
      proc.stdin.write("go\n");
      proc.stdin.end();
    }
  }
  const code = await proc.exited;
  if (code !== 0) throw failure("imaplib IDLE", o, { code, out: new TextEncoder().encode(text), err: await errText });
  return JSON.parse(text.slice(text.indexOf("IDLING\n") + 7)) as IdleRun;
}

// ---------------------------------------------------------------------------------------------
// mbsync (isync 1.4: SSLType; 1.5 renamed it TLSType)

/** A string argument in an mbsyncrc: quoted, with '"' and '\' backslash-escaped (mbsync(1)). */
const rcQuote = (s: string) => `"${s.replace(/[\\"]/g, (c) => `\\${c}`)}"`;

export interface MbsyncRun {
  /**
   * The local Maildir's files, by the UID in their names: LF line ends, and an X-TUID header that
   * mbsync 1.4 adds at the end of the header even on a pull (see withoutTuid).
   */
  messages: Uint8Array[];
  uids: number[];
  run: RunResult;
}

/** Pulls INBOX into a fresh local Maildir with `mbsync -a`; `authMechs` restricts the login (e.g. "LOGIN"). */
export async function mbsync(o: ImapConnect & { authMechs?: string }): Promise<MbsyncRun> {
  const dir = await mkdtemp(join(tmpdir(), "mailsentry-mbsync-"));
  try {
    const local = join(dir, "mail");
    await mkdir(local);
    const ssl = { plain: "None", starttls: "STARTTLS", imaps: "IMAPS" }[o.mode];
    const rc = [
      "IMAPAccount remote",
      // isync 1.4 matches certificates against DNS names only (not IP addresses).
      `Host ${o.mode !== "plain" && o.host === "127.0.0.1" ? "localhost" : o.host}`,
      `Port ${o.port}`,
      `User ${rcQuote(o.user)}`,
      `Pass ${rcQuote(o.password)}`,
      `SSLType ${ssl}`,
      ...(o.caFile && o.mode !== "plain" ? [`CertificateFile ${rcQuote(o.caFile)}`] : []),
      ...(o.authMechs ? [`AuthMechs ${o.authMechs}`] : []),
      "",
      "IMAPStore remote-store",
      "Account remote",
      "",
      "MaildirStore local-store",
      `Path ${rcQuote(local + "/")}`,
      `Inbox ${rcQuote(join(local, "INBOX"))}`,
      "",
      "Channel pull",
      "Far :remote-store:",
      "Near :local-store:",
      "Patterns INBOX",
      "Sync Pull",
      "Create Near",
      "Expunge None",
      "",
    ].join("\n");
    const rcFile = join(dir, "mbsyncrc");
    await writeFile(rcFile, rc, { mode: 0o600 });
    const r = await run(["mbsync", "-c", rcFile, "-a"], { env: { ...(process.env as Record<string, string>), HOME: dir } });
    if (r.code !== 0) throw failure("mbsync", o, r);
    const files: { uid: number; path: string }[] = [];
    for (const sub of ["cur", "new"]) {
      for (const name of await readdir(join(local, "INBOX", sub))) {
        const uid = Number(/,U=(\d+)/.exec(name)?.[1]);
        if (!uid) throw new Error(`mbsync: a message file without a UID: ${name}`);
        files.push({ uid, path: join(local, "INBOX", sub, name) });
      }
    }
    files.sort((a, b) => a.uid - b.uid);
    return { messages: await Promise.all(files.map(async (f) => new Uint8Array(await readFile(f.path)))), uids: files.map((f) => f.uid), run: r };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A file mbsync wrote, without the X-TUID line it added to the header: the message with LF line ends. */
export function withoutTuid(file: Uint8Array): Uint8Array {
  const buf = Buffer.from(file.buffer, file.byteOffset, file.byteLength);
  const tuid = Buffer.from("X-TUID: ");
  // Walk the header's lines (each starts at 0 or after a LF) up to the blank line.
  for (let line = 0; line < buf.length && buf[line] !== 0x0a;) {
    const next = buf.indexOf(0x0a, line) + 1 || buf.length;
    if (buf.subarray(line, line + tuid.length).equals(tuid)) {
      return new Uint8Array(Buffer.concat([buf.subarray(0, line), buf.subarray(next)]));
    }
    line = next;
  }
  return file;
}

// ---------------------------------------------------------------------------------------------
// curl imap:// and imaps://

/**
 * One message by UID: `UID FETCH n BODY[]`, the literal's bytes on stdout. curl splits -u at the
 * first colon and a routed name holds one, so the credentials go in the URL, percent-encoded.
 * curl 7.88 logs in with AUTHENTICATE when the server offers a mechanism (LOGIN only when it offers
 * none); `saslMech` picks one ("PLAIN", "LOGIN").
 */
export async function curlImap(o: ImapConnect & { mailbox?: string; saslMech?: string }, uid: number): Promise<Uint8Array> {
  const scheme = o.mode === "imaps" ? "imaps" : "imap";
  const url = `${scheme}://${encodeURIComponent(o.user)}:${encodeURIComponent(o.password)}@${o.host}:${o.port}/` +
    `${encodeURIComponent(o.mailbox ?? "INBOX")};UID=${uid}`;
  const args = ["curl", "-sS", "--max-time", "30"];
  if (o.saslMech) args.push("--login-options", `AUTH=${o.saslMech}`);
  if (o.caFile) args.push("--cacert", o.caFile);
  if (o.mode === "starttls") args.push("--ssl-reqd");
  const r = await run([...args, url]);
  if (r.code !== 0) throw failure(`curl ${scheme}`, o, r);
  return r.out;
}

// ---------------------------------------------------------------------------------------------
// fetchmail over IMAP

/**
 * A string in a fetchmailrc. Its lexer ends a string at the next quote of the kind that opened it,
 * escapes or not, then decodes C escapes: quote with the kind the string does not hold.
 */
function fetchmailQuote(s: string): string {
  const q = s.includes('"') ? "'" : '"';
  if (s.includes(q)) throw new Error("fetchmail helper: a string with both quote kinds cannot be written in a fetchmailrc");
  return `${q}${s.replace(/\\/g, "\\\\")}${q}`;
}

export interface FetchmailImapRun {
  /** What fetchmail handed its MDA, in order: its own Received: header on top, LF line ends. */
  messages: Uint8Array[];
  run: RunResult;
}

/**
 * One poll of INBOX, every message (fetchall), keeping them on the server; each message goes to
 * its own file through an MDA. fetchmail 6.4 checks certificates against DNS names only, so TLS
 * to 127.0.0.1 names "localhost" as the certificate's name (sslcommonname).
 */
export async function fetchmailImap(o: ImapConnect): Promise<FetchmailImapRun> {
  const dir = await mkdtemp(join(tmpdir(), "mailsentry-fetchmail-imap-"));
  try {
    const out = join(dir, "out");
    await mkdir(out);
    const mda = join(dir, "mda.sh");
    // fetchmail runs the MDA once per message, one after the other: number the files in that order.
    await writeFile(mda, `#!/bin/sh\nn=$(ls "$1" | wc -l)\ncat > "$1/$(printf %06d "$n")"\n`, { mode: 0o755 });
    const tls = o.mode === "plain" ? " sslproto ''"
      : `${o.mode === "imaps" ? " ssl" : ""} sslproto tls1.2+ sslcertck sslcertfile ${fetchmailQuote(o.caFile ?? "")}` +
        (/^[\d.]+$/.test(o.host) ? " sslcommonname localhost" : "");
    const rc = join(dir, "fetchmailrc");
    await writeFile(rc, `poll ${o.host} service ${o.port} protocol IMAP user ${fetchmailQuote(o.user)} password ${fetchmailQuote(o.password)}` +
      `${tls} keep fetchall mda ${fetchmailQuote(`${mda} ${out}`)}\n`);
    await chmod(rc, 0o600); // fetchmail refuses an rc file others can read
    const env: Record<string, string> = { ...(process.env as Record<string, string>), HOME: dir };
    const r = await run(["fetchmail", "-f", rc, "--nosyslog", "--pidfile", join(dir, "fetchmail.pid"), "-v"], { env });
    if (r.code !== 0) throw failure("fetchmail", o, r);
    const names = (await readdir(out)).sort();
    return { messages: await Promise.all(names.map(async (n) => new Uint8Array(await readFile(join(out, n))))), run: r };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A seeded message as fetchmail hands it over: LF line ends (its Received: header comes on top). */
export function asLf(m: Uint8Array): Uint8Array {
  const out = new Uint8Array(m.length);
  let n = 0;
  for (let i = 0; i < m.length; i++) if (!(m[i] === 0x0d && m[i + 1] === 0x0a)) out[n++] = m[i]!;
  return out.slice(0, n);
}

// ---------------------------------------------------------------------------------------------
// imapflow, in this process

export interface ImapflowDownload {
  bytes: Uint8Array;
  /** What imapflow expected from RFC822.SIZE (or the part's size). */
  expectedSize: number | undefined;
  /** The server's capabilities as imapflow saw them after login. */
  capabilities: string[];
  /** Whether the session ran under COMPRESS=DEFLATE (imapflow's own deflate stream exists). */
  compressed: boolean;
}

/**
 * imapflow's download() of one message by UID (64 KiB windows of BODY.PEEK[]), or of one part,
 * transfer-decoded as imapflow hands parts out. imapflow turns COMPRESS=DEFLATE on when offered.
 */
export async function imapflowDownload(o: ImapConnect & { part?: string; mailbox?: string }, uid: number): Promise<ImapflowDownload> {
  const { ImapFlow } = await import("imapflow");
  const client = new ImapFlow({
    host: o.host,
    port: o.port,
    secure: o.mode === "imaps",
    doSTARTTLS: o.mode === "starttls" ? true : o.mode === "plain" ? false : undefined,
    auth: { user: o.user, pass: o.password },
    tls: o.caFile ? { ca: await readFile(o.caFile, "utf8") } : undefined,
    logger: false,
  });
  await client.connect();
  try {
    const lock = await client.getMailboxLock(o.mailbox ?? "INBOX");
    try {
      const d = await client.download(String(uid), o.part, { uid: true });
      if (!d.content) throw new Error(`imapflow: UID ${uid} not found`);
      const chunks: Uint8Array[] = [];
      for await (const c of d.content) chunks.push(c as Uint8Array);
      return {
        bytes: new Uint8Array(Buffer.concat(chunks)),
        expectedSize: d.meta.expectedSize,
        capabilities: [...client.capabilities.keys()],
        // Not in imapflow's typings: the deflate stream it sets up once COMPRESS is accepted.
        compressed: Boolean((client as unknown as { _deflate?: unknown })._deflate),
      };
    } finally {
      lock.release();
    }
  } finally {
    await client.logout();
  }
}

// ---------------------------------------------------------------------------------------------
// A message for section fetches

export interface NestedMessage {
  bytes: Uint8Array;
  /** Every leaf section as the parts shape finds it: its MIME header (with the blank line) and body. */
  sections: Record<string, { mime: Uint8Array; body: Uint8Array }>;
}

/**
 * multipart/mixed holding a text part (1), a multipart/alternative (2.1, 2.2), a message/rfc822
 * that is multipart (3.1 text, 3.2 base64 attachment) and a message/rfc822 with a single-part body
 * (4.1). Built from its sections, so each section's bytes are known exactly.
 */
export function nestedMessage(): NestedMessage {
  const enc = new TextEncoder();
  const sections: Record<string, { mime: string; body: string }> = {};
  const part = (sec: string | null, mime: string, body: string) => {
    if (sec) sections[sec] = { mime: `${mime}\r\n`, body };
    return `${mime}\r\n${body}`;
  };
  // The CRLF before each boundary line belongs to the boundary: a part's body ends just before it.
  const multipart = (boundary: string, parts: string[]) =>
    `--${boundary}\r\n${parts.join(`\r\n--${boundary}\r\n`)}\r\n--${boundary}--\r\n`;
  const attachment = Buffer.from(Array.from({ length: 300 }, (_, i) => i & 0xff)).toString("base64").replace(/.{76}/g, "$&\r\n");
  const inner = "From: inner@example.test\r\nSubject: inner\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"IN\"\r\n\r\n" +
    multipart("IN", [
      part("3.1", "Content-Type: text/plain; charset=us-ascii\r\n", "inner text\r\n.dot line\r\n"),
      part("3.2", "Content-Type: application/octet-stream; name=\"a.bin\"\r\nContent-Transfer-Encoding: base64\r\n", `${attachment}\r\n`),
    ]);
  const singleInnerBody = "a single-part inner body\r\n";
  const singleInner = "From: single@example.test\r\nSubject: single\r\n\r\n" + singleInnerBody;
  const text = "From: a@example.test\r\nTo: alice@example.test\r\nSubject: nested\r\nMIME-Version: 1.0\r\n" +
    "Content-Type: multipart/mixed; boundary=\"OUT\"\r\n\r\nThis is a preamble.\r\n" +
    multipart("OUT", [
      part("1", "Content-Type: text/plain; charset=utf-8\r\n", "Top text, gr\u00fc\u00dfe.\r\n"),
      part(null, "Content-Type: multipart/alternative; boundary=\"ALT\"\r\n", multipart("ALT", [
        part("2.1", "Content-Type: text/plain\r\n", "plain alternative\r\n"),
        part("2.2", "Content-Type: text/html\r\n", "<p>html alternative</p>\r\n"),
      ])),
      part(null, "Content-Type: message/rfc822\r\n", inner),
      part(null, "Content-Type: message/rfc822\r\n", singleInner),
    ]);
  // 4.1 is the body of a message whose header is the MIME header of the part.
  sections["4.1"] = { mime: "From: single@example.test\r\nSubject: single\r\n\r\n", body: singleInnerBody };
  return {
    bytes: enc.encode(text),
    sections: Object.fromEntries(Object.entries(sections).map(([k, v]) => [k, { mime: enc.encode(v.mime), body: enc.encode(v.body) }])),
  };
}
