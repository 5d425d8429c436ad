// Archive fixtures built at test time: zips through zip.js (also password-protected and nested),
// tar and gzip by hand, and zip/gzip bombs that are ~1000x smaller on disk than inflated.
import { constants, deflateRawSync, gzipSync } from "node:zlib";
import { Uint8ArrayReader, Uint8ArrayWriter, ZipWriter, configure } from "@zip.js/zip.js";

configure({ useWebWorkers: false });

export type Content = Uint8Array | string;
export interface ZipEntry { name: string; data: Content; password?: string }

const bytes = (c: Content): Uint8Array => (typeof c === "string" ? new TextEncoder().encode(c) : c);

export async function makeZip(entries: ZipEntry[]): Promise<Uint8Array> {
  const writer = new ZipWriter(new Uint8ArrayWriter());
  for (const e of entries) {
    await writer.add(e.name, new Uint8ArrayReader(bytes(e.data)), e.password ? { password: e.password } : {});
  }
  return writer.close();
}

/** names[0] is the outermost archive's member: nestedZip(["b.zip", "c.zip"], leaf) → zip{b.zip{c.zip{leaf}}}. */
export async function nestedZip(names: string[], leaf: ZipEntry): Promise<Uint8Array> {
  let inner = await makeZip([leaf]);
  for (let i = names.length - 1; i >= 0; i--) inner = await makeZip([{ name: names[i], data: inner }]);
  return inner;
}

export function gzip(data: Content): Uint8Array {
  return gzipSync(bytes(data));
}

export interface TarEntry { name: string; data: Content }

/** A ustar archive; names over 100 bytes get a pax header so readers must honour it. */
export function makeTar(entries: TarEntry[]): Uint8Array {
  const blocks: Uint8Array[] = [];
  for (const e of entries) {
    const data = bytes(e.data);
    if (Buffer.byteLength(e.name) > 100) {
      const record = paxRecord("path", e.name);
      blocks.push(tarHeader("PaxHeader", record.length, "x"), pad(record));
    }
    blocks.push(tarHeader(e.name.slice(0, 100), data.length, "0"), pad(data));
  }
  blocks.push(new Uint8Array(1024));
  return Buffer.concat(blocks);
}

function paxRecord(key: string, value: string): Uint8Array {
  const body = ` ${key}=${value}\n`;
  let len = Buffer.byteLength(body) + 1;
  while (String(len).length + Buffer.byteLength(body) !== len) len++;
  return new TextEncoder().encode(`${len}${body}`);
}

function tarHeader(name: string, size: number, type: string): Uint8Array {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100, "utf8");
  h.write("0000644\0", 100, "latin1");
  h.write("0000000\0", 108, "latin1");
  h.write("0000000\0", 116, "latin1");
  h.write(size.toString(8).padStart(11, "0") + "\0", 124, "latin1");
  h.write("00000000000\0", 136, "latin1");
  h.write(type, 156, "latin1");
  h.write("ustar\0" + "00", 257, "latin1");
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, "0") + "\0 ", 148, "latin1");
  return h;
}

function pad(data: Uint8Array): Uint8Array {
  const rest = data.length % 512;
  return rest ? Buffer.concat([data, new Uint8Array(512 - rest)]) : data;
}

/**
 * Raw deflate of `mb` MiB of zeros, assembled from one full-flushed 1 MiB block repeated (a full
 * flush resets the window, so the copies are independent) and an empty final block. Also returns the CRC.
 */
function zeroDeflate(mb: number): { stream: Uint8Array; crc: number } {
  const zeros = new Uint8Array(1 << 20);
  const block = deflateRawSync(zeros, { level: 9, finishFlush: constants.Z_FULL_FLUSH });
  const parts: Uint8Array[] = [];
  let crc = 0;
  for (let i = 0; i < mb; i++) {
    parts.push(block);
    crc = Bun.hash.crc32(zeros, crc);
  }
  parts.push(Uint8Array.of(0x03, 0x00));
  return { stream: Buffer.concat(parts), crc };
}

/** A zip whose one member inflates to `mb` MiB (≤ 4095) of zeros; ~1 KiB on disk per MiB. */
export function zipBomb(mb: number, name = "bomb.bin", declaredSize?: number): Uint8Array {
  const { stream, crc } = zeroDeflate(mb);
  // declaredSize lets a test lie in the headers, as real bombs do to slip past size checks.
  const size = declaredSize ?? mb * (1 << 20);
  const fname = Buffer.from(name);
  const local = Buffer.alloc(30);
  local.writeUInt32LE(0x04034b50, 0);
  local.writeUInt16LE(20, 4);
  local.writeUInt16LE(8, 8); // deflate
  local.writeUInt32LE(crc >>> 0, 14);
  local.writeUInt32LE(stream.length, 18);
  local.writeUInt32LE(size, 22);
  local.writeUInt16LE(fname.length, 26);
  const central = Buffer.alloc(46);
  central.writeUInt32LE(0x02014b50, 0);
  central.writeUInt16LE(20, 4);
  central.writeUInt16LE(20, 6);
  central.writeUInt16LE(8, 10);
  central.writeUInt32LE(crc >>> 0, 16);
  central.writeUInt32LE(stream.length, 20);
  central.writeUInt32LE(size, 24);
  central.writeUInt16LE(fname.length, 28);
  central.writeUInt32LE(0, 42);
  const cdOffset = local.length + fname.length + stream.length;
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(1, 8);
  end.writeUInt16LE(1, 10);
  end.writeUInt32LE(central.length + fname.length, 12);
  end.writeUInt32LE(cdOffset, 16);
  return Buffer.concat([local, fname, stream, central, fname, end]);
}

/** A valid gzip stream that inflates to `mb` MiB of zeros. */
export function gzipBomb(mb: number): Uint8Array {
  const { stream, crc } = zeroDeflate(mb);
  const header = Uint8Array.of(0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 3);
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(crc >>> 0, 0);
  trailer.writeUInt32LE((mb * (1 << 20)) >>> 0, 4);
  return Buffer.concat([header, stream, trailer]);
}

/** The zip with every member's compression method set to method (12 BZip2, 14 LZMA, 6 Implode), data untouched. */
export function withMethod(zip: Uint8Array, method: number): Uint8Array {
  const b = Buffer.from(zip);
  for (let i = 0; i + 4 <= b.length; i++) {
    if (b[i] !== 0x50 || b[i + 1] !== 0x4b) continue;
    if (b[i + 2] === 3 && b[i + 3] === 4) b.writeUInt16LE(method, i + 8);
    else if (b[i + 2] === 1 && b[i + 3] === 2) b.writeUInt16LE(method, i + 10);
  }
  return b;
}
