// One request to one clamd: connect (unix socket or TCP), send a z-command, read the NUL-ended
// reply. INSTREAM sends the data as <u32 big-endian length><bytes> chunks and one zero-length chunk
// at the end, never before it (an empty chunk ends the stream early: a bypass one client library
// had). The reply is read while sending: clamd answers "INSTREAM size limit exceeded" as soon as
// StreamMaxLength is passed and then resets the connection, so a writer that only reads at the
// end sees nothing but EPIPE.
import type { StreamSource } from "../../scan/engine.ts";
import { formatClamdAddress, type ClamdAddress } from "../../config/engine-address.ts";
import { ServiceConnection, withTimeout } from "./stream.ts";

export { formatClamdAddress, parseClamdAddress, type ClamdAddress } from "../../config/engine-address.ts";

/** Bytes per INSTREAM chunk: clamd reads chunks of any size up to StreamMaxLength; 64 KiB keeps writes small. */
const CHUNK = 64 * 1024;
/** Longest reply accepted (a detection name is short; VERSION is ~60 bytes). */
const MAX_REPLY = 4096;

/**
 * Sends command (e.g. "zPING", "zVERSION", "zINSTREAM") and, for INSTREAM, the data; resolves with
 * the reply without its NUL. Rejects, naming the address, on connect failure, timeout or a
 * connection that closes without a reply.
 */
export async function clamdRequest(address: ClamdAddress, command: string, timeoutMs: number, data?: Uint8Array | StreamSource): Promise<string> {
  const where = formatClamdAddress(address);
  const target = address.kind === "unix" ? { unix: address.path } : { host: address.host, port: address.port };
  let conn: ServiceConnection | null = null;
  const exchange = async () => {
    conn = await ServiceConnection.open(target, where, timeoutMs);
    {
      await conn.write(`${command}\0`);
      if (data) {
        const size = data instanceof Uint8Array ? data.length : data.size;
        for (let at = 0; at < size && !conn.answered;) {
          const piece = data instanceof Uint8Array ? data.subarray(at, Math.min(at + CHUNK, size)) : readPiece(data, at);
          if (piece.length === 0) throw new Error(`${where}: the message ended at ${at} of ${size} bytes`);
          const head = new Uint8Array(4);
          new DataView(head.buffer).setUint32(0, piece.length);
          await conn.write(head);
          await conn.write(piece);
          at += piece.length;
        }
        if (!conn.answered) await conn.write(new Uint8Array(4)); // the one zero-length chunk: the end
      }
      // A reply without its NUL still counts when the connection ends after it (older clamd).
      const reply = await conn.read((b) => { const nul = b.indexOf(0); return nul < 0 ? -1 : nul + 1; }, MAX_REPLY, true);
      return reply.toString("latin1").replace(/\0$/, "");
    }
  };
  try {
    return await withTimeout(exchange(), timeoutMs, `${where}: no answer within ${timeoutMs} ms`);
  } finally {
    (conn as ServiceConnection | null)?.close(); // also a stalled one, cut by the timeout
  }
}

function readPiece(src: StreamSource, at: number): Uint8Array {
  const buf = new Uint8Array(Math.min(CHUNK, src.size - at));
  return buf.subarray(0, src.read(at, buf));
}
