// What an archive reader hands the pipeline: one member at a time, either its bytes or the reason
// it could not be extracted. Readers never throw for bad input; they yield a "corrupt" member.
import type { UnscannedReason } from "../verdict.ts";

export type ArchiveMember =
  | { name: string; data: Uint8Array }
  /** name "" means the archive as a whole (e.g. an unreadable central directory). */
  | { name: string; unscanned: UnscannedReason };

export interface ExtractOptions {
  /** Largest member, decompressed; extraction stops as soon as a member grows past it. */
  maxFileSize: number;
}
