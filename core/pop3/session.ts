// One client's POP3 session through the proxy: holds the state, reads client lines (capped),
// dispatches through the command table with one central state check, and owns the two legs.
// Before login it answers itself (routed) or relays login commands (fixed upstream); after login
// the Relay carries commands and replies. One log line at the end sums the session up.
import type { TLSOptions } from "bun";
import type { Config } from "../config/types.ts";
import { redactCommand, type Logger } from "../log.ts";
import type { Admission } from "../net/login-guard.ts";
import type { Channel } from "../net/queue.ts";
import { parseAuthPlain, passwordProblem } from "../net/routing.ts";
import { hasControlBytes, parseHostPort } from "../net/security.ts";
import { resolveHost, type Trust } from "../net/upstream.ts";
import { COMMANDS, type State } from "./commands.ts";
import { filterCapa, multiLine } from "./capa.ts";
import { ByteReader, ReadError, lineText } from "./lines.ts";
import { ImapGreeting, connectAndSecure, isServerFault, parseRoutedName, routedLogin, upstreamFailure, type LoggedIn } from "./login.ts";
import type { MessageFilter } from "../filter/index.ts";
import { spoolDir } from "../filter/spool.ts";
import { stateDir } from "../config/paths.ts";
import { Relay, type Expect, type RelayStats } from "./relay.ts";
import { Pop3Reply, R, err } from "./replies.ts";
import type { ServerConn } from "./server.ts";

export interface SessionDeps {
  /** The configuration snapshot this session keeps for its whole life (reload affects new sessions). */
  config: Config;
  log: Logger;
  trust: Trust;
  filter: MessageFilter;
  /** Certificate for STLS on the client leg; null: STLS is not offered. */
  clientTls: TLSOptions | null;
  /** "host:port" of a fixed-upstream listener. */
  fixedUpstream?: string;
  /** excludedServers: the matching rule for a resolved upstream IP, or null. */
  excludedServer: (ip: string) => string | null;
  /** excludedApps: the matching rule for the local client process, or null (looked up at accept). */
  excludedApp: Promise<string | null>;
  /** Seam for IMAP on fixed listeners: takes over the connection; absent: refused with a log line. */
  onImapGreeting?: (client: Channel, server: ServerConn, greeting: string) => void;
  /** This connection's standing with the proxy's login guard (failed-login limits); absent in some tests. */
  admission?: Admission;
  /** Where messages over maxMessageSize are spooled; default <state>/spool of the environment. */
  spoolDir?: string;
}

export interface SessionSummary {
  user: string | null;
  server: string | null;
  messages: number;
  bytes: number;
  detections: number;
  durationMs: number;
  end: string;
}

// RFC 1939 has no limit; 10 is what Dovecot tolerates before it hangs up on a confused client.
const MAX_BAD_COMMANDS = 10;
const CRLF_TEXT = "\r\n";

export class Pop3Session {
  state: State;
  /** The name from USER, waiting for PASS. */
  pendingUser: string | null = null;
  readonly log: Logger;
  private readonly reader: ByteReader;
  private server: ServerConn | null = null;
  private relay: Relay | null = null;
  private pump: Promise<void> | null = null;
  private bad = 0;
  private busy = false;
  private quitting = false;
  private closing = false;
  private user: string | null = null;
  private where: string | null = null;
  private readonly stats: RelayStats = { messages: 0, bytes: 0, detections: 0 };
  private readonly started = performance.now();
  private lastActivity = performance.now();
  private idleTimer: ReturnType<typeof setTimeout> | null = null;
  /** Until login: the authorization state's total deadline (clientLoginTimeout). */
  private loginTimer: ReturnType<typeof setTimeout> | null = null;
  private endReason = "client closed";
  /** A fixed upstream that speaks IMAP: the session gave both connections to the IMAP side. */
  private handedOver = false;

  constructor(private readonly client: Channel, private readonly deps: SessionDeps) {
    this.state = deps.fixedUpstream ? "fixed" : "routed";
    this.log = deps.log;
    this.reader = new ByteReader({
      highWater: 256 * 1024,
      onPause: () => client.pause("reader"),
      onResume: () => client.resume("reader"),
    });
    client.attach({
      push: (c) => { this.touch(); this.reader.push(c); },
      close: (e) => this.reader.close(e),
    });
  }

  get canStartTls(): boolean {
    return !this.client.tls && this.deps.clientTls !== null;
  }

  /** Between commands with nothing in flight: safe to close when the proxy drains. */
  get idle(): boolean {
    return this.state !== "transaction" || (this.relay?.idle ?? true);
  }

  private readonly done = Promise.withResolvers<SessionSummary>();
  /** Resolves with the summary when the session has ended. */
  get finished(): Promise<SessionSummary> { return this.done.promise; }

  /** "user@server:port" once known (quarantine source, logs). */
  get account(): string { return `${this.user ?? "?"}@${this.where ?? "?"}`; }

  /** Runs the session in the background; see finished. */
  start(): void {
    void this.run().then((s) => this.done.resolve(s));
  }

  /** Runs the session to its end; never rejects. */
  async run(): Promise<SessionSummary> {
    this.armIdle();
    // However busy a client keeps the line (a byte a second resets the idle timer), it must log in by then.
    this.loginTimer = setTimeout(() => {
      this.loginTimer = null;
      if (this.state !== "transaction" && !this.client.isClosed) this.abort("no login in time", R.loginTimeout());
    }, this.deps.config.limits.clientLoginTimeout);
    try {
      const greeted = this.deps.fixedUpstream ? await this.connectFixed() : (this.send(R.greeting().bytes()), true);
      if (greeted) await this.commandLoop();
      if (this.client.isClosed && !this.quitting) {
        // The client left without QUIT: POP3 then commits nothing, so the server gets no QUIT either.
        this.relay?.stop();
        this.server?.ch.destroy();
      } else this.relay?.stop(); // replies already queued still go out, then the pump ends
      if (this.pump) await this.pump;
    } catch (e) {
      this.log.error("session failed", { error: e });
      this.endReason = "internal error";
      this.client.destroy();
    }
    if (this.handedOver) return this.summary(); // both legs belong to the IMAP session now
    if (!this.client.isClosed && !this.quitting) this.client.end();
    await this.client.closed;
    this.relay?.stop();
    this.server?.ch.destroy();
    return this.summary();
  }

  private summary(): SessionSummary {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    if (this.loginTimer) clearTimeout(this.loginTimer);
    const summary: SessionSummary = {
      user: this.user, server: this.where, ...this.stats,
      durationMs: Math.round(performance.now() - this.started), end: this.endReason,
    };
    if (!this.handedOver) this.log.info("session end", { ...summary });
    return summary;
  }

  /**
   * The proxy is stopping: a session not logged in and not in the middle of a command has nothing
   * in flight and is closed now; the others may finish until the drain deadline.
   */
  drain(): void {
    if (this.state !== "transaction" && !this.busy && !this.client.isClosed) this.abort("proxy stopping");
  }

  /** Ends the session now (drain deadline). A reply in progress is cut without its final dot. */
  abort(reason: string, reply: Pop3Reply = R.shuttingDown()): void {
    this.endReason = reason;
    this.closing = true;
    if (this.idle) {
      this.client.out.write(reply.bytes());
      this.client.end();
    } else this.client.destroy();
    this.server?.ch.destroy();
  }

  // ---- output -------------------------------------------------------------------------------

  send(bytes: Uint8Array | string): void {
    this.client.out.write(typeof bytes === "string" ? Buffer.from(bytes, "latin1") : bytes);
    this.touch();
  }

  /** A reply value, kept in order with relayed replies once logged in. */
  reply(r: Pop3Reply): void {
    if (this.relay && this.state === "transaction") this.relay.local(r);
    else this.send(r.bytes());
  }

  // ---- the command loop ----------------------------------------------------------------------

  private async commandLoop(): Promise<void> {
    const max = this.deps.config.limits.maxClientLine;
    while (!this.closing && !this.quitting) {
      let raw: Uint8Array;
      try {
        raw = await this.reader.readLine(max);
      } catch (e) {
        if (e instanceof ReadError && e.code === "line-too-long") {
          this.endReason = "client line too long";
          this.reply(R.lineTooLong());
          this.closeAfterReplies();
        }
        return;
      }
      const text = lineText(raw);
      const sp = text.indexOf(" ");
      const verb = (sp < 0 ? text : text.slice(0, sp)).toUpperCase();
      const args = sp < 0 ? "" : text.slice(sp + 1);
      this.log.debug("client", { cmd: redactCommand(text) });
      const cmd = COMMANDS.get(verb);
      if (!cmd || !cmd.states.includes(this.state)) {
        this.reply(cmd ? R.wrongState() : R.unknown());
        if (this.state !== "transaction" && ++this.bad >= MAX_BAD_COMMANDS) {
          this.endReason = "too many invalid commands";
          this.reply(R.tooManyBad());
          this.closeAfterReplies();
          return;
        }
        continue;
      }
      this.busy = true;
      try {
        await cmd.run(this, args, raw);
      } catch (e) {
        if (e instanceof Pop3Reply) { this.reply(e); continue; }
        if (isServerFault(e)) {
          this.endReason = `upstream fault: ${(e as Error).message}`;
          this.log.warn("upstream fault before login", { error: e });
          this.client.destroy();
          return;
        }
        throw e;
      } finally {
        this.busy = false;
      }
    }
  }

  private closeAfterReplies(): void {
    this.closing = true;
    if (this.relay) this.relay.stop(); // the pump sends what is queued, then closes
    else this.client.end();
  }

  // ---- handlers' helpers (called from commands.ts) ------------------------------------------

  /** Sends a SASL continuation and reads the client's answer; null when the client went away. */
  async saslContinue(): Promise<string | null> {
    this.send("+ " + CRLF_TEXT);
    const answer = await this.clientLine();
    return answer && lineText(answer);
  }

  async loginRouted(nameText: string, password: string): Promise<void> {
    if (this.deps.admission?.blocked(nameText)) {
      this.log.warn("login refused", { login: nameText.replace(/[\x00-\x1f\x7f]/g, "?"), reason: "too many failed logins for this name from this address" });
      return this.loginFailed(nameText);
    }
    const name = parseRoutedName(nameText);
    if (typeof name === "string") {
      this.log.info("login refused", { login: nameText.replace(/[\r\n\0]/g, "?"), reason: name });
      return this.loginFailed(nameText);
    }
    const bad = passwordProblem(password);
    if (bad) {
      this.log.info("login refused", { user: name.user, reason: bad });
      return this.loginFailed(nameText);
    }
    let done: LoggedIn;
    try {
      done = await routedLogin({ config: this.deps.config, trust: this.deps.trust, log: this.log }, { name, password });
    } catch (e) {
      if (e instanceof Pop3Reply) return e.text === R.authFailed().text ? this.loginFailed(nameText) : this.reply(e);
      throw e;
    }
    const where = `${name.host}:${done.port}`;
    await this.enterTransaction(done.server, name.user, where, done.ip, done.tls);
    this.send(done.reply + CRLF_TEXT);
  }

  /**
   * A failed login, answered with the one uniform reply; the connection closes once it has used
   * up maxLoginFailures (the guard also remembers the name's failures for this address).
   */
  private loginFailed(name: string, reply: Pop3Reply | string = R.authFailed()): void {
    if (typeof reply === "string") this.send(reply + CRLF_TEXT);
    else this.reply(reply);
    if (this.deps.admission?.failed(name)) {
      this.log.warn("too many failed logins: closing", { failures: this.deps.config.limits.maxLoginFailures });
      this.endReason = "too many failed logins";
      this.closeAfterReplies();
    }
  }

  /** Fixed upstream: a login command goes to the server as it is; success opens the transaction. */
  async relayLogin(line: Uint8Array, verb: "USER" | "PASS" | "APOP" | "AUTH", userForLog: string): Promise<void> {
    const server = this.server!;
    // The line goes upstream as it is, so nothing in it may end it early there (a bare CR) or cut it.
    if (hasControlBytes(lineText(line))) {
      this.log.info("login refused", { reason: `control bytes in ${verb} line` });
      return this.reply(R.authFailed());
    }
    if (verb === "USER" || verb === "APOP") this.user = userForLog;
    if (verb === "AUTH") this.addSaslSecrets(lineText(line).trim().split(/\s+/)[2] ?? "");
    server.send(line);
    for (;;) {
      const st = await server.status({ continuation: verb === "AUTH" });
      if (verb === "AUTH" && /^\+( |$)/.test(st.line)) {
        this.send(st.line + CRLF_TEXT);
        const answer = await this.clientLine();
        if (answer === null) return;
        if (hasControlBytes(lineText(answer))) {
          this.log.info("login refused", { reason: "control bytes in AUTH response" });
          server.send("*"); // cancels the exchange upstream (RFC 5034)
          await server.status().catch(() => null);
          return this.reply(R.authFailed());
        }
        this.addSaslSecrets(lineText(answer).trim());
        server.send(answer);
        continue;
      }
      if (st.ok && verb !== "USER") {
        const hp = parseHostPort(this.deps.fixedUpstream!)!;
        await this.enterTransaction(server, this.user ?? "(sasl)", this.deps.fixedUpstream!, this.fixedIp ?? hp.host, this.fixedTls);
      }
      if (!st.ok && verb !== "USER") return this.loginFailed(this.user ?? "(sasl)", st.line);
      this.send(st.line + CRLF_TEXT);
      return;
    }
  }

  /** A SASL PLAIN response and the password inside it are masked in every later log line. */
  private addSaslSecrets(response: string): void {
    this.log.addSecret(response);
    const parsed = parseAuthPlain(response);
    if (typeof parsed !== "string") this.log.addSecret(parsed.password);
  }

  /** The client's next line (a SASL answer); null when the client went away or sent too much. */
  private async clientLine(): Promise<Uint8Array | null> {
    try {
      return await this.reader.readLine(this.deps.config.limits.maxClientLine);
    } catch {
      return null;
    }
  }

  async relayCapaBeforeLogin(_line: Uint8Array): Promise<void> {
    const server = this.server!;
    server.send("CAPA");
    const st = await server.status();
    if (!st.ok) return this.send(st.line + CRLF_TEXT);
    this.send(multiLine(st.line, filterCapa(await server.lines(), { loggedIn: false, offerStls: this.canStartTls })));
  }

  async startClientTls(): Promise<void> {
    if (this.client.tls) return this.reply(err("Already using TLS."));
    if (!this.deps.clientTls) return this.reply(err("STLS is not available here."));
    this.send(Buffer.from("+OK Begin TLS negotiation now.\r\n"));
    await this.client.out.empty();
    const dropped = this.reader.discard(); // RFC 2595 §3.1: nothing pipelined past STLS may survive it
    if (dropped) this.log.warn("dropped bytes sent after STLS in the same packet", { bytes: dropped });
    try {
      await this.client.startTls(this.deps.clientTls, false);
    } catch (e) {
      this.log.info("client TLS handshake failed", { error: e });
      this.endReason = "client TLS failed";
      this.client.destroy();
    }
  }

  async quit(line: Uint8Array): Promise<void> {
    this.quitting = true;
    this.endReason = "quit";
    if (this.state === "transaction") return this.forward(line, { kind: "quit" });
    if (this.server) {
      // Fixed upstream before login: the server says goodbye itself.
      this.server.send(line);
      try {
        const st = await this.server.status();
        this.send(st.line + CRLF_TEXT);
      } catch { /* the client is leaving anyway */ }
    } else this.send("+OK Bye." + CRLF_TEXT);
    this.client.end();
  }

  forward(line: Uint8Array, expect: Expect): Promise<void> {
    return this.relay!.forward(line, expect);
  }

  // ---- legs ---------------------------------------------------------------------------------

  private fixedIp: string | null = null;
  private fixedTls = false;

  /** Fixed-upstream listener: connect first, detect the protocol from the greeting, pass it through. */
  private async connectFixed(): Promise<boolean> {
    const target = this.deps.fixedUpstream!;
    const hp = parseHostPort(target)!;
    const setup = { config: this.deps.config, trust: this.deps.trust, log: this.log };
    try {
      const ip = await resolveHost(hp.host);
      this.fixedIp = ip;
      const secured = await connectAndSecure(setup, hp.host, ip, hp.port, true);
      secured.server.endLogin(); // the client logs in itself, at its own pace
      this.server = secured.server;
      this.fixedTls = secured.tls;
      this.where = target;
      this.watchServer(secured.server);
      this.send(secured.greeting + CRLF_TEXT); // verbatim, so an APOP timestamp still matches
      return true;
    } catch (e) {
      if (e instanceof ImapGreeting) {
        if (this.deps.onImapGreeting) {
          this.handedOver = true;
          this.endReason = "handed to IMAP";
          this.deps.onImapGreeting(this.client, e.server, e.greeting);
          return false;
        }
        this.log.error("fixed upstream speaks IMAP, which this version does not proxy yet", { server: target });
        e.server.ch.destroy();
        this.endReason = "IMAP not yet supported";
        this.send("* BYE [UNAVAILABLE] mailsentry does not proxy IMAP yet." + CRLF_TEXT);
        this.client.end();
        return false;
      }
      const reply = e instanceof Pop3Reply ? e : upstreamFailure(e, this.log, target);
      this.endReason = "upstream unavailable";
      this.send(reply.bytes());
      this.client.end();
      return false;
    }
  }

  private async enterTransaction(server: ServerConn, user: string, where: string, ip: string, tls: boolean): Promise<void> {
    const app = await this.deps.excludedApp;
    const srv = this.deps.excludedServer(ip);
    const exclusion = app ? `excludedApps: ${app}` : srv ? `excludedServers: ${srv}` : null;
    this.server = server;
    this.user = user;
    this.where = where;
    this.state = "transaction";
    this.deps.admission?.loggedIn();
    if (this.loginTimer) clearTimeout(this.loginTimer);
    this.loginTimer = null;
    this.log.info("logged in", { user, server: where, ip, upstreamTls: tls, clientTls: this.client.tls, ...(exclusion ? { unscanned: exclusion } : {}) });
    if (exclusion) this.log.info("session relayed without scanning", { exclusion });
    this.relay = new Relay({
      client: this.client,
      server,
      filter: exclusion ? null : this.deps.filter,
      limits: this.deps.config.limits,
      onUnscanned: this.deps.config.onUnscanned,
      spoolDir: this.deps.spoolDir ?? spoolDir(stateDir()),
      log: this.log,
      stats: this.stats,
      touch: () => this.touch(),
    });
    if (!this.deps.fixedUpstream) this.watchServer(server);
    this.pump = this.relay.run().then(
      () => {
        // QUIT answered (or stopped): flush to the client, then close both legs.
        this.client.end();
        server.close();
      },
      (e) => {
        this.endReason = `upstream fault: ${(e as Error).message}`;
        this.log.warn("relay stopped: closing the client without completing the reply", { error: e });
        this.closing = true;
        this.client.destroy();
        server.ch.destroy();
      },
    );
  }

  /** An upstream that hangs up while nothing is in flight: end the client too (cleanly, nothing is cut). */
  private watchServer(server: ServerConn): void {
    void server.ch.closed.then(() => {
      if (this.client.isClosed || this.quitting) return;
      if (this.idle) {
        if (this.endReason === "client closed") this.endReason = "upstream closed";
        this.relay?.stop();
        this.closing = true;
        this.client.end();
      }
    });
  }

  // ---- idle timer (own timer: Bun's socket.timeout fires late and does not close) -------------

  private touch(): void {
    this.lastActivity = performance.now();
  }

  private armIdle(): void {
    const limit = this.deps.config.limits.clientIdleTimeout;
    if (!(limit > 0) || !Number.isFinite(limit)) return;
    const check = () => {
      if (this.client.isClosed) return;
      const quiet = performance.now() - this.lastActivity;
      if (quiet >= limit) {
        this.endReason = "idle timeout";
        this.log.info("client idle, disconnecting", { idleMs: Math.round(quiet) });
        this.abort("idle timeout", R.idle());
        return;
      }
      this.idleTimer = setTimeout(check, limit - quiet + 5);
    };
    this.idleTimer = setTimeout(check, limit);
  }
}
