// COMPRESS=DEFLATE on a Channel against a peer whose deflate side is written here with node:zlib's
// streams (so both ends are not the same code): lines both ways, random splits, 20 MB each way with a
// consumer that holds back, an inflate bomb, a corrupt stream, and the same over TLS.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import zlib from "node:zlib";
import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Socket } from "bun";
import { Channel, SendQueue, type Inbound } from "../../../core/net/queue.ts";
import { connectUpstream, type Trust } from "../../../core/net/upstream.ts";
import { CompressionError, deflateAvailable, startCompression } from "../../../core/net/deflate.ts";
import { pseudoRandom } from "../../helpers/messages.ts";
import { makeTestCa, type TestCa } from "../../helpers/test-ca.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const SYNC = zlib.constants.Z_SYNC_FLUSH;
const sha = (parts: Uint8Array[]) => { const h = createHash("sha256"); for (const p of parts) h.update(p); return h.digest("hex"); };
/** One turn of the event loop: a consumer that is slower than the socket, without timing anything. */
const turn = () => new Promise<void>((r) => setImmediate(r));

/** The channel's reader in these tests: buffers, pauses the channel above highWater, records its peak. */
class Collector implements Inbound {
  private chunks: Uint8Array[] = [];
  size = 0;
  peak = 0;
  error: Error | null = null;
  private ended = false;
  private wake: (() => void) | null = null;

  constructor(private readonly ch: Channel, private readonly highWater = 1024 * 1024) {}

  push(c: Uint8Array): void {
    this.chunks.push(c);
    this.size += c.length;
    this.peak = Math.max(this.peak, this.size);
    if (this.size > this.highWater) this.ch.pause("reader");
    this.poke();
  }

  close(reason?: Error): void {
    this.ended = true;
    this.error = reason ?? null;
    this.poke();
  }

  /** Everything buffered, taken out (what a session hands to startCompression). */
  takeAll(): Uint8Array[] {
    const out = this.chunks;
    this.chunks = [];
    this.size = 0;
    this.ch.resume("reader");
    return out;
  }

  async line(): Promise<string> {
    for (;;) {
      const all = Buffer.concat(this.chunks);
      const nl = all.indexOf(0x0a);
      if (nl >= 0) {
        this.chunks = nl + 1 < all.length ? [all.subarray(nl + 1)] : [];
        this.size = all.length - nl - 1;
        this.relieve();
        return dec.decode(all.subarray(0, nl + 1)).replace(/\r?\n$/, "");
      }
      await this.more();
    }
  }

  /** Exactly n bytes, handed to sink a chunk at a time; `slow` yields to the event loop after each. */
  async bytes(n: number, sink: (c: Uint8Array) => void, slow = false): Promise<void> {
    while (n > 0) {
      if (this.chunks.length === 0) { await this.more(); continue; }
      let c = this.chunks.shift()!;
      if (c.length > n) { this.chunks.unshift(c.subarray(n)); c = c.subarray(0, n); }
      this.size -= c.length;
      n -= c.length;
      this.relieve();
      sink(c);
      if (slow) await turn();
    }
  }

  private relieve(): void {
    if (this.size <= this.highWater / 2) this.ch.resume("reader");
  }

  private more(): Promise<void> {
    if (this.ended) return Promise.reject(this.error ?? new Error("closed"));
    const { promise, resolve } = Promise.withResolvers<void>();
    this.wake = resolve;
    return promise;
  }

  private poke(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }
}

/** A raw-deflate stream made by node:zlib's stream object, one sync flush per piece. */
async function deflatePieces(pieces: Uint8Array[]): Promise<Uint8Array> {
  const d = zlib.createDeflateRaw();
  const out: Uint8Array[] = [];
  d.on("data", (b: Uint8Array) => out.push(b));
  for (const p of pieces) {
    d.write(p);
    await new Promise<void>((r) => d.flush(SYNC, () => r()));
  }
  d.close();
  return Buffer.concat(out);
}

interface PeerEvents {
  /** Compressed bytes the peer received after COMPRESS, and what they inflated to. */
  wireIn: number;
  plainIn: number;
  /** Times the peer's own send queue went over its high-water mark (the client stopped reading). */
  fullCount: number;
  full: PromiseWithResolvers<void>;
  closed: PromiseWithResolvers<void>;
  socket: Socket<PeerConn>;
}

/**
 * A minimal IMAP-like peer. Plain until "X COMPRESS DEFLATE", answered with its OK and, in the same
 * write, a first compressed line. Then, compressed: "ECHO text" → "* ECHO text"; "SEND n" → n bytes;
 * "RECV n" + n bytes → "* GOT <sha256>"; "CLEARTEXT" → an uncompressed line (injection); "CORRUPT" → bytes
 * no inflater accepts.
 */
function startPeer(tls?: TestCa) {
  const events: PeerEvents[] = [];
  const server = Bun.listen<PeerConn>({
    hostname: "127.0.0.1",
    port: 0,
    tls: tls ? { cert: tls.certPem, key: tls.keyPem } : undefined,
    socket: {
      open(socket) {
        const ev: PeerEvents = { wireIn: 0, plainIn: 0, fullCount: 0, full: Promise.withResolvers(), closed: Promise.withResolvers(), socket };
        events.push(ev);
        socket.data = peerConn(socket, ev);
      },
      data(socket, chunk) { socket.data.onData(chunk as Uint8Array); },
      drain(socket) { socket.data.q.drain(); },
      close(socket) { socket.data.ev.closed.resolve(); },
      error(socket) { socket.data.ev.closed.resolve(); },
    },
  });
  return { port: server.port, events, stop: () => server.stop(true) };
}

interface PeerConn { q: SendQueue; ev: PeerEvents; onData(chunk: Uint8Array): void }

function peerConn(socket: Socket<PeerConn>, ev: PeerEvents): PeerConn {
  const q = new SendQueue(socket, { highWater: 256 * 1024, onFull: () => { ev.fullCount++; ev.full.resolve(); } });
  let deflater: zlib.DeflateRaw | null = null;
  let inflater: zlib.InflateRaw | null = null;
  let plain: Uint8Array = new Uint8Array(0);
  let receiving: { left: number; hash: ReturnType<typeof createHash> } | null = null;
  const sendCompressed = async (b: Uint8Array) => {
    deflater!.write(b);
    await new Promise<void>((r) => deflater!.flush(SYNC, () => r()));
  };
  const sendPayload = async (n: number) => {
    const data = pseudoRandom(n, 99);
    for (let at = 0; at < n; at += 64 * 1024) {
      await new Promise<void>((r) => deflater!.write(data.subarray(at, at + 64 * 1024), () => r()));
      if (q.isFull) await q.room();
    }
    await new Promise<void>((r) => deflater!.flush(SYNC, () => r()));
  };
  const onPlain = (b: Uint8Array) => {
    ev.plainIn += b.length;
    plain = Buffer.concat([plain, b]);
    for (;;) {
      if (receiving) {
        const take = Math.min(receiving.left, plain.length);
        receiving.hash.update(plain.subarray(0, take));
        plain = plain.subarray(take);
        receiving.left -= take;
        if (receiving.left > 0) return;
        void sendCompressed(enc.encode(`* GOT ${receiving.hash.digest("hex")}\r\n`));
        receiving = null;
      }
      const nl = plain.indexOf(0x0a);
      if (nl < 0) return;
      const line = dec.decode(plain.subarray(0, nl)).replace(/\r$/, "");
      plain = plain.subarray(nl + 1);
      const [verb, arg = ""] = line.split(/ (.*)/s);
      if (verb === "ECHO") void sendCompressed(enc.encode(`* ECHO ${arg}\r\n`));
      else if (verb === "SEND") void sendPayload(Number(arg));
      else if (verb === "RECV") receiving = { left: Number(arg), hash: createHash("sha256") };
      else if (verb === "CLEARTEXT") q.write(enc.encode("* 1 EXISTS\r\n"));
      else if (verb === "CORRUPT") q.write(new Uint8Array([0xff, 0xff, 0xff, 0xff]));
    }
  };
  q.write(enc.encode("* OK peer ready\r\n"));
  return {
    q,
    ev,
    onData(chunk) {
      if (inflater) { ev.wireIn += chunk.length; inflater.write(chunk); return; }
      if (!dec.decode(chunk).startsWith("X COMPRESS DEFLATE")) return;
      deflater = zlib.createDeflateRaw();
      inflater = zlib.createInflateRaw();
      inflater.on("data", onPlain);
      inflater.on("error", () => socket.end());
      // The OK and the first compressed bytes leave in one write: the client finds them in one packet.
      // (A separate stream ended by a sync flush; the persistent deflater goes on from that byte boundary.)
      const first = zlib.deflateRawSync(enc.encode("* COMPRESSED hello\r\n"), { finishFlush: SYNC });
      q.write(enc.encode("X OK DEFLATE active\r\n"), first);
      deflater.on("data", (b: Uint8Array) => q.write(b));
    },
  };
}

let ca: TestCa;
let caDir: string;
beforeAll(async () => {
  caDir = await mkdtemp(join(tmpdir(), "mailsentry-deflate-"));
  ca = await makeTestCa(caDir);
});
afterAll(async () => { await rm(caDir, { recursive: true, force: true }); });

/** Connects, logs nothing in, switches on compression the way the IMAP session does. */
async function compressedClient(port: number, o: { tls?: TestCa; highWater?: number; queueHighWater?: number } = {}) {
  const trust: Trust = { ca: o.tls ? [o.tls.caPem] : [], insecureHosts: [] };
  const ch = await connectUpstream({ host: "127.0.0.1", ip: "127.0.0.1", port, implicitTls: !!o.tls, trust, timeoutMs: 5000, queueHighWater: o.queueHighWater });
  const reader = new Collector(ch, o.highWater);
  ch.attach(reader);
  expect(await reader.line()).toBe("* OK peer ready");
  ch.out.write(enc.encode("X COMPRESS DEFLATE\r\n"));
  expect(await reader.line()).toBe("X OK DEFLATE active");
  const stats = startCompression(ch, reader.takeAll());
  return { ch, reader, stats };
}

describe("COMPRESS=DEFLATE on a channel", () => {
  test("this runtime offers the synchronous zlib handle the transform relies on", () => {
    expect(deflateAvailable()).toBe(true);
  });

  for (const tls of [false, true]) {
    test(`lines go both ways at once, one reply per command${tls ? " (over TLS)" : ""}`, async () => {
      const peer = startPeer(tls ? ca : undefined);
      try {
        const { ch, reader, stats } = await compressedClient(peer.port, { tls: tls ? ca : undefined });
        // Compressed bytes that came in the same packet as the OK were inflated first.
        expect(await reader.line()).toBe("* COMPRESSED hello");
        // Lock-step: a sender or receiver that waited for more data would hang here.
        const got: string[] = [];
        for (let i = 0; i < 200; i++) {
          ch.out.write(enc.encode(`ECHO a${i} NOOP ${"x".repeat(i)}\r\n`));
          got.push(await reader.line());
        }
        expect(got).toEqual(Array.from({ length: 200 }, (_, i) => `* ECHO a${i} NOOP ${"x".repeat(i)}`));
        const ev = peer.events[0]!;
        expect(ev.plainIn).toBe(stats.plainOut);
        expect(ev.wireIn).toBe(stats.wireOut);
        expect(stats.wireOut).toBeLessThan(stats.plainOut);
        expect(ch.tls).toBe(tls);
        ch.end();
        await ev.closed.promise;
      } finally {
        peer.stop();
      }
    });
  }

  for (const attack of ["CORRUPT", "CLEARTEXT"]) {
    test(`${attack === "CORRUPT" ? "a corrupt stream" : "cleartext after the OK"} closes the channel with a CompressionError`, async () => {
      const peer = startPeer();
      try {
        const { ch, reader } = await compressedClient(peer.port);
        expect(await reader.line()).toBe("* COMPRESSED hello");
        ch.out.write(enc.encode(`${attack}\r\n`));
        const err = await reader.line().then((l) => new Error(`read a line: ${l}`), (e: Error) => e);
        expect(err).toBeInstanceOf(CompressionError);
        await ch.closed;
        await peer.events[0]!.closed.promise;
      } finally {
        peer.stop();
      }
    });
  }

  test("20 MB from the server to a reader that holds back: the socket pauses, the buffer stays bounded", async () => {
    const peer = startPeer();
    try {
      const highWater = 1024 * 1024;
      const { ch, reader, stats } = await compressedClient(peer.port, { highWater });
      expect(await reader.line()).toBe("* COMPRESSED hello");
      const n = 20 * 1024 * 1024;
      ch.out.write(enc.encode(`SEND ${n}\r\n`));
      // Read nothing until the server's own queue is full: the kernel buffers and our reader are.
      await peer.events[0]!.full.promise;
      expect(ch.isPaused).toBe(true);
      expect(reader.size).toBeLessThanOrEqual(highWater + 64 * 1024);
      const parts: Uint8Array[] = [];
      await reader.bytes(n, (c) => parts.push(c.slice()), true);
      expect(sha(parts)).toBe(sha([pseudoRandom(n, 99)]));
      expect(reader.peak).toBeLessThanOrEqual(highWater + 64 * 1024);
      expect(stats.plainIn).toBeGreaterThanOrEqual(n);
      ch.end();
    } finally {
      peer.stop();
    }
  });

  test("20 MB to a server that stops reading: the producer is paused by the queue, not swallowed by the compressor", async () => {
    const peer = startPeer();
    try {
      const queueHighWater = 1024 * 1024;
      const { ch, reader } = await compressedClient(peer.port, { queueHighWater });
      expect(await reader.line()).toBe("* COMPRESSED hello");
      const ev = peer.events[0]!;
      const n = 20 * 1024 * 1024;
      const data = pseudoRandom(n, 5);
      ch.out.write(enc.encode(`RECV ${n}\r\n`));
      ev.socket!.pause();
      let waits = 0;
      let peakPending = 0;
      let at = 0;
      for (; at < n; at += 64 * 1024) {
        const more = ch.out.write(data.subarray(at, at + 64 * 1024));
        peakPending = Math.max(peakPending, ch.out.pending);
        if (!more) {
          // The queue still holds what the kernel has not taken, compressed or not.
          if (waits === 0) { expect(ch.out.isFull).toBe(true); ev.socket!.resume(); }
          waits++;
          await ch.out.room();
        }
      }
      expect(waits).toBeGreaterThan(0);
      expect(peakPending).toBeLessThanOrEqual(queueHighWater + 64 * 1024);
      expect(await reader.line()).toBe(`* GOT ${sha([data])}`);
      ch.end();
    } finally {
      peer.stop();
    }
  });
});

describe("inflating socket bytes (fed straight into an unconnected channel)", () => {
  /** A channel with no socket: onData stands in for the socket's data events. */
  function detached(highWater = 1024 * 1024) {
    const ch = new Channel({ tls: false });
    const reader = new Collector(ch, highWater);
    ch.attach(reader);
    startCompression(ch);
    return { ch, reader };
  }

  const text = enc.encode(Array.from({ length: 4000 }, (_, i) => `* ${i} FETCH (UID ${i} FLAGS (\\Seen) RFC822.SIZE ${i * 37})\r\n`).join(""));

  test("any split of the compressed stream gives the same bytes, down to one byte at a time", async () => {
    const pieces = [text.subarray(0, 1000), text.subarray(1000, 50_000), text.subarray(50_000)];
    const stream = await deflatePieces(pieces);
    let seed = 12345;
    const rand = (n: number) => { seed = (seed * 1103515245 + 12345) >>> 0; return 1 + (seed % n); };
    for (const maxPiece of [1, 7, 300, 70_000]) {
      const { ch, reader } = detached();
      for (let at = 0; at < stream.length;) {
        const len = maxPiece === 1 ? 1 : rand(maxPiece);
        ch.onData(stream.subarray(at, at + len));
        at += len;
      }
      const got: Uint8Array[] = [];
      await reader.bytes(text.length, (c) => got.push(c.slice()));
      expect(Buffer.concat(got).equals(text)).toBe(true);
      expect(reader.size).toBe(0);
    }
  });

  test("an inflate bomb stops at the reader's high-water mark until the reader takes more", async () => {
    const highWater = 1024 * 1024;
    const n = 64 * 1024 * 1024;
    const bomb = zlib.deflateRawSync(new Uint8Array(n), { finishFlush: SYNC });
    expect(bomb.length).toBeLessThan(n / 500);
    const { ch, reader } = detached(highWater);
    for (let at = 0; at < bomb.length; at += 16 * 1024) ch.onData(bomb.subarray(at, at + 16 * 1024));
    expect(ch.isPaused).toBe(true);
    expect(reader.size).toBeLessThanOrEqual(highWater + 64 * 1024);
    let total = 0;
    let nonZero = 0;
    await reader.bytes(n, (c) => { total += c.length; if (c.some((b) => b !== 0)) nonZero++; }, true);
    expect(total).toBe(n);
    expect(nonZero).toBe(0);
    expect(reader.peak).toBeLessThanOrEqual(highWater + 64 * 1024);
  });

  test("bytes after the end of the compressed stream close the channel", async () => {
    const { ch, reader } = detached();
    const ended = zlib.deflateRawSync(enc.encode("* OK last\r\n"));
    ch.onData(Buffer.concat([ended, enc.encode("* 1 EXISTS\r\n")]));
    expect(await reader.line()).toBe("* OK last");
    await ch.closed;
    expect(reader.error).toBeInstanceOf(CompressionError);
  });

  test("plaintext still queued at the switch is refused", () => {
    const ch = new Channel({ tls: false });
    ch.out.setSink({ write: () => 0, end() {} });
    ch.out.write(enc.encode("a NOOP\r\n"));
    expect(() => startCompression(ch)).toThrow(/still queued/);
  });
});
