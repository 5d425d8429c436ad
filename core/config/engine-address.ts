// Where a clamd listens, as the configuration writes it: "unix:/path" or "tcp:host:port". Parsed
// here so that a bad address is a configuration error naming its key, before any engine starts.

export type ClamdAddress = { kind: "unix"; path: string } | { kind: "tcp"; host: string; port: number };

/** "unix:/run/clamav/clamd.ctl", "/run/clamav/clamd.ctl", "tcp:10.0.0.5:3310", "10.0.0.5:3310", "tcp:[::1]:3310". */
export function parseClamdAddress(text: string): ClamdAddress {
  const t = text.trim();
  if (t.startsWith("unix:")) return unix(t.slice(5), text);
  if (t.startsWith("/")) return unix(t, text);
  const rest = t.startsWith("tcp:") ? t.slice(4) : t;
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(rest);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port < 1 || port > 65535) throw new Error(`not a clamd address: ${JSON.stringify(text)} (use unix:/path or tcp:host:port)`);
  return { kind: "tcp", host: m[1] ?? m[2]!, port };
}

function unix(path: string, text: string): ClamdAddress {
  if (!path.startsWith("/")) throw new Error(`not a clamd address: ${JSON.stringify(text)} (a unix socket needs an absolute path)`);
  return { kind: "unix", path };
}

export function formatClamdAddress(a: ClamdAddress): string {
  return a.kind === "unix" ? `unix:${a.path}` : `tcp:${a.host.includes(":") ? `[${a.host}]` : a.host}:${a.port}`;
}
