// The one small interface every scanning engine implements (builtin now; clamd and ICAP can follow).
// An engine looks at one decoded object's bytes; walking messages and archives is the pipeline's job.

export interface Detection {
  /** Signature name as the engine reports it, e.g. "Eicar-Test-Signature". */
  name: string;
}

export interface Engine {
  readonly name: string;
  /** Returns the first detection in data, or null. Throws (or rejects) only when the engine itself fails. */
  scan(data: Uint8Array): Detection | null | Promise<Detection | null>;
}
