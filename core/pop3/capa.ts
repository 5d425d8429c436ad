// CAPA lists (RFC 2449): the proxy's own list before login, and a server's list filtered to what
// the proxy can carry. A capability for a command the proxy does not relay is dropped: advertising
// it would make clients send commands the proxy refuses.

export interface ServerCapa {
  stls: boolean;
  saslPlain: boolean;
  user: boolean;
  lines: string[];
}

export function parseCapa(lines: string[]): ServerCapa {
  const upper = lines.map((l) => l.trim().toUpperCase());
  const sasl = upper.find((l) => l.startsWith("SASL"))?.split(/\s+/).slice(1) ?? [];
  return {
    stls: upper.includes("STLS"),
    saslPlain: sasl.includes("PLAIN"),
    user: upper.includes("USER"),
    lines,
  };
}

/** The proxy's list before login (routed mode): it handles USER/PASS and AUTH PLAIN itself. */
export function proxyCapa(opts: { stls: boolean }): string[] {
  return [
    "USER",
    "SASL PLAIN",
    ...(opts.stls ? ["STLS"] : []),
    "TOP",
    "UIDL",
    "RESP-CODES",
    "AUTH-RESP-CODE",
    "PIPELINING",
    "IMPLEMENTATION mailsentry",
  ];
}

// Transaction-state capabilities the proxy relays faithfully.
const CARRIED = new Set(["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "EXPIRE", "LOGIN-DELAY"]);

// SASL mechanisms whose exchange passes through a relay unchanged: no security layer, no channel binding.
const RELAYABLE_SASL = /^(PLAIN|LOGIN|CRAM-MD5|DIGEST-MD5|SCRAM-SHA-1|SCRAM-SHA-256|XOAUTH2|OAUTHBEARER|ANONYMOUS)$/;

/**
 * A server's CAPA list as the client may see it. After login: only carried capabilities (no STLS,
 * no SASL). Before login on a fixed-upstream listener: USER, relayable SASL mechanisms, and STLS
 * only when the proxy itself offers it on the client leg.
 */
export function filterCapa(lines: string[], opts: { loggedIn: boolean; offerStls: boolean }): string[] {
  const out: string[] = [];
  for (const line of lines) {
    const words = line.trim().split(/\s+/);
    const name = words[0]!.toUpperCase();
    if (CARRIED.has(name)) out.push(line.trim());
    else if (!opts.loggedIn && name === "USER") out.push("USER");
    else if (!opts.loggedIn && name === "SASL") {
      const mechs = words.slice(1).filter((m) => RELAYABLE_SASL.test(m.toUpperCase()));
      if (mechs.length) out.push(`SASL ${mechs.join(" ")}`);
    }
  }
  if (!opts.loggedIn && opts.offerStls) out.push("STLS");
  out.push("IMPLEMENTATION mailsentry");
  return out;
}

/** A multi-line reply body: lines with CRLF, dot-stuffed, terminated. */
export function multiLine(first: string, lines: string[]): string {
  return `${first}\r\n${lines.map((l) => (l.startsWith(".") ? "." + l : l) + "\r\n").join("")}.\r\n`;
}
