// What `serve` runs: config → listeners → sessions. A "generation" holds everything built from one
// configuration (trust store, message filter with its engine, policy and quarantine, certificate);
// each session keeps the generation it started with, so a reload (SIGHUP) never disturbs it.
import pkg from "../package.json" with { type: "json" };
import type { TLSOptions } from "bun";
import type { Config, Protocol } from "./config/types.ts";
import { join } from "node:path";
import type { Logger } from "./log.ts";
import { findLocalProcess, makeServerExclusion, matchApp } from "./net/exclusions.ts";
import { ByteBudget } from "./net/budget.ts";
import { listen, type Listener } from "./net/listen.ts";
import { LoginGuard, type Admission } from "./net/login-guard.ts";
import { openFileLimit, sessionCap } from "./net/fd-limit.ts";
import type { Channel } from "./net/queue.ts";
import { isLoopback, listenerProblems } from "./net/security.ts";
import { loadTrust, type Trust } from "./net/upstream.ts";
import { filterMessage, type FilterInfo, type FilterOutcome } from "./filter/index.ts";
import type { MessageBytes } from "./filter/scan-job.ts";
import { clearStaleSpools, spoolDir } from "./filter/spool.ts";
import { ScanPool } from "./filter/pool.ts";
import { inlineScanner, type MessageScanner } from "./filter/scan-job.ts";
import { Pop3Session } from "./pop3/session.ts";
import { ImapSession } from "./imap/session.ts";
import { ImapServerConn } from "./imap/server.ts";
import { MessageCache } from "./imap/cache.ts";
import { CleanIndex } from "./imap/clean-index.ts";
import { QuarantineStore } from "./quarantine/store.ts";
import { policyFromConfig } from "./rewrite/index.ts";
import type { Engine } from "./scan/engine.ts";
import { formatLoadReport } from "./scan/signatures/load.ts";
import { describeChain, type Chain } from "./scan/chain.ts";
import { chainFromConfig } from "./net/engines/index.ts";
import { ensureLeaf } from "./tls/ca.ts";

/** The generation's filter; source names the message in the quarantine. */
type SourcedFilter = <B extends MessageBytes>(raw: B, info: FilterInfo, source: string) => Promise<FilterOutcome<B>>;

export const PRODUCT = `mailsentry ${pkg.version}`;

/** Protocols this version serves. */
const SERVED: Protocol[] = ["pop3", "pop3s", "imap", "imaps"];
/** Listeners with implicit TLS on the client leg. */
const IMPLICIT_TLS = new Set<Protocol>(["pop3s", "imaps"]);
// Raw bytes of IMAP bodies held whole for scanning at once, across sessions. A scan holds about three
// times its message (raw, decoded parts, the copy): 32 MB keeps 1,000 sessions with 100 downloading
// under 256 MB, and one message bigger than this is scanned alone.
const HOLD_BUDGET_BYTES = 32 * 1024 * 1024;

export interface ServiceOptions {
  config: Config;
  stateDir: string;
  log: Logger;
  /** --sigs: overrides config.signatures. */
  signatures?: string | null;
  env?: Record<string, string | undefined>;
  /** Tests may inject an engine (it then scans on the event loop); otherwise scan workers load config.signatures. */
  engine?: Engine;
  /** How many scan workers (default: one per core beyond the event loop's, see filter/pool.ts). */
  scanWorkers?: number;
}

interface Generation {
  config: Config;
  /** The scan workers of this generation's signatures (null when an engine was injected). */
  pool: ScanPool | null;
  trust: Trust;
  clientTls: TLSOptions;
  excludedServer: (ip: string) => string | null;
  filter: SourcedFilter;
  /** IMAP's filter: copies keep their size and no tag is added to otherwise unchanged mail (README). */
  imapFilter: SourcedFilter;
  /** Scanned IMAP copies, shared by the sessions of this generation (the signatures are part of the copy). */
  cache: MessageCache;
  holdBudget: ByteBudget;
  cleanIndex: CleanIndex | null;
  quarantine: QuarantineStore;
}

type Session = Pop3Session | ImapSession;

/** How often the quarantine's limits are applied while the proxy runs (and once at start). */
const QUARANTINE_PRUNE_MS = 24 * 60 * 60_000;

export interface BoundListener {
  protocol: Protocol;
  address: string;
  port: number;
  /** Host the socket is bound to. */
  host: string;
  /** A fixed-upstream listener (no name/server routing in the login). */
  fixed: boolean;
}

export class Service {
  readonly listeners: BoundListener[] = [];
  private readonly sockets: Listener[] = [];
  private readonly sessions = new Set<Session>();
  private gen!: Generation;
  private pruneTimer: ReturnType<typeof setInterval> | undefined;

  /** quarantine.maxAge and maxSize, oldest first; what goes is logged. A failure is logged, never fatal. */
  private async pruneQuarantine(): Promise<void> {
    const { quarantine, config } = this.gen;
    try {
      const removed = await quarantine.enforce({ maxAgeDays: config.quarantine.maxAge, maxSize: config.quarantine.maxSize });
      if (removed.length) {
        this.opts.log.info("quarantine limits applied: oldest entries removed", {
          removed: removed.length, bytes: removed.reduce((n, e) => n + e.size, 0), maxAgeDays: config.quarantine.maxAge, maxSize: config.quarantine.maxSize,
          ids: removed.slice(0, 20).map((e) => e.id),
        });
      }
    } catch (e) {
      this.opts.log.warn("could not apply the quarantine limits", { error: e });
    }
  }
  /** Failed-login and unauthenticated-connection limits, across listeners and reloads. */
  private readonly guard = new LoginGuard(() => this.gen.config.limits);
  private nextId = 1;
  /** Sessions the open-file limit leaves room for (see net/fd-limit.ts). */
  private maxSessions = Infinity;
  private lastFdWarning = -Infinity;
  private stopping: Promise<void> | null = null;
  private readonly stopped = Promise.withResolvers<void>();

  private constructor(private readonly opts: ServiceOptions) {}

  /** Builds the first generation, checks listener security and binds every enabled listener. */
  static async start(opts: ServiceOptions): Promise<Service> {
    const problems = listenerProblems(opts.config, SERVED);
    if (problems.length) throw new Error(`refusing to start: ${problems.join("; ")}`);
    const s = new Service(opts);
    const stale = clearStaleSpools(opts.stateDir);
    if (stale) opts.log.info("removed messages a stopped proxy had left in its spool", { directories: stale });
    const fdLimit = await openFileLimit();
    s.maxSessions = sessionCap(fdLimit);
    if (Number.isFinite(fdLimit)) opts.log.info("sessions capped by the open-file limit", { openFiles: fdLimit, maxSessions: s.maxSessions });
    s.gen = await s.build(opts.config);
    void s.pruneQuarantine();
    s.pruneTimer = setInterval(() => void s.pruneQuarantine(), QUARANTINE_PRUNE_MS);
    s.pruneTimer.unref?.();
    try {
      s.bindAll();
    } catch (e) {
      // Nothing of a proxy that could not start may keep running: listeners, workers, the timer.
      for (const l of s.sockets) l.stop();
      clearInterval(s.pruneTimer);
      s.gen.pool?.close();
      await s.gen.cleanIndex?.close().catch(() => {});
      throw e;
    }
    return s;
  }

  /** Resolves once stop() has finished. */
  get done(): Promise<void> { return this.stopped.promise; }
  get activeSessions(): number { return this.sessions.size; }
  /** The IMAP message cache of the current configuration: bytes held, the most ever held, its bound. */
  get messageCache(): { bytes: number; peakBytes: number; maxBytes: number; entries: number } {
    const c = this.gen.cache;
    return { bytes: c.bytes, peakBytes: c.peakBytes, maxBytes: c.maxBytes, entries: c.entries };
  }
  get config(): Config { return this.gen.config; }
  /** Bytes of the hold budget granted now: held bodies and IMAP download copies (tests, status). */
  get heldBytes(): number { return this.gen.holdBudget.inUse; }

  /** First bound port of a protocol (tests and status output). */
  port(protocol: Protocol): number | undefined {
    return this.listeners.find((l) => l.protocol === protocol)?.port;
  }

  /**
   * New configuration and signatures for new sessions; sessions in flight keep theirs. Listener
   * addresses are bound once: a changed address list needs a restart (logged).
   */
  async reload(config: Config): Promise<void> {
    const problems = listenerProblems(config, SERVED);
    if (problems.length) throw new Error(`reload refused: ${problems.join("; ")}`);
    const next = await this.build(config);
    if (JSON.stringify(config.listeners) !== JSON.stringify(this.gen.config.listeners)) {
      this.opts.log.warn("listener addresses changed: they take effect after a restart");
    }
    const old = this.gen;
    this.gen = next;
    void old.cleanIndex?.flush().catch(() => {});
    old.pool?.retire();
    this.opts.log.info("configuration reloaded", { sessions: this.sessions.size });
  }

  /** Stops accepting, lets sessions finish up to limits.drainTimeout, then cuts the rest. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      clearInterval(this.pruneTimer);
      for (const l of this.sockets) l.stop();
      const deadline = this.gen.config.limits.drainTimeout;
      for (const s of this.sessions) s.drain();
      if (this.sessions.size > 0) {
        this.opts.log.info("stopping: waiting for sessions", { sessions: this.sessions.size, drainTimeoutMs: deadline });
        const all = Promise.all([...this.sessions].map((s) => s.finished));
        let timer: ReturnType<typeof setTimeout> | undefined;
        const timeout = new Promise<"timeout">((r) => { timer = setTimeout(() => r("timeout"), deadline); });
        const r = await Promise.race([all.then(() => "done" as const), timeout]);
        clearTimeout(timer);
        if (r === "timeout") {
          this.opts.log.warn("drain deadline reached: closing remaining sessions", { sessions: this.sessions.size });
          for (const s of this.sessions) s.abort("proxy stopping");
          await Promise.all([...this.sessions].map((s) => s.finished));
        }
      }
      await this.gen.cleanIndex?.close().catch(() => {});
      this.gen.pool?.close();
      this.opts.log.info("stopped");
      this.stopped.resolve();
    })();
    return this.stopping;
  }

  private bindAll(): void {
    const { config } = this.gen;
    for (const protocol of SERVED) {
      const l = config.listeners[protocol];
      if (!l?.enabled) continue;
      for (const entry of l.addresses) {
        const a = typeof entry === "string" ? { address: entry } : entry;
        let socket: Listener;
        try {
          socket = listen({
            address: a.address,
            // The certificate is read per generation at handshake time would be nicer; Bun takes one per listener.
            tls: IMPLICIT_TLS.has(protocol) ? this.gen.clientTls : undefined,
            onChannel: (ch) => this.accept(ch, protocol, a.upstream),
          });
        } catch (e) {
          throw new Error(listenFailure(protocol, a.address, e));
        }
        this.sockets.push(socket);
        this.listeners.push({ protocol, address: a.address, port: socket.port, host: socket.hostname, fixed: Boolean(a.upstream) });
        this.opts.log.info("listening", { protocol, address: `${socket.hostname}:${socket.port}`, ...(a.upstream ? { upstream: a.upstream } : {}) });
      }
    }
  }

  private accept(ch: Channel, protocol: Protocol, fixedUpstream?: string): void {
    if (this.stopping) { ch.destroy(); return; }
    const gen = this.gen;
    const id = this.nextId++;
    const client = `${ch.info.remoteAddress}:${ch.info.remotePort}`;
    const log = this.opts.log.child({ session: id, protocol, client });
    const imap = protocol === "imap" || protocol === "imaps";
    if (this.sessions.size >= this.maxSessions) {
      // Near the open-file limit: refuse now rather than run into EMFILE, where accept spins.
      const now = performance.now();
      if (now - this.lastFdWarning > 60_000) {
        this.lastFdWarning = now;
        log.warn("at the open-file limit: refusing new connections until sessions end", { sessions: this.sessions.size, maxSessions: this.maxSessions });
      }
      ch.out.write(Buffer.from(imap ? "* BYE [UNAVAILABLE] mailsentry is at its connection limit; try again later.\r\n" : "-ERR [SYS/TEMP] mailsentry is at its connection limit; try again later.\r\n"));
      ch.end();
      return;
    }
    const admission = this.guard.admit(ch.info.remoteAddress);
    if (!admission) {
      // Turned away at the greeting: slow-drip clients must not pile up connections that never log in.
      log.warn("connection refused: too many from this address have not logged in", { limit: gen.config.limits.maxUnauthenticatedPerClient });
      ch.out.write(Buffer.from(imap ? "* BYE [UNAVAILABLE] Too many connections from your address that have not logged in.\r\n" : "-ERR [SYS/TEMP] Too many connections from your address that have not logged in; try again later.\r\n"));
      ch.end();
      return;
    }
    void ch.closed.then(() => admission.release());
    if (imap) {
      this.startImap(ch, gen, log, protocol === "imap", fixedUpstream, undefined, admission);
      return;
    }
    const session: Pop3Session = new Pop3Session(ch, {
      config: gen.config,
      log,
      trust: gen.trust,
      filter: (raw, info) => gen.filter(raw, info, `${protocol} ${session.account} #${info.msg}`),
      spoolDir: spoolDir(this.opts.stateDir),
      clientTls: protocol === "pop3" ? gen.clientTls : null,
      fixedUpstream,
      excludedServer: gen.excludedServer,
      excludedApp: appExclusion(gen.config, ch, log),
      admission,
      // A fixed POP3 listener whose server greets like IMAP: the IMAP side takes the connection over.
      onImapGreeting: (clientCh, server, greeting) => {
        const imap = new ImapServerConn(server.ch, gen.config.limits);
        for (const c of server.reader.takeBuffered()) imap.reader.push(c);
        this.startImap(clientCh, gen, log.child({ protocol: "imap" }), !clientCh.tls, fixedUpstream, { server: imap, greeting }, admission);
      },
    });
    this.track(session);
    void session.start();
  }

  private startImap(ch: Channel, gen: Generation, log: Logger, offerStartTls: boolean, fixedUpstream?: string, handover?: { server: ImapServerConn; greeting: string }, admission?: Admission): void {
    const session: ImapSession = new ImapSession(ch, {
      config: gen.config,
      log,
      trust: gen.trust,
      filter: (raw, info) => gen.imapFilter(raw, info, `imap ${session.account} ${info.msg}`),
      spoolDir: spoolDir(this.opts.stateDir),
      cache: gen.cache,
      cleanIndex: gen.cleanIndex,
      holdBudget: gen.holdBudget,
      clientTls: offerStartTls ? gen.clientTls : null,
      fixedUpstream,
      handover,
      excludedServer: gen.excludedServer,
      excludedApp: appExclusion(gen.config, ch, log),
      admission,
    });
    this.track(session);
    session.start();
  }

  private track(session: Session): void {
    this.sessions.add(session);
    void session.finished.then(() => this.sessions.delete(session));
  }

  private async build(config: Config): Promise<Generation> {
    const { log } = this.opts;
    const env = this.opts.env ?? process.env;
    const trust = await loadTrust({ caFile: config.upstreamCaFile, insecureHosts: config.insecureUpstreamHosts, env });
    for (const h of config.insecureUpstreamHosts) log.warn("upstream certificates of this host are NOT verified", { host: h });
    let scanner: MessageScanner;
    let identity: string | undefined;
    let pool: ScanPool | null = null;
    if (this.opts.engine) {
      scanner = inlineScanner(this.opts.engine);
      identity = this.opts.engine.identity;
    } else {
      const dir = this.opts.signatures !== undefined ? this.opts.signatures : config.signatures;
      pool = await ScanPool.open(dir, { size: this.opts.scanWorkers });
      for (const line of formatLoadReport(pool.loaded.report)) log.info(line);
      log.info("scan workers started", { workers: pool.size });
      scanner = pool.scan;
      identity = pool.identity;
    }
    const chain = chainFromConfig(config);
    if (chain.engines.length > 0) {
      await Promise.all(chain.engines.map((e) => e.check().then((checks) => {
        for (const c of checks) {
          if (c.ok) log.info("engine ready", { engine: c.engine, address: c.address, version: c.version, database: c.database, latencyMs: Math.round(c.latencyMs * 10) / 10 });
          else log.warn("engine not answering (messages wait for it or fail over)", { engine: c.engine, address: c.address, error: c.error });
        }
      })));
      // clamd's database changes under it without a reload: a clean verdict cannot be remembered
      // under an identity that would still hold after that, so the IMAP index of clean mail is off.
      identity = undefined;
    }
    log.info("engines", { chain: describeChain(chain), mode: chain.mode });
    try {
      return await this.buildWith(config, trust, scanner, identity, pool, chain);
    } catch (e) {
      pool?.close();
      throw e;
    }
  }

  private async buildWith(config: Config, trust: Trust, scanner: MessageScanner, identity: string | undefined, pool: ScanPool | null, chain: Chain): Promise<Generation> {
    const { log } = this.opts;
    const leaf = await ensureLeaf(this.opts.stateDir, config.tlsNames);
    const quarantine = new QuarantineStore(config.quarantineDir ?? join(this.opts.stateDir, "quarantine"));
    // Both protocols announce a size before the body (LIST, RFC822.SIZE): changed copies keep it.
    const policy = policyFromConfig(config, PRODUCT, { sameSize: true });
    const imapPolicy = policyFromConfig(config, PRODUCT, { sameSize: true, addTags: false });
    const cleanIndex = identity
      ? await CleanIndex.open(join(this.opts.stateDir, "imap-clean.idx"), identity).catch((e) => {
        log.warn("the index of clean IMAP messages cannot be used: every message will be scanned", { error: e });
        return null;
      })
      : null;
    const filterCtx = { scanner, limits: config.limits, quarantine, chain };
    return {
      config,
      pool,
      trust,
      clientTls: { cert: leaf.cert, key: leaf.key },
      excludedServer: makeServerExclusion(config.excludedServers),
      filter: (raw, info, source) => filterMessage({ ...filterCtx, policy }, raw, info, source),
      imapFilter: (raw, info, source) => filterMessage({ ...filterCtx, policy: imapPolicy }, raw, info, source),
      cache: new MessageCache(config.limits.messageCacheSize),
      cleanIndex,
      holdBudget: new ByteBudget(HOLD_BUDGET_BYTES),
      quarantine,
    };
  }
}

/** excludedApps: only a loopback client can be traced to a local process (/proc). */
function appExclusion(config: Config, ch: Channel, log: Logger): Promise<string | null> {
  if (config.excludedApps.length === 0 || !isLoopback(ch.info.remoteAddress)) return Promise.resolve(null);
  const { localPort, remotePort, localAddress, remoteAddress } = ch.info;
  return findLocalProcess(localPort, remotePort, localAddress, remoteAddress).then(
    (proc) => {
      if (!proc) return null;
      const rule = matchApp(config.excludedApps, proc);
      if (rule) log.info("client application is excluded from scanning", { app: proc.exe || proc.name, pid: proc.pid, rule });
      return rule;
    },
    (e) => {
      log.warn("could not identify the client application", { error: e });
      return null;
    },
  );
}


/** "cannot listen on 127.0.0.1:1110 (listeners.pop3): the address is in use (EADDRINUSE)": which, where, why. */
export function listenFailure(protocol: Protocol, address: string, e: unknown): string {
  const code = (e as NodeJS.ErrnoException)?.code ?? "";
  const why: Record<string, string> = {
    EADDRINUSE: "the address is in use (another program, or mailsentry already running?)",
    EACCES: "permission denied (ports below 1024 need privileges)",
    EADDRNOTAVAIL: "no interface of this machine has that address",
  };
  return `cannot listen on ${address} (listeners.${protocol}): ${why[code] ?? (e as Error)?.message ?? String(e)}${code ? ` (${code})` : ""}`;
}
