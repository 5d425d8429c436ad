// Routed logins, shared by POP3 and IMAP: the client names the real server in its user name
// (name/server[:port] or name#server[:port], as OfficeScan's POP3 scanner did), and SASL PLAIN
// (RFC 4616) responses are taken apart and built. Pure functions: the sessions decide what to do.
import { hasControlBytes, routedHostProblem } from "./security.ts";

export interface RoutedName {
  user: string;
  host: string;
  /** Absent: the protocol default (POP3 110, IMAP 143). */
  port?: number;
}

/**
 * "name/server[:port]" or "name#server[:port]" (the last separator wins: user names may hold "/",
 * server names cannot). Returns a reason string when malformed.
 */
export function parseRoutedName(s: string): RoutedName | string {
  if (hasControlBytes(s)) return "control bytes in login name";
  const at = Math.max(s.lastIndexOf("/"), s.lastIndexOf("#"));
  if (at <= 0 || at === s.length - 1) return "login name has no /server part";
  const user = s.slice(0, at);
  const target = s.slice(at + 1);
  let host: string;
  let portText: string | undefined;
  const v6 = /^\[([0-9A-Fa-f:.]+)\](?::(\d+))?$/.exec(target);
  if (v6) {
    host = v6[1]!;
    portText = v6[2];
  } else if ((target.match(/:/g) ?? []).length > 1) {
    host = target; // a bare IPv6 literal: no port possible without brackets
  } else {
    [host, portText] = target.split(":") as [string, string | undefined];
  }
  const hostProblem = routedHostProblem(host);
  if (hostProblem) return hostProblem;
  if (portText === undefined) return { user, host };
  if (!/^\d{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) return `bad port "${portText}"`;
  return { user, host, port: Number(portText) };
}

/**
 * Why a password cannot go upstream, or null. A CR or LF in it would end the PASS (or LOGIN) line
 * early and make the rest a command of the client's choosing, with every later reply one step late;
 * no other control byte has a place in a password either, so all of them are refused before anything
 * is sent.
 */
export function passwordProblem(password: string): string | null {
  return /[\x00-\x1f\x7f]/.test(password) ? "control bytes in password" : null;
}

/** AUTH PLAIN response "authzid\0authcid\0password" (RFC 4616), bytes kept as latin1 text. */
export function parseAuthPlain(b64: string): { authzid: string; authcid: string; password: string } | string {
  const text = b64.trim();
  if (text === "=") return "empty AUTH PLAIN response";
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) return "AUTH PLAIN response is not base64";
  const parts = Buffer.from(text, "base64").toString("latin1").split("\0");
  if (parts.length !== 3) return "AUTH PLAIN response is not authzid\\0authcid\\0password";
  const [authzid, authcid, password] = parts as [string, string, string];
  if (!authcid) return "AUTH PLAIN response has no user name";
  if (hasControlBytes(authzid) || hasControlBytes(authcid)) return "control bytes in AUTH PLAIN user name";
  const bad = passwordProblem(password);
  if (bad) return bad;
  return { authzid, authcid, password };
}

/** POP3 lines are taken byte for byte (latin1); IMAP strings are UTF-8 text. */
export function authPlainResponse(user: string, password: string, encoding: "latin1" | "utf8" = "latin1"): string {
  return Buffer.from(`\0${user}\0${password}`, encoding).toString("base64");
}
