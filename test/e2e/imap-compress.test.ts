// COMPRESS=DEFLATE against a real Dovecot (imap_zlib): an upstream Channel logs in, switches on
// compression, and fetches a 2 MB text message byte-identical, with far fewer bytes on the wire, in
// plain IMAP and over implicit TLS. A counting relay in front of Dovecot measures the wire. Through the
// proxy, a loopback server is compressed for only when upstreamCompress is "always".
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createServer, connect, type Server } from "node:net";
import type { Channel, Inbound } from "../../core/net/queue.ts";
import { connectUpstream } from "../../core/net/upstream.ts";
import { deflateAvailable, startCompression } from "../../core/net/deflate.ts";
import { have } from "../helpers/clients.ts";
import { startDovecot, type Dovecot } from "../helpers/dovecot.ts";
import { logObjects, startProxy } from "../helpers/proxy.ts";
import { bodiesOf, imaplib } from "../helpers/imap-clients.ts";

const ready = have("dovecot");
const enc = new TextEncoder();

/** About `size` bytes of plain-text mail with CRLF line ends, the same every run. */
function textMessage(size: number): Uint8Array {
  const words = ("quarterly report attached please review the figures before thursday meeting budget " +
    "forecast revenue customer invoice delivery schedule project milestone regards thanks team update " +
    "contract renewal pricing discount shipment warehouse inventory approval deadline").split(" ");
  let s = 7;
  const next = () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return s; };
  const lines = ["From: Alice <alice@example.org>", "To: Bob <bob@example.org>", "Subject: Q3 figures",
    "Message-ID: <compress-test@example.org>", "Date: Mon, 1 Dec 2025 10:00:00 +0000", "Content-Type: text/plain; charset=utf-8", ""];
  let total = lines.join("\r\n").length;
  while (total < size) {
    let line = `${next() % 10000}.`;
    while (line.length < 70) line += " " + words[next() % words.length];
    lines.push(line);
    total += line.length + 2;
  }
  return enc.encode(lines.join("\r\n") + "\r\n");
}

/** Forwards loopback connections to Dovecot and counts the bytes each way (the real wire). */
function countingRelay(target: number): Promise<{ port: number; fromServer: () => number; server: Server }> {
  let fromServer = 0;
  const server = createServer((client) => {
    const up = connect(target, "127.0.0.1");
    up.on("data", (d) => { fromServer += d.length; });
    client.pipe(up);
    up.pipe(client);
    client.on("error", () => up.destroy());
    up.on("error", () => client.destroy());
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => {
    resolve({ port: (server.address() as { port: number }).port, fromServer: () => fromServer, server });
  }));
}

/** Just enough of an IMAP reader: lines, and the exact bytes of a literal. */
class Reader implements Inbound {
  private buf: Uint8Array[] = [];
  private ended: Error | null = null;
  private wake: (() => void) | null = null;
  push(c: Uint8Array): void { this.buf.push(c); this.wake?.(); }
  close(reason?: Error): void { this.ended = reason ?? new Error("closed"); this.wake?.(); }
  takeAll(): Uint8Array[] { const b = this.buf; this.buf = []; return b; }

  private async fill(enough: (all: Buffer) => number): Promise<Uint8Array> {
    for (;;) {
      const all = Buffer.concat(this.buf);
      const n = enough(all);
      if (n >= 0) { this.buf = n < all.length ? [all.subarray(n)] : []; return all.subarray(0, n); }
      if (this.ended) throw this.ended;
      await new Promise<void>((r) => (this.wake = r));
      this.wake = null;
    }
  }
  async line(): Promise<string> {
    const l = await this.fill((all) => { const i = all.indexOf(0x0a); return i < 0 ? -1 : i + 1; });
    return Buffer.from(l).toString("latin1").replace(/\r\n$/, "");
  }
  bytes(n: number): Promise<Uint8Array> { return this.fill((all) => (all.length >= n ? n : -1)); }
  /** Lines up to and including the tagged reply of `tag`. */
  async untilTagged(tag: string): Promise<string[]> {
    const out: string[] = [];
    for (;;) {
      const l = await this.line();
      out.push(l);
      if (l.startsWith(`${tag} `)) return out;
    }
  }
}

function send(ch: Channel, line: string): void { ch.out.write(enc.encode(line + "\r\n")); }

describe.skipIf(!ready)("COMPRESS=DEFLATE with Dovecot", () => {
  let dc: Dovecot;
  const message = textMessage(2 * 1024 * 1024);

  beforeAll(async () => {
    dc = await startDovecot();
    await dc.seed("alice", [message]);
  });
  afterAll(async () => { await dc?.stop(); });

  for (const tls of [false, true]) {
    test(`a 2 MB fetch arrives byte-identical and compressed${tls ? " (over implicit TLS)" : ""}`, async () => {
      expect(deflateAvailable()).toBe(true);
      const relay = await countingRelay(tls ? dc.ports.imaps : dc.ports.imap);
      try {
        const ch = await connectUpstream({
          host: "127.0.0.1", ip: "127.0.0.1", port: relay.port, implicitTls: tls,
          trust: { ca: [dc.caPem], insecureHosts: [] }, timeoutMs: 5000,
        });
        const r = new Reader();
        ch.attach(r);
        expect(await r.line()).toStartWith("* OK");
        send(ch, "a1 LOGIN alice alice-secret");
        expect((await r.untilTagged("a1")).at(-1)).toStartWith("a1 OK");
        send(ch, "a2 CAPABILITY");
        const caps = (await r.untilTagged("a2")).find((l) => l.startsWith("* CAPABILITY")) ?? "";
        // Debian's Dovecot offers it only with imap_zlib loaded (test/helpers/dovecot.ts does that).
        expect(caps.split(" ")).toContain("COMPRESS=DEFLATE");
        send(ch, "a3 COMPRESS DEFLATE");
        expect(await r.line()).toStartWith("a3 OK");
        const stats = startCompression(ch, r.takeAll());
        const wireBefore = relay.fromServer();

        send(ch, "a4 SELECT INBOX");
        expect((await r.untilTagged("a4")).at(-1)).toStartWith("a4 OK");
        send(ch, "a5 UID FETCH 1 (BODY.PEEK[])");
        const head = await r.line();
        const m = /^\* 1 FETCH \(.*BODY\[\] \{(\d+)\}$/.exec(head);
        expect(m).not.toBeNull();
        const body = await r.bytes(Number(m![1]));
        expect((await r.untilTagged("a5")).at(-1)).toStartWith("a5 OK");
        expect(body.length).toBe(message.length);
        expect(Buffer.from(body).equals(message)).toBe(true);

        send(ch, "a6 LOGOUT");
        expect((await r.untilTagged("a6")).at(-1)).toStartWith("a6 OK");
        await ch.closed;
        const wire = relay.fromServer() - wireBefore;
        // Text mail: the compressed download is a fraction of the message (TLS adds only framing).
        expect(wire).toBeLessThan(message.length / 3);
        if (!tls) expect(stats.wireIn).toBe(wire);
        expect(stats.plainIn).toBeGreaterThan(message.length);
      } finally {
        relay.server.close();
      }
    });
  }
});

// The proxy's own choice: Dovecot on loopback is not worth compressing for (it triples download time),
// unless the configuration says "always" (a loopback tunnel to a far server). Either way the client
// gets the same bytes.
describe.skipIf(!ready || !have("python3"))("upstreamCompress through the proxy", () => {
  let dc: Dovecot;
  const message = textMessage(512 * 1024);

  beforeAll(async () => {
    dc = await startDovecot();
    await dc.seed("alice", [message]);
  });
  afterAll(async () => { await dc?.stop(); });

  for (const setting of [true, "always"] as const) {
    test(`upstreamCompress ${JSON.stringify(setting)} to a loopback server: ${setting === true ? "not compressed" : "compressed"}, same bytes`, async () => {
      await using proxy = await startProxy({ allowedUpstreamPorts: [dc.ports.imap], upstreamTls: "off", upstreamCompress: setting }, { env: {} });
      const r = await imaplib({ host: "127.0.0.1", port: proxy.ports.imap, mode: "plain", user: `alice/127.0.0.1:${dc.ports.imap}`, password: "alice-secret", uids: [1] }, "whole");
      expect(Buffer.from(bodiesOf(r)[0]!).equals(Buffer.from(message))).toBe(true);
      const login = logObjects(proxy.logs).find((l) => l.msg === "logged in");
      expect(login?.upstreamCompress).toBe(setting === "always");
    });
  }
});
