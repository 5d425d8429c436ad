// What `serve` runs: config → listeners → sessions → scan pipeline. A "generation" holds everything
// built from one configuration (trust store, engine, policy, quarantine, certificate); each session
// keeps the generation it started with, so a reload (SIGHUP) never disturbs sessions in flight.
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
import type { FilterInfo, FilterOutcome, MessageFilter } from "./pop3/relay.ts";
import { R, err } from "./pop3/replies.ts";
import { Pop3Session } from "./pop3/session.ts";
import { QuarantineStore } from "./quarantine/store.ts";
import { applyPolicy, policyFromConfig, type ActionPolicy } from "./rewrite/index.ts";
import type { Engine } from "./scan/engine.ts";
import { BuiltinEngine } from "./scan/engines/builtin.ts";
import { scanMessage } from "./scan/pipeline.ts";
import { formatLoadReport } from "./scan/signatures/load.ts";
import { describeVerdict, type Verdict } from "./scan/verdict.ts";
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
  engine: Engine;
  policy: ActionPolicy;
  quarantine: QuarantineStore;
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
    const gen: Generation = {
      config,
      trust,
      engine,
      policy,
      quarantine,
      clientTls: { cert: leaf.cert, key: leaf.key },
      excludedServer: makeServerExclusion(config.excludedServers),
      filter: (raw, info, source) => filterMessage(gen, raw, info, source),
    };
    return gen;
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

/**
 * Scan → action → quarantine for one downloaded message. The original is in quarantine before a
 * cleaned or replaced copy leaves, so the client's DELE loses nothing. A scanner failure and a
 * failed quarantine write are temporary failures: nothing unscanned slips through, nothing is lost.
 */
async function filterMessage(gen: Generation, raw: Uint8Array, info: FilterInfo, source: string): Promise<FilterOutcome> {
  const { log } = info;
  let scanned;
  try {
    scanned = await scanMessage(raw, { engine: gen.engine, limits: gen.config.limits });
  } catch (e) {
    log.error("scanner failed", { number: info.msg, error: e });
    return { kind: "refuse", reply: R.scanTempFail(), detected: false };
  }
  const { result, tree } = scanned;
  const v = result.verdict;
  if (info.partial) return partialOutcome(raw, v, info, gen.policy);
  let outcome;
  try {
    outcome = applyPolicy(raw, tree, result, gen.policy);
  } catch (e) {
    log.error("applying the action failed", { number: info.msg, error: e });
    return { kind: "refuse", reply: R.scanTempFail(), detected: v.kind === "infected" };
  }
  if (outcome.disposition === "tempfail") {
    log.warn("message withheld (temporary failure)", { number: info.msg, verdict: describeVerdict(v) });
    return { kind: "refuse", reply: R.scanTempFail(), detected: v.kind === "infected" };
  }
  let quarantineId: string | undefined;
  if (outcome.quarantine) {
    try {
      quarantineId = (await gen.quarantine.put(raw, { verdict: v, source })).id;
    } catch (e) {
      log.error("quarantine write failed: message withheld", { number: info.msg, error: e });
      return { kind: "refuse", reply: R.scanTempFail(), detected: v.kind === "infected" };
    }
  }
  if (v.kind === "infected") {
    log.warn("detection", { number: info.msg, verdict: describeVerdict(v), action: outcome.applied, ...(quarantineId ? { quarantine: quarantineId } : {}) });
  } else if (v.kind !== "clean") {
    log.info("message not fully scanned", { number: info.msg, verdict: describeVerdict(v), action: outcome.applied, ...(quarantineId ? { quarantine: quarantineId } : {}) });
  }
  return { kind: "deliver", bytes: outcome.bytes, detected: v.kind === "infected" };
}

/**
 * TOP output is part of a message: a notice or a cleaned copy would look like a complete message,
 * so nothing is rewritten. Clean/unscanned output passes unchanged; infected output is refused
 * (RETR delivers the cleaned copy and quarantines the original) unless the action is `ignore`,
 * under which RETR too would deliver it as it is; a scanner error is a temp failure.
 */
function partialOutcome(raw: Uint8Array, v: Verdict, info: FilterInfo, policy: ActionPolicy): FilterOutcome {
  if (v.kind === "infected" && policy.action === "ignore") {
    info.log.warn("detection", { number: info.msg, verdict: describeVerdict(v), action: "none (TOP, ignore)" });
    return { kind: "deliver", bytes: raw, detected: true };
  }
  if (v.kind === "infected") {
    info.log.warn("detection", { number: info.msg, verdict: describeVerdict(v), action: "refused (TOP)" });
    return { kind: "refuse", reply: err("[SYS/PERM] This message contains a virus; retrieve it with RETR for the cleaned copy."), detected: true };
  }
  if (v.kind === "error") return { kind: "refuse", reply: R.scanTempFail(), detected: false };
  return { kind: "deliver", bytes: raw, detected: false };
}

export type { MessageFilter };
