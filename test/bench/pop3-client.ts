// The POP3 benchmark clients, each downloading a whole mailbox (USER/PASS, STAT, RETR each, QUIT)
// without deleting: our own Bun client (per-message latency; plain or TLS), python poplib reading
// 64 KB blocks, curl with one connection for every message, fetchmail delivering to /dev/null, a
// python asyncio client that runs hundreds of sessions at once, and a NOOP pinger that measures
// how long another session waits while the proxy is busy.
// The Bun client keeps chunks in a list and re-searches only the seam between chunks, so a 25 MB
// message costs it one pass, not a quadratic series of concatenations.
import { chmod, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";

export interface Pop3Target {
  host: string;
  port: number;
  /** Implicit TLS (POP3S) with this CA. */
  tls: boolean;
  caFile: string;
  user: string;
  password: string;
}

export interface DownloadStats {
  messages: number;
  /** Message octets as the server counts them (CRLF line ends, unstuffed); the Bun client counts wire bytes. */
  bytes: number;
  wallMs: number;
  latenciesMs: number[];
}

const TERMINATOR = Buffer.from("\r\n.\r\n");

interface Reply { length: number; head: string }

class ReplyReader {
  private chunks: Buffer[] = [];
  private size = 0;
  private waiter: { multi: boolean; resolve: (r: Reply) => void; reject: (e: Error) => void } | null = null;
  private closed = false;

  push(chunk: Uint8Array) { this.chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)); this.size += chunk.byteLength; this.pump(); }
  close() { this.closed = true; this.waiter?.reject(new Error("connection closed")); this.waiter = null; }

  /** The next reply (single line, or multi-line through the dot): its length and first bytes. */
  next(multi: boolean): Promise<Reply> {
    return new Promise((resolve, reject) => {
      if (this.closed) return reject(new Error("connection closed"));
      this.waiter = { multi, resolve, reject };
      this.pump();
    });
  }

  private pump() {
    const w = this.waiter;
    if (!w || this.size === 0) return;
    const first = this.chunks[0]!;
    const isErr = first[0] === 0x2d;
    const needle = !w.multi || isErr ? Buffer.from("\r\n") : TERMINATOR;
    // Only the newest chunk and the few bytes before it can hold a terminator not seen before:
    // earlier chunks were searched when they arrived (a waiter is always set before data comes).
    const tail: Buffer[] = [];
    let covered = 0;
    for (let i = this.chunks.length - 1; i >= 0 && covered < this.chunks[this.chunks.length - 1]!.length + needle.length; i--) {
      tail.unshift(this.chunks[i]!); covered += this.chunks[i]!.length;
    }
    const joined = tail.length === 1 ? tail[0]! : Buffer.concat(tail);
    const found = joined.indexOf(needle);
    if (found < 0) return;
    const end = this.size - covered + found + needle.length;
    const all = this.chunks.length === 1 ? first : Buffer.concat(this.chunks);
    const head = all.subarray(0, Math.min(end, 200)).toString("latin1");
    const rest = all.subarray(end);
    this.chunks = rest.length ? [rest] : [];
    this.size = rest.length;
    this.waiter = null;
    if (isErr) w.reject(new Error(head.trim())); else w.resolve({ length: end, head });
  }
}

/** Our own client: RETR one after the other, latency from RETR sent to the terminating dot received. */
export async function bunDownload(t: Pop3Target): Promise<DownloadStats> {
  const t0 = performance.now();
  const reader = new ReplyReader();
  const { promise: closed, resolve: onClose } = Promise.withResolvers<void>();
  const socket = await Bun.connect({
    hostname: t.host, port: t.port,
    ...(t.tls ? { tls: { ca: await Bun.file(t.caFile).text() } } : {}),
    socket: {
      data(_s, chunk) { reader.push(chunk); },
      close() { reader.close(); onClose(); },
      error() { reader.close(); },
    },
  });
  socket.setNoDelay(true);
  const cmd = (line: string, multi = false) => { socket.write(line + "\r\n"); return reader.next(multi); };

  await reader.next(false);
  await cmd(`USER ${t.user}`);
  await cmd(`PASS ${t.password}`);
  const stat = /^\+OK (\d+)/.exec((await cmd("STAT")).head);
  if (!stat) throw new Error("unexpected STAT reply");
  const count = Number(stat[1]);
  const stats: DownloadStats = { messages: 0, bytes: 0, wallMs: 0, latenciesMs: [] };
  for (let i = 1; i <= count; i++) {
    const t0 = performance.now();
    stats.bytes += (await cmd(`RETR ${i}`, true)).length;
    stats.latenciesMs.push(performance.now() - t0);
    stats.messages++;
  }
  await cmd("QUIT");
  socket.end();
  await closed;
  stats.wallMs = performance.now() - t0;
  return stats;
}

/** Runs a script that prints one JSON object; throws with the end of its stderr when it fails. */
async function runJson<T>(cmd: string[], what: string): Promise<T> {
  const proc = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) throw new Error(`${what} exited ${code}: ${err.trim().split("\n").slice(-3).join(" | ")}`);
  return JSON.parse(out) as T;
}

// python poplib as a user's script would use it, but reading the socket in 64 KB blocks (poplib's
// default is 8 KB); octets as poplib counts them: every line with its CRLF, unstuffed.
const POPLIB = String.raw`
import json, poplib, ssl, sys, time
cfg = json.loads(sys.argv[1])
t0 = time.monotonic()
if cfg["tls"]:
    M = poplib.POP3_SSL(cfg["host"], cfg["port"], context=ssl.create_default_context(cafile=cfg["caFile"]), timeout=120)
else:
    M = poplib.POP3(cfg["host"], cfg["port"], timeout=120)
M.file = M.sock.makefile("rb", buffering=65536)
M.user(cfg["user"]); M.pass_(cfg["password"])
count = M.stat()[0]
out = {"messages": 0, "bytes": 0, "latenciesMs": []}
for i in range(1, count + 1):
    t = time.monotonic()
    resp, lines, octets = M.retr(i)
    out["messages"] += 1; out["bytes"] += octets
    out["latenciesMs"].append((time.monotonic() - t) * 1000)
M.quit()
out["wallMs"] = (time.monotonic() - t0) * 1000
print(json.dumps(out))
`;

export function poplibDownload(t: Pop3Target): Promise<DownloadStats> {
  return runJson<DownloadStats>(["python3", "-c", POPLIB, JSON.stringify(t)], `poplib (port ${t.port})`);
}

/** Spawns `cmd` and times it from start to exit; throws with stderr when it fails. */
async function timed(cmd: string[], what: string, env?: Record<string, string>): Promise<{ out: string; wallMs: number }> {
  const t0 = performance.now();
  const proc = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe", stdin: "ignore", env: env ?? (process.env as Record<string, string>) });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  const wallMs = performance.now() - t0;
  if (code !== 0) throw new Error(`${what} exited ${code}: ${(err || out).trim().split("\n").slice(-3).join(" | ")}`);
  return { out, wallMs };
}

/**
 * curl, every message over one connection (URL globbing), the bodies counted by wc. curl splits
 * -u at the first colon, so the routed name (it has a port) goes percent-encoded into the URL.
 */
export async function curlDownload(t: Pop3Target, count: number): Promise<DownloadStats> {
  const url = `${t.tls ? "pop3s" : "pop3"}://${encodeURIComponent(t.user)}:${encodeURIComponent(t.password)}@${t.host}:${t.port}/[1-${count}]`;
  const tls = t.tls ? ` --cacert '${t.caFile}'` : "";
  const { out, wallMs } = await timed(["bash", "-c", `set -o pipefail; curl -sS --max-time 300${tls} '${url}' | wc -c`], `curl (port ${t.port})`);
  return { messages: count, bytes: Number(out.trim()), wallMs, latenciesMs: [] };
}

/**
 * fetchmail, one poll of every message (keep, fetchall), delivered as BSMTP to /dev/null so no MDA
 * process per message runs. `host` must be a name: fetchmail checks certificates against names only.
 */
export async function fetchmailDownload(t: Pop3Target, dir: string): Promise<DownloadStats> {
  await mkdir(dir, { recursive: true });
  const rc = join(dir, "fetchmailrc");
  const tls = t.tls ? ` ssl sslproto tls1.2+ sslcertck sslcertfile "${t.caFile}"` : " sslproto ''";
  await writeFile(rc, `poll ${t.host} service ${t.port} protocol pop3 user "${t.user}" password "${t.password}"${tls} keep fetchall\n`);
  await chmod(rc, 0o600); // fetchmail refuses an rc file others can read
  const env = { ...(process.env as Record<string, string>), HOME: dir, FETCHMAILHOME: dir };
  const { out, wallMs } = await timed(["fetchmail", "-f", rc, "--nosyslog", "--bsmtp", "/dev/null", "--pidfile", join(dir, "fetchmail.pid")], `fetchmail (port ${t.port})`, env);
  // "reading message user@host:3 of 201 (12021 octets) not flushed"
  const read = [...out.matchAll(/reading message \S+ of \d+ \((\d+) octets\)/g)];
  return { messages: read.length, bytes: read.reduce((n, m) => n + Number(m[1]), 0), wallMs, latenciesMs: [] };
}

// Hundreds of sessions at once from one python asyncio process, the way a mail gateway's poller
// would run them: each logs in, RETRs every message (reading up to the terminating dot) and quits.
const ASYNCIO_LOAD = String.raw`
import asyncio, json, sys, time
cfg = json.loads(sys.argv[1])
lat = []
async def session(i):
    r, w = await asyncio.open_connection(cfg["host"], cfg["port"], limit=1 << 20)
    async def line():
        l = await r.readline()
        if not l.startswith(b"+OK"): raise RuntimeError("session %d: %r" % (i, l[:80]))
        return l
    await line()
    w.write(("USER %s\r\n" % cfg["user"]).encode()); await line()
    w.write(("PASS %s\r\n" % cfg["password"]).encode()); await line()
    w.write(b"STAT\r\n"); count = int((await line()).split()[1])
    got = 0
    for n in range(1, count + 1):
        t = time.monotonic()
        w.write(b"RETR %d\r\n" % n); await line()
        await r.readuntil(b"\r\n.\r\n")
        lat.append((time.monotonic() - t) * 1000); got += 1
    w.write(b"QUIT\r\n"); await line()
    w.close()
    return got
async def main():
    t0 = time.monotonic()
    res = await asyncio.gather(*(session(i) for i in range(cfg["sessions"])), return_exceptions=True)
    errs = [repr(e) for e in res if isinstance(e, BaseException)]
    print(json.dumps({"messages": sum(x for x in res if isinstance(x, int)), "errors": errs, "latenciesMs": lat, "wallMs": (time.monotonic() - t0) * 1000}))
asyncio.run(main())
`;

export interface LoadStats { messages: number; errors: string[]; latenciesMs: number[]; wallMs: number }

export function asyncioLoad(t: Pop3Target, sessions: number): Promise<LoadStats> {
  return runJson<LoadStats>(["python3", "-c", ASYNCIO_LOAD, JSON.stringify({ ...t, sessions })], "asyncio load");
}

/**
 * Another session's view of a busy proxy: logged in, it sends NOOP, waits for the reply, sleeps
 * `everyMs`, and so on until stopped; the longest wait is how long the proxy made it stall.
 */
export async function noopPinger(t: Pop3Target, everyMs = 5): Promise<{ stop(): Promise<{ maxMs: number; pings: number }> }> {
  const reader = new ReplyReader();
  const socket = await Bun.connect({
    hostname: t.host, port: t.port,
    socket: { data(_s, chunk) { reader.push(chunk); }, close() { reader.close(); }, error() { reader.close(); } },
  });
  socket.setNoDelay(true);
  const cmd = (line: string) => { socket.write(line + "\r\n"); return reader.next(false); };
  await reader.next(false);
  await cmd(`USER ${t.user}`);
  await cmd(`PASS ${t.password}`);
  let stopped = false, maxMs = 0, pings = 0;
  const loop = (async () => {
    while (!stopped) {
      const t0 = performance.now();
      await cmd("NOOP");
      maxMs = Math.max(maxMs, performance.now() - t0);
      pings++;
      await Bun.sleep(everyMs);
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      await cmd("QUIT");
      socket.end();
      return { maxMs, pings };
    },
  };
}
