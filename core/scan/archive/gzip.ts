// gzip via node:zlib with an output cap: inflation stops once the cap is passed, so a gzip bomb
// costs a few milliseconds and at most maxFileSize bytes of memory.
import { constants as bufferConstants } from "node:buffer";
import { gunzipSync } from "node:zlib";
import { memberCap, overCapReason, type ArchiveMember, type ExtractOptions } from "./types.ts";

export function isGzip(data: Uint8Array): boolean {
  return data.length >= 18 && data[0] === 0x1f && data[1] === 0x8b && data[2] === 8;
}

/** The single member of a gzip stream (concatenated members inflate as one, as gunzip does). */
export function* readGzip(data: Uint8Array, outerName: string, opts: ExtractOptions): Generator<ArchiveMember> {
  const name = storedName(data) || innerName(outerName);
  const cap = Math.min(memberCap(opts), bufferConstants.MAX_LENGTH);
  let out: Uint8Array;
  try {
    out = gunzipSync(data, { maxOutputLength: Math.max(1, cap) });
  } catch (err) {
    const tooLarge = err instanceof RangeError && (err as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE";
    yield { name, unscanned: tooLarge ? overCapReason(cap + 1, data.length) : "corrupt" };
    return;
  }
  yield out.length > cap ? { name, unscanned: overCapReason(out.length, data.length) } : { name, data: out };
}

/** FNAME from the gzip header (RFC 1952 §2.3), bounded and latin1 as the RFC says. */
function storedName(data: Uint8Array): string {
  const flags = data[3];
  if (!(flags & 0x08)) return "";
  let at = 10;
  if (flags & 0x04) at += 2 + (data[10] | (data[11] << 8));
  const end = data.indexOf(0, at);
  if (end < 0 || end - at > 255) return "";
  return Buffer.from(data.buffer, data.byteOffset + at, end - at).toString("latin1");
}

function innerName(outer: string): string {
  const base = outer.slice(outer.lastIndexOf("/") + 1);
  if (/\.tgz$/i.test(base)) return base.slice(0, -4) + ".tar";
  if (/\.gz$/i.test(base)) return base.slice(0, -3);
  return base ? `${base} (gunzipped)` : "gunzipped";
}
