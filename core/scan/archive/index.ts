// Archive dispatch: a cheap magic-byte sniff (most objects are not archives and must cost nothing
// here), then the matching reader. Readers yield members; the pipeline owns recursion and limits.
import { isGzip, readGzip } from "./gzip.ts";
import { isTar, readTar } from "./tar.ts";
import type { ArchiveMember, ExtractOptions } from "./types.ts";
import { isPrefixedZip, isZip, readZip } from "./zip.ts";

export type { ArchiveMember, ExtractOptions } from "./types.ts";
export type ArchiveKind = "zip" | "gzip" | "tar";

export function sniffArchive(data: Uint8Array): ArchiveKind | null {
  if (data.length < 4) return null;
  if (isZip(data)) return "zip";
  if (isGzip(data)) return "gzip";
  if (isTar(data)) return "tar";
  if (isPrefixedZip(data)) return "zip";
  return null;
}

/** Members of an archive of the given kind. name: the archive's own file name (gzip names its member after it). */
export function readArchive(
  kind: ArchiveKind,
  data: Uint8Array,
  name: string,
  opts: ExtractOptions,
): Iterable<ArchiveMember> | AsyncIterable<ArchiveMember> {
  switch (kind) {
    case "zip": return readZip(data, opts);
    case "gzip": return readGzip(data, name, opts);
    case "tar": return readTar(data, opts);
  }
}
