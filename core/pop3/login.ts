// Login through the proxy, like Dovecot's pop3-login: parse the routed name (name/server[:port],
// name#server[:port], [v6]:port), then connect upstream, secure it (implicit TLS on upstreamImplicitTlsPorts, else STLS
// when offered; never a silent downgrade when upstreamTls is required) and log in as `name`
// (AUTH PLAIN when the server offers it, else USER/PASS). Failures become fixed client replies;
// the reason goes to the log, the password never does.
import type { Config } from "../config/types.ts";
import type { Logger } from "../log.ts";
import { UpstreamError, connectUpstream, isInsecureHost, resolveHost, upgradeUpstream, type Trust } from "../net/upstream.ts";
import { upstreamProblem } from "../net/security.ts";
import { authPlainResponse, type RoutedName } from "../net/routing.ts";

export { parseRoutedName, parseAuthPlain, authPlainResponse, type RoutedName } from "../net/routing.ts";
import { parseCapa, type ServerCapa } from "./capa.ts";
import { R, type Pop3Reply } from "./replies.ts";
import { ProtocolError, ServerConn } from "./server.ts";
import { ReadError, lineText } from "./lines.ts";

export const DEFAULT_POP3_PORT = 110;

export interface UpstreamSetup {
  config: Config;
  trust: Trust;
  log: Logger;
}

export interface SecuredServer {
  server: ServerConn;
  capa: ServerCapa;
  /** The greeting line as the server sent it (passed through on fixed-upstream listeners, for APOP). */
  greeting: string;
  tls: boolean;
}

/** Maps a failure while reaching the server to the reply the client sees; logs why. */
export function upstreamFailure(e: unknown, log: Logger, where: string): Pop3Reply {
  if (e instanceof UpstreamError && e.code === "tls") {
    log.warn("upstream TLS failed", { server: where, reason: e.message });
    return R.upstreamTlsFailed();
  }
  if (isReply(e)) return e;
  const reason = e instanceof Error ? e.message : String(e);
  log.warn("upstream unavailable", { server: where, reason });
  return R.unavailable();
}

function isReply(e: unknown): e is Pop3Reply {
  return e instanceof Error && e.name === "Pop3Reply";
}

/** A fixed-upstream listener met a server that greets like IMAP: the caller hands it on (or refuses). */
export class ImapGreeting extends Error {
  constructor(readonly server: ServerConn, readonly greeting: string) {
    super("upstream greets like IMAP");
    this.name = "ImapGreeting";
  }
}

/**
 * Connects to host:port (ip already resolved and checked), reads the greeting, and secures the
 * connection per upstreamTls. Throws a Pop3Reply the client may see, or ImapGreeting when
 * detectImap is set and the server turns out to speak IMAP.
 */
export async function connectAndSecure(s: UpstreamSetup, host: string, ip: string, port: number, detectImap = false): Promise<SecuredServer> {
  const { config, trust, log } = s;
  const where = `${host}:${port}`;
  const ports = config.upstreamImplicitTlsPorts;
  // A fixed listener does not know the protocol before the greeting: either protocol's TLS ports count.
  const implicitTls = ports.pop3.includes(port) || (detectImap && ports.imap.includes(port));
  let server: ServerConn | null = null;
  try {
    const ch = await connectUpstream({ host, ip, port, implicitTls, trust, timeoutMs: config.limits.upstreamConnectTimeout });
    server = new ServerConn(ch, config.limits);
    // Greeting, STLS, CAPA and authentication share one deadline (cleared once logged in).
    server.startLogin(config.limits.upstreamLoginTimeout);
    if (implicitTls && isInsecureHost(trust, host)) log.warn("upstream certificate NOT verified (insecureUpstreamHosts)", { server: where });
    const greetingRaw = await server.reader.readLine(config.limits.maxUpstreamLine, config.limits.upstreamReadTimeout);
    const greeting = lineText(greetingRaw);
    if (detectImap && /^\* (OK|PREAUTH)\b/i.test(greeting)) throw new ImapGreeting(server, greeting);
    if (!/^\+OK(\s|$)/i.test(greeting)) {
      log.warn("upstream greeting is not POP3 +OK", { server: where, reply: greeting.slice(0, 200) });
      throw R.unavailable();
    }
    let capa = await fetchCapa(server);
    let tls = implicitTls;
    if (!tls && config.upstreamTls !== "off" && capa.stls) {
      server.send("STLS");
      const r = await server.status();
      if (r.ok) {
        server.reader.discard(); // nothing may ride in with the plaintext (injection defence)
        await upgradeUpstream(ch, { host, trust, timeoutMs: config.limits.upstreamConnectTimeout });
        if (isInsecureHost(trust, host)) log.warn("upstream certificate NOT verified (insecureUpstreamHosts)", { server: where });
        tls = true;
        capa = await fetchCapa(server); // RFC 2595 §4: capabilities may change after TLS
      }
    }
    if (!tls && config.upstreamTls === "required") {
      log.warn("upstream refused: no TLS offered and upstreamTls is required", { server: where });
      throw R.noUpstreamTls();
    }
    if (!tls) log.info("upstream connection is not encrypted", { server: where, upstreamTls: config.upstreamTls });
    return { server, capa, greeting, tls };
  } catch (e) {
    if (e instanceof ImapGreeting) throw e;
    server?.ch.destroy();
    throw upstreamFailure(e, log, where);
  }
}

async function fetchCapa(server: ServerConn): Promise<ServerCapa> {
  server.send("CAPA");
  const r = await server.status();
  return parseCapa(r.ok ? await server.lines() : []);
}

export interface RoutedLogin {
  name: RoutedName;
  password: string;
}

export interface LoggedIn extends SecuredServer {
  /** The server's +OK line after authentication, passed to the client. */
  reply: string;
  ip: string;
  port: number;
}

/**
 * The routed login: checks the target, connects, secures and authenticates as name.user.
 * Throws a Pop3Reply (uniform authFailed for refusals and wrong credentials).
 */
export async function routedLogin(s: UpstreamSetup, login: RoutedLogin): Promise<LoggedIn> {
  const { name } = login;
  const port = name.port ?? DEFAULT_POP3_PORT;
  const where = `${name.host}:${port}`;
  let ip: string;
  try {
    ip = await resolveHost(name.host);
  } catch (e) {
    throw upstreamFailure(e, s.log, where);
  }
  const problem = upstreamProblem(s.config, { host: name.host, ip, port });
  if (problem) {
    s.log.warn("routed login refused", { user: name.user, server: where, reason: problem });
    throw R.authFailed();
  }
  const secured = await connectAndSecure(s, name.host, ip, port);
  const { server, capa } = secured;
  try {
    s.log.addSecret(login.password);
    const reply = await authenticate(server, capa, name.user, login.password, s.log);
    if (!reply.ok) {
      s.log.info("upstream login failed", { user: name.user, server: where, reply: reply.line.slice(0, 200) });
      server.ch.destroy();
      throw R.authFailed();
    }
    server.endLogin();
    return { ...secured, reply: reply.line, ip, port };
  } catch (e) {
    server.ch.destroy();
    if (isReply(e)) throw e;
    throw upstreamFailure(e, s.log, where);
  }
}

async function authenticate(server: ServerConn, capa: ServerCapa, user: string, password: string, log: Logger): Promise<{ ok: boolean; line: string }> {
  if (capa.saslPlain) {
    log.addSecret(authPlainResponse(user, password));
    server.send(`AUTH PLAIN ${authPlainResponse(user, password)}`);
    let r = await server.status({ continuation: true });
    if (/^\+( |$)/.test(r.line)) {
      // A server that ignores the initial response asks again with an empty challenge.
      server.send(authPlainResponse(user, password));
      r = await server.status();
    }
    return r;
  }
  server.send(`USER ${user}`);
  const u = await server.status();
  if (!u.ok) return u;
  server.send(`PASS ${password}`);
  return server.status();
}

/** True when e is a failure to read from the server (closed, timed out, garbage). */
export function isServerFault(e: unknown): boolean {
  return e instanceof ReadError || e instanceof ProtocolError || e instanceof UpstreamError;
}
