// The one small interface every scanning engine implements (builtin now; clamd and ICAP can follow).
// An engine looks at one decoded object's bytes; walking messages and archives is the pipeline's job.

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
