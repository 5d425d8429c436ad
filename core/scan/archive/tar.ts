// A small tar reader (v7, ustar, GNU long names, pax path/size). Members are views into the input:
// no copies. A bad header checksum or a member running past the end yields "corrupt" and stops.
import type { ArchiveMember, ExtractOptions } from "./types.ts";

const BLOCK = 512;

/** ustar magic, or (old v7 archives) a valid header checksum on the first block. */
export function isTar(data: Uint8Array): boolean {
  if (data.length < BLOCK) return false;
  if (data[257] === 0x75 && data[258] === 0x73 && data[259] === 0x74 && data[260] === 0x61 && data[261] === 0x72) return true;
  return data[0] !== 0 && checksumOk(data, 0);
}

export function* readTar(data: Uint8Array, opts: ExtractOptions): Generator<ArchiveMember> {
  let at = 0;
  let longName = "";
  let paxPath = "";
  let paxSize = -1;
  while (at + BLOCK <= data.length) {
    if (isZeroBlock(data, at)) return;
    if (!checksumOk(data, at)) {
      yield { name: "", unscanned: "corrupt" };
      return;
    }
    const type = String.fromCharCode(data[at + 156] || 0x30);
    let size = readNumber(data, at + 124, 12);
    if (paxSize >= 0) size = paxSize;
    const name = paxPath || longName || headerName(data, at);
    const start = at + BLOCK;
    if (size < 0 || start + size > data.length) {
      yield { name, unscanned: "corrupt" };
      return;
    }
    const body = data.subarray(start, start + size);
    at = start + Math.ceil(size / BLOCK) * BLOCK;
    if (type === "L") { longName = cString(body); continue; }
    if (type === "x") { ({ path: paxPath, size: paxSize } = parsePax(body)); continue; }
    if (type === "g" || type === "K") continue;
    longName = ""; paxPath = ""; paxSize = -1;
    // Regular files only ('0', NUL, contiguous '7'); links, directories and devices hold no data.
    if (type !== "0" && type !== "7") continue;
    if (size > opts.maxFileSize) yield { name, unscanned: "too-large" };
    else yield { name, data: body };
  }
  // Ending without the two zero blocks is common (truncated writers); members read so far stand.
}

function checksumOk(data: Uint8Array, at: number): boolean {
  const stored = readNumber(data, at + 148, 8);
  if (stored < 0) return false;
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : data[at + i];
  return sum === stored;
}

function isZeroBlock(data: Uint8Array, at: number): boolean {
  for (let i = 0; i < BLOCK; i++) if (data[at + i] !== 0) return false;
  return true;
}

/** Octal, NUL/space terminated; or GNU base-256 when the high bit of the first byte is set. */
function readNumber(data: Uint8Array, at: number, len: number): number {
  if (data[at] & 0x80) {
    let n = data[at] & 0x7f;
    for (let i = 1; i < len; i++) n = n * 256 + data[at + i];
    return n;
  }
  let n = 0;
  let digits = 0;
  for (let i = 0; i < len; i++) {
    const c = data[at + i];
    if (c === 0 || c === 0x20) { if (digits) break; else continue; }
    if (c < 0x30 || c > 0x37) return -1;
    n = n * 8 + (c - 0x30);
    digits++;
  }
  return n;
}

function headerName(data: Uint8Array, at: number): string {
  const name = cString(data.subarray(at, at + 100));
  const isUstar = data[at + 257] === 0x75 && data[at + 262] === 0; // "ustar\0" (POSIX), not GNU "ustar  "
  const prefix = isUstar ? cString(data.subarray(at + 345, at + 500)) : "";
  return prefix ? `${prefix}/${name}` : name;
}

function cString(bytes: Uint8Array): string {
  const end = bytes.indexOf(0);
  return Buffer.from(bytes.buffer, bytes.byteOffset, end < 0 ? bytes.length : end).toString("utf8");
}

/** pax extended header records: "<len> <key>=<value>\n". Only path and size matter here. */
function parsePax(body: Uint8Array): { path: string; size: number } {
  const text = Buffer.from(body.buffer, body.byteOffset, body.length).toString("utf8");
  let path = "";
  let size = -1;
  let at = 0;
  while (at < text.length) {
    const space = text.indexOf(" ", at);
    const len = Number.parseInt(text.slice(at, space), 10);
    if (space < 0 || !(len > 0)) break;
    const record = text.slice(space + 1, at + len - 1);
    const eq = record.indexOf("=");
    const key = record.slice(0, eq);
    if (key === "path") path = record.slice(eq + 1);
    else if (key === "size") size = Number.parseInt(record.slice(eq + 1), 10);
    at += len;
  }
  return { path, size: Number.isSafeInteger(size) ? size : -1 };
}
