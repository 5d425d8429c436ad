// Outgoing byte queue of one socket, and the Channel that ties a Bun socket to it and to a reader.
// Bun's write() may take only part of a buffer and end() after a partial write loses the rest, so
// every write goes through the queue: partial writes are kept, drain writes more, end waits for empty.
// Above the high-water mark the queue reports pressure so the producer (the other socket) pauses.
import type { Socket, SocketHandler, TLSOptions } from "bun";
import { noteReceived } from "./collect-pace.ts";

export interface Sink {
  write(data: Uint8Array): number;
  end(): void;
}

export interface QueueOptions {
  /** Queued bytes above which the queue is "full" (default 1 MiB); room returns below half of it. */
  highWater?: number;
  onFull?: () => void;
  onRelief?: () => void;
  /**
   * Write once per turn of the event loop instead of on every write(): the replies produced in one
   * turn (a FETCH response and its tagged OK, several pipelined replies) go out in one system call,
   * which costs more than joining them. Off for a bare queue, so its writes are seen at once.
   */
  gather?: boolean;
}

// Queued pieces are joined up to this size so one reply is one write (no Nagle/delayed-ACK stalls, no
// split replies); bigger pieces are written as they are.
const COALESCE_LIMIT = 256 * 1024;

/** Shared by every queue: JS runs one write at a time, and a write leaves nothing in it behind. */
let scratch = new Uint8Array(0);

export class SendQueue {
  private items: Uint8Array[] = [];
  private size = 0;
  private ending = false;
  private dead = false;
  private full = false;
  private scheduled = false;
  private roomWaiters: (() => void)[] = [];
  private emptyWaiters: (() => void)[] = [];
  readonly highWater: number;

  constructor(private sink: Sink, private readonly opts: QueueOptions = {}) {
    this.highWater = opts.highWater ?? 1024 * 1024;
  }

  get pending(): number { return this.size; }
  get isFull(): boolean { return this.size > this.highWater; }
  get closed(): boolean { return this.dead || this.ending; }

  /** After a TLS upgrade (or a transform) the same queue writes to the new sink; what waits goes to the old one first. */
  setSink(sink: Sink): void {
    this.flushGathered();
    this.sink = sink;
  }

  /**
   * Queues bytes; they are written now, or with gather at the end of this turn of the event loop.
   * The pieces are not copied: callers never change bytes they wrote. Returns false while over high water.
   */
  write(...pieces: Uint8Array[]): boolean {
    if (this.dead || this.ending) return false;
    const wasEmpty = this.items.length === 0;
    for (const p of pieces) {
      if (p.length === 0) continue;
      this.items.push(p);
      this.size += p.length;
    }
    // Behind bytes the socket has not taken, drain writes next.
    if (wasEmpty && this.items.length > 0) {
      if (!this.opts.gather) this.flush();
      else if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => { if (this.scheduled) this.flush(); });
      }
    }
    this.checkFull();
    return !this.isFull;
  }

  /** Writes what waits for the end of this turn now (before a socket is given up). */
  flushGathered(): void {
    if (this.scheduled) this.flush();
  }

  /** Call from the socket's drain handler. */
  drain(): void {
    this.flush();
  }

  /** Ends the socket once everything queued is written. */
  end(): void {
    if (this.dead || this.ending) return;
    this.ending = true;
    if (this.size === 0) this.finish();
  }

  /** The socket is gone: drop what is queued and release waiters. */
  kill(): void {
    this.dead = true;
    this.items = [];
    this.size = 0;
    this.release();
  }

  /** Resolves when the queue is below half its high-water mark (or the socket is gone). */
  room(): Promise<void> {
    if (this.dead || this.size <= this.highWater / 2) return Promise.resolve();
    const { promise, resolve } = Promise.withResolvers<void>();
    this.roomWaiters.push(resolve);
    return promise;
  }

  /** Resolves when everything queued has been handed to the kernel (or the socket is gone). */
  empty(): Promise<void> {
    if (this.dead || this.size === 0) return Promise.resolve();
    const { promise, resolve } = Promise.withResolvers<void>();
    this.emptyWaiters.push(resolve);
    return promise;
  }

  private flush(): void {
    this.scheduled = false;
    while (this.items.length > 0 && !this.dead) {
      // Small pieces in a row are joined in the scratch buffer and written at once: a fresh buffer for
      // each reply would cost more (page faults) than the copy, and each write is a system call.
      let count = 1;
      let total = this.items[0]!.length;
      while (count < this.items.length && total + this.items[count]!.length <= COALESCE_LIMIT) total += this.items[count++]!.length;
      let head = this.items[0]!;
      if (count > 1) {
        if (scratch.length < total) scratch = new Uint8Array(COALESCE_LIMIT);
        head = scratch.subarray(0, total);
        let at = 0;
        for (let i = 0; i < count; i++) { head.set(this.items[i]!, at); at += this.items[i]!.length; }
      }
      const n = this.sink.write(head);
      if (n < 0) { this.kill(); return; }
      this.size -= Math.max(0, n);
      if (n < head.length) {
        // The rest stays first in line; out of the scratch it must own its memory.
        this.items.splice(0, count, count > 1 ? head.slice(n) : head.subarray(n));
        break;
      }
      this.items.splice(0, count);
    }
    this.checkFull();
    if (this.size === 0) {
      const w = this.emptyWaiters;
      this.emptyWaiters = [];
      for (const r of w) r();
      if (this.ending) this.finish();
    }
  }

  private finish(): void {
    try { this.sink.end(); } catch { /* already closed */ }
    this.dead = true;
    this.release();
  }

  private checkFull(): void {
    if (!this.full && this.size > this.highWater) { this.full = true; this.opts.onFull?.(); }
    if (this.size <= this.highWater / 2) {
      if (this.full) { this.full = false; this.opts.onRelief?.(); }
      const w = this.roomWaiters;
      this.roomWaiters = [];
      for (const r of w) r();
    }
  }

  private release(): void {
    const w = [...this.roomWaiters, ...this.emptyWaiters];
    this.roomWaiters = [];
    this.emptyWaiters = [];
    for (const r of w) r();
  }
}

export interface ChannelInfo {
  remoteAddress: string;
  remotePort: number;
  localAddress: string;
  localPort: number;
}

/** Where a channel's incoming bytes go (a protocol reader). */
export interface Inbound {
  push(chunk: Uint8Array): void;
  close(reason?: Error): void;
}

/** A byte transform between a channel and its socket (COMPRESS=DEFLATE: core/net/deflate.ts). */
export interface ByteTransform {
  /** The sink the send queue writes to from now on, in place of the socket. */
  wrapSink(socket: Sink): Sink;
  /** Bytes from the socket; the transform hands its output to Channel.deliver. */
  input(chunk: Uint8Array): void;
  /** Every pause reason is gone: go on with input held back while the reader was full. */
  resumed(): void;
}

/**
 * One connection: a Bun socket, its inbound consumer and its send queue (outgoing). Reading is
 * paused for any of several reasons at once (reader full, other side's queue full) and resumes
 * only when none is left. After STLS only the TLS socket's events count.
 */
export class Channel {
  readonly out: SendQueue;
  private inbound: Inbound | null = null;
  private early: Uint8Array[] = [];
  socket!: Socket<Channel>;
  bound = false;
  info: ChannelInfo = { remoteAddress: "", remotePort: 0, localAddress: "", localPort: 0 };
  tls: boolean;
  private pauses = new Set<string>();
  private closedFlag = false;
  private readonly closedP = Promise.withResolvers<void>();
  private handshakeWaiter: ((r: { ok: boolean; error: Error | null }) => void) | null = null;

  constructor(opts: { tls: boolean; queueHighWater?: number }) {
    this.tls = opts.tls;
    this.out = new SendQueue(DEAD_SINK, { highWater: opts.queueHighWater, gather: true });
  }

  /** Binds the socket (from its open handler, so no event is missed). */
  bind(socket: Socket<Channel>): void {
    this.socket = socket;
    this.bound = true;
    this.info = {
      // Copied now: Bun forgets them by the time "close" fires. IPv4-mapped v6 is shown as plain v4.
      remoteAddress: stripMapped(socket.remoteAddress ?? ""),
      remotePort: (socket as unknown as { remotePort?: number }).remotePort ?? 0,
      localAddress: stripMapped((socket as unknown as { localAddress?: string }).localAddress ?? ""),
      localPort: socket.localPort ?? 0,
    };
    socket.data = this;
    this.out.setSink(socket);
    try { socket.setNoDelay(true); } catch { /* not every socket kind has it */ }
  }

  /** Connects the consumer of incoming bytes; bytes that came before are handed over first. */
  attach(inbound: Inbound): void {
    this.inbound = inbound;
    for (const c of this.early) inbound.push(c);
    this.early = [];
    if (this.closedFlag) inbound.close();
  }

  get closed(): Promise<void> { return this.closedP.promise; }
  get isClosed(): boolean { return this.closedFlag; }

  pause(reason: string): void {
    if (this.pauses.size === 0 && !this.closedFlag && this.bound) this.socket.pause();
    this.pauses.add(reason);
  }

  resume(reason: string): void {
    if (!this.pauses.delete(reason)) return;
    if (this.pauses.size === 0 && !this.closedFlag && this.bound) this.socket.resume();
    if (this.pauses.size === 0) this.transform?.resumed();
  }

  /** Sends what is queued, then closes. */
  end(): void { this.out.end(); }

  /** Closes now, dropping anything queued (used when a message must not be completed). */
  destroy(): void {
    this.out.flushGathered(); // what was written before still goes, as if it had been written at once
    this.out.kill();
    try { this.socket.terminate(); } catch { /* gone */ }
    this.onClose();
  }

  /** Upgrades to TLS (server or client side). Resolves after the handshake; rejects if it failed. */
  startTls(tls: TLSOptions, verify: boolean): Promise<void> {
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    this.handshakeWaiter = ({ ok, error }) => {
      if (ok || !verify) resolve();
      else reject(error ?? new Error("TLS handshake failed"));
    };
    const old = this.socket;
    // Bun keeps feeding ciphertext to the old handlers: the stale-socket check in HANDLERS ignores it.
    const [, tlsSocket] = old.upgradeTLS<Channel>({ data: this, tls, socket: HANDLERS });
    this.socket = tlsSocket;
    this.out.setSink(tlsSocket);
    this.tls = true;
    try { tlsSocket.setNoDelay(true); } catch { /* ignore */ }
    return promise;
  }

  /** Resolves with the result of the first TLS handshake (implicit TLS connections). */
  handshake(): Promise<{ ok: boolean; error: Error | null }> {
    const { promise, resolve } = Promise.withResolvers<{ ok: boolean; error: Error | null }>();
    this.handshakeWaiter = resolve;
    return promise;
  }

  // ---- byte transform: once set, socket bytes pass through it both ways (never undone; no STARTTLS after it)
  private transform: ByteTransform | null = null;

  setTransform(t: ByteTransform): void {
    this.transform = t;
    this.out.setSink(t.wrapSink(this.socket));
  }

  /** Hands bytes to the reader as if they had come from the socket (a transform's output). */
  deliver(chunk: Uint8Array): void {
    if (this.inbound) this.inbound.push(chunk);
    else this.early.push(chunk);
  }

  get isPaused(): boolean { return this.pauses.size > 0; }

  // ---- socket events; the read budget (TURN_READ_BYTES): the turn last counted, what arrived in it
  private turn = -1;
  private readThisTurn = 0;
  private turnPaused = false;

  /** @internal socket events */
  onData(chunk: Uint8Array): void {
    const turn = currentTurn();
    if (turn !== this.turn) { this.turn = turn; this.readThisTurn = 0; }
    this.readThisTurn += chunk.length;
    noteReceived(chunk.length);
    if (this.readThisTurn >= TURN_READ_BYTES && !this.turnPaused) {
      // Bun reads a fast socket again and again (11 reads of 512 KB measured) before timers or any
      // other socket get a turn: one server sending 25 MB held up every session for 40 ms at a
      // time. Past TURN_READ_BYTES in one turn this socket waits for the next.
      this.turnPaused = true;
      this.pause("turn");
      setImmediate(() => {
        this.turnPaused = false;
        this.resume("turn");
      });
    }
    if (this.transform) this.transform.input(chunk);
    else this.deliver(chunk);
  }
  onDrain(): void { this.out.drain(); }
  onHandshake(ok: boolean, error: Error | null): void {
    const w = this.handshakeWaiter;
    this.handshakeWaiter = null;
    w?.({ ok, error });
  }
  onClose(error?: Error): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    this.out.kill();
    this.inbound?.close(error);
    const w = this.handshakeWaiter;
    this.handshakeWaiter = null;
    w?.({ ok: false, error: error ?? new Error("connection closed during TLS handshake") });
    this.closedP.resolve();
  }
}

/**
 * What one socket may deliver in one turn of the event loop before it waits for the next: Bun
 * reads 512 KiB at a time, so a busy socket gets one full read per turn, like every other socket.
 * (1 MiB let another session wait 18–28 ms behind a 25 MB download; this, 4–8 ms.)
 */
const TURN_READ_BYTES = 512 * 1024;

/** Counts turns of the event loop, for the read budget: a tick is scheduled only while sockets deliver. */
let turnCount = 0;
let tickScheduled = false;
function currentTurn(): number {
  if (!tickScheduled) {
    tickScheduled = true;
    setImmediate(() => { turnCount++; tickScheduled = false; });
  }
  return turnCount;
}

const DEAD_SINK: Sink = { write: () => -1, end() {} };

function current(socket: Socket<Channel>): Channel | null {
  const ch = socket.data;
  return ch && ch.socket === socket ? ch : null;
}

/** Socket handlers shared by every Channel; events of a socket replaced by STLS are ignored. */
export const HANDLERS: SocketHandler<Channel> = {
  binaryType: "uint8array",
  open(socket) {
    const ch = socket.data;
    if (ch instanceof Channel && !ch.bound) ch.bind(socket);
  },
  data(socket, chunk) { current(socket)?.onData(chunk as Uint8Array); },
  drain(socket) { current(socket)?.onDrain(); },
  handshake(socket, ok, error) { current(socket)?.onHandshake(ok, error); },
  close(socket, error) { current(socket)?.onClose(error); },
  end(socket) { current(socket)?.onClose(); },
  error(socket, error) { current(socket)?.onClose(error); },
};

export function stripMapped(addr: string): string {
  return addr.startsWith("::ffff:") && addr.includes(".") ? addr.slice(7) : addr;
}
