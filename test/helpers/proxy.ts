// Starts mailsentry's proxy for tests: in-process (Service on port 0 with a config) or as the CLI /
// compiled binary in a subprocess. Also a small scripted POP3 client built on Bun.connect.
import type { Socket } from "bun";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_CONFIG, type Config, type UnscannedAction, type UnscannedPolicy } from "../../core/config/types.ts";
import { UNSCANNED_REASONS, type Limits } from "../../core/limits.ts";
import { createLogger } from "../../core/log.ts";
import type { Engine } from "../../core/scan/engine.ts";
import { Service } from "../../core/service.ts";
import { ensureCa } from "../../core/tls/ca.ts";

export type ConfigOverrides = Omit<Partial<Config>, "limits" | "onUnscanned"> & {
  limits?: Partial<Limits>;
  /** One action for every reason, or some reasons over the defaults, as a config file may say. */
  onUnscanned?: UnscannedAction | Partial<UnscannedPolicy>;
};

export interface StartedProxy {
  ports: { pop3: number; pop3s: number; imap: number; imaps: number };
  /** The proxy's local CA (trust it to talk TLS to the client leg). */
  caPem: string;
  stateDir: string;
  quarantineDir: string;
  /** Log lines (JSON, one object per line), newest last. */
  logs: string[];
  /** Resolves with the first log object (seen or to come) that matches. */
  waitLog(match: (l: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>;
  service: Service;
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** The proxy in-process on 127.0.0.1 port 0 (pop3, pop3s, imap, imaps) with the default config under overrides. */
export async function startProxy(overrides: ConfigOverrides = {}, opts: { engine?: Engine; env?: Record<string, string | undefined> } = {}): Promise<StartedProxy> {
  const stateDir = await mkdtemp(join(tmpdir(), "mailsentry-proxy-"));
  const base = structuredClone(DEFAULT_CONFIG) as Config;
  const config: Config = {
    ...base,
    listeners: {
      ...base.listeners,
      pop3: { enabled: true, addresses: ["127.0.0.1:0"] },
      pop3s: { enabled: true, addresses: ["127.0.0.1:0"] },
      imap: { enabled: true, addresses: ["127.0.0.1:0"] },
      imaps: { enabled: true, addresses: ["127.0.0.1:0"] },
    },
    ...overrides,
    limits: { ...base.limits, ...(overrides.limits ?? {}) },
    onUnscanned: typeof overrides.onUnscanned === "string"
      ? Object.fromEntries(UNSCANNED_REASONS.map((r) => [r, overrides.onUnscanned]))
      : { ...base.onUnscanned, ...(overrides.onUnscanned ?? {}) },
  } as Config;
  const logs: string[] = [];
  const echo = process.env.MAILSENTRY_TEST_LOG === "1";
  const waiters: { match: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }[] = [];
  const log = createLogger({
    format: "json",
    level: "debug",
    write: (l) => {
      logs.push(l);
      if (echo) process.stderr.write(l + "\n");
      if (waiters.length === 0) return;
      const obj = JSON.parse(l) as Record<string, unknown>;
      for (const w of waiters.splice(0)) (w.match(obj) ? w.resolve(obj) : waiters.push(w));
    },
  });
  const waitLog = (match: (l: Record<string, unknown>) => boolean) => {
    const seen = logObjects(logs).find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise<Record<string, unknown>>((resolve) => waiters.push({ match, resolve }));
  };
  const service = await Service.start({ config, stateDir, log, engine: opts.engine, env: opts.env ?? {} });
  const ca = await ensureCa(stateDir);
  const stop = async () => {
    await service.stop();
    await rm(stateDir, { recursive: true, force: true });
  };
  return {
    ports: { pop3: service.port("pop3") ?? 0, pop3s: service.port("pop3s") ?? 0, imap: service.port("imap") ?? 0, imaps: service.port("imaps") ?? 0 },
    caPem: ca.certPem,
    stateDir,
    quarantineDir: config.quarantineDir ?? join(stateDir, "quarantine"),
    logs,
    waitLog,
    service,
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

/** A POP3 client logged in through the proxy to the mock server on mockPort (as alice/secret). */
export async function popLoggedIn(proxyPort: number, mockPort: number): Promise<TestClient> {
  const c = await TestClient.connect(proxyPort);
  await c.line();
  c.send(`USER alice/127.0.0.1:${mockPort}`);
  await c.line();
  c.send("PASS secret");
  const reply = await c.line();
  if (!reply.startsWith("+OK")) throw new Error(`login through the proxy failed: ${reply}`);
  return c;
}

/** Parsed JSON log lines. */
export function logObjects(logs: string[]): Record<string, unknown>[] {
  return logs.map((l) => JSON.parse(l) as Record<string, unknown>);
}

interface ClientState { client: TestClient }

const EMPTY_BODY = Buffer.from(".\r\n");

/** A scripted POP3 client: send lines, read status lines and raw multi-line replies. */
export class TestClient {
  // Unread bytes are store[start, end): appends double the store, so a 50 MB reply costs linear copies.
  private store = Buffer.alloc(64 * 1024);
  private start = 0;
  private end = 0;
  private waiter: (() => void) | null = null;
  private socket!: Socket<ClientState>;
  private upgraded = false;
  isClosed = false;
  readonly closed: Promise<void>;
  private closeResolve!: () => void;
  /** Every byte received, for byte-exact checks. */
  received: Buffer[] = [];

  private constructor() {
    this.closed = new Promise((r) => { this.closeResolve = r; });
  }

  static async connect(port: number, opts: { tls?: { ca: string } } = {}): Promise<TestClient> {
    const c = new TestClient();
    c.socket = await Bun.connect<ClientState>({
      hostname: "127.0.0.1",
      port,
      tls: opts.tls ? { ca: opts.tls.ca, serverName: "localhost" } : undefined,
      data: { client: c },
      socket: c.handlers(),
    });
    return c;
  }

  /** tls: handlers of the TLS socket after STLS; the plain socket's handlers then see only ciphertext and ignore it. */
  private handlers(tls = false) {
    const stale = () => this.upgraded && !tls;
    return {
      data: (_s: Socket<ClientState>, chunk: Buffer) => {
        if (stale()) return;
        this.received.push(Buffer.from(chunk));
        this.append(chunk);
        this.wake();
      },
      close: () => { if (stale()) return; this.isClosed = true; this.wake(); this.closeResolve(); },
      end: () => { if (stale()) return; this.isClosed = true; this.wake(); this.closeResolve(); },
      error: () => {},
    };
  }

  private get buf(): Buffer { return this.store.subarray(this.start, this.end); }

  private consume(n: number): void { this.start += n; }

  private append(chunk: Uint8Array): void {
    if (this.end + chunk.length > this.store.length) {
      const live = this.end - this.start;
      const next = live + chunk.length > this.store.length / 2 ? Buffer.alloc(Math.max(this.store.length * 2, live + chunk.length)) : this.store;
      this.store.copy(next, 0, this.start, this.end);
      this.store = next;
      this.start = 0;
      this.end = live;
    }
    this.store.set(chunk, this.end);
    this.end += chunk.length;
  }

  /** Stops reading: the kernel buffers fill and the proxy sees a client that does not read. */
  pause(): void { this.socket.pause(); }
  resume(): void { this.socket.resume(); }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  private async more(): Promise<void> {
    if (this.isClosed) throw new Error(`connection closed; buffered: ${JSON.stringify(this.buf.toString("latin1").slice(0, 200))}`);
    await new Promise<void>((r) => { this.waiter = r; });
  }

  send(line: string): void {
    this.sendRaw(line + "\r\n");
  }

  sendRaw(data: string | Uint8Array): void {
    const bytes = typeof data === "string" ? Buffer.from(data, "latin1") : data;
    let at = 0;
    while (at < bytes.length) {
      const n = this.socket.write(bytes.subarray(at));
      if (n <= 0) break;
      at += n;
    }
  }

  /** The next line, without CRLF. */
  async line(): Promise<string> {
    for (;;) {
      const nl = this.buf.indexOf("\r\n");
      if (nl >= 0) {
        const l = this.buf.subarray(0, nl).toString("latin1");
        this.consume(nl + 2);
        return l;
      }
      await this.more();
    }
  }

  /** Exactly n bytes (an IMAP literal). */
  async bytes(n: number): Promise<Buffer> {
    while (this.buf.length < n) await this.more();
    const b = Buffer.from(this.buf.subarray(0, n));
    this.consume(n);
    return b;
  }

  /** IMAP: the lines up to and including the reply tagged `tag`. */
  async untilTagged(tag: string): Promise<string[]> {
    const lines: string[] = [];
    for (;;) {
      const l = await this.line();
      lines.push(l);
      if (l.startsWith(`${tag} `)) return lines;
    }
  }

  /** A multi-line reply: status line, then the body still dot-stuffed, without the terminator line. */
  async multi(): Promise<{ status: string; body: Buffer }> {
    const status = await this.line();
    if (!status.startsWith("+OK")) return { status, body: Buffer.alloc(0) };
    // An empty body is the terminator right away; otherwise search on from where the last try stopped.
    let from = 0;
    for (;;) {
      if (this.buf.subarray(0, 3).equals(EMPTY_BODY)) { this.consume(3); return { status, body: Buffer.alloc(0) }; }
      const end = this.buf.indexOf("\r\n.\r\n", from);
      if (end >= 0) {
        const body = Buffer.from(this.buf.subarray(0, end + 2));
        this.consume(end + 5);
        return { status, body };
      }
      from = Math.max(0, this.buf.length - 4);
      await this.more();
    }
  }

  /** Reads everything until the server closes. */
  async rest(): Promise<Buffer> {
    while (!this.isClosed) await this.more().catch(() => {});
    const b = Buffer.from(this.buf);
    this.consume(b.length);
    return b;
  }

  /** STLS from the client side (after the +OK was read). */
  async startTls(ca: string): Promise<void> {
    this.upgraded = true;
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    const h = this.handlers(true);
    const [, tls] = this.socket.upgradeTLS<ClientState>({
      data: { client: this },
      tls: { ca, serverName: "localhost" },
      socket: { ...h, handshake: (_s, ok, e) => (ok ? resolve() : reject(e ?? new Error("handshake failed"))) },
    });
    this.socket = tls;
    await promise;
  }

  close(): void {
    try { this.socket.end(); } catch { /* gone */ }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }
}

/** Unstuffs a body as a client would (for comparisons with the original message). */
export function unstuff(body: Buffer): Buffer {
  const text = body.toString("latin1");
  return Buffer.from(text.split("\r\n").map((l) => (l.startsWith(".") ? l.slice(1) : l)).join("\r\n"), "latin1");
}

const ROOT = join(import.meta.dir, "../..");

/** The command that runs the CLI: MAILSENTRY_BIN (compiled binary) or bun cli/main.ts. */
export function cliCommand(): string[] {
  const bin = process.env.MAILSENTRY_BIN;
  return bin ? [bin] : [process.execPath, join(ROOT, "cli/main.ts")];
}

/** An environment whose config and state live under home. */
export function cliEnv(home: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("MAILSENTRY_")) env[k] = v;
  return { ...env, XDG_STATE_HOME: join(home, "state"), XDG_CONFIG_HOME: join(home, "config"), NO_COLOR: "1" };
}

/** Runs the CLI to completion. */
export async function runCli(args: string[], home: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const proc = Bun.spawn([...cliCommand(), ...args], { cwd: ROOT, env: cliEnv(home), stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}

/** A free loopback port (for subprocess configs, which cannot say port 0 and report back). */
export async function freePort(): Promise<number> {
  const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = s.port;
  s.stop(true);
  return port;
}

export interface ProxyProcess {
  proc: ReturnType<typeof Bun.spawn>;
  /** stderr lines so far. */
  lines: string[];
  /** Resolves when a stderr line matches (lines already seen count). */
  waitLog(match: (line: string) => boolean): Promise<string>;
}

/** `mailsentry serve` in a subprocess; resolves once it reports that it runs. */
export async function startProxyProcess(o: { config: string; home: string; args?: string[]; fileLimit?: number }): Promise<ProxyProcess> {
  const command = [...cliCommand(), "serve", "--config", o.config, ...(o.args ?? [])];
  // A lower RLIMIT_NOFILE for the proxy alone: bash sets it, then becomes the proxy (same pid).
  const argv = o.fileLimit ? ["bash", "-c", `ulimit -n ${o.fileLimit} && exec "$@"`, "mailsentry", ...command] : command;
  const proc = Bun.spawn(argv, {
    cwd: ROOT, env: cliEnv(o.home), stdout: "ignore", stderr: "pipe", stdin: "ignore",
  });
  const lines: string[] = [];
  const waiters: { match: (l: string) => boolean; resolve: (l: string) => void }[] = [];
  void (async () => {
    const dec = new TextDecoder();
    let buf = "";
    for await (const chunk of proc.stderr as ReadableStream<Uint8Array>) {
      buf += dec.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        lines.push(line);
        if (process.env.MAILSENTRY_TEST_LOG === "1") process.stderr.write(line + "\n");
        for (const w of waiters.splice(0)) (w.match(line) ? w.resolve(line) : waiters.push(w));
      }
    }
  })();
  const waitLog = (match: (l: string) => boolean) => {
    const seen = lines.find(match);
    if (seen) return Promise.resolve(seen);
    const exited = proc.exited.then((code) => { throw new Error(`proxy exited (${code}) before the expected log line; stderr:\n${lines.join("\n")}`); });
    return Promise.race([new Promise<string>((resolve) => waiters.push({ match, resolve })), exited]);
  };
  await waitLog((l) => l.includes("mailsentry proxy running"));
  return { proc, lines, waitLog };
}
