// The clamd engine: ClamAV's daemon, with its full database (logical and bytecode signatures,
// unpackers, document parsers). clamd parses mail and archives itself, so it is handed the whole
// message once, as the client received it; the built-in pipeline in front of it covers the other
// readings of an ambiguous message (they are its own findings). The addresses are a farm (farm.ts):
// round robin, failover, a resting address answers PING before it is used again. All addresses
// down is an engine error: onError decides, never a pass.
//
// One connection per scan, measured: over a unix socket a connection costs ~0.05 ms of the 0.6 ms a
// 10 KB INSTREAM takes, and IDSESSION's one-connection-many-replies would tie every scan of a
// session to one clamd thread and to its CommandReadTimeout.
import type { UnscannedReason } from "../../limits.ts";
import type { EngineCheck, EngineResult, MessageEngine, StreamSource } from "../../scan/engine.ts";
import { clamdRequest, formatClamdAddress, parseClamdAddress, type ClamdAddress } from "./clamd-wire.ts";
import { Farm } from "./farm.ts";

export interface ClamdOptions {
  addresses: string[];
  /** Per scan, ms (connect, send and clamd's answer together). */
  timeoutMs: number;
  /** Scans in flight at once per address (clamd's MaxThreads is 10 by default). */
  connections: number;
}

export const CLAMD_DEFAULTS = { timeoutMs: 60_000, connections: 8 } as const;

/** How long a VERSION answer is reused in X-Virus-Scanned before it is asked again. */
const VERSION_TTL_MS = 10 * 60_000;

/** What clamd's own limits mean in our terms: an over-limit "detection" is content it did not scan. */
const LIMIT_REASONS: [RegExp, UnscannedReason][] = [
  [/^Heuristics\.Limits\.Exceeded\.(MaxFileSize|MaxScanSize)/, "too-large"],
  [/^Heuristics\.Limits\.Exceeded\.MaxFiles/, "too-many-files"],
  [/^Heuristics\.Limits\.Exceeded\.MaxRecursion/, "too-deep"],
  [/^Heuristics\.Limits\.Exceeded\.MaxScanTime/, "time-limit"],
  [/^Heuristics\.Limits\.Exceeded/, "too-large"],
  [/^Heuristics\.Encrypted\./, "encrypted"],
];

/** clamd's INSTREAM reply as a result; throws for a reply that says clamd itself failed. */
export function parseScanReply(reply: string): EngineResult {
  const text = reply.replace(/^(?:\d+: )?stream: /, "").trim();
  if (text === "OK") return { kind: "clean" };
  const found = /^(.+) FOUND$/.exec(text);
  if (found) {
    const name = found[1]!;
    for (const [re, reason] of LIMIT_REASONS) if (re.test(name)) return { kind: "unscanned", reason, detail: name };
    return { kind: "infected", name };
  }
  if (/size limit exceeded/i.test(reply)) return { kind: "unscanned", reason: "too-large", detail: "clamd StreamMaxLength" };
  throw new Error(`clamd: ${reply.trim() || "empty reply"}`);
}

/** "ClamAV 1.4.6/27480/Mon Dec  7 09:26:02 2026" → its parts (the database ones absent without a database). */
export function parseVersion(reply: string): { version: string; database: number | null; date: string | null } {
  const [version, db, date] = reply.trim().split("/");
  return { version: version ?? reply, database: db && /^\d+$/.test(db) ? Number(db) : null, date: date ?? null };
}

export class ClamdEngine implements MessageEngine {
  readonly name = "clamd";
  private readonly farm: Farm<ClamdAddress>;
  private version: { text: string; at: number } | null = null;

  constructor(readonly options: ClamdOptions) {
    if (options.addresses.length === 0) throw new Error("clamd: no address given");
    const addresses = options.addresses.map((a) => {
      const address = parseClamdAddress(a);
      return { address, text: formatClamdAddress(address) };
    });
    this.farm = new Farm(addresses, options.connections, async (m) => {
      const pong = (await clamdRequest(m.address, "zPING", Math.min(this.options.timeoutMs, 2000))).trim();
      if (pong !== "PONG") throw new Error(`answered PING with ${JSON.stringify(pong)}`);
    });
  }

  /**
   * ClamAV's unzip reads these methods (libclamav/unzip.c); LZMA, XZ, Zstandard and PPMd members it
   * passes as OK without reading them, so those stay unscanned.
   */
  reads(detail: string): boolean {
    return ["Shrink", "Reduce", "Implode", "BZip2"].includes(detail);
  }

  /** "ClamAV 1.4.6/27480" for X-Virus-Scanned (the last answer, refreshed in the background). */
  describe(): string {
    const now = Date.now();
    if (!this.version || now - this.version.at > VERSION_TTL_MS) void this.refreshVersion();
    if (!this.version) return "ClamAV";
    const v = parseVersion(this.version.text);
    return v.database !== null ? `${v.version}/${v.database}` : v.version;
  }

  async refreshVersion(): Promise<void> {
    for (const s of this.farm.order()) {
      try {
        this.version = { text: await clamdRequest(s.address, "zVERSION", Math.min(this.options.timeoutMs, 5000)), at: Date.now() };
        return;
      } catch { /* the next address may answer */ }
    }
  }

  /** Each address: PING and VERSION with the time they took. */
  async check(): Promise<EngineCheck[]> {
    return Promise.all(this.farm.members.map(async (s) => {
      const t0 = performance.now();
      try {
        const pong = await clamdRequest(s.address, "zPING", Math.min(this.options.timeoutMs, 5000));
        if (pong.trim() !== "PONG") throw new Error(`answered PING with ${JSON.stringify(pong)}`);
        const latencyMs = performance.now() - t0;
        const v = parseVersion(await clamdRequest(s.address, "zVERSION", 5000));
        this.version ??= { text: `${v.version}${v.database !== null ? `/${v.database}` : ""}`, at: Date.now() };
        return { engine: this.name, address: s.text, ok: true, version: v.version, database: v.database === null ? null : `${v.database}${v.date ? ` (${v.date})` : ""}`, latencyMs };
      } catch (e) {
        return { engine: this.name, address: s.text, ok: false, error: (e as Error).message, latencyMs: performance.now() - t0 };
      }
    }));
  }

  /**
   * Scans the whole message on the first address that answers, starting round robin. An address
   * that cannot be reached, times out or fails its scan rests; the next one is tried.
   */
  scanMessage(raw: Uint8Array | StreamSource): Promise<EngineResult> {
    return this.farm.run("clamd", async (m) => parseScanReply(await clamdRequest(m.address, "zINSTREAM", this.options.timeoutMs, raw)));
  }
}
