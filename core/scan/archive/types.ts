// What an archive reader hands the pipeline: one member at a time, either its bytes or the reason
// it could not be extracted. Readers never throw for bad input; they yield a "corrupt" member.
import type { UnscannedReason } from "../verdict.ts";

export type ArchiveMember =
  | { name: string; data: Uint8Array }
  /** name "" means the archive as a whole (e.g. an unreadable central directory). */
  /** detail: what the reason rests on, e.g. the compression method of an unsupported member ("BZip2"). */
  | { name: string; unscanned: UnscannedReason; detail?: string };

/**
 * Inflation past this ratio is a decompression bomb: deflate tops out near 1032:1, ordinary files
 * (text, logs, documents) stay well under 100:1, and only constructed data (or a disk image of
 * zeros, which nobody mails) goes past it.
 */
export const BOMB_RATIO = 100;

/** Why a member that outgrew maxFileSize was dropped: a bomb when it inflated at a bomb's ratio, else just too large. */
export function overCapReason(inflated: number, compressed: number): "bomb" | "too-large" {
  return inflated / Math.max(1, compressed) > BOMB_RATIO ? "bomb" : "too-large";
}

export interface ExtractOptions {
  /** Largest member, decompressed; extraction stops as soon as a member grows past it. */
  maxFileSize: number;
  /** Bytes the message may still inflate, asked before each member (the scan's budget shrinks as members are scanned). */
  budget?: () => number;
}

/** The cap for the next member: maxFileSize, or less when the budget has less left. */
export function memberCap(opts: ExtractOptions): number {
  return Math.min(opts.maxFileSize, opts.budget ? Math.max(0, opts.budget()) : Infinity);
}
