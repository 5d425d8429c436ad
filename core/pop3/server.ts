// The proxy's view of one upstream POP3 server connection: send command lines, read status lines
// (capped at maxUpstreamLine, read timeout per reply) and multi-line bodies. It decides nothing.
import type { Channel } from "../net/queue.ts";
import { ByteReader, ReadError, latin1Bytes, lineText } from "./lines.ts";
import { readDeadline } from "../net/reader.ts";
import { concatBytes } from "./dot.ts";

export interface Status {
  ok: boolean;
  /** The whole line as text (without CRLF). */
  line: string;
  raw: Uint8Array;
}

/** A server reply that is neither +OK nor -ERR (nor a SASL "+ " continuation). */
export class ProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ProtocolError";
  }
}

export class ServerConn {
  readonly reader: ByteReader;
  /** Called when reading from the server pauses because the proxy's side is full (a slow client). */
  onPause: (() => void) | null = null;
  /** Called after bytes from the server were buffered (the relay checks that a command asked for them). */
  onData: (() => void) | null = null;

  constructor(readonly ch: Channel, private readonly limits: { maxUpstreamLine: number; upstreamReadTimeout: number }, readerHighWater = 1024 * 1024) {
    this.reader = new ByteReader({
      highWater: readerHighWater,
      onPause: () => { ch.pause("reader"); this.onPause?.(); },
      onResume: () => ch.resume("reader"),
    });
    ch.attach({
      push: (c) => { this.reader.push(c); this.onData?.(); },
      close: (e) => this.reader.close(e),
    });
  }

  /**
   * The greeting and the proxy's own login steps must all be done within ms (upstreamLoginTimeout):
   * past it pending reads fail with a timeout and the connection is dropped.
   */
  startLogin(ms: number): void {
    this.endLogin = readDeadline(this.reader, ms, "the upstream greeting and login", () => this.ch.destroy());
  }

  /** Logged in (or the client logs in itself, at its own pace): only the per-read timeout is left. */
  endLogin: () => void = () => {};

  send(line: string | Uint8Array): void {
    const bytes = typeof line === "string" ? latin1Bytes(line) : line;
    this.ch.out.write(bytes, CRLF);
  }

  /** Next status line. continuation: also accept "+ …" (SASL). Garbage is a ProtocolError. */
  async status(opts: { continuation?: boolean } = {}): Promise<Status> {
    const raw = await this.reader.readLine(this.limits.maxUpstreamLine, this.limits.upstreamReadTimeout);
    const line = lineText(raw);
    if (/^\+OK(\s|$)/i.test(line)) return { ok: true, line, raw };
    if (/^-ERR(\s|$)/i.test(line)) return { ok: false, line, raw };
    if (opts.continuation && /^\+( |$)/.test(line)) return { ok: true, line, raw };
    throw new ProtocolError(`unexpected reply from server: ${JSON.stringify(line.slice(0, 80))}`);
  }

  /** A small multi-line body (CAPA) as lines, capped like single lines. */
  async lines(maxTotal = 64 * 1024): Promise<string[]> {
    const parts: Uint8Array[] = [];
    let size = 0;
    await this.reader.readBody((c) => {
      size += c.length;
      if (size > maxTotal) throw new ReadError("line-too-long", "multi-line reply too long");
      parts.push(c);
    }, this.limits.upstreamReadTimeout);
    return lineText(concatBytes(parts, size)).split(/\r?\n/).filter((l) => l.length > 0);
  }

  close(): void {
    this.ch.end();
  }
}

const CRLF = new Uint8Array([0x0d, 0x0a]);
