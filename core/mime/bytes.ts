// Byte helpers shared by the MIME parser and decoders: Buffer views without copies, line ends.

const LF = 0x0a;
const CR = 0x0d;

/** A Buffer over the same memory (no copy), for native indexOf/toString. */
export function asBuffer(buf: Uint8Array): Buffer {
  return Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
}

/** end moved back over the line end (LF or CRLF) that closes [start, end), if any. */
export function trimEol(buf: Uint8Array, start: number, end: number): number {
  if (end > start && buf[end - 1] === LF) end--;
  if (end > start && buf[end - 1] === CR) end--;
  return end;
}
