// Where client set-ups point: the running proxy's bound listeners when one answers on the control
// socket (its ports may differ from the file, e.g. port 0), else the configuration's listeners.
// Only routing listeners count (a fixed-upstream listener cannot take a name/server login).
import type { Config, Protocol } from "../config/types.ts";
import { isLoopbackHost, splitHostPort } from "../config/schema.ts";
import { sendControl } from "../control.ts";
import { ensureCa } from "../tls/ca.ts";
import type { ProxyTarget } from "./types.ts";

const PROTOCOLS: Protocol[] = ["pop3", "pop3s", "imap", "imaps"];

/** A listener as the control socket's "listeners" answer gives it (core/service.ts BoundListener). */
export interface ListenerInfo {
  protocol: Protocol;
  host: string;
  port: number;
  fixed: boolean;
}

/** A host a client on this machine can connect to for a listener bound to `host`. */
function connectHost(host: string): string | null {
  if (host === "0.0.0.0" || host === "::" || host === "") return "127.0.0.1";
  return isLoopbackHost(host) ? (host === "localhost" ? "127.0.0.1" : host) : null;
}

/** The target from a list of listeners: the first loopback-reachable one of each protocol. */
export function targetOf(listeners: readonly ListenerInfo[], caFile: string): ProxyTarget {
  const ports: ProxyTarget["ports"] = {};
  let host: string | null = null;
  for (const proto of PROTOCOLS) {
    for (const l of listeners) {
      if (l.protocol !== proto || l.fixed) continue;
      const h = connectHost(l.host);
      // One host for all: clients are told one server name.
      if (!h || (host !== null && h !== host)) continue;
      host = h;
      ports[proto] = l.port;
      break;
    }
  }
  // The client-leg certificate always names localhost (core/tls/ca.ts), and localhost is loopback.
  return { host: host ?? "127.0.0.1", dnsName: "localhost", ports, caFile };
}

/** The listeners a configuration asks for (port 0 cannot be pointed at: skipped). */
export function configuredListeners(config: Config): ListenerInfo[] {
  const out: ListenerInfo[] = [];
  for (const protocol of PROTOCOLS) {
    const l = config.listeners[protocol];
    if (!l.enabled) continue;
    for (const entry of l.addresses) {
      const a = typeof entry === "string" ? { address: entry } : entry;
      const hp = splitHostPort(a.address);
      if (hp && hp.port !== 0) out.push({ protocol, host: hp.host, port: hp.port, fixed: Boolean(a.upstream) });
    }
  }
  return out;
}

/** Asks a running proxy for its bound listeners; null when none answers. */
export async function runningListeners(stateDir: string): Promise<ListenerInfo[] | null> {
  try {
    const answer = await sendControl(stateDir, "listeners", 3_000);
    if (!answer.startsWith("ok ")) return null;
    const list = JSON.parse(answer.slice(3));
    return Array.isArray(list) ? (list as ListenerInfo[]) : null;
  } catch {
    return null;
  }
}

/** The target clients are pointed at, and where it was read from (for the user). */
export async function proxyTarget(config: Config, stateDir: string): Promise<{ target: ProxyTarget; from: "running proxy" | "configuration" }> {
  const caFile = (await ensureCa(stateDir)).paths.caCert;
  const running = await runningListeners(stateDir);
  if (running) return { target: targetOf(running, caFile), from: "running proxy" };
  return { target: targetOf(configuredListeners(config), caFile), from: "configuration" };
}
