// Zip members via @zip.js/zip.js, without web workers (faster here, and a compiled binary would
// otherwise linger on exit). Every member is inflated into a capped sink so a bomb stops early.
import { configure, getSupportedCompressionMethods, Uint8ArrayReader, ZipReader, type Entry } from "@zip.js/zip.js";
import { memberCap, overCapReason, type ArchiveMember, type ExtractOptions } from "./types.ts";

configure({ useWebWorkers: false });

/** Methods zip.js inflates here (stored, deflate, deflate64): others are unsupported, not corrupt. */
const READABLE = new Set(getSupportedCompressionMethods().filter((m) => m.decompression).map((m) => m.compressionMethod));

/** APPNOTE 4.4.5's names for the methods a reader may meet. */
const METHOD_NAMES: Record<number, string> = {
  1: "Shrink", 2: "Reduce", 3: "Reduce", 4: "Reduce", 5: "Reduce", 6: "Implode", 10: "PKWARE DCL Implode",
  12: "BZip2", 14: "LZMA", 18: "IBM TERSE", 19: "IBM LZ77", 93: "Zstandard", 94: "MP3", 95: "XZ", 96: "JPEG", 97: "WavPack", 98: "PPMd",
};

export function zipMethodName(method: number): string {
  return METHOD_NAMES[method] ?? `method ${method}`;
}

export function isZip(data: Uint8Array): boolean {
  // Local file header, or the end record of an empty archive.
  return data.length >= 4 && data[0] === 0x50 && data[1] === 0x4b &&
    ((data[2] === 3 && data[3] === 4) || (data[2] === 5 && data[3] === 6));
}

/** The end-of-central-directory record is 22 bytes plus a comment of at most 65,535. */
const EOCD_SIZE = 22;
const EOCD_SEARCH = EOCD_SIZE + 0xffff;
const EOCD_SIG = Buffer.from([0x50, 0x4b, 0x05, 0x06]);

/**
 * A zip that does not start at byte 0 (a self-extractor's stub, or junk put in front to hide it):
 * found by its end-of-central-directory record near the end, as unzip finds it, and confirmed by
 * a central directory header where the record says the directory ends — random bytes that merely
 * hold the signature are not taken for an archive. zip.js reads such archives, prefix and all.
 */
export function isPrefixedZip(data: Uint8Array): boolean {
  if (data.length < EOCD_SIZE) return false;
  const b = Buffer.from(data.buffer, data.byteOffset, data.length);
  const floor = Math.max(0, b.length - EOCD_SEARCH);
  const tail = b.subarray(floor); // only the tail may hold the record: a big file costs no more than a small one
  for (let t = tail.lastIndexOf(EOCD_SIG); t >= 0; t = t > 0 ? tail.lastIndexOf(EOCD_SIG, t - 1) : -1) {
    const at = floor + t;
    if (at + EOCD_SIZE > b.length) continue;
    const entries = b.readUInt16LE(at + 10);
    const dirSize = b.readUInt32LE(at + 12);
    const dirStart = at - dirSize;
    if (entries === 0 || dirSize < 46 || dirStart < 0) continue;
    if (b[dirStart] === 0x50 && b[dirStart + 1] === 0x4b && b[dirStart + 2] === 1 && b[dirStart + 3] === 2) return true;
  }
  return false;
}

export async function* readZip(data: Uint8Array, opts: ExtractOptions): AsyncGenerator<ArchiveMember> {
  const reader = new ZipReader(new Uint8ArrayReader(data));
  try {
    let entries: AsyncGenerator<Entry, boolean>;
    try {
      entries = reader.getEntriesGenerator();
    } catch {
      yield { name: "", unscanned: "corrupt" };
      return;
    }
    while (true) {
      let next: IteratorResult<Entry, boolean>;
      try {
        next = await entries.next();
      } catch {
        yield { name: "", unscanned: "corrupt" };
        return;
      }
      if (next.done) return;
      const entry = next.value;
      if (entry.directory) continue;
      yield await extract(entry, memberCap(opts));
    }
  } finally {
    await reader.close().catch(() => {});
  }
}

async function extract(entry: Entry, cap: number): Promise<ArchiveMember> {
  const name = entry.filename;
  if (entry.directory) return { name, unscanned: "corrupt" };
  if (entry.encrypted) return { name, unscanned: "encrypted" };
  if (!READABLE.has(entry.compressionMethod)) return { name, unscanned: "unsupported", detail: zipMethodName(entry.compressionMethod) };
  // The declared size may lie; the sink below is the real guard, this only saves the work.
  if (entry.uncompressedSize > cap) return { name, unscanned: overCapReason(entry.uncompressedSize, entry.compressedSize) };
  const chunks: Uint8Array[] = [];
  let size = 0;
  let overCap = false;
  const sink = new WritableStream<Uint8Array>({
    write(chunk) {
      size += chunk.length;
      if (size > cap) {
        overCap = true;
        throw new RangeError("member over maxFileSize");
      }
      chunks.push(chunk);
    },
  });
  try {
    await entry.getData(sink);
  } catch {
    // Our own cap is told apart by the flag, not by zip.js's error text.
    return { name, unscanned: overCap ? overCapReason(size, entry.compressedSize) : "corrupt" };
  }
  return { name, data: chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size) };
}
