// Lean IMAP clients for benchmarks: one on Bun sockets (plain or implicit TLS) that counts literal
// bytes as they stream past without keeping them, an IDLE session for load tests, and python imaplib
// in the same fetch shapes, timed inside the interpreter so its start-up is not charged to the server.
// Shapes: bulk = `UID FETCH 1:* BODY.PEEK[]`; chunked = Thunderbird's header sync, then
// `(UID RFC822.SIZE BODY.PEEK[]<start.65536>)` per message until its size; each = `UID FETCH n BODY.PEEK[]`.
import type { Socket } from "bun";

export type Shape = "bulk" | "chunked" | "each";

export interface ImapTarget {
  host: string;
  port: number;
  /** Implicit TLS (IMAPS), verified against ca. */
  tls: boolean;
  /** PEM of the CA that signed the server's certificate. */
  ca?: string;
  /** Path of that CA, for python. */
  caFile?: string;
  user: string;
  password: string;
}

export interface FetchStats {
  /** Connect to LOGOUT completed. */
  wallMs: number;
  messages: number;
  /** Message bytes received (literal octets of the body items). */
  bytes: number;
  /** Per message: first command for it sent → its last byte received. */
  latenciesMs: number[];
  /** Fetches the server answered with NO (e.g. NO [UNAVAILABLE] for a message withheld by a scanner). */
  refused: string[];
}

/** One response: its lines (literal markers kept, literal bytes not) and each literal's size. */
interface ImapResponse {
  lines: string[];
  literals: number[];
}

const LF = 0x0a;
const LITERAL_AT_END = /\{(\d+)\+?\}$/;

/** Splits the server's bytes into responses; literal bytes are counted and dropped, never copied. */
class ResponseReader {
  private partial: Buffer[] = [];
  private literalLeft = 0;
  private cur: ImapResponse = { lines: [], literals: [] };
  private ready: ImapResponse[] = [];
  private waiter: { resolve: (r: ImapResponse) => void; reject: (e: Error) => void } | null = null;
  private failure: Error | null = null;

  push(chunk: Uint8Array): void {
    const buf = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    let off = 0;
    while (off < buf.length) {
      if (this.literalLeft > 0) {
        const take = Math.min(this.literalLeft, buf.length - off);
        this.literalLeft -= take;
        off += take;
        continue;
      }
      const lf = buf.indexOf(LF, off);
      if (lf < 0) { this.partial.push(buf.subarray(off)); break; }
      const piece = buf.subarray(off, lf + 1);
      off = lf + 1;
      const line = this.partial.length ? Buffer.concat([...this.partial, piece]) : piece;
      this.partial = [];
      const text = line.toString("latin1", 0, line.length - (line[line.length - 2] === 0x0d ? 2 : 1));
      this.cur.lines.push(text);
      const lit = LITERAL_AT_END.exec(text);
      if (lit) {
        this.literalLeft = Number(lit[1]);
        this.cur.literals.push(this.literalLeft);
        continue;
      }
      this.emit(this.cur);
      this.cur = { lines: [], literals: [] };
    }
  }

  fail(e: Error): void {
    this.failure ??= e;
    this.waiter?.reject(this.failure);
    this.waiter = null;
  }

  next(): Promise<ImapResponse> {
    const r = this.ready.shift();
    if (r) return Promise.resolve(r);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => { this.waiter = { resolve, reject }; });
  }

  private emit(r: ImapResponse): void {
    if (this.waiter) { const w = this.waiter; this.waiter = null; w.resolve(r); } else this.ready.push(r);
  }
}

interface Tagged { status: "OK" | "NO" | "BAD"; line: string; untagged: ImapResponse[] }

/** An IMAP connection that runs one command at a time, as the clients it stands for do. */
class Connection {
  private nextTag = 1;
  private constructor(private readonly socket: Socket<undefined>, private readonly reader: ResponseReader, readonly closed: Promise<void>) {}

  static async open(t: ImapTarget): Promise<Connection> {
    const reader = new ResponseReader();
    const { promise: closed, resolve: onClose } = Promise.withResolvers<void>();
    const socket = await Bun.connect({
      hostname: t.host,
      port: t.port,
      tls: t.tls ? { ca: t.ca, rejectUnauthorized: true } : undefined,
      socket: {
        data(_s, chunk) { reader.push(chunk); },
        close() { reader.fail(new Error("connection closed")); onClose(); },
        error(_s, e) { reader.fail(e); },
        connectError(_s, e) { reader.fail(e); onClose(); },
        handshake(_s, ok, err) { if (!ok) reader.fail(new Error(`TLS handshake failed: ${err?.message ?? "unknown"}`)); },
      },
    });
    socket.setNoDelay(true);
    const c = new Connection(socket, reader, closed);
    const greeting = (await reader.next()).lines[0] ?? "";
    if (!greeting.startsWith("* OK")) throw new Error(`unexpected greeting: ${greeting.slice(0, 120)}`);
    return c;
  }

  next(): Promise<ImapResponse> {
    return this.reader.next();
  }

  send(line: string): string {
    const tag = `b${this.nextTag++}`;
    this.socket.write(`${tag} ${line}\r\n`);
    return tag;
  }

  /** Sends a command and collects its untagged responses up to the tagged one; BAD throws. */
  async command(line: string): Promise<Tagged> {
    const tag = this.send(line);
    return this.finish(tag, line);
  }

  async finish(tag: string, what: string): Promise<Tagged> {
    const untagged: ImapResponse[] = [];
    for (;;) {
      const r = await this.reader.next();
      const first = r.lines[0]!;
      if (first.startsWith(`${tag} `)) {
        const status = first.slice(tag.length + 1, tag.length + 4).trim().toUpperCase() as Tagged["status"];
        if (status !== "OK" && status !== "NO") throw new Error(`${what.slice(0, 60)}: ${first.slice(0, 200)}`);
        return { status, line: first, untagged };
      }
      untagged.push(r);
    }
  }

  rawWrite(text: string): void {
    this.socket.write(text);
  }

  async logout(): Promise<void> {
    await this.command("LOGOUT").catch(() => {}); // a server may close before its tagged OK arrives
    this.socket.end();
    await this.closed;
  }

  destroy(): void {
    this.socket.terminate();
  }
}

/** IMAP quoted string (user names and passwords of the benchmark are plain ASCII). */
function quote(s: string): string {
  return `"${s.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

async function loggedIn(t: ImapTarget, mailbox = "INBOX"): Promise<{ c: Connection; exists: number }> {
  const c = await Connection.open(t);
  try {
    const login = await c.command(`LOGIN ${quote(t.user)} ${quote(t.password)}`);
    if (login.status !== "OK") throw new Error(`LOGIN refused: ${login.line}`);
    const sel = await c.command(`SELECT ${quote(mailbox)}`);
    if (sel.status !== "OK") throw new Error(`SELECT refused: ${sel.line}`);
    const exists = sel.untagged.map((r) => /^\* (\d+) EXISTS/i.exec(r.lines[0]!)).find(Boolean);
    return { c, exists: Number(exists?.[1] ?? 0) };
  } catch (e) {
    c.destroy();
    throw e;
  }
}

const bodyBytes = (r: ImapResponse) => r.literals.reduce((n, l) => n + l, 0);

/** Logs in, SELECTs INBOX and downloads every message in the given shape; throws on a broken session. */
export async function fetchMailbox(t: ImapTarget, shape: Shape, opts: {
  chunkSize?: number;
  onLoggedIn?: () => void;
  /** Awaited after SELECT, before the first FETCH: lets a load test hold every session open at once. */
  start?: Promise<unknown>;
} = {}): Promise<FetchStats> {
  const chunkSize = opts.chunkSize ?? 65536;
  const t0 = performance.now();
  const { c } = await loggedIn(t);
  opts.onLoggedIn?.();
  const stats: FetchStats = { wallMs: 0, messages: 0, bytes: 0, latenciesMs: [], refused: [] };
  try {
    if (opts.start) await opts.start;
    if (shape === "bulk") {
      const started = performance.now();
      const tag = c.send("UID FETCH 1:* BODY.PEEK[]");
      let last = started;
      for (;;) {
        const r = await c.next();
        const first = r.lines[0]!;
        if (first.startsWith(`${tag} `)) {
          if (!/^\S+ OK/i.test(first)) stats.refused.push(first);
          break;
        }
        if (r.literals.length) {
          const now = performance.now();
          stats.latenciesMs.push(now - last);
          last = now;
          stats.messages++;
          stats.bytes += bodyBytes(r);
        }
      }
    } else {
      // Every message's UID and size first (the chunked shape syncs headers, as Thunderbird does).
      const sync = await c.command(shape === "chunked"
        ? "UID FETCH 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Subject Date Message-ID)])"
        : "UID FETCH 1:* (UID RFC822.SIZE FLAGS)");
      const list = sync.untagged.flatMap((r) => {
        const text = r.lines.join(" ");
        const uid = /\bUID (\d+)/i.exec(text), size = /\bRFC822\.SIZE (\d+)/i.exec(text);
        return uid && size ? [{ uid: Number(uid[1]), size: Number(size[1]) }] : [];
      });
      for (const m of list) {
        const started = performance.now();
        let got = 0, refused = false;
        if (shape === "each") {
          const r = await c.command(`UID FETCH ${m.uid} BODY.PEEK[]`);
          got = r.untagged.reduce((n, u) => n + bodyBytes(u), 0);
          if (r.status !== "OK") { stats.refused.push(`UID ${m.uid}: ${r.line}`); refused = true; }
        } else {
          for (let start = 0; ; start += chunkSize) {
            const r = await c.command(`UID FETCH ${m.uid} (UID RFC822.SIZE BODY.PEEK[]<${start}.${chunkSize}>)`);
            if (r.status !== "OK") { stats.refused.push(`UID ${m.uid} at ${start}: ${r.line}`); refused = true; break; }
            const chunk = r.untagged.reduce((n, u) => n + bodyBytes(u), 0);
            got += chunk;
            if (chunk < chunkSize || start + chunk >= m.size) break;
          }
        }
        stats.bytes += got;
        if (!refused) { stats.messages++; stats.latenciesMs.push(performance.now() - started); }
      }
    }
    await c.logout();
  } catch (e) {
    c.destroy();
    throw e;
  }
  stats.wallMs = performance.now() - t0;
  return stats;
}

export interface IdleSession {
  /** EXISTS reported by SELECT. */
  exists: number;
  /** Resolves at the first "* N EXISTS" while idling with N above `exists`; rejects if the connection breaks. */
  newMail: Promise<number>;
  /** DONE, the tagged OK, LOGOUT. */
  finish(): Promise<void>;
  destroy(): void;
}

/** Logs in, SELECTs INBOX and enters IDLE; resolves once the server's continuation arrived. */
export async function idle(t: ImapTarget): Promise<IdleSession> {
  const { c, exists } = await loggedIn(t);
  try {
    const tag = c.send("IDLE");
    const cont = await c.next();
    if (!cont.lines[0]!.startsWith("+")) throw new Error(`IDLE refused: ${cont.lines[0]}`);
    let stopped = false;
    const newMail = (async () => {
      for (;;) {
        const r = await c.next();
        const m = /^\* (\d+) EXISTS/i.exec(r.lines[0]!);
        if (m && Number(m[1]) > exists) return Number(m[1]);
        if (r.lines[0]!.startsWith(`${tag} `)) throw new Error(`IDLE ended by the server: ${r.lines[0]}`);
      }
    })();
    newMail.catch(() => {});
    return {
      exists,
      newMail,
      async finish() {
        if (stopped) return;
        stopped = true;
        await newMail.catch(() => {});
        c.rawWrite("DONE\r\n");
        const done = await c.finish(tag, "IDLE");
        if (done.status !== "OK") throw new Error(`IDLE: ${done.line}`);
        await c.logout();
      },
      destroy: () => c.destroy(),
    };
  } catch (e) {
    c.destroy();
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// python3 imaplib, the same shapes; literal bytes are counted, not decoded or printed.

const IMAPLIB_BENCH = String.raw`
import imaplib, json, re, ssl, sys, time
cfg = json.loads(sys.argv[1])
t0 = time.monotonic()
if cfg["tls"]:
    M = imaplib.IMAP4_SSL(cfg["host"], cfg["port"], ssl_context=ssl.create_default_context(cafile=cfg["caFile"]), timeout=120)
else:
    M = imaplib.IMAP4(cfg["host"], cfg["port"], timeout=120)
M.login(M._quote(cfg["user"]), cfg["password"])
typ, dat = M.select("INBOX")
if typ != "OK": raise imaplib.IMAP4.error("SELECT: %r" % dat)
shape, size = cfg["shape"], cfg.get("chunkSize") or 65536
out = {"messages": 0, "bytes": 0, "refused": [], "latenciesMs": []}
def body_bytes(data):
    return sum(len(d[1]) for d in data if isinstance(d, tuple))
def refused(what, typ, dat):
    out["refused"].append("%s: %s %r" % (what, typ, dat[-1] if dat else None))
if shape == "bulk":
    typ, data = M.uid("FETCH", "1:*", "BODY.PEEK[]")
    if typ != "OK": refused("bulk", typ, data)
    out["messages"] = sum(1 for d in data if isinstance(d, tuple))
    out["bytes"] = body_bytes(data)
else:
    items = "(UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Subject Date Message-ID)])" if shape == "chunked" else "(UID RFC822.SIZE FLAGS)"
    typ, data = M.uid("FETCH", "1:*", items)
    msgs = []
    for d in data:
        head = d[0] if isinstance(d, tuple) else d
        if not head: continue
        u, s = re.search(rb"UID (\d+)", head), re.search(rb"RFC822\.SIZE (\d+)", head)
        if u and s: msgs.append((int(u.group(1)), int(s.group(1))))
    for uid, total in msgs:
        t = time.monotonic()
        ok = True
        if shape == "each":
            typ, data = M.uid("FETCH", str(uid), "BODY.PEEK[]")
            if typ != "OK": refused("UID %d" % uid, typ, data); ok = False
            out["bytes"] += body_bytes(data)
        else:
            start = 0
            while True:
                typ, data = M.uid("FETCH", str(uid), "(UID RFC822.SIZE BODY.PEEK[]<%d.%d>)" % (start, size))
                if typ != "OK": refused("UID %d at %d" % (uid, start), typ, data); ok = False; break
                n = body_bytes(data)
                out["bytes"] += n
                if n < size or start + n >= total: break
                start += size
        if ok:
            out["messages"] += 1
            out["latenciesMs"].append((time.monotonic() - t) * 1000)
M.logout()
out["wallMs"] = (time.monotonic() - t0) * 1000
print(json.dumps(out))
`;

/** The same download with python3 imaplib (BODY.PEEK, so no flag changes); throws with stderr on failure. */
export async function imaplibFetch(t: ImapTarget, shape: Shape, chunkSize = 65536): Promise<FetchStats> {
  const proc = Bun.spawn(["python3", "-c", IMAPLIB_BENCH, JSON.stringify({ ...t, ca: undefined, shape, chunkSize })], {
    stdout: "pipe", stderr: "pipe", stdin: "ignore",
  });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) throw new Error(`imaplib ${shape} (port ${t.port}) exited ${code}: ${err.trim().split("\n").slice(-3).join(" | ")}`);
  return JSON.parse(out) as FetchStats;
}
