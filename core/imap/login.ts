// Reaching and logging in to the upstream IMAP server, like Dovecot's imap-login: connect (implicit TLS
// on upstreamImplicitTlsPorts.imap), read the greeting within a few seconds, STARTTLS whenever offered
// (never a silent downgrade when upstreamTls is required), log in as the routed user (AUTHENTICATE
// PLAIN, else LOGIN), then COMPRESS=DEFLATE when offered and allowed. Failures become ImapRefusal for the
// client; the reason goes to the log, the password never does.
import type { Config } from "../config/types.ts";
import type { Logger } from "../log.ts";
import { UpstreamError, connectUpstream, isInsecureHost, upgradeUpstream, type Trust } from "../net/upstream.ts";
import { authPlainResponse } from "../net/routing.ts";
import { deflateAvailable, startCompression } from "../net/deflate.ts";
import { isLoopback } from "../net/security.ts";
import { capabilityCode, hasCapability, parseCapabilities } from "./capability.ts";
import { ImapServerConn, isReadFault, type Tagged } from "./server.ts";
import { ReadError, imapString, lineText } from "./wire.ts";

export const DEFAULT_IMAP_PORT = 143;
/** A server that accepts but does not greet within this is probably waiting for a TLS ClientHello. */
export const GREETING_TIMEOUT_MS = 5_000;

/** A refusal the client sees as a tagged NO (or an untagged BYE before login), with a fixed text. */
export class ImapRefusal extends Error {
  constructor(readonly code: string, readonly text: string) {
    super(text);
    this.name = "ImapRefusal";
  }
  /** "[CODE] text" for a status response. */
  get response(): string {
    return `${this.code ? `[${this.code}] ` : ""}${this.text}`;
  }
}

export const REFUSE = {
  authFailed: () => new ImapRefusal("AUTHENTICATIONFAILED", "Authentication failed."),
  unavailable: () => new ImapRefusal("UNAVAILABLE", "The mail server is not available, try again later."),
  tlsFailed: () => new ImapRefusal("UNAVAILABLE", "Could not establish a trusted TLS connection to the mail server."),
  noTls: () => new ImapRefusal("PRIVACYREQUIRED", "The mail server does not offer TLS, and TLS is required."),
  noGreeting: () => new ImapRefusal("UNAVAILABLE", "The mail server sent no greeting; the port may expect implicit TLS (IMAPS)."),
  preauthWithoutTls: () => new ImapRefusal("PRIVACYREQUIRED", "The mail server logged in without TLS (PREAUTH), and TLS is required."),
};

export interface UpstreamSetup {
  config: Config;
  trust: Trust;
  log: Logger;
}

export interface SecuredImap {
  server: ImapServerConn;
  /** Capabilities the server announced last (after STARTTLS when it was used). */
  caps: string[];
  greeting: string;
  tls: boolean;
  /** The server greeted with PREAUTH: already logged in (fixed listeners only). */
  preauth: boolean;
  /** The server is on this machine (a loopback address): compressing its leg saves nothing. */
  loopback: boolean;
}

/** Maps a failure while reaching the server to the refusal the client sees; logs why. */
export function upstreamRefusal(e: unknown, log: Logger, where: string): ImapRefusal {
  if (e instanceof ImapRefusal) return e;
  if (e instanceof UpstreamError && e.code === "tls") {
    log.warn("upstream TLS failed", { server: where, reason: e.message });
    return REFUSE.tlsFailed();
  }
  log.warn("upstream unavailable", { server: where, reason: e instanceof Error ? e.message : String(e) });
  return REFUSE.unavailable();
}

/** Connects to host:port (ip resolved and checked), reads the greeting and secures the connection per upstreamTls. */
export async function connectImap(s: UpstreamSetup, host: string, ip: string, port: number): Promise<SecuredImap> {
  const { config, trust, log } = s;
  const where = `${host}:${port}`;
  const implicitTls = config.upstreamImplicitTlsPorts.imap.includes(port);
  let server: ImapServerConn | null = null;
  try {
    const ch = await connectUpstream({ host, ip, port, implicitTls, trust, timeoutMs: config.limits.upstreamConnectTimeout });
    server = new ImapServerConn(ch, config.limits);
    // Greeting, STARTTLS, CAPABILITY and authentication share one deadline (cleared once logged in).
    server.startLogin(config.limits.upstreamLoginTimeout);
    if (implicitTls && isInsecureHost(trust, host)) log.warn("upstream certificate NOT verified (insecureUpstreamHosts)", { server: where });
    let greeting: string;
    try {
      greeting = lineText(await server.reader.readLine(server.maxLine, Math.min(GREETING_TIMEOUT_MS, config.limits.upstreamReadTimeout)));
    } catch (e) {
      if (e instanceof ReadError && e.code === "timeout") {
        log.warn("upstream sent no greeting", { server: where, waitedMs: GREETING_TIMEOUT_MS, implicitTls });
        throw REFUSE.noGreeting();
      }
      throw e;
    }
    const sec = await secureGreeted(s, server, host, where, greeting, implicitTls);
    sec.loopback ||= isLoopback(ip);
    return sec;
  } catch (e) {
    server?.ch.destroy();
    throw upstreamRefusal(e, log, where);
  }
}

/** After the greeting: capabilities, STARTTLS per policy, PREAUTH rules. */
export async function secureGreeted(s: UpstreamSetup, server: ImapServerConn, host: string, where: string, greeting: string, tls: boolean): Promise<SecuredImap> {
  const { config, trust, log } = s;
  const m = /^\* (OK|PREAUTH|BYE)\b/i.exec(greeting);
  if (!m || m[1]!.toUpperCase() === "BYE") {
    log.warn("upstream greeting is not IMAP * OK", { server: where, reply: greeting.slice(0, 200) });
    throw REFUSE.unavailable();
  }
  const preauth = m[1]!.toUpperCase() === "PREAUTH";
  let caps = capabilityCode(greeting) ?? (await capabilities(server));
  if (preauth) {
    // Authenticated already: STARTTLS is no longer allowed (RFC 3501 §6.2.1), so TLS is what we have.
    if (!tls && config.upstreamTls === "required") {
      log.warn("upstream PREAUTH without TLS refused (upstreamTls is required)", { server: where });
      throw REFUSE.preauthWithoutTls();
    }
    return { server, caps, greeting, tls, preauth, loopback: isLoopback(host) };
  }
  if (!tls && config.upstreamTls !== "off" && hasCapability(caps, "STARTTLS")) {
    const r = await server.command("STARTTLS");
    if (r.status === "OK") {
      // Response injection: nothing may follow the OK in plaintext (the handshake comes next).
      if (server.reader.buffered > 0) throw new UpstreamError("tls", `server sent ${server.reader.buffered} bytes after its STARTTLS OK, before the handshake`);
      await upgradeUpstream(server.ch, { host, trust, timeoutMs: config.limits.upstreamConnectTimeout });
      if (isInsecureHost(trust, host)) log.warn("upstream certificate NOT verified (insecureUpstreamHosts)", { server: where });
      tls = true;
      caps = await capabilities(server); // RFC 3501 §6.2.1: capabilities may change after TLS
    }
  }
  if (!tls && config.upstreamTls === "required") {
    log.warn("upstream refused: no TLS offered and upstreamTls is required", { server: where });
    throw REFUSE.noTls();
  }
  if (!tls) log.info("upstream connection is not encrypted", { server: where, upstreamTls: config.upstreamTls });
  return { server, caps, greeting, tls, preauth, loopback: isLoopback(host) };
}

async function capabilities(server: ImapServerConn): Promise<string[]> {
  const r = await server.command("CAPABILITY");
  const line = r.untagged.map((u) => u.texts[0]!).find((t) => /^\* CAPABILITY /i.test(t));
  return line ? parseCapabilities(line.slice("* CAPABILITY ".length)) : capabilityCode(r.line) ?? [];
}

export interface LoggedIn {
  /** The server's tagged OK text after the tag (status and code), for the client's own tagged OK. */
  okText: string;
  /** Capabilities after login (from the OK's code, or asked for). */
  caps: string[];
  compressed: boolean;
}

/**
 * Logs in as user: AUTHENTICATE PLAIN when offered (SASL-IR when possible), else LOGIN with quoted
 * strings or literals. Throws REFUSE.authFailed for a refusal; read faults propagate.
 */
export async function authenticate(s: UpstreamSetup, sec: SecuredImap, user: string, password: string, where: string): Promise<LoggedIn> {
  const { server, caps } = sec;
  let r: Tagged;
  s.log.addSecret(password);
  if (hasCapability(caps, "AUTH=PLAIN")) {
    const ir = authPlainResponse(user, password, "utf8");
    s.log.addSecret(ir);
    if (hasCapability(caps, "SASL-IR")) r = await server.command(`AUTHENTICATE PLAIN ${ir}`);
    else r = await saslPlain(server, ir);
  } else if (hasCapability(caps, "LOGINDISABLED")) {
    s.log.warn("upstream allows no login method the proxy speaks", { server: where });
    throw REFUSE.authFailed();
  } else {
    const plus = hasCapability(caps, "LITERAL+");
    const u = imapString(Buffer.from(user, "utf8"), plus);
    const p = imapString(Buffer.from(password, "utf8"), plus);
    r = await server.command(`LOGIN ${u.text} ${p.text}`, [u.literal, p.literal].filter((x): x is Uint8Array => x !== null));
  }
  if (r.status !== "OK") {
    s.log.info("upstream login failed", { user, server: where, reply: r.line.replace(/^\S+ /, "").slice(0, 200) });
    throw REFUSE.authFailed();
  }
  let after = capabilityCode(r.line) ?? (await capabilities(server));
  const okText = r.line.replace(/^\S+ /, "");
  let compressed = false;
  // Deflate pays on a real network; to a server on loopback it only costs CPU on both ends (three
  // times the download time, measured against Dovecot). "always" is for a loopback tunnel (ssh -L).
  const compress = s.config.upstreamCompress === "always" || (s.config.upstreamCompress === true && !sec.loopback);
  if (compress && hasCapability(after, "COMPRESS=DEFLATE") && deflateAvailable()) {
    const c = await server.command("COMPRESS DEFLATE");
    if (c.status === "OK") {
      // Everything after the OK is deflated, including what already arrived with it.
      startCompression(server.ch, server.reader.takeBuffered());
      compressed = true;
    }
  }
  after = after.filter((c) => !/^COMPRESS=/i.test(c) || !compressed);
  server.endLogin();
  return { okText, caps: after, compressed };
}

/** AUTHENTICATE PLAIN without SASL-IR: the response goes after the server's empty challenge. */
async function saslPlain(server: ImapServerConn, response: string): Promise<Tagged> {
  const tag = server.tag();
  server.send(`${tag} AUTHENTICATE PLAIN`);
  for (;;) {
    const r = await server.readResponse();
    const first = r.texts[0]!;
    if (first.startsWith("+")) { server.send(response); continue; }
    if (first.startsWith(`${tag} `)) {
      const status = /^\S+ (OK|NO|BAD)\b/i.exec(first)?.[1]?.toUpperCase() ?? "BAD";
      return { status: status as Tagged["status"], line: first, untagged: [] };
    }
  }
}

export { isReadFault };
