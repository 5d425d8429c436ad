// Zip members via @zip.js/zip.js, without web workers (faster here, and a compiled binary would
// otherwise linger on exit). Every member is inflated into a capped sink so a bomb stops early.
import { configure, Uint8ArrayReader, ZipReader, type Entry } from "@zip.js/zip.js";
import type { ArchiveMember, ExtractOptions } from "./types.ts";

configure({ useWebWorkers: false });

export function isZip(data: Uint8Array): boolean {
  // Local file header, or the end record of an empty archive.
  return data.length >= 4 && data[0] === 0x50 && data[1] === 0x4b &&
    ((data[2] === 3 && data[3] === 4) || (data[2] === 5 && data[3] === 6));
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
      yield await extract(entry, opts.maxFileSize);
    }
  } finally {
    await reader.close().catch(() => {});
  }
}

async function extract(entry: Entry, cap: number): Promise<ArchiveMember> {
  const name = entry.filename;
  if (entry.directory) return { name, unscanned: "corrupt" };
  if (entry.encrypted) return { name, unscanned: "encrypted" };
  // The declared size may lie; the sink below is the real guard, this only saves the work.
  if (entry.uncompressedSize > cap) return { name, unscanned: "too-large" };
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
    return { name, unscanned: overCap ? "too-large" : "corrupt" };
  }
  return { name, data: chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size) };
}
