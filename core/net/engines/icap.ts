// The ICAP engine (RFC 3507), for commercial scanners and c-icap: the message travels as the body of
// a wrapped HTTP response in a RESPMOD request. OPTIONS is asked first (and again after its
// Options-TTL): Preview, Allow 204 and Max-Connections are honoured. With a preview the first
// bytes go alone and the service may answer at once (204: clean) or ask for the rest (100
// Continue). A detection is read from X-Infection-Found (Threat=…) or X-Virus-ID; a 200 that
// names none is still a changed message, so it counts as a detection by the service. Same farm,
// timeout, failover and error rules as clamd: every address failing is an engine error.
import type { EngineCheck, EngineResult, MessageEngine, StreamSource } from "../../scan/engine.ts";
import { Farm, type Member } from "./farm.ts";
import { ServiceConnection, withTimeout } from "./stream.ts";

export interface IcapOptions {
  /** icap://host[:port]/service (icaps:// for TLS). */
  urls: string[];
  timeoutMs: number;
  connections: number;
}

export interface IcapService {
  tls: boolean;
  host: string;
  port: number;
  /** The request URI as written (icap://host:port/service). */
  uri: string;
}

interface Options {
  preview: number | null;
  maxConnections: number | null;
  istag: string | null;
  service: string | null;
  until: number;
}

function targetOf(s: IcapService) {
  return { host: s.host, port: s.port, tls: s.tls };
}

export function parseIcapUrl(url: string): IcapService {
  const m = /^(icaps?):\/\/(\[[^\]]+\]|[^/:\s]+)(?::(\d{1,5}))?(\/\S*)?$/i.exec(url.trim());
  if (!m) throw new Error(`not an ICAP URL: ${JSON.stringify(url)} (e.g. icap://127.0.0.1:1344/avscan)`);
  const tls = m[1]!.toLowerCase() === "icaps";
  const host = m[2]!.replace(/^\[|\]$/g, "");
  const port = m[3] ? Number(m[3]) : tls ? 11344 : 1344;
  if (port < 1 || port > 65535) throw new Error(`not an ICAP URL: ${JSON.stringify(url)} (bad port)`);
  return { tls, host, port, uri: `${m[1]!.toLowerCase()}://${m[2]}:${port}${m[4] ?? "/"}` };
}

const CRLF = "\r\n";
const CHUNK = 64 * 1024;
const MAX_HEAD = 64 * 1024;

/** The ICAP answer to one request: status and headers (lower-case names). */
interface IcapReply {
  status: number;
  headers: Map<string, string>;
}

/** The next reply head (status line and headers) on the connection. */
async function replyOf(conn: ServiceConnection): Promise<IcapReply> {
  const head = await conn.read((b) => { const end = b.indexOf("\r\n\r\n"); return end < 0 ? -1 : end + 4; }, MAX_HEAD);
  return parseHead(head.subarray(0, head.length - 4).toString("latin1"), conn.where);
}

function parseHead(head: string, where: string): IcapReply {
  const lines = head.split(/\r\n/);
  const m = /^ICAP\/1\.0 (\d{3})\b/.exec(lines[0] ?? "");
  if (!m) throw new Error(`${where}: not an ICAP reply: ${JSON.stringify((lines[0] ?? "").slice(0, 80))}`);
  const headers = new Map<string, string>();
  let last = "";
  for (const line of lines.slice(1)) {
    if (/^[ \t]/.test(line) && last) { headers.set(last, `${headers.get(last)}\n${line.trim()}`); continue; }
    const i = line.indexOf(":");
    if (i <= 0) continue;
    last = line.slice(0, i).trim().toLowerCase();
    headers.set(last, line.slice(i + 1).trim());
  }
  return { status: Number(m[1]), headers };
}

/** The detection an ICAP reply names (X-Infection-Found's Threat, X-Virus-ID, X-Violations-Found), or null. */
export function threatOf(headers: Map<string, string>): string | null {
  const found = headers.get("x-infection-found");
  const threat = found ? /Threat=([^;]+)/i.exec(found)?.[1]?.trim() : undefined;
  if (threat) return threat;
  const id = headers.get("x-virus-id")?.trim();
  if (id) return id;
  // X-Violations-Found: count, then per violation filename, threat, id, resolution (one per line).
  const violations = headers.get("x-violations-found")?.split("\n").map((l) => l.trim());
  if (violations && violations.length >= 3 && Number(violations[0]) > 0) return violations[2]!;
  return null;
}

/** One chunk of the chunked body. */
function chunk(bytes: Uint8Array): Uint8Array[] {
  return [Buffer.from(`${bytes.length.toString(16)}${CRLF}`, "latin1"), bytes, Buffer.from(CRLF, "latin1")];
}

function slice(raw: Uint8Array | StreamSource, at: number, end: number): Uint8Array {
  if (raw instanceof Uint8Array) return raw.subarray(at, end);
  const buf = new Uint8Array(end - at);
  return buf.subarray(0, raw.read(at, buf));
}

export class IcapEngine implements MessageEngine {
  readonly name = "icap";
  private readonly farm: Farm<IcapService>;
  private readonly options = new Map<string, Options>();

  constructor(readonly config: IcapOptions) {
    this.farm = new Farm(config.urls.map((u) => {
      const s = parseIcapUrl(u);
      return { address: s, text: s.uri };
    }), config.connections, async (m) => { await this.optionsOf(m, true); });
  }

  describe(): string {
    const names = [...this.options.values()].map((o) => o.service).filter((s): s is string => !!s);
    return names[0] ? `ICAP ${names[0]}` : "ICAP";
  }

  /** OPTIONS for a member, cached for its Options-TTL; Max-Connections lowers the member's limit. */
  private async optionsOf(m: Member<IcapService>, fresh = false): Promise<Options> {
    const cached = this.options.get(m.text);
    if (cached && !fresh && cached.until > Date.now()) return cached;
    const conn = await ServiceConnection.open(targetOf(m.address), m.address.uri, this.config.timeoutMs);
    try {
      await conn.write(`OPTIONS ${m.address.uri} ICAP/1.0${CRLF}Host: ${m.address.host}${CRLF}Encapsulated: null-body=0${CRLF}${CRLF}`);
      const r = await withTimeout(replyOf(conn), this.config.timeoutMs, `${m.text}: no OPTIONS answer within ${this.config.timeoutMs} ms`);
      if (r.status !== 200) throw new Error(`${m.text}: OPTIONS answered ${r.status}`);
      const methods = (r.headers.get("methods") ?? "").toUpperCase();
      if (methods && !methods.includes("RESPMOD")) throw new Error(`${m.text}: the service does not take RESPMOD (Methods: ${methods})`);
      // Without 204 a clean message comes back as a 200 with its body, indistinguishable at a glance
      // from a changed one: such a service cannot give a verdict here.
      if (!/\b204\b/.test(r.headers.get("allow") ?? "")) throw new Error(`${m.text}: the service does not offer Allow: 204`);
      const preview = r.headers.has("preview") ? Number(r.headers.get("preview")) : null;
      const max = r.headers.has("max-connections") ? Number(r.headers.get("max-connections")) : null;
      const ttl = Number(r.headers.get("options-ttl") ?? 3600);
      const o: Options = {
        preview: preview !== null && Number.isFinite(preview) && preview >= 0 ? preview : null,
        maxConnections: max !== null && Number.isInteger(max) && max > 0 ? max : null,
        istag: r.headers.get("istag") ?? null,
        service: r.headers.get("service") ?? null,
        until: Date.now() + (Number.isFinite(ttl) && ttl > 0 ? ttl : 3600) * 1000,
      };
      m.limit = Math.min(this.config.connections, o.maxConnections ?? Infinity);
      this.options.set(m.text, o);
      return o;
    } finally {
      conn.close();
    }
  }

  async check(): Promise<EngineCheck[]> {
    return Promise.all(this.farm.members.map(async (m) => {
      const t0 = performance.now();
      try {
        const o = await this.optionsOf(m, true);
        return { engine: this.name, address: m.text, ok: true, version: o.service ?? "ICAP service", database: o.istag, latencyMs: performance.now() - t0 };
      } catch (e) {
        return { engine: this.name, address: m.text, ok: false, error: (e as Error).message, latencyMs: performance.now() - t0 };
      }
    }));
  }

  scanMessage(raw: Uint8Array | StreamSource): Promise<EngineResult> {
    return this.farm.run("icap", async (m) => {
      const o = await this.optionsOf(m);
      return this.respmod(m.address, o, raw);
    });
  }

  private async respmod(s: IcapService, o: Options, raw: Uint8Array | StreamSource): Promise<EngineResult> {
    const size = raw instanceof Uint8Array ? raw.length : raw.size;
    const reqHdr = `GET /message.eml HTTP/1.1${CRLF}Host: mailsentry${CRLF}${CRLF}`;
    const resHdr = `HTTP/1.1 200 OK${CRLF}Content-Type: message/rfc822${CRLF}Content-Length: ${size}${CRLF}${CRLF}`;
    const preview = o.preview !== null ? Math.min(o.preview, size) : null;
    const head = [
      `RESPMOD ${s.uri} ICAP/1.0`,
      `Host: ${s.host}`,
      "Allow: 204",
      ...(preview !== null ? [`Preview: ${preview}`] : []),
      `Encapsulated: req-hdr=0, res-hdr=${reqHdr.length}, res-body=${reqHdr.length + resHdr.length}`,
    ].join(CRLF) + CRLF + CRLF;
    const conn = await ServiceConnection.open(targetOf(s), s.uri, this.config.timeoutMs);
    const exchange = async (): Promise<EngineResult> => {
      await conn.write(head + reqHdr + resHdr);
      let at = 0;
      if (preview !== null) {
        if (preview > 0) for (const p of chunk(slice(raw, 0, preview))) await conn.write(p);
        at = preview;
        // ieof: the preview is the whole body, nothing will follow a 100 Continue.
        await conn.write(at >= size ? `0; ieof${CRLF}${CRLF}` : `0${CRLF}${CRLF}`);
        const r = await replyOf(conn);
        if (r.status !== 100) return this.verdict(s, r);
        if (at >= size) return this.verdict(s, await replyOf(conn));
      }
      while (at < size && !conn.answered) {
        const piece = slice(raw, at, Math.min(at + CHUNK, size));
        if (piece.length === 0) throw new Error(`${s.uri}: the message ended at ${at} of ${size} bytes`);
        for (const p of chunk(piece)) await conn.write(p);
        at += piece.length;
      }
      if (!conn.answered) await conn.write(`0${CRLF}${CRLF}`);
      let r = await replyOf(conn);
      if (r.status === 100) r = await replyOf(conn); // a Continue we did not need (no preview): skip it
      return this.verdict(s, r);
    };
    try {
      return await withTimeout(exchange(), this.config.timeoutMs, `${s.uri}: no answer within ${this.config.timeoutMs} ms`);
    } finally {
      conn.close(); // also a stalled service, cut by the timeout
    }
  }

  private verdict(s: IcapService, r: IcapReply): EngineResult {
    const threat = threatOf(r.headers);
    if (r.status === 204) return threat ? { kind: "infected", name: threat } : { kind: "clean" };
    if (r.status === 200) return { kind: "infected", name: threat ?? "ICAP.Modified-By-Service" };
    throw new Error(`${s.uri}: answered ${r.status}${r.headers.get("x-error") ? ` (${r.headers.get("x-error")})` : ""}`);
  }
}
