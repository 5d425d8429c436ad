// Security decisions of the proxy, in one place (DESIGN.md, Security): loopback binding unless an
// upstream allowlist exists, which upstream hosts and ports a routed login may reach, and which
// routed names are refused. Each function returns a reason (for the log) instead of throwing.
import { BlockList, isIP } from "node:net";
import { isLoopbackHost } from "../config/schema.ts";
import type { Config, Protocol } from "../config/types.ts";

/** True for loopback literals and "localhost" (IPv4-mapped 127/8 included). */
export const isLoopback = isLoopbackHost;

/** "host:port" / "[v6]:port" → parts; null when malformed. Port 0 ("any free port") only when allowed. */
export function parseHostPort(s: string, allowZero = false): { host: string; port: number } | null {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^\s:[\]/#]+)):(\d{1,5})$/.exec(s);
  if (!m) return null;
  const port = Number(m[3]);
  if (port < (allowZero ? 0 : 1) || port > 65535) return null;
  return { host: m[1] ?? m[2]!, port };
}

/**
 * Problems that must stop `serve`: a listener beyond loopback turns the proxy into an open relay
 * unless clients can only reach allowlisted servers (fixed-upstream listeners route nowhere else).
 */
export function listenerProblems(config: Config, protocols: Protocol[] = ["pop3", "pop3s"]): string[] {
  const problems: string[] = [];
  for (const proto of protocols) {
    const l = config.listeners[proto];
    if (!l?.enabled) continue;
    for (const a of l.addresses) {
      const addr = typeof a === "string" ? a : a.address;
      const fixed = typeof a !== "string" && !!a.upstream;
      const hp = parseHostPort(addr, true);
      if (!hp) { problems.push(`listeners.${proto}: "${addr}" is not host:port`); continue; }
      if (!isLoopback(hp.host) && !fixed && config.upstreamAllowlist.length === 0) {
        problems.push(`listeners.${proto} binds ${addr} beyond loopback, but upstreamAllowlist is empty (anyone reaching the port could use the proxy to reach any server)`);
      }
    }
  }
  return problems;
}

/** CR, LF or NUL in a name would let a client inject commands upstream or forge log lines. */
export function hasControlBytes(s: string): boolean {
  return /[\r\n\0]/.test(s);
}

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62}))*\.?$/;

/** A routed server name must be a DNS name or an IP literal; null when fine, else the reason. */
export function routedHostProblem(host: string): string | null {
  if (hasControlBytes(host)) return "control bytes in server name";
  if (isIP(host)) return null;
  if (!HOSTNAME.test(host)) return `"${host}" is not a host name`;
  return null;
}

export interface UpstreamTarget {
  /** The name the client asked for. */
  host: string;
  /** The resolved literal address the proxy will connect to. */
  ip: string;
  port: number;
}

/** Matches hosts against a list of names ("mail.example.com", "*.example.com") and IPs/CIDRs. */
export function makeHostMatcher(entries: readonly string[]): (host: string, ip: string) => boolean {
  const cidrs = new BlockList();
  const names: string[] = [];
  const suffixes: string[] = [];
  for (const raw of entries) {
    const e = raw.trim().toLowerCase();
    if (!e) continue;
    const [addr, bits] = e.split("/");
    const fam = isIP(addr!);
    if (fam) {
      const type = fam === 6 ? "ipv6" : "ipv4";
      if (bits !== undefined) cidrs.addSubnet(addr!, Number(bits), type);
      else cidrs.addAddress(addr!, type);
    } else if (e.startsWith("*.")) suffixes.push(e.slice(1));
    else if (e.startsWith(".")) suffixes.push(e);
    else names.push(e.replace(/\.$/, ""));
  }
  return (host, ip) => {
    const h = host.toLowerCase().replace(/\.$/, "");
    if (names.includes(h) || suffixes.some((s) => h.endsWith(s))) return true;
    const addr = ip.startsWith("::ffff:") && ip.includes(".") ? ip.slice(7) : ip;
    const fam = isIP(addr);
    return fam !== 0 && cidrs.check(addr, fam === 6 ? "ipv6" : "ipv4");
  };
}

/** Why a routed login may not reach this upstream, or null when it may. */
export function upstreamProblem(config: Pick<Config, "allowedUpstreamPorts" | "upstreamAllowlist">, t: UpstreamTarget): string | null {
  if (!config.allowedUpstreamPorts.includes(t.port)) {
    return `port ${t.port} is not in allowedUpstreamPorts (${config.allowedUpstreamPorts.join(", ")})`;
  }
  if (config.upstreamAllowlist.length > 0 && !makeHostMatcher(config.upstreamAllowlist)(t.host, t.ip)) {
    return `${t.host} (${t.ip}) is not in upstreamAllowlist`;
  }
  return null;
}
