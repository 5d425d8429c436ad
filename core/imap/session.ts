// One client's IMAP session through the proxy: holds the state, answers the not-authenticated state
// itself (CAPABILITY, STARTTLS, LOGIN, AUTHENTICATE PLAIN/LOGIN, ID, NOOP, LOGOUT), reaches and logs in to
// the server named by the login (or the listener's fixed upstream), then hands both legs to the relay.
// One log line at the end sums the session up.
import type { TLSOptions } from "bun";
import type { Config } from "../config/types.ts";
import { redactCommand, type Logger } from "../log.ts";
import type { Admission } from "../net/login-guard.ts";
import type { Channel } from "../net/queue.ts";
import { hasControlBytes, parseHostPort, upstreamProblem } from "../net/security.ts";
import { parseRoutedName, passwordProblem, type RoutedName } from "../net/routing.ts";
import { resolveHost, type Trust } from "../net/upstream.ts";
import type { MessageFilter } from "../filter/index.ts";
import { filterCapabilities, proxyCapabilities } from "./capability.ts";
import { COMMANDS } from "./commands.ts";
import { DEFAULT_IMAP_PORT, ImapRefusal, REFUSE, authenticate, connectImap, secureGreeted, upstreamRefusal, type SecuredImap } from "./login.ts";
import { ImapRelay, type RelayStats } from "./relay.ts";
import type { ImapServerConn } from "./server.ts";
import type { MessageCache } from "./cache.ts";
import type { CleanIndex } from "./clean-index.ts";
import type { ByteBudget } from "../net/budget.ts";
import { ImapReader, ReadError, commandHead, latin1Bytes, lineText, segmentText, tokenize, type Segment, type Token } from "./wire.ts";
import { spoolDir } from "../filter/spool.ts";
import { stateDir } from "../config/paths.ts";

export interface ImapSessionDeps {
  config: Config;
  log: Logger;
  trust: Trust;
  filter: MessageFilter;
  cache: MessageCache;
  cleanIndex: CleanIndex | null;
  /** Memory for bodies held whole while they are scanned, shared by all sessions. */
  holdBudget: ByteBudget;
  /** Certificate for STARTTLS on the client leg; null: not offered. */
  clientTls: TLSOptions | null;
  /** "host:port" of a fixed-upstream listener. */
  fixedUpstream?: string;
  /** A fixed upstream already connected and greeted (handed over by the POP3 side's detection). */
  handover?: { server: ImapServerConn; greeting: string };
  excludedServer: (ip: string) => string | null;
  excludedApp: Promise<string | null>;
  /** This connection's standing with the proxy's login guard (failed-login limits); absent in some tests. */
  admission?: Admission;
  /** Where bodies over maxMessageSize are spooled; default <state>/spool of the environment. */
  spoolDir?: string;
}

export interface ImapSessionSummary {
  user: string | null;
  server: string | null;
  messages: number;
  bytes: number;
  detections: number;
  durationMs: number;
  end: string;
}

export type ImapState = "not-authenticated" | "authenticated" | "logout";

// Ten bad commands before login end the session, as on the POP3 side (probes, wrong protocol).
const MAX_BAD_COMMANDS = 10;
// RFC 3501 §5.4: an inactivity timer must be at least 30 minutes (clients IDLE for 29).
const MIN_IMAP_IDLE_MS = 30 * 60_000;
// Literals before login carry a user name or a password.
const MAX_LOGIN_LITERAL = 8 * 1024;

/** Why a not-authenticated command could not be read (the session answers BAD or ends). */
class CommandTooLong extends Error {}

export class ImapSession {
  state: ImapState = "not-authenticated";
  readonly log: Logger;
  readonly reader: ImapReader;
  private relay: ImapRelay | null = null;
  private fixed: SecuredImap | null = null;
  private bad = 0;
  private user: string | null = null;
  private where: string | null = null;
  private readonly stats: RelayStats = { messages: 0, bytes: 0, detections: 0 };
  private readonly started = performance.now();
  private lastActivity = performance.now();
  private idleTimer: ReturnType<typeof setTimeout> | null = null;
  /** Until login: the not-authenticated state's total deadline (clientLoginTimeout). */
  private loginTimer: ReturnType<typeof setTimeout> | null = null;
  /** Set when a failed login used up maxLoginFailures: the session ends after its NO. */
  private failedOut = false;
  private endReason = "client closed";
  private closing = false;
  private readonly done = Promise.withResolvers<ImapSessionSummary>();

  constructor(readonly client: Channel, readonly deps: ImapSessionDeps) {
    this.log = deps.log;
    this.reader = new ImapReader({
      highWater: 256 * 1024,
      onPause: () => client.pause("reader"),
      onResume: () => client.resume("reader"),
    });
    client.attach({
      push: (c) => { this.touch(); this.reader.push(c); },
      close: (e) => this.reader.close(e),
    });
  }

  get finished(): Promise<ImapSessionSummary> { return this.done.promise; }
  get account(): string { return `${this.user ?? "?"}@${this.where ?? "?"}`; }
  get canStartTls(): boolean { return !this.client.tls && this.deps.clientTls !== null; }
  get idle(): boolean { return this.state !== "authenticated" || (this.relay?.idle ?? true); }

  start(): void {
    void this.run().then((s) => this.done.resolve(s));
  }

  /** Runs the session to its end; never rejects. */
  async run(): Promise<ImapSessionSummary> {
    this.armIdle();
    // However busy a client keeps the line (a byte a second resets the idle timer), it must log in by then.
    this.loginTimer = setTimeout(() => {
      this.loginTimer = null;
      if (this.state === "not-authenticated" && !this.client.isClosed) this.abort("no login in time", "Disconnected: no login in time.");
    }, this.deps.config.limits.clientLoginTimeout);
    try {
      if (await this.greet()) await this.commandLoop();
    } catch (e) {
      this.log.error("session failed", { error: e });
      this.endReason = "internal error";
      this.client.destroy();
    }
    if (!this.client.isClosed) this.client.end();
    await this.client.closed;
    this.relay?.stop();
    this.fixed?.server.ch.destroy();
    if (this.idleTimer) clearTimeout(this.idleTimer);
    if (this.loginTimer) clearTimeout(this.loginTimer);
    const summary: ImapSessionSummary = {
      user: this.user, server: this.where, ...this.stats,
      durationMs: Math.round(performance.now() - this.started), end: this.endReason,
    };
    this.log.info("session end", { ...summary });
    return summary;
  }

  /** The proxy is stopping: a session with nothing in flight is closed now. */
  drain(): void {
    if (this.idle && !this.client.isClosed) this.abort("proxy stopping");
  }

  abort(reason: string, text = "mailsentry is shutting down."): void {
    this.endReason = reason;
    this.closing = true;
    if (this.idle) {
      this.client.out.write(latin1Bytes(`* BYE ${text}\r\n`));
      this.client.end();
    } else this.client.destroy();
    this.relay?.stop();
  }

  send(text: string): void {
    this.client.out.write(latin1Bytes(text + "\r\n"));
    this.touch();
  }

  // ---- not authenticated --------------------------------------------------------------------

  private capabilities(): string {
    return proxyCapabilities({ starttls: this.canStartTls }).join(" ");
  }

  /** Sends the greeting; for a fixed upstream, connects first. False when the session is over. */
  private async greet(): Promise<boolean> {
    if (this.deps.fixedUpstream) {
      try {
        this.fixed = await this.connectFixed();
      } catch (e) {
        const r = upstreamRefusal(e, this.log, this.deps.fixedUpstream);
        this.endReason = "upstream unavailable";
        this.send(`* BYE ${r.response}`);
        return false;
      }
      this.where = this.deps.fixedUpstream;
      if (this.fixed.preauth) {
        // Already logged in upstream: so is the client (only where TLS was not required; see login.ts).
        this.send(`* PREAUTH [CAPABILITY ${filterCapabilities(this.fixed.caps).join(" ")}] mailsentry: logged in by the server.`);
        await this.enterAuthenticated(this.fixed, "(preauth)", this.fixed.server.ch.tls);
        return true;
      }
    }
    this.send(`* OK [CAPABILITY ${this.capabilities()}] mailsentry ready.`);
    return true;
  }

  private async connectFixed(): Promise<SecuredImap> {
    const setup = { config: this.deps.config, trust: this.deps.trust, log: this.log };
    const target = this.deps.fixedUpstream!;
    if (this.deps.handover) {
      const { server, greeting } = this.deps.handover;
      return secureGreeted(setup, server, parseHostPort(target)!.host, target, greeting, server.ch.tls);
    }
    const hp = parseHostPort(target)!;
    const ip = await resolveHost(hp.host);
    const sec = await connectImap(setup, hp.host, ip, hp.port);
    sec.server.endLogin(); // the client logs in itself, at its own pace
    return sec;
  }

  private async commandLoop(): Promise<void> {
    while (!this.closing && this.state === "not-authenticated") {
      let cmd: { tag: string; verb: string; tokens: Token[]; text: string } | null;
      try {
        cmd = await this.readCommand();
      } catch (e) {
        if (e instanceof CommandTooLong) {
          this.endReason = "client line too long";
          this.send("* BYE Command line too long.");
          this.client.end();
        }
        return;
      }
      if (!cmd) {
        this.send("* BAD Command line could not be parsed.");
        if (++this.bad >= MAX_BAD_COMMANDS) return this.tooManyBad();
        continue;
      }
      this.log.debug("client", { cmd: redactCommand(cmd.text) });
      const c = COMMANDS.get(cmd.verb);
      if (!c) {
        this.send(`${cmd.tag} BAD ${/^(SELECT|EXAMINE|LIST|LSUB|FETCH|UID .*|STATUS|APPEND|CREATE|DELETE|RENAME|SUBSCRIBE|NAMESPACE|ENABLE|IDLE)$/.test(cmd.verb) ? "Log in first." : "Unknown command."}`);
        if (++this.bad >= MAX_BAD_COMMANDS) return this.tooManyBad();
        continue;
      }
      try {
        await c.run(this, cmd.tag, cmd.tokens);
      } catch (e) {
        if (e instanceof ImapRefusal) {
          this.send(`${cmd.tag} NO ${e.response}`);
          if (this.failedOut) {
            this.endReason = "too many failed logins";
            this.send("* BYE Too many failed logins.");
            this.client.end();
            return;
          }
          continue;
        }
        throw e;
      }
    }
    if (this.state === "authenticated" && this.relay) await this.relayed();
  }

  private tooManyBad(): void {
    this.endReason = "too many invalid commands";
    this.send("* BYE Too many invalid commands.");
    this.client.end();
  }

  /**
   * One command before login, literals included (bounded: these carry names and passwords). A
   * synchronizing literal gets its "+" from the proxy.
   */
  private async readCommand(): Promise<{ tag: string; verb: string; tokens: Token[]; text: string } | null> {
    const max = this.deps.config.limits.maxClientLine;
    const texts: string[] = [];
    const literals: Uint8Array[] = [];
    let total = 0;
    let seg: Segment;
    try {
      seg = await this.reader.readSegment(max);
      for (;;) {
        const text = segmentText(seg);
        texts.push(text);
        total += seg.text.length;
        if (!seg.literal) break;
        if (seg.literal.size > MAX_LOGIN_LITERAL || total + seg.literal.size > 4 * max) {
          this.send(`${commandHead(texts[0]!)?.tag ?? "*"} BAD Literal too long.`);
          throw new CommandTooLong();
        }
        if (seg.literal.sync) this.send("+ Ready for literal data");
        literals.push(await this.reader.readBytes(seg.literal.size));
        total += seg.literal.size;
        seg = await this.reader.readSegment(max);
      }
    } catch (e) {
      if (e instanceof ReadError && e.code === "line-too-long") throw new CommandTooLong();
      throw e;
    }
    const head = commandHead(texts[0]!);
    if (!head) return null;
    let tokens: Token[];
    try {
      const restTexts = [head.rest, ...texts.slice(1)];
      tokens = tokenize(restTexts, literals);
    } catch {
      return null;
    }
    return { tag: head.tag, verb: head.verb, tokens, text: texts.join(" ") };
  }

  /** A SASL continuation: sends "+ " and reads the client's answer line; null when the client left. */
  /** Sends a SASL challenge (base64, "" for none) and reads the client's response line. */
  async saslContinue(challenge: string): Promise<string | null> {
    this.send(`+ ${challenge}`);
    try {
      return lineText(await this.reader.readLine(this.deps.config.limits.maxClientLine));
    } catch {
      return null;
    }
  }

  async startClientTls(tag: string): Promise<void> {
    if (this.client.tls) return this.send(`${tag} BAD Already using TLS.`);
    if (!this.deps.clientTls) return this.send(`${tag} BAD STARTTLS is not available here.`);
    this.send(`${tag} OK Begin TLS negotiation now.`);
    await this.client.out.empty();
    const dropped = this.reader.discard(); // RFC 3501 §6.2.1 / RFC 2595 §3.1: nothing pipelined past STARTTLS survives it
    if (dropped) this.log.warn("dropped bytes sent after STARTTLS in the same packet", { bytes: dropped });
    try {
      await this.client.startTls(this.deps.clientTls, false);
    } catch (e) {
      this.log.info("client TLS handshake failed", { error: e });
      this.endReason = "client TLS failed";
      this.client.destroy();
    }
  }

  logout(tag: string): void {
    this.endReason = "logout";
    this.state = "logout";
    this.send("* BYE mailsentry logging out.");
    this.send(`${tag} OK Logout completed.`);
    this.client.end();
  }

  /** LOGIN / AUTHENTICATE PLAIN: routed name (or the fixed server), upstream login, then the relay. */
  async login(tag: string, name: string, password: string): Promise<void> {
    this.log.addSecret(password); // whatever the server or a later line says, this never reaches the log
    const admission = this.deps.admission;
    if (admission?.blocked(name)) {
      this.log.warn("login refused", { login: name.replace(/[\x00-\x1f\x7f]/g, "?"), reason: "too many failed logins for this name from this address" });
      throw this.loginFailed(name);
    }
    try {
      await this.loginAs(tag, name, password);
    } catch (e) {
      if (e instanceof ImapRefusal && e.code === "AUTHENTICATIONFAILED") throw this.loginFailed(name, e);
      throw e;
    }
  }

  /** Counts a failed login with the guard; the refusal to answer it with. */
  private loginFailed(name: string, refusal: ImapRefusal = REFUSE.authFailed()): ImapRefusal {
    if (this.deps.admission?.failed(name)) {
      this.log.warn("too many failed logins: closing", { failures: this.deps.config.limits.maxLoginFailures });
      this.failedOut = true;
    }
    return refusal;
  }

  private async loginAs(tag: string, name: string, password: string): Promise<void> {
    const setup = { config: this.deps.config, trust: this.deps.trust, log: this.log };
    // Refused before anything reaches the server, fixed upstream included: a CR or LF in either
    // would split the upstream LOGIN line wherever it goes as a quoted string.
    const bad = hasControlBytes(name) ? "control bytes in login name" : passwordProblem(password);
    if (bad) {
      this.log.info("login refused", { login: name.replace(/[\x00-\x1f\x7f]/g, "?"), reason: bad });
      throw REFUSE.authFailed();
    }
    let sec: SecuredImap;
    let user: string;
    let where: string;
    if (this.fixed) {
      sec = this.fixed;
      user = name;
      where = this.deps.fixedUpstream!;
    } else {
      const routed = parseRoutedName(name);
      if (typeof routed === "string") {
        this.log.info("login refused", { login: name.replace(/[\r\n\0]/g, "?"), reason: routed });
        throw REFUSE.authFailed();
      }
      user = routed.user;
      const port = routed.port ?? DEFAULT_IMAP_PORT;
      where = `${routed.host}:${port}`;
      sec = await this.reach(routed, port, where);
    }
    let done;
    try {
      done = await authenticate(setup, sec, user, password, where);
    } catch (e) {
      if (!this.fixed) sec.server.ch.destroy();
      if (e instanceof ImapRefusal) throw e;
      throw upstreamRefusal(e, this.log, where);
    }
    this.where = where;
    const code = `[CAPABILITY ${filterCapabilities(done.caps).join(" ")}]`;
    const text = done.okText.replace(/^OK\s*(\[[^\]]*\]\s*)?/i, "");
    await this.enterAuthenticated(sec, user, sec.tls, done.compressed);
    this.send(`${tag} OK ${code} ${text || "Logged in."}`);
  }

  private async reach(name: RoutedName, port: number, where: string): Promise<SecuredImap> {
    let ip: string;
    try {
      ip = await resolveHost(name.host);
    } catch (e) {
      throw upstreamRefusal(e, this.log, where);
    }
    const problem = upstreamProblem(this.deps.config, { host: name.host, ip, port });
    if (problem) {
      this.log.warn("routed login refused", { user: name.user, server: where, reason: problem });
      throw REFUSE.authFailed();
    }
    const sec = await connectImap({ config: this.deps.config, trust: this.deps.trust, log: this.log }, name.host, ip, port);
    (sec as SecuredImap & { ip?: string }).ip = ip;
    return sec;
  }

  private async enterAuthenticated(sec: SecuredImap, user: string, tls: boolean, compressed = false): Promise<void> {
    const app = await this.deps.excludedApp;
    const ip = (sec as SecuredImap & { ip?: string }).ip ?? sec.server.ch.info.remoteAddress;
    const srv = this.deps.excludedServer(ip);
    const exclusion = app ? `excludedApps: ${app}` : srv ? `excludedServers: ${srv}` : null;
    this.user = user;
    this.state = "authenticated";
    this.deps.admission?.loggedIn();
    if (this.loginTimer) clearTimeout(this.loginTimer);
    this.loginTimer = null;
    this.log.info("logged in", { user, server: this.where, ip, upstreamTls: tls, clientTls: this.client.tls, upstreamCompress: compressed, ...(exclusion ? { unscanned: exclusion } : {}) });
    if (exclusion) this.log.info("session relayed without scanning", { exclusion });
    this.fixed = null; // the relay owns the server connection now
    const server = sec.server;
    this.relay = new ImapRelay({
      client: this.client,
      clientReader: this.reader,
      server,
      filter: exclusion ? null : this.deps.filter,
      cache: this.deps.cache,
      cleanIndex: this.deps.cleanIndex,
      holdBudget: this.deps.holdBudget,
      limits: this.deps.config.limits,
      onUnscanned: this.deps.config.onUnscanned,
      spoolDir: this.deps.spoolDir ?? spoolDir(stateDir()),
      account: { server: this.where ?? "?", user },
      log: this.log,
      stats: this.stats,
      touch: () => this.touch(),
    });
    this.serverConn = server;
  }

  private serverConn: ImapServerConn | null = null;

  /** Authenticated: the relay's two loops until LOGOUT, a hang-up or a fault. */
  private async relayed(): Promise<void> {
    const relay = this.relay!;
    const server = this.serverConn!;
    const pump = relay.run().then(
      () => {
        if (this.endReason === "client closed") this.endReason = "logout";
        this.client.end();
        server.close();
      },
      (e) => {
        if (this.client.isClosed) return;
        this.endReason = `upstream fault: ${(e as Error).message}`;
        this.log.warn("relay stopped: closing the client without completing the response", { error: e });
        this.closing = true;
        this.client.destroy();
        server.ch.destroy();
      },
    );
    void server.ch.closed.then(() => {
      if (this.client.isClosed) return;
      // Closed between responses: nothing is cut; the client learns it as a server would say it.
      if (relay.idle) {
        if (this.endReason === "client closed") this.endReason = "upstream closed";
        relay.stop();
        this.client.end();
      }
    });
    await relay.commands();
    if (this.client.isClosed) {
      relay.stop();
      server.ch.destroy();
    }
    await pump;
  }

  // ---- idle timer -----------------------------------------------------------------------------

  private touch(): void {
    this.lastActivity = performance.now();
  }

  private armIdle(): void {
    const limit = Math.max(this.deps.config.limits.clientIdleTimeout, MIN_IMAP_IDLE_MS);
    if (!Number.isFinite(limit)) return;
    const check = () => {
      if (this.client.isClosed) return;
      const quiet = performance.now() - this.lastActivity;
      if (quiet >= limit) {
        this.log.info("client idle, disconnecting", { idleMs: Math.round(quiet) });
        this.abort("idle timeout", "Autologout; idle for too long.");
        return;
      }
      this.idleTimer = setTimeout(check, limit - quiet + 5);
    };
    this.idleTimer = setTimeout(check, limit);
  }
}

export { ImapRefusal };
