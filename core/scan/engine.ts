// The engines' interfaces. An Engine (the built-in one) looks at one decoded object's bytes; walking
// messages and archives is the pipeline's job. A MessageEngine (clamd, ICAP) is a scanner of its own
// that parses mail and archives itself: it is handed the whole message once.
import type { UnscannedReason } from "../limits.ts";

export interface Detection {
  /** Signature name as the engine reports it, e.g. "Eicar-Test-Signature". */
  name: string;
}

export interface Engine {
  readonly name: string;
  /**
   * Short stable text that changes whenever the engine's signatures (or the way it matches them)
   * change: a "scanned clean" remembered under one identity holds only for that identity. Absent
   * means the engine cannot say, and nothing remembered about earlier scans may be trusted.
   */
  readonly identity?: string;
  /** Returns the first detection in data, or null. Throws (or rejects) only when the engine itself fails. */
  scan(data: Uint8Array): Detection | null | Promise<Detection | null>;
}

/** What a MessageEngine said of a whole message. detail: the engine's own words (e.g. its limit's name). */
export type EngineResult =
  | { kind: "clean" }
  | { kind: "infected"; name: string }
  | { kind: "unscanned"; reason: UnscannedReason; detail?: string };

/** A message too big for memory, read in slices (a spool file). */
export interface StreamSource {
  readonly size: number;
  read(at: number, into: Uint8Array): number;
}

/** One address of an engine as `mailsentry engines` reports it. */
export interface EngineCheck {
  engine: string;
  address: string;
  ok: boolean;
  version?: string;
  /** Database version and date, when the engine says. */
  database?: string | null;
  latencyMs: number;
  error?: string;
}

export interface MessageEngine {
  readonly name: string;
  /** For X-Virus-Scanned, e.g. "ClamAV 1.4.6/27480". */
  describe(): string;
  /** Throws (rejects) only when the engine failed: every address down, a timeout, a reply it cannot read. */
  scanMessage(raw: Uint8Array | StreamSource): Promise<EngineResult>;
  check(): Promise<EngineCheck[]>;
  /**
   * Whether a scan by this engine read what the built-in readers left unsupported (detail: the zip
   * method). Only a positive, known answer lets that finding go: an engine that skips it says OK.
   */
  reads?(detail: string): boolean;
}
