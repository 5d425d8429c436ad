// The transaction-state relay: client commands go upstream as they come (pipelining), and the
// replies come back strictly in order through one pump. Which replies are multi-line follows from
// the command. RETR/TOP bodies are collected (bounded), filtered (scan + action) and re-stuffed;
// everything else streams through exactly as the server sent it. A body cut short upstream closes
// the client without the final dot.
import type { Channel } from "../net/queue.ts";
import type { Logger } from "../log.ts";
import type { UnscannedPolicy } from "../config/types.ts";
import type { MessageFilter, Refusal } from "../filter/index.ts";
import { messageBuffer, releaseMessageBuffer } from "../filter/buffers.ts";
import { Spool } from "../filter/spool.ts";
import { DotEncoder } from "./dot.ts";
import { filterCapa, multiLine } from "./capa.ts";
import { latin1Bytes } from "./lines.ts";
import { R, type Pop3Reply } from "./replies.ts";
import { ProtocolError, type ServerConn } from "./server.ts";

export type Expect =
  | { kind: "single" }
  | { kind: "multi" }
  | { kind: "capa" }
  | { kind: "quit" }
  | { kind: "message"; msg: string; partial: boolean };

export interface RelayStats {
  messages: number;
  bytes: number;
  detections: number;
}

export interface RelayOptions {
  client: Channel;
  server: ServerConn;
  /** null: relay unscanned (an exclusion applied). */
  filter: MessageFilter | null;
  limits: { maxMessageSize: number; maxSpooledMessageSize: number; upstreamReadTimeout: number; maxUpstreamLine: number };
  /** Per reason; a message over maxSpooledMessageSize follows its "too-large" entry. */
  onUnscanned: UnscannedPolicy;
  /** Where a message over maxMessageSize is spooled to be scanned (spool.ts). */
  spoolDir: string;
  log: Logger;
  stats: RelayStats;
  /** Called on every byte handed to the client (idle tracking). */
  touch: () => void;
}

type Entry = { local: Pop3Reply } | { expect: Expect };

// Commands in flight at once; past this the client's input waits (and its socket is paused).
const MAX_IN_FLIGHT = 64;
// Streamed replies are written in pieces of at least this size (fewer writes, no tiny packets).
const STREAM_PIECE = 64 * 1024;
const CRLF = new Uint8Array([0x0d, 0x0a]);
// A scanned message bigger than this is delivered in slices of this size, one per event-loop turn.
const DELIVER_SLICE = 512 * 1024;

const REFUSAL: Record<Refusal, () => Pop3Reply> = { tempfail: R.scanTempFail, "infected-partial": R.infectedPartial };

/** Thrown when the client must be cut off without completing the reply in progress. */
export class RelayAbort extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RelayAbort";
  }
}

export class Relay {
  private queue: Entry[] = [];
  private wakePump: (() => void) | null = null;
  private roomWaiters: (() => void)[] = [];
  private stopped = false;

  constructor(private readonly o: RelayOptions) {
    // Rare (once per backlog, not per chunk), and it is how a client that stops reading shows up.
    o.server.onPause = () => o.log.debug("upstream read paused: client not reading", { clientQueued: o.client.out.pending, upstreamBuffered: o.server.reader.buffered });
    // Bytes while no command is outstanding would be read as the next command's reply, a step late
    // from then on (an unscanned body could pass as a LIST reply): the pump wakes and ends the session.
    o.server.onData = () => {
      if (this.queue.length === 0 && !this.busy) this.wakePump?.();
    };
  }

  get idle(): boolean { return this.queue.length === 0 && !this.busy; }
  private busy = false;

  /** Sends a client command upstream and records which reply shape to expect. */
  async forward(line: Uint8Array, expect: Expect): Promise<void> {
    while (this.queue.length >= MAX_IN_FLIGHT && !this.stopped) {
      const { promise, resolve } = Promise.withResolvers<void>();
      this.roomWaiters.push(resolve);
      await promise;
    }
    if (this.stopped) return;
    this.o.server.send(line);
    this.push({ expect });
  }

  /** A reply the proxy gives itself, kept in order with the forwarded ones. */
  local(reply: Pop3Reply): void {
    this.push({ local: reply });
  }

  stop(): void {
    this.stopped = true;
    this.wakePump?.();
    for (const w of this.roomWaiters.splice(0)) w();
  }

  /** The pump: resolves after QUIT's reply or when stopped; rejects on an upstream fault. */
  async run(): Promise<void> {
    for (;;) {
      const entry = await this.next();
      if (!entry) return;
      this.busy = true;
      try {
        if ("local" in entry) this.write(entry.local.bytes());
        else {
          await this.o.client.out.room();
          await this.reply(entry.expect);
          if (entry.expect.kind === "quit") return;
        }
      } finally {
        this.busy = false;
      }
    }
  }

  private push(e: Entry): void {
    this.queue.push(e);
    const w = this.wakePump;
    this.wakePump = null;
    w?.();
  }

  private async next(): Promise<Entry | null> {
    while (this.queue.length === 0) {
      if (this.stopped) return null;
      const stray = this.o.server.reader.buffered;
      if (stray > 0) throw new ProtocolError(`the server sent ${stray} bytes no command asked for`);
      const { promise, resolve } = Promise.withResolvers<void>();
      this.wakePump = resolve;
      await promise;
    }
    const e = this.queue.shift()!;
    if (this.queue.length < MAX_IN_FLIGHT) for (const w of this.roomWaiters.splice(0)) w();
    return e;
  }

  private write(...pieces: Uint8Array[]): void {
    this.o.client.out.write(...pieces);
    this.o.touch();
  }

  private async reply(expect: Expect): Promise<void> {
    const { server } = this.o;
    const st = await server.status();
    if (!st.ok || expect.kind === "single" || expect.kind === "quit") {
      this.write(st.raw, CRLF);
      return;
    }
    switch (expect.kind) {
      case "multi": return this.stream(st.raw, false);
      case "capa": {
        this.write(latin1Bytes(multiLine(st.line, filterCapa(await server.lines(), { loggedIn: true, offerStls: false }))));
        return;
      }
      case "message":
        if (!this.o.filter) {
          this.o.stats.messages++;
          return this.stream(st.raw, true);
        }
        return this.message(st.raw, expect);
    }
  }

  /**
   * Relays a multi-line body as it arrives, exactly as the server stuffed and ended it (nothing is
   * changed, so nothing is decoded); pauses while the client's queue is full.
   */
  private async stream(status: Uint8Array, count: boolean): Promise<void> {
    const { client } = this.o;
    this.write(status, CRLF);
    try {
      await this.o.server.reader.relayBody((c) => {
        if (count) this.o.stats.bytes += c.length;
        this.write(c);
        if (client.isClosed) throw new RelayAbort("client went away");
        if (client.out.isFull) return client.out.room();
      }, this.o.limits.upstreamReadTimeout);
    } catch (e) {
      if (e instanceof RelayAbort) throw e;
      // Partial body possibly sent: the only honest end is a closed connection without the dot.
      throw new RelayAbort(`upstream failed mid-body: ${(e as Error).message}`);
    }
  }

  /**
   * RETR/TOP with scanning: collect (bounded), filter on a scan worker, then send the outcome. Past
   * maxMessageSize the same read goes on into a spool file (scanned from there); past
   * maxSpooledMessageSize it is streamed unscanned or skipped, as onUnscanned says.
   */
  private async message(status: Uint8Array, expect: { msg: string; partial: boolean }): Promise<void> {
    const { log, limits } = this.o;
    const max = limits.maxMessageSize;
    const spoolMax = limits.maxSpooledMessageSize;
    const hint = octetsHint(status);
    // Collected into one buffer sized from "+OK n octets" (when given): socket chunks are freed as
    // they arrive instead of being held twice (list + joined copy) at the peak.
    const body = new Collector(Math.min(hint, max), max);
    let size = 0;
    let mode = "collect" as "collect" | "spool" | "stream" | "skip" | "failed";
    let spool: Spool | null = null;
    let streamer: Streamer | null = null;
    // The closures below assign spool, so TypeScript cannot narrow it where they are called.
    const dropSpool = () => {
      (spool as Spool | null)?.remove();
      spool = null;
    };
    // Past the last cap: the bytes so far (held or spooled) and c go on unscanned, or are dropped.
    const overCap = (c: Uint8Array): void | Promise<void> => {
      const held = spool ? null : body.take();
      if (this.o.onUnscanned["too-large"] !== "deliver") {
        log.warn("message too large to scan, refused", { number: expect.msg, onUnscanned: this.o.onUnscanned["too-large"], maxSpooledMessageSize: spoolMax });
        mode = "skip";
        dropSpool();
        return;
      }
      log.warn("message too large to scan, delivered unscanned", { number: expect.msg, maxSpooledMessageSize: spoolMax });
      mode = "stream";
      const s = new Streamer(this, status);
      streamer = s;
      const from = spool;
      spool = null;
      return (async () => {
        // A header line in front keeps the message valid and tells the reader it was not scanned.
        await s.add(latin1Bytes("X-Virus-Status: Unscanned (too-large)\r\n"));
        if (held) await s.add(held);
        if (from) {
          for await (const slice of spoolSlices(from)) await s.add(slice);
          from.remove();
        }
        await s.add(c);
      })();
    };
    const toSpool = (chunks: Uint8Array[]): void => {
      try {
        spool ??= Spool.create(this.o.spoolDir);
        for (const c of chunks) spool.write(c);
      } catch (e) {
        // No room or no right to spool: a temporary failure, never an unscanned pass.
        log.error("message could not be spooled for scanning", { number: expect.msg, error: e });
        mode = "failed";
        dropSpool();
      }
    };
    try {
      await this.o.server.reader.readBody((c) => {
        size += c.length;
        switch (mode) {
          case "collect": {
            if (size <= max) { body.add(c); return; }
            if (size > spoolMax || hint > spoolMax) return overCap(c);
            log.info("message over maxMessageSize: spooled to disk to be scanned", { number: expect.msg, maxMessageSize: max, octets: hint || undefined });
            mode = "spool";
            const held = body.take();
            toSpool([held, c]);
            releaseMessageBuffer(held);
            return;
          }
          case "spool":
            if (size > spoolMax) return overCap(c);
            toSpool([c]);
            return;
          case "stream":
            return streamer!.add(c);
        }
      }, limits.upstreamReadTimeout);
    } catch (e) {
      dropSpool();
      throw new RelayAbort(`upstream failed mid-message: ${(e as Error).message}`);
    }
    this.o.stats.messages++;
    this.o.stats.bytes += size;
    if (mode === "stream") return (streamer as Streamer | null)!.end();
    if (mode === "skip") { this.write(R.tooLarge().bytes()); return; }
    if (mode === "failed") { this.write(R.scanTempFail().bytes()); return; }
    if (spool) return this.spooled(status, spool, expect);
    const raw = body.take();
    const outcome = await this.o.filter!(raw, { msg: expect.msg, partial: expect.partial, log });
    if (outcome.detected) this.o.stats.detections++;
    if (outcome.kind === "refuse") {
      releaseMessageBuffer(raw);
      this.write(REFUSAL[outcome.why]().bytes());
      return;
    }
    await this.deliver(status, raw, outcome.bytes);
    // An unchanged message is sent as views of raw: its buffer is reused once they are written.
    const { out } = this.o.client;
    void out.empty().then(() => releaseMessageBuffer(raw));
  }

  /** A spooled message: filtered from its file, delivered by reading back the original or the copy. */
  private async spooled(status: Uint8Array, spool: Spool, expect: { msg: string; partial: boolean }): Promise<void> {
    const { log } = this.o;
    let copy: Spool | null = null;
    try {
      const outcome = await this.o.filter!(spool, { msg: expect.msg, partial: expect.partial, log });
      if (outcome.detected) this.o.stats.detections++;
      if (outcome.kind === "refuse") {
        this.write(REFUSAL[outcome.why]().bytes());
        return;
      }
      copy = outcome.bytes;
      const out = new Streamer(this, copy === spool ? status : rewriteOctets(status, copy.size));
      for await (const slice of spoolSlices(copy)) {
        await out.add(slice);
        await nextTurn();
      }
      await out.end();
    } finally {
      // Every slice was read into its own buffer: the files can go while the last ones are queued.
      spool.remove();
      copy?.remove();
    }
  }

  /** Sends the filter's outcome for raw with its status line (the octet count fixed if it changed). */
  private async deliver(status: Uint8Array, raw: Uint8Array, bytes: Uint8Array): Promise<void> {
    const statusLine = bytes === raw ? status : rewriteOctets(status, bytes.length);
    if (bytes.length <= DELIVER_SLICE) {
      const enc = new DotEncoder();
      this.write(statusLine, CRLF, ...enc.push(bytes), enc.end());
      return;
    }
    // A big message goes out a slice per turn of the event loop: stuffing and writing 25 MB in
    // one go would hold up every other session for as long (and Bun would copy what the socket
    // cannot take yet).
    const out = new Streamer(this, statusLine);
    for (let at = 0; at < bytes.length; at += DELIVER_SLICE) {
      await out.add(bytes.subarray(at, at + DELIVER_SLICE));
      await nextTurn();
    }
    await out.end();
  }

  /** @internal for Streamer */
  sendPieces(pieces: Uint8Array[]): void { this.write(...pieces); }
  /** @internal */
  get client(): Channel { return this.o.client; }
}

/** Writes a streamed multi-line reply in pieces of STREAM_PIECE, waiting while the client is slow. */
class Streamer {
  private enc = new DotEncoder();
  private pending: Uint8Array[];
  private size: number;

  constructor(private readonly relay: Relay, status: Uint8Array) {
    this.pending = [status, CRLF];
    this.size = status.length + 2;
  }

  add(c: Uint8Array): Promise<void> | void {
    for (const p of this.enc.push(c)) { this.pending.push(p); this.size += p.length; }
    if (this.size >= STREAM_PIECE) return this.flush();
  }

  async addAll(cs: Uint8Array[]): Promise<void> {
    for (const c of cs) await this.add(c);
  }

  async end(): Promise<void> {
    this.pending.push(this.enc.end());
    this.size += 3;
    await this.flush();
  }

  private async flush(): Promise<void> {
    const out = this.relay.client.out;
    this.relay.sendPieces(this.pending);
    this.pending = [];
    this.size = 0;
    if (out.isFull) await out.room();
    if (this.relay.client.isClosed) throw new RelayAbort("client went away");
  }
}

/** A spool's content in DELIVER_SLICE pieces, each in a buffer of its own (queued writes keep them). */
async function* spoolSlices(spool: Spool): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < spool.size;) {
    const slice = new Uint8Array(Math.min(DELIVER_SLICE, spool.size - at));
    const n = spool.read(at, slice);
    if (n === 0) throw new RelayAbort(`spooled message ended at ${at} of ${spool.size} bytes`);
    yield n === slice.length ? slice : slice.subarray(0, n);
    at += n;
  }
}

function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Size hint from "+OK 1234 octets" (RFC 1939 suggests it); 0 when absent. */
function octetsHint(status: Uint8Array): number {
  const m = /^\+OK\s+(\d{1,12})/i.exec(Buffer.from(status).toString("latin1"));
  return m ? Number(m[1]) : 0;
}

/** A growable byte buffer; doubling keeps copies linear. */
class Collector {
  private buf: Uint8Array;
  private len = 0;

  constructor(hint: number, private readonly max: number) {
    // The hint counts the message with CRLF line ends, the unstuffed body is that size or less.
    this.buf = messageBuffer(Math.min(Math.max(hint, 16 * 1024), max));
  }

  add(c: Uint8Array): void {
    if (this.len + c.length > this.buf.length) {
      const next = messageBuffer(Math.max(this.len + c.length, Math.min(this.max, this.buf.length * 2)));
      next.set(this.buf.subarray(0, this.len));
      releaseMessageBuffer(this.buf);
      this.buf = next;
    }
    this.buf.set(c, this.len);
    this.len += c.length;
  }

  /** The bytes so far (a view; the collector is empty afterwards). */
  take(): Uint8Array {
    const out = this.buf.subarray(0, this.len);
    this.buf = new Uint8Array(0);
    this.len = 0;
    return out;
  }
}

/** "+OK 1234 octets" → the size of what is actually sent (clients may check it). */
function rewriteOctets(status: Uint8Array, n: number): Uint8Array {
  const text = Buffer.from(status).toString("latin1");
  const m = /^\+OK\s+\d+(\s+octets.*)?$/i.exec(text);
  if (!m) return status;
  return latin1Bytes(text.replace(/^(\+OK\s+)\d+/i, `$1${n}`));
}
