// Real mail clients as subprocesses for the e2e tests: python3 poplib (driven by a list of
// operations, results back as JSON with message bytes in base64), curl pop3:// and pop3s://, and
// fetchmail with a generated owner-only rc file. Nothing here knows about the proxy.
import { test } from "bun:test";
import { chmod, writeFile } from "node:fs/promises";
import { join } from "node:path";

const reportedMissing = new Set<string>();

/**
 * Whether a program is installed; asked while tests are collected (in skipIf conditions, never in a
 * test body). Off CI a missing one skips what needs it. With CI=true it also adds a failing test:
 * .ci/run installs every program the suite uses, so one missing is a broken install step, and the
 * tests that need it must not pass by being skipped.
 */
export function have(cmd: string): boolean {
  if (Bun.which(cmd) !== null) return true;
  if (process.env.CI === "true" && !reportedMissing.has(cmd)) {
    reportedMissing.add(cmd);
    test(`${cmd} is installed`, () => {
      throw new Error(`${cmd} is not on PATH: with CI=true every program the tests use must be installed (.ci/run)`);
    });
  }
  return false;
}

export interface RunResult {
  code: number;
  out: Uint8Array;
  err: string;
}

/** Runs cmd to completion, collecting stdout (bytes) and stderr (text). */
export async function run(cmd: string[], opts: { env?: Record<string, string>; cwd?: string; stdin?: Uint8Array } = {}): Promise<RunResult> {
  const proc = Bun.spawn(cmd, {
    stdout: "pipe",
    stderr: "pipe",
    stdin: opts.stdin ?? "ignore",
    env: opts.env ?? (process.env as Record<string, string>),
    cwd: opts.cwd,
  });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).bytes(), new Response(proc.stderr).text(), proc.exited]);
  return { code, out, err };
}

// ---------------------------------------------------------------------------------------------
// python3 poplib

/** One POP3 operation, run in order after login. */
export type PopOp =
  | ["stat"]
  | ["list"]
  | ["uidl"]
  | ["retr", number]
  /** RETR of a message too big to pass back whole: its size, sha256, header block and whether needle occurs in it. */
  | ["retr-summary", number, string]
  | ["top", number, number]
  | ["dele", number]
  | ["noop"]
  | ["quit"];

/** Per operation: ok (status line or parsed value, bytes for retr/top) or err (the -ERR line). */
export interface PopResult {
  ok?: unknown;
  /** The reply line of a retr/top. */
  resp?: string;
  /** The message as the client got it: each line + CRLF (poplib unstuffs dots and drops the terminator). */
  data?: Uint8Array;
  /** retr-summary: what it says of the message. */
  summary?: { size: number; sha256: string; header: string; found: boolean };
  err?: string;
}

export interface PoplibOptions {
  /** plain: no TLS; stls: STLS before login; pop3s: implicit TLS. */
  mode: "plain" | "stls" | "pop3s";
  port: number;
  /** Host to connect to and verify the certificate for (default 127.0.0.1). */
  host?: string;
  user: string;
  password: string;
  /** CA file to verify the server with (required for stls/pop3s; hostname checking stays on). */
  caFile?: string;
  ops: PopOp[];
}

export interface PoplibRun {
  welcome: string;
  results: PopResult[];
  /** True when the last operation was quit and the server answered it. */
  quit: boolean;
}

// Every -ERR becomes a result rather than an exception, so a test sees the whole session. A QUIT is
// sent after the ops unless one was asked for: a session without QUIT commits no DELE (RFC 1939).
const POPLIB_SCRIPT = `
import base64, hashlib, json, poplib, ssl, sys
cfg = json.loads(sys.argv[1])
ctx = ssl.create_default_context(cafile=cfg["caFile"]) if cfg.get("caFile") else None
host = cfg.get("host") or "127.0.0.1"
if cfg["mode"] == "pop3s":
    p = poplib.POP3_SSL(host, cfg["port"], context=ctx, timeout=30)
else:
    p = poplib.POP3(host, cfg["port"], timeout=30)
out = {"welcome": p.getwelcome().decode("latin1"), "results": [], "quit": False}
if cfg["mode"] == "stls":
    p.stls(ctx)
p.user(cfg["user"])
p.pass_(cfg["password"])
def msg(r):
    resp, lines, _ = r
    return {"resp": resp.decode("latin1"), "data": base64.b64encode(b"".join(l + b"\\r\\n" for l in lines)).decode()}
for op in cfg["ops"]:
    name = op[0]
    try:
        if name == "stat": r = {"ok": list(p.stat())}
        elif name == "list": r = {"ok": [l.decode("latin1") for l in p.list()[1]]}
        elif name == "uidl": r = {"ok": [l.decode("latin1") for l in p.uidl()[1]]}
        elif name == "retr": r = msg(p.retr(op[1]))
        elif name == "retr-summary":
            resp, lines, _ = p.retr(op[1])
            data = b"".join(l + b"\\r\\n" for l in lines)
            lines = None
            end = data.find(b"\\r\\n\\r\\n")
            r = {"resp": resp.decode("latin1"), "summary": {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                 "header": data[:end if end >= 0 else 65536][:65536].decode("latin1"), "found": op[2].encode("latin1") in data.replace(b"\\r\\n", b"")}}
        elif name == "top": r = msg(p.top(op[1], op[2]))
        elif name == "dele": r = {"ok": p.dele(op[1]).decode("latin1")}
        elif name == "noop": r = {"ok": p.noop().decode("latin1")}
        elif name == "quit":
            r = {"ok": p.quit().decode("latin1")}
            out["quit"] = True
        else: raise ValueError("unknown op " + name)
    except poplib.error_proto as e:
        a = e.args[0] if e.args else b""
        r = {"err": a.decode("latin1") if isinstance(a, bytes) else str(a)}
    out["results"].append(r)
if not out["quit"]:
    p.quit()
    out["quit"] = True
print(json.dumps(out))
`;

/** Runs one poplib session; throws with stderr when python fails (refused login, TLS error, ...). */
export async function poplib(o: PoplibOptions): Promise<PoplibRun> {
  const r = await run(["python3", "-c", POPLIB_SCRIPT, JSON.stringify(o)]);
  if (r.code !== 0) throw new Error(`poplib (${o.mode}, port ${o.port}) exited ${r.code}: ${r.err.trim().split("\n").slice(-3).join(" | ")}`);
  const parsed = JSON.parse(new TextDecoder().decode(r.out)) as { welcome: string; quit: boolean; results: { ok?: unknown; resp?: string; data?: string; err?: string }[] };
  return {
    welcome: parsed.welcome,
    quit: parsed.quit,
    results: parsed.results.map((x) => ({ ...x, data: x.data === undefined ? undefined : new Uint8Array(Buffer.from(x.data, "base64")) })),
  };
}

/** The message bytes of every retr/top result, in order (throws on an -ERR among them). */
export function messagesOf(run: PoplibRun): Uint8Array[] {
  return run.results.filter((r) => r.data !== undefined || r.err !== undefined).map((r) => {
    if (r.err !== undefined) throw new Error(`server said ${r.err}`);
    return r.data!;
  });
}

// ---------------------------------------------------------------------------------------------
// curl

export interface CurlOptions {
  /** pop3://[user:password@]host:port[/N] or pop3s://… */
  url: string;
  /** For -u; leave out when the URL carries the credentials (-u would override them). */
  user?: string;
  password?: string;
  caFile?: string;
  /** --ssl-reqd: STLS on a pop3:// URL, failing when it cannot be had. */
  sslReqd?: boolean;
  extra?: string[];
}

/**
 * curl against a POP3 URL: a message number retrieves it, none lists. curl splits -u at the first
 * colon, so a routed name with a port ("alice/host:110") must go in the URL, percent-encoded.
 */
export async function curl(o: CurlOptions): Promise<RunResult> {
  const args = ["curl", "-sS", "--max-time", "30"];
  if (o.user !== undefined) args.push("-u", `${o.user}:${o.password ?? ""}`);
  if (o.caFile) args.push("--cacert", o.caFile);
  if (o.sslReqd) args.push("--ssl-reqd");
  return run([...args, ...(o.extra ?? []), o.url]);
}

// ---------------------------------------------------------------------------------------------
// fetchmail

export interface FetchmailOptions {
  /** Working directory for the rc file, pid file, HOME and the mbox. */
  dir: string;
  /** A DNS name: fetchmail 6.4 checks certificates against names only, not IP addresses. */
  host: string;
  port: number;
  user: string;
  password: string;
  /** STLS (or implicit TLS with `implicitTls`) with this CA and certificate checks (sslcertck); absent: plain. */
  caFile?: string;
  /** fetchmail's `ssl`: TLS from the first byte (a POP3S port). */
  implicitTls?: boolean;
  /** false: --nokeep (DELE + QUIT after delivery). */
  keep: boolean;
  /** File the MDA appends each message to. */
  mbox: string;
}

/** The "From " line the MDA writes before each message. */
export const MBOX_FROM = "From mailsentry-test Thu Jan  1 00:00:00 1970";

/** The messages of an mbox written by fetchmail's MDA above (LF line ends, as fetchmail hands them over); read it as latin1. */
export function splitMbox(text: string): string[] {
  return text.split(`${MBOX_FROM}\n`).slice(1).map((m) => m.replace(/\n$/, ""));
}

/** fetchmail, one poll, every message (fetchall), delivered by an MDA that appends to an mbox. */
export async function fetchmail(o: FetchmailOptions): Promise<RunResult> {
  const rc = join(o.dir, "fetchmailrc");
  const tls = o.caFile ? `${o.implicitTls ? " ssl" : ""} sslproto tls1.2+ sslcertck sslcertfile "${o.caFile}"` : " sslproto ''";
  // The MDA, a script so nothing needs quoting in the rc file, appends an mbox "From " line and the message.
  const mda = join(o.dir, "mda.sh");
  await writeFile(mda, `#!/bin/sh\n{ echo "${MBOX_FROM}"; cat; echo; } >> "$1"\n`, { mode: 0o755 });
  await writeFile(rc, `poll ${o.host} service ${o.port} protocol pop3 user "${o.user}" password "${o.password}"` +
    `${tls} ${o.keep ? "keep" : "nokeep"} fetchall mda "${mda} ${o.mbox}"\n`);
  await chmod(rc, 0o600); // fetchmail refuses an rc file others can read
  const env: Record<string, string> = { ...(process.env as Record<string, string>), HOME: o.dir };
  return run(["fetchmail", "-f", rc, "--nosyslog", "--pidfile", join(o.dir, "fetchmail.pid"), "-v"], { env });
}

// ---------------------------------------------------------------------------------------------
// The mail the e2e tests seed (built at test time; the infected one from test/helpers/eicar.ts)

const enc = new TextEncoder();

/** Random-looking but reproducible bytes (a large attachment that does not compress to nothing). */
export function pseudoRandom(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

function b64Lines(data: Uint8Array): string {
  const b64 = Buffer.from(data).toString("base64");
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 76) lines.push(b64.slice(i, i + 76));
  return lines.join("\r\n");
}

/** Clean messages with the shapes a relay gets wrong; CRLF unless the shape is about bare LF. */
export function cleanCorpus(): { name: string; bytes: Uint8Array }[] {
  const latin1 = (s: string) => new Uint8Array(Buffer.from(s, "latin1"));
  return [
    { name: "plain", bytes: enc.encode("From: a@example.test\r\nTo: alice@example.test\r\nSubject: plain\r\nMessage-ID: <plain@example.test>\r\n\r\nHello, first body.\r\n") },
    {
      name: "dots",
      bytes: enc.encode("From: a@example.test\r\nSubject: dots\r\n\r\n.leading dot\r\n..two dots\r\n.\r\n...\r\n. space\r\nend\r\n"),
    },
    // Bare LF inside the body; Dovecot sends it as CRLF on the wire.
    { name: "bare-lf", bytes: enc.encode("From: a@example.test\r\nSubject: bare lf\r\n\r\nline one\nline two\n.\nline three\r\n") },
    {
      name: "8bit",
      bytes: latin1("From: =?utf-8?q?J=C3=B6rg?= <j@example.test>\r\nSubject: 8bit\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" +
        "Gr\xfc\xdfe aus K\xf6ln \xa9 \xff\xfe\x80\x81\r\n\xe9t\xe9\r\n"),
    },
    { name: "empty-body", bytes: enc.encode("From: a@example.test\r\nSubject: empty body\r\n\r\n") },
    {
      name: "large",
      bytes: enc.encode("From: a@example.test\r\nSubject: large attachment\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"LRG\"\r\n\r\n" +
        "--LRG\r\nContent-Type: text/plain\r\n\r\nSee the attachment.\r\n" +
        "--LRG\r\nContent-Type: application/octet-stream; name=\"big.bin\"\r\nContent-Disposition: attachment; filename=\"big.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
        b64Lines(pseudoRandom(3_800_000)) + "\r\n--LRG--\r\n"),
    },
  ];
}

/** The text part of infectedMessage, verbatim (a cleaned copy must keep it byte for byte). */
export const INFECTED_TEXT_PART = "Content-Type: text/plain; charset=utf-8\r\n\r\nPlease find the invoice attached.\r\n.dotted line\r\n";

/** A multipart message: a text part and an attachment `filename` holding the EICAR test file. */
export function infectedMessage(eicarBytes: Uint8Array, filename = "invoice.com", subject = "invoice"): Uint8Array<ArrayBuffer> {
  return enc.encode(`From: Mallory <m@example.test>\r\nTo: alice@example.test\r\nSubject: ${subject}\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n` +
    `Message-ID: <${subject}@example.test>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="INF"\r\n\r\n` +
    `--INF\r\n${INFECTED_TEXT_PART}` +
    `--INF\r\nContent-Type: application/octet-stream; name="${filename}"\r\nContent-Disposition: attachment; filename="${filename}"\r\nContent-Transfer-Encoding: base64\r\n\r\n` +
    `${b64Lines(eicarBytes)}\r\n--INF--\r\n`);
}

/** What a POP3 client receives for a message Dovecot holds: bare LF sent as CRLF. */
export function asCrlf(m: Uint8Array): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < m.length; i++) {
    if (m[i] === 0x0a && m[i - 1] !== 0x0d) out.push(0x0d);
    out.push(m[i]!);
  }
  return new Uint8Array(out);
}
