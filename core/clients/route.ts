// What every client set-up shares: which listener an account goes to (security kept: implicit TLS
// to POP3S/IMAPS, STARTTLS and plain to the plain listener, which offers STARTTLS) and the routed
// user name the proxy reads.
import type { ClientAccount, ProxyTarget } from "./types.ts";

/** "user/server:port" (core/net/routing.ts reads it); an IPv6 server in brackets, the port always given. */
export function routedUser(user: string, account: Pick<ClientAccount, "server" | "port">): string {
  const host = account.server.includes(":") ? `[${account.server}]` : account.server;
  return `${user}/${host}:${account.port}`;
}

/**
 * The listener port for the account, or an Error a user can act on (an unsupported account, or the
 * listener it needs is off).
 */
export function listenerPort(account: ClientAccount, target: ProxyTarget): number {
  if (account.unsupported) throw new Error(`${account.label} ${account.unsupported}`);
  const listener = account.security === "tls" ? (account.protocol === "pop3" ? "pop3s" : "imaps") : account.protocol;
  const port = target.ports[listener];
  if (port === undefined) throw new Error(`${account.label} needs the ${listener} listener, which is off`);
  return port;
}
