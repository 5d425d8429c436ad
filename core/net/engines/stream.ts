// One request/response connection to a scanning service (clamd, ICAP): connect by unix socket, TCP
// or TLS, write with backpressure (Bun's write may take part of a buffer), and read replies as they
// come, also while still sending, since a service may answer early (clamd's size limit, ICAP's 204
// to a preview). Every failure names the service's address.
import type { Socket } from "bun";

export type StreamTarget = { unix: string } | { host: string; port: number; tls?: boolean };

export class ServiceConnection {
  private buf = Buffer.alloc(0);
  private wake: (() => void) | null = null;
  private drained: (() => void) | null = null;
  private closed = false;
  private failure: Error | null = null;

  private constructor(private readonly socket: Socket<ServiceConnection>, readonly where: string) {}

  /** Connects within timeoutMs; where names the service in every error. */
  static async open(target: StreamTarget, where: string, timeoutMs: number): Promise<ServiceConnection> {
    const handlers = {
      data(s: Socket<ServiceConnection>, chunk: Uint8Array) { s.data?.receive(chunk); },
      drain(s: Socket<ServiceConnection>) { s.data?.onDrain(); },
      close(s: Socket<ServiceConnection>) { s.data?.onClose(null); },
      error(s: Socket<ServiceConnection>, e: Error) { s.data?.onClose(e); },
    };
    const data = undefined as unknown as ServiceConnection;
    const connecting = "unix" in target
      ? Bun.connect<ServiceConnection>({ unix: target.unix, socket: handlers, data })
      : Bun.connect<ServiceConnection>({ hostname: target.host, port: target.port, tls: target.tls ? { serverName: target.host } : undefined, socket: handlers, data });
    const socket = await withTimeout(connecting, timeoutMs, `${where}: cannot connect within ${timeoutMs} ms`).catch((e: Error) => {
      throw new Error(e.message.startsWith(where) ? e.message : `${where}: cannot connect: ${e.message}`);
    });
    const conn = new ServiceConnection(socket, where);
    socket.data = conn;
    return conn;
  }

  private receive(chunk: Uint8Array): void {
    this.buf = Buffer.concat([this.buf, chunk]);
    this.wake?.();
  }

  private onDrain(): void {
    const d = this.drained;
    this.drained = null;
    d?.();
  }

  private onClose(e: Error | null): void {
    this.closed = true;
    this.failure ??= e;
    this.wake?.();
    this.onDrain();
  }

  /** The service has sent something (or closed): a sender can stop, its answer is in. */
  get answered(): boolean {
    return this.buf.length > 0 || this.closed;
  }

  /** Writes all of bytes; stops quietly once the service answered (it needs no more). */
  async write(bytes: Uint8Array | string): Promise<void> {
    const b = typeof bytes === "string" ? Buffer.from(bytes, "latin1") : bytes;
    let at = 0;
    while (at < b.length) {
      if (this.closed) {
        if (this.buf.length > 0) return; // answered, then closed (clamd after its size limit)
        throw new Error(`${this.where}: connection closed while sending${this.failure ? `: ${this.failure.message}` : ""}`);
      }
      at += Math.max(0, this.socket.write(b.subarray(at)));
      if (at < b.length) await new Promise<void>((r) => { this.drained = r; });
    }
  }

  /**
   * Waits until end(buffered) finds the end of a reply (its length, with the terminator), and
   * returns it; at most max bytes are buffered. A connection that closes first fails, unless
   * atClose accepts what came (older clamd ends a reply by closing).
   */
  async read(end: (b: Buffer) => number, max: number, atClose = false): Promise<Buffer> {
    for (;;) {
      const n = end(this.buf);
      if (n >= 0) {
        const out = this.buf.subarray(0, n);
        this.buf = this.buf.subarray(n);
        return out;
      }
      if (this.buf.length > max) throw new Error(`${this.where}: reply longer than ${max} bytes`);
      if (this.closed) {
        if (atClose && this.buf.length > 0) { const out = this.buf; this.buf = Buffer.alloc(0); return out; }
        throw new Error(`${this.where}: connection closed without a reply${this.failure ? `: ${this.failure.message}` : ""}`);
      }
      await new Promise<void>((r) => { this.wake = r; });
      this.wake = null;
    }
  }

  close(): void {
    this.socket.end();
  }
}

export function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const t = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(message)), ms); });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}
