// Connections to mail servers: resolve to one literal address first (a name would race IPv6 and
// IPv4 and open two connections), connect with a timeout, implicit TLS or a later STLS upgrade,
// certificates verified against system roots + upstreamCaFile + NODE_EXTRA_CA_CERTS unless the host
// is explicitly listed as insecure (then every connection logs a warning).
import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import { rootCertificates } from "node:tls";
import { readFile } from "node:fs/promises";
import type { TLSOptions } from "bun";
import { Channel, HANDLERS } from "./queue.ts";

export type UpstreamErrorCode = "resolve" | "connect" | "timeout" | "tls" | "closed";

/** Why the upstream leg failed; the message is for the log, the client sees a generic reply. */
export class UpstreamError extends Error {
  constructor(readonly code: UpstreamErrorCode, message: string) {
    super(message);
    this.name = "UpstreamError";
  }
}

/** The certificates an upstream server may chain to. */
export interface Trust {
  ca: string[];
  insecureHosts: string[];
}

/**
 * The operating system's CA bundle, where distributions keep it (Debian/Ubuntu, Fedora/RHEL,
 * Alpine); SSL_CERT_FILE names another, as OpenSSL honours it. Bun's built-in roots are Mozilla's
 * list only: without this, a CA an administrator installed system-wide would not be trusted.
 */
const SYSTEM_BUNDLES = ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"];

async function systemBundle(env: Record<string, string | undefined>): Promise<string | null> {
  for (const file of env.SSL_CERT_FILE ? [env.SSL_CERT_FILE] : SYSTEM_BUNDLES) {
    try {
      return await readFile(file, "utf8");
    } catch { /* not on this system: try the next place */ }
  }
  return null;
}

/** Bun's roots + the system bundle + the configured CA file + NODE_EXTRA_CA_CERTS (given `ca`, Bun would drop its roots). */
export async function loadTrust(opts: { caFile: string | null; insecureHosts: string[]; env?: Record<string, string | undefined> }): Promise<Trust> {
  const env = opts.env ?? process.env;
  const ca = [...rootCertificates];
  const system = await systemBundle(env);
  if (system) ca.push(system);
  for (const file of [opts.caFile, env.NODE_EXTRA_CA_CERTS]) {
    if (!file) continue;
    try {
      ca.push(await readFile(file, "utf8"));
    } catch (e) {
      throw new Error(`cannot read CA file ${file}: ${(e as Error).message}`);
    }
  }
  return { ca, insecureHosts: opts.insecureHosts.map((h) => h.toLowerCase()) };
}

export function isInsecureHost(trust: Trust, host: string): boolean {
  return trust.insecureHosts.includes(host.toLowerCase());
}

/** TLS client options for host: SNI only for names (RFC 6066 forbids IP literals), verification unless insecure. */
export function clientTlsOptions(trust: Trust, host: string): TLSOptions {
  const insecure = isInsecureHost(trust, host);
  return {
    serverName: host,
    ca: trust.ca,
    rejectUnauthorized: !insecure,
  };
}

/** One literal address for host (IP literals are returned as they are). */
export async function resolveHost(host: string): Promise<string> {
  if (isIP(host)) return host;
  try {
    const { address } = await lookup(host);
    return address;
  } catch (e) {
    throw new UpstreamError("resolve", `cannot resolve ${host}: ${(e as Error).message}`);
  }
}

export interface ConnectOptions {
  /** Name used for SNI and certificate checks. */
  host: string;
  /** Literal address to connect to (from resolveHost). */
  ip: string;
  port: number;
  implicitTls: boolean;
  trust: Trust;
  timeoutMs: number;
  queueHighWater?: number;
}

/** Connects (and for implicit TLS completes a verified handshake) within timeoutMs. */
export async function connectUpstream(o: ConnectOptions): Promise<Channel> {
  let channel: Channel | null = null;
  let timedOut = false;
  const timer = o.timeoutMs > 0 && Number.isFinite(o.timeoutMs)
    ? Promise.withResolvers<never>()
    : null;
  const t = timer ? setTimeout(() => { timedOut = true; timer.reject(new UpstreamError("timeout", `connect to ${o.host}:${o.port} timed out after ${o.timeoutMs} ms`)); }, o.timeoutMs) : undefined;
  timer?.promise.catch(() => {});
  try {
    const connecting = (async () => {
      const ch = new Channel({ tls: o.implicitTls, queueHighWater: o.queueHighWater });
      channel = ch;
      // The handshake waiter is set before connecting: the result may come right after "open".
      const handshake = o.implicitTls ? ch.handshake() : null;
      let socket;
      try {
        socket = await Bun.connect<Channel>({
          hostname: o.ip,
          port: o.port,
          tls: o.implicitTls ? clientTlsOptions(o.trust, o.host) : undefined,
          socket: HANDLERS,
          data: ch,
        });
      } catch (e) {
        throw new UpstreamError("connect", `connect to ${o.host}:${o.port} (${o.ip}) failed: ${(e as Error).message}`);
      }
      if (!ch.bound) ch.bind(socket);
      if (timedOut) { ch.destroy(); throw new UpstreamError("timeout", "connect timed out"); }
      if (handshake) {
        const { ok, error } = await handshake;
        if (!ok && !isInsecureHost(o.trust, o.host)) throw new UpstreamError("tls", `TLS with ${o.host} failed: ${error?.message ?? "handshake failed"}`);
      }
      return ch;
    })();
    const ch = await (timer ? Promise.race([connecting, timer.promise]) : connecting);
    return ch;
  } catch (e) {
    (channel as Channel | null)?.destroy();
    throw e;
  } finally {
    clearTimeout(t);
  }
}

async function verifyHandshake(o: { host: string; trust: Trust }, pending: Promise<void>): Promise<void> {
  try {
    await pending;
  } catch (e) {
    if (!isInsecureHost(o.trust, o.host)) throw new UpstreamError("tls", `TLS with ${o.host} failed: ${(e as Error).message}`);
  }
}

/** Upgrades a connected upstream channel after a successful STLS reply; verified like implicit TLS. */
export async function upgradeUpstream(ch: Channel, o: { host: string; trust: Trust; timeoutMs: number }): Promise<void> {
  const insecure = isInsecureHost(o.trust, o.host);
  const upgrading = ch.startTls(clientTlsOptions(o.trust, o.host), !insecure);
  let t: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    if (o.timeoutMs > 0 && Number.isFinite(o.timeoutMs)) t = setTimeout(() => reject(new UpstreamError("timeout", "TLS handshake timed out")), o.timeoutMs);
  });
  try {
    await Promise.race([verifyHandshake(o, upgrading), timeout]);
  } finally {
    clearTimeout(t);
  }
}
