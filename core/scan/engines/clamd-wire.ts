// One request to one clamd: connect (unix socket or TCP), send a z-command, read the NUL-ended
// reply. INSTREAM sends the data as <u32 big-endian length><bytes> chunks and one zero-length chunk
// at the end, never before it (an empty chunk ends the stream early: a bypass one client library
// had). The reply is read while sending: clamd answers "INSTREAM size limit exceeded" as soon as
// StreamMaxLength is passed and then resets the connection, so a writer that only reads at the
// end sees nothing but EPIPE.
import type { Socket } from "bun";
import type { StreamSource } from "../engine.ts";
import { formatClamdAddress, type ClamdAddress } from "../../config/engine-address.ts";

export { formatClamdAddress, parseClamdAddress, type ClamdAddress } from "../../config/engine-address.ts";

export class ClamdWireError extends Error {
  constructor(message: string, readonly kind: "connect" | "timeout" | "protocol" | "closed") {
    super(message);
    this.name = "ClamdWireError";
  }
}

/** Bytes per INSTREAM chunk: clamd reads chunks of any size up to StreamMaxLength; 64 KiB keeps writes small. */
const CHUNK = 64 * 1024;
/** Longest reply accepted (a detection name is short; VERSION is ~60 bytes). */
const MAX_REPLY = 4096;

interface State {
  reply: Uint8Array[];
  replyLength: number;
  done: PromiseWithResolvers<string>;
  drained: (() => void) | null;
  closed: boolean;
}

/**
 * Sends command (e.g. "zPING", "zVERSION", "zINSTREAM") and, for INSTREAM, the data; resolves with
 * the reply without its NUL. Rejects with a ClamdWireError on connect failure, timeout or a
 * connection that closes without a reply.
 */
export async function clamdRequest(address: ClamdAddress, command: string, timeoutMs: number, data?: Uint8Array | StreamSource): Promise<string> {
  const state: State = { reply: [], replyLength: 0, done: Promise.withResolvers<string>(), drained: null, closed: false };
  state.done.promise.catch(() => {}); // awaited below; a late failure after an early throw is not unhandled
  const where = formatClamdAddress(address);
  const handlers = {
    data(_s: Socket<State>, chunk: Uint8Array) {
      state.reply.push(new Uint8Array(chunk));
      state.replyLength += chunk.length;
      const joined = Buffer.concat(state.reply);
      const nul = joined.indexOf(0);
      if (nul >= 0) state.done.resolve(joined.subarray(0, nul).toString("latin1"));
      else if (state.replyLength > MAX_REPLY) state.done.reject(new ClamdWireError(`${where}: reply longer than ${MAX_REPLY} bytes`, "protocol"));
    },
    drain() {
      const d = state.drained;
      state.drained = null;
      d?.();
    },
    close() {
      state.closed = true;
      state.drained?.();
      // A reply without its NUL still counts when the connection ends after it (older clamd).
      const text = Buffer.concat(state.reply).toString("latin1");
      if (text) state.done.resolve(text);
      else state.done.reject(new ClamdWireError(`${where}: connection closed without a reply`, "closed"));
    },
    error(_s: Socket<State>, e: Error) {
      state.done.reject(new ClamdWireError(`${where}: ${e.message}`, "closed"));
    },
    connectError(_s: Socket<State>, e: Error) {
      state.done.reject(new ClamdWireError(`${where}: cannot connect: ${e.message}`, "connect"));
    },
  };
  const timer = setTimeout(() => state.done.reject(new ClamdWireError(`${where}: no answer within ${timeoutMs} ms`, "timeout")), timeoutMs);
  let socket: Socket<State> | null = null;
  try {
    const connecting = address.kind === "unix"
      ? Bun.connect<State>({ unix: address.path, socket: handlers, data: state })
      : Bun.connect<State>({ hostname: address.host, port: address.port, socket: handlers, data: state });
    socket = await Promise.race([connecting, state.done.promise.then(() => null)]);
    if (!socket) return await state.done.promise;
    await send(socket, state, Buffer.from(`${command}\0`, "latin1"));
    if (data) {
      const size = data instanceof Uint8Array ? data.length : data.size;
      for (let at = 0; at < size && !settled(state);) {
        const piece = data instanceof Uint8Array ? data.subarray(at, Math.min(at + CHUNK, size)) : readPiece(data, at);
        if (piece.length === 0) throw new ClamdWireError(`the message ended at ${at} of ${size} bytes`, "protocol");
        const head = new Uint8Array(4);
        new DataView(head.buffer).setUint32(0, piece.length);
        await send(socket, state, head);
        await send(socket, state, piece);
        at += piece.length;
      }
      if (!settled(state)) await send(socket, state, new Uint8Array(4)); // the one zero-length chunk: the end
    }
    return await state.done.promise;
  } catch (e) {
    if (e instanceof ClamdWireError) throw e;
    throw new ClamdWireError(`${where}: ${(e as Error).message}`, "connect");
  } finally {
    clearTimeout(timer);
    socket?.end();
  }
}

function readPiece(src: StreamSource, at: number): Uint8Array {
  const buf = new Uint8Array(Math.min(CHUNK, src.size - at));
  return buf.subarray(0, src.read(at, buf));
}

/** True once the reply (or a failure) is in: nothing more needs sending. */
function settled(state: State): boolean {
  return state.closed || state.replyLength > 0;
}

/** Writes all of bytes, waiting for drain when the socket takes only part (Bun may). */
async function send(socket: Socket<State>, state: State, bytes: Uint8Array): Promise<void> {
  let at = 0;
  while (at < bytes.length) {
    if (state.closed) return;
    const n = socket.write(bytes.subarray(at));
    at += Math.max(0, n);
    if (at < bytes.length) {
      const { promise, resolve } = Promise.withResolvers<void>();
      state.drained = resolve;
      await Promise.race([promise, state.done.promise.then(() => undefined, () => undefined)]);
      if (settled(state)) return;
    }
  }
}
