// The proxy's view of one upstream IMAP connection: send command text (with literals), read segments
// (capped, read timeout per response) and run the proxy's own small commands before the relay owns
// the connection. It decides nothing.
import type { Channel } from "../net/queue.ts";
import { readDeadline } from "../net/reader.ts";
import { ImapReader, ReadError, latin1Bytes, segmentText, type Segment } from "./wire.ts";

/** A server response that breaks the protocol (the session ends as an upstream fault). */
export class ImapProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ImapProtocolError";
  }
}

export interface ServerLimits {
  maxUpstreamLine: number;
  upstreamReadTimeout: number;
}

/** A complete response: its segments' text and the literals between them (small responses only). */
export interface Response {
  texts: string[];
  literals: Uint8Array[];
}

export interface Tagged {
  status: "OK" | "NO" | "BAD";
  /** The whole tagged line. */
  line: string;
  untagged: Response[];
}

// Literals inside responses to the proxy's own commands (CAPABILITY, LOGIN, COMPRESS) are tiny; a
// server that sends more is refused rather than buffered.
const MAX_OWN_LITERAL = 64 * 1024;
const CRLF = new Uint8Array([0x0d, 0x0a]);

export class ImapServerConn {
  readonly reader: ImapReader;
  private nextTag = 1;
  /** Called when reading from the server pauses because the proxy's side is full (a slow client). */
  onPause: (() => void) | null = null;

  constructor(readonly ch: Channel, readonly limits: ServerLimits, readerHighWater = 1024 * 1024) {
    this.reader = new ImapReader({
      highWater: readerHighWater,
      onPause: () => { ch.pause("reader"); this.onPause?.(); },
      onResume: () => ch.resume("reader"),
    });
    ch.attach(this.reader);
  }

  /** A fresh tag for the proxy's own commands; the prefix keeps them apart from any client's tags. */
  tag(): string {
    return `ms${this.nextTag++}`;
  }

  /** Longest response line accepted: BODYSTRUCTURE of a many-part message can be long, so at least 1 MiB. */
  get maxLine(): number {
    return Math.max(this.limits.maxUpstreamLine, 1024 * 1024);
  }

  send(...pieces: (string | Uint8Array)[]): void {
    this.ch.out.write(...pieces.map((p) => (typeof p === "string" ? latin1Bytes(p) : p)), CRLF);
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

  readSegment(timeoutMs = this.limits.upstreamReadTimeout): Promise<Segment> {
    return this.reader.readSegment(this.maxLine, timeoutMs);
  }

  /** Reads one whole response with its (small) literals. */
  async readResponse(timeoutMs?: number): Promise<Response> {
    const texts: string[] = [];
    const literals: Uint8Array[] = [];
    for (;;) {
      const seg = await this.readSegment(timeoutMs);
      texts.push(segmentText(seg));
      if (!seg.literal) return { texts, literals };
      if (seg.literal.size > MAX_OWN_LITERAL) throw new ImapProtocolError(`literal of ${seg.literal.size} bytes in a reply to the proxy's own command`);
      literals.push(await this.reader.readBytes(seg.literal.size, this.limits.upstreamReadTimeout));
    }
  }

  /**
   * Runs one command of the proxy's own: sends it (literals as `{n+}` or synchronizing `{n}`, waiting
   * for "+"), collects untagged responses, returns the tagged one.
   */
  async command(text: string, literals: Uint8Array[] = []): Promise<Tagged> {
    const tag = this.tag();
    const pieces = `${tag} ${text}`.split(/(?<=\{\d+\+?\})/);
    const untagged: Response[] = [];
    for (let i = 0; i < pieces.length; i++) {
      const piece = pieces[i]!;
      this.send(piece);
      const lit = literals[i];
      if (!lit) break;
      if (!piece.endsWith("+}")) {
        // Synchronizing literal: wait for the server's go-ahead (or its refusal).
        for (;;) {
          const r = await this.readResponse();
          const first = r.texts[0]!;
          if (first.startsWith("+")) break;
          if (first.startsWith(`${tag} `)) return tagged(first, untagged);
          untagged.push(r);
        }
      }
      this.ch.out.write(lit);
    }
    for (;;) {
      const r = await this.readResponse();
      const first = r.texts[0]!;
      if (first.startsWith(`${tag} `)) return tagged(first, untagged);
      if (first.startsWith("+")) throw new ImapProtocolError("unexpected continuation request");
      untagged.push(r);
    }
  }

  close(): void {
    this.ch.end();
  }
}

function tagged(line: string, untagged: Response[]): Tagged {
  const status = /^\S+ (OK|NO|BAD)\b/i.exec(line)?.[1]?.toUpperCase();
  if (!status) throw new ImapProtocolError(`unexpected tagged response: ${JSON.stringify(line.slice(0, 80))}`);
  return { status: status as Tagged["status"], line, untagged };
}

/** True when e is a failure to read from the server (closed, timed out, garbage). */
export function isReadFault(e: unknown): boolean {
  return e instanceof ReadError || e instanceof ImapProtocolError;
}
