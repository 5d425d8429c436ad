// CAPABILITY lists (RFC 3501 §7.2.1): the proxy's own before login, and a server's filtered toward the
// client. They appear in three places — the greeting's [CAPABILITY …], untagged "* CAPABILITY" and the
// tagged OK of LOGIN/AUTHENTICATE — and all three go through filterCapabilities.

/**
 * Removed toward the client: what would carry message content past the scanner (COMPRESS hides the
 * stream, BINARY/CONVERT decode parts server-side, URLAUTH fetches by URL, PREVIEW/SNIPPET quote
 * bodies), and what belongs to the login phase the proxy answers itself.
 */
const HIDDEN = [/^COMPRESS=/i, /^BINARY$/i, /^CONVERT$/i, /^URLAUTH/i, /^URLFETCH/i, /^PREVIEW/i, /^SNIPPET/i, /^STARTTLS$/i, /^LOGINDISABLED$/i, /^AUTH=/i, /^SASL-IR$/i, /^LOGIN-REFERRALS$/i];

export function filterCapabilities(caps: string[]): string[] {
  return caps.filter((c) => !HIDDEN.some((re) => re.test(c)));
}

/** What the proxy offers before login: it answers LOGIN and AUTHENTICATE PLAIN and LOGIN itself. */
export function proxyCapabilities(opts: { starttls: boolean }): string[] {
  return ["IMAP4rev1", "SASL-IR", "LITERAL+", "ID", "ENABLE", "IDLE", ...(opts.starttls ? ["STARTTLS"] : []), "AUTH=PLAIN", "AUTH=LOGIN"];
}

/** The words of a capability list ("IMAP4rev1 IDLE …"). */
export function parseCapabilities(text: string): string[] {
  return text.trim().split(/\s+/).filter(Boolean);
}

/** Capabilities from a "[CAPABILITY …]" response code in a line, or null. */
export function capabilityCode(line: string): string[] | null {
  const m = /\[CAPABILITY ([^\]]*)\]/i.exec(line);
  return m ? parseCapabilities(m[1]!) : null;
}

/** The line with its [CAPABILITY …] code filtered (other text unchanged). */
export function filterCapabilityCode(line: string): string {
  return line.replace(/\[CAPABILITY ([^\]]*)\]/i, (_, list: string) => `[CAPABILITY ${filterCapabilities(parseCapabilities(list)).join(" ")}]`);
}

/** "* CAPABILITY …" with the list filtered. */
export function filterCapabilityLine(line: string): string {
  const m = /^(\* CAPABILITY) (.*)$/is.exec(line);
  if (!m) return line;
  return `${m[1]} ${filterCapabilities(parseCapabilities(m[2]!)).join(" ")}`;
}

export function hasCapability(caps: string[], name: string): boolean {
  const n = name.toUpperCase();
  return caps.some((c) => c.toUpperCase() === n);
}
