// What `serve` runs: config → listeners → sessions. A "generation" holds everything built from one
// configuration (trust store, message filter with its engine, policy and quarantine, certificate);
// each session keeps the generation it started with, so a reload (SIGHUP) never disturbs it.
import pkg from "../package.json" with { type: "json" };
import type { TLSOptions } from "bun";
import type { Config, Protocol } from "./config/types.ts";
import { join } from "node:path";
import type { Logger } from "./log.ts";
import { findLocalProcess, makeServerExclusion, matchApp } from "./net/exclusions.ts";
import { listen, type Listener } from "./net/listen.ts";
import type { Channel } from "./net/queue.ts";
import { isLoopback, listenerProblems } from "./net/security.ts";
import { loadTrust, type Trust } from "./net/upstream.ts";
import { filterMessage, type FilterInfo, type FilterOutcome } from "./filter.ts";
import { Pop3Session } from "./pop3/session.ts";
import { QuarantineStore } from "./quarantine/store.ts";
import { policyFromConfig } from "./rewrite/index.ts";
import type { Engine } from "./scan/engine.ts";
import { BuiltinEngine } from "./scan/engines/builtin.ts";
import { formatLoadReport } from "./scan/signatures/load.ts";
import { ensureLeaf } from "./tls/ca.ts";

export const PRODUCT = `mailsentry ${pkg.version}`;

/** Protocols this version serves; imap/imaps plug in here when their sessions exist. */
const SERVED: Protocol[] = ["pop3", "pop3s"];

export interface ServiceOptions {
  config: Config;
  stateDir: string;
  log: Logger;
  /** --sigs: overrides config.signatures. */
  signatures?: string | null;
  env?: Record<string, string | undefined>;
  /** Tests may inject an engine; otherwise the builtin engine loads config.signatures. */
  engine?: Engine;
}

interface Generation {
  config: Config;
  trust: Trust;
  clientTls: TLSOptions;
  excludedServer: (ip: string) => string | null;
  filter: (raw: Uint8Array, info: FilterInfo, source: string) => Promise<FilterOutcome>;
}

export interface BoundListener {
  protocol: Protocol;
  address: string;
  port: number;
}

export class Service {
  readonly listeners: BoundListener[] = [];
  private readonly sockets: Listener[] = [];
  private readonly sessions = new Set<Pop3Session>();
  private gen!: Generation;
  private nextId = 1;
  private stopping: Promise<void> | null = null;
  private readonly stopped = Promise.withResolvers<void>();

  private constructor(private readonly opts: ServiceOptions) {}

  /** Builds the first generation, checks listener security and binds every enabled listener. */
  static async start(opts: ServiceOptions): Promise<Service> {
    const problems = listenerProblems(opts.config, SERVED);
    if (problems.length) throw new Error(`refusing to start: ${problems.join("; ")}`);
    const s = new Service(opts);
    s.gen = await s.build(opts.config);
    try {
      s.bindAll();
    } catch (e) {
      for (const l of s.sockets) l.stop();
      throw e;
    }
    for (const p of ["imap", "imaps"] as Protocol[]) {
      if (opts.config.listeners[p]?.enabled) opts.log.warn(`listeners.${p} is enabled, but IMAP is not served by this version yet`);
    }
    return s;
  }

  /** Resolves once stop() has finished. */
  get done(): Promise<void> { return this.stopped.promise; }
  get activeSessions(): number { return this.sessions.size; }
  get config(): Config { return this.gen.config; }

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
    this.gen = next;
    this.opts.log.info("configuration reloaded", { sessions: this.sessions.size });
  }

  /** Stops accepting, lets sessions finish up to limits.drainTimeout, then cuts the rest. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
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
        const socket = listen({
          address: a.address,
          // The certificate is read per generation at handshake time would be nicer; Bun takes one per listener.
          tls: protocol === "pop3s" ? this.gen.clientTls : undefined,
          onChannel: (ch) => this.accept(ch, protocol, a.upstream),
        });
        this.sockets.push(socket);
        this.listeners.push({ protocol, address: a.address, port: socket.port });
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
    const session = new Pop3Session(ch, {
      config: gen.config,
      log,
      trust: gen.trust,
      filter: (raw, info) => gen.filter(raw, info, `${protocol} ${session.account} #${info.msg}`),
      clientTls: protocol === "pop3" ? gen.clientTls : null,
      fixedUpstream,
      excludedServer: gen.excludedServer,
      excludedApp: appExclusion(gen.config, ch, log),
    });
    this.sessions.add(session);
    void session.finished.then(() => this.sessions.delete(session));
    void session.start();
  }

  private async build(config: Config): Promise<Generation> {
    const { log } = this.opts;
    const env = this.opts.env ?? process.env;
    const trust = await loadTrust({ caFile: config.upstreamCaFile, insecureHosts: config.insecureUpstreamHosts, env });
    for (const h of config.insecureUpstreamHosts) log.warn("upstream certificates of this host are NOT verified", { host: h });
    let engine = this.opts.engine;
    if (!engine) {
      const dir = this.opts.signatures !== undefined ? this.opts.signatures : config.signatures;
      const loaded = await BuiltinEngine.load(dir);
      for (const line of formatLoadReport(loaded.report)) log.info(line);
      engine = loaded.engine;
    }
    const leaf = await ensureLeaf(this.opts.stateDir, config.tlsNames);
    const quarantine = new QuarantineStore(config.quarantineDir ?? join(this.opts.stateDir, "quarantine"));
    const policy = policyFromConfig(config, PRODUCT);
    return {
      config,
      trust,
      clientTls: { cert: leaf.cert, key: leaf.key },
      excludedServer: makeServerExclusion(config.excludedServers),
      filter: (raw, info, source) => filterMessage({ engine, limits: config.limits, policy, quarantine }, raw, info, source),
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

