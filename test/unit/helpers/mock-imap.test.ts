// Self-test of the scripted IMAP server: a plain Bun socket client checks each documented behaviour and
// fault on the wire, so tests of the proxy can trust what the mock sends.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startMockImap } from "../../helpers/mock-imap.ts";
import { makeTestCa, type TestCa } from "../../helpers/test-ca.ts";

/** A raw IMAP client: bytes in, bytes out, nothing interpreted. */
class Wire {
  private buf = Buffer.alloc(0);
  private waiter: (() => void) | null = null;
  private sock!: Socket<undefined>;
  private upgraded = false;
  isClosed = false;

  static async connect(port: number, tls?: { ca: string }): Promise<Wire> {
    const w = new Wire();
    // Half-open, so finish() can send FIN and still read whatever the server says before it closes.
    w.sock = await Bun.connect({ hostname: "127.0.0.1", port, allowHalfOpen: true, tls: tls && { ca: tls.ca, serverName: "localhost" }, socket: w.handlers(false) });
    return w;
  }

  private handlers(tls: boolean) {
    const stale = () => this.upgraded && !tls;
    const wake = () => { const w = this.waiter; this.waiter = null; w?.(); };
    return {
      data: (_s: Socket<undefined>, chunk: Buffer) => { if (!stale()) { this.buf = Buffer.concat([this.buf, chunk]); wake(); } },
      close: () => { if (!stale()) { this.isClosed = true; wake(); } },
      end: () => { if (!stale()) { this.isClosed = true; wake(); } },
      error: () => {},
    };
  }

  send(text: string): void { this.sock.write(text); }

  /** Waits until `find` locates the end of what is wanted in the buffer, then takes it. */
  private async take(find: (b: Buffer) => number): Promise<Buffer> {
    for (;;) {
      const end = find(this.buf);
      if (end >= 0) {
        const out = this.buf.subarray(0, end);
        this.buf = this.buf.subarray(end);
        return out;
      }
      if (this.isClosed) throw new Error(`closed; buffered ${JSON.stringify(this.buf.toString("latin1"))}`);
      await new Promise<void>((r) => (this.waiter = r));
    }
  }

  async line(): Promise<string> {
    const l = await this.take((b) => (b.indexOf("\r\n") < 0 ? -1 : b.indexOf("\r\n") + 2));
    return l.toString("latin1").slice(0, -2);
  }

  /** Everything up to and including the tagged completion line of `tag`. */
  async tagged(tag: string): Promise<string> {
    const find = (b: Buffer) => {
      const at = b.subarray(0, tag.length + 1).toString("latin1") === `${tag} ` ? 0 : b.indexOf(`\r\n${tag} `);
      if (at < 0) return -1;
      const nl = b.indexOf("\r\n", at + 2);
      return nl < 0 ? -1 : nl + 2;
    };
    return (await this.take(find)).toString("latin1");
  }

  /** Everything until the server closes. */
  async rest(): Promise<Buffer> {
    return this.take((b) => (this.isClosed ? b.length : -1));
  }

  async command(tag: string, text: string): Promise<string> {
    this.send(`${tag} ${text}\r\n`);
    return this.tagged(tag);
  }

  async startTls(ca: string): Promise<void> {
    this.upgraded = true;
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    const [, tls] = this.sock.upgradeTLS({
      data: undefined,
      tls: { ca, serverName: "localhost" },
      socket: { ...this.handlers(true), handshake: (_s, ok, e) => (ok ? resolve() : reject(e)) },
    });
    this.sock = tls;
    await promise;
  }

  /** Sends FIN; the mock's socket closes on it, after anything it wrote for the bytes before. */
  finish(): void { this.sock.shutdown(); }

  close(): void { this.sock.end(); }
}

const MULTI = [
  "From: a@example.org", "Subject: parts", "MIME-Version: 1.0", 'Content-Type: multipart/mixed; boundary="BB"', "",
  "preamble", "--BB", "Content-Type: text/plain", "", "part one", "--BB", "Content-Type: application/octet-stream",
  "Content-Transfer-Encoding: base64", "", "aGVsbG8=", "--BB--", "",
].join("\r\n");
const MULTI_HEAD = MULTI.slice(0, MULTI.indexOf("\r\n\r\n") + 4);
const ONE = "Subject: one\r\n\r\nbody one\r\n";
const THREE = "Subject: three\r\n\r\nbody three\r\n";

async function loggedIn(port: number): Promise<Wire> {
  const w = await Wire.connect(port);
  await w.line();
  expect(await w.command("l", "LOGIN alice secret")).toStartWith("l OK");
  return w;
}

describe("mock IMAP server", () => {
  let ca: TestCa;
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "mock-imap-"));
    ca = await makeTestCa(dir);
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  test("greeting, CAPABILITY, LOGIN with quoted and literal arguments, AUTHENTICATE PLAIN both ways", async () => {
    await using mock = await startMockImap();
    const w = await Wire.connect(mock.port);
    expect(await w.line()).toBe("* OK [CAPABILITY IMAP4rev1 LITERAL+ IDLE UIDPLUS AUTH=PLAIN] mock IMAP ready.");
    expect(await w.command("a", "CAPABILITY")).toBe("* CAPABILITY IMAP4rev1 LITERAL+ IDLE UIDPLUS AUTH=PLAIN\r\na OK Capability completed.\r\n");
    expect(await w.command("b", 'LOGIN "alice" "wrong"')).toBe("b NO [AUTHENTICATIONFAILED] Authentication failed.\r\n");
    w.send("c LOGIN {5}\r\n");
    expect(await w.line()).toBe("+ OK");
    w.send("alice {6+}\r\nsecret\r\n");
    expect(await w.tagged("c")).toBe("c OK [CAPABILITY IMAP4rev1 LITERAL+ IDLE UIDPLUS] Logged in as alice.\r\n");
    expect(mock.commands[0]).toEqual(["a CAPABILITY", 'b LOGIN "alice" "wrong"', "c LOGIN {5}\r\nalice {6+}\r\nsecret"]);

    const plain = Buffer.from("\0alice\0secret").toString("base64");
    const v = await Wire.connect(mock.port);
    await v.line();
    expect(await v.command("a", `AUTHENTICATE PLAIN ${plain}`)).toStartWith("a OK [CAPABILITY");
    const u = await Wire.connect(mock.port);
    await u.line();
    u.send("a AUTHENTICATE PLAIN\r\n");
    expect(await u.line()).toBe("+ ");
    u.send(`${plain}\r\n`);
    expect(await u.tagged("a")).toStartWith("a OK [CAPABILITY");
    expect(await u.command("b", "XYZZY")).toBe("b BAD Error in IMAP command XYZZY: Unknown command.\r\n");
    expect(mock.connections()).toBe(3);
    for (const c of [w, v, u]) c.close();
  });

  test("SELECT, FETCH in Dovecot's item order, \\Seen set and reported by a non-PEEK body fetch", async () => {
    await using mock = await startMockImap({
      messages: [ONE, { body: MULTI, uid: 7, bodyStructure: '("text" "plain" NIL NIL NIL "7bit" 1 1 NIL NIL NIL NIL)' }, { body: THREE, uid: 9, flags: ["\\Seen"] }],
      uidValidity: 42,
    });
    const w = await loggedIn(mock.port);
    expect(await w.command("s", "SELECT INBOX")).toBe(
      "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted.\r\n" +
      "* 3 EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 42] UIDs valid\r\n* OK [UIDNEXT 10] Predicted next UID\r\ns OK [READ-WRITE] Select completed.\r\n",
    );
    expect(await w.command("a", "FETCH 1:* (RFC822.SIZE BODY.PEEK[HEADER] UID)")).toBe(
      "* 1 FETCH (RFC822.SIZE 26 UID 1 BODY[HEADER] {16}\r\nSubject: one\r\n\r\n)\r\n" +
      `* 2 FETCH (RFC822.SIZE ${MULTI.length} UID 7 BODY[HEADER] {${MULTI_HEAD.length}}\r\n${MULTI_HEAD})\r\n` +
      "* 3 FETCH (RFC822.SIZE 30 UID 9 BODY[HEADER] {18}\r\nSubject: three\r\n\r\n)\r\na OK Fetch completed.\r\n",
    );
    expect(await w.command("b", "UID FETCH 1 (BODY[TEXT] INTERNALDATE)")).toBe(
      '* 1 FETCH (UID 1 INTERNALDATE "01-Jan-2026 12:00:00 +0000" FLAGS (\\Seen) BODY[TEXT] {10}\r\nbody one\r\n)\r\nb OK Fetch completed.\r\n',
    );
    expect(mock.flags(1)).toEqual(["\\Seen"]);
    expect(await w.command("c", "FETCH 2 (BODYSTRUCTURE BODY.PEEK[2] BODY.PEEK[1]<2.3> BODY.PEEK[]<0.4> BODY.PEEK[]<999.4> FLAGS)")).toBe(
      '* 2 FETCH (FLAGS () BODYSTRUCTURE ("text" "plain" NIL NIL NIL "7bit" 1 1 NIL NIL NIL NIL) BODY[2] {8}\r\naGVsbG8= BODY[1]<2> {3}\r\nrt  BODY[]<0> {4}\r\nFrom BODY[]<999> {0}\r\n)\r\nc OK Fetch completed.\r\n',
    );
    expect(await w.command("d", "FETCH 2,3 RFC822.PEEK")).toContain("* 3 FETCH (RFC822 {30}\r\n");
    expect(await w.command("e", "FETCH * (UID FLAGS)")).toBe("* 3 FETCH (UID 9 FLAGS (\\Seen))\r\ne OK Fetch completed.\r\n");
    expect(await w.command("f", "FETCH 4 UID")).toBe("f BAD Error in IMAP command FETCH: Invalid messageset\r\n");
    expect(await w.command("g", "EXAMINE INBOX")).toEndWith("g OK [READ-ONLY] Examine completed.\r\n");
    expect(await w.command("h", "FETCH 2 (RFC822)")).toStartWith(`* 2 FETCH (RFC822 {${MULTI.length}}\r\n`);
    expect(mock.flags(7)).toEqual([]);
    w.close();
  });

  test("IDLE: pushIdleFetch sends an unsolicited FETCH with the body; idleFetch does it unasked; DONE ends it", async () => {
    await using mock = await startMockImap({ messages: [ONE, THREE] });
    const w = await loggedIn(mock.port);
    await w.command("s", "SELECT INBOX");
    w.send("i IDLE\r\n");
    expect(await w.line()).toBe("+ idling");
    await mock.whenIdle();
    expect(mock.pushIdleFetch(2)).toBe(1);
    w.send("DONE\r\n");
    expect(await w.tagged("i")).toBe(`* 2 FETCH (UID 2 BODY[] {${THREE.length}}\r\n${THREE})\r\ni OK Idle completed.\r\n`);

    for (const afterMs of [undefined, 5]) {
      await using auto = await startMockImap({ messages: [ONE], faults: { idleFetch: { uid: 1, afterMs } } });
      const v = await loggedIn(auto.port);
      v.send("i IDLE\r\n");
      expect(await v.line()).toBe("+ idling");
      expect(await v.line()).toBe(`* 1 FETCH (UID 1 BODY[] {${ONE.length}}`);
      v.close();
    }
    w.close();
  });

  test("noGreeting accepts and never sends a byte; PREAUTH greets already logged in", async () => {
    await using silent = await startMockImap({ faults: { noGreeting: true } });
    const w = await Wire.connect(silent.port);
    w.send("a CAPABILITY\r\n");
    w.finish();
    expect((await w.rest()).length).toBe(0);
    expect(silent.connections()).toBe(1);

    await using pre = await startMockImap({ messages: [ONE], faults: { preauth: true } });
    const v = await Wire.connect(pre.port);
    expect(await v.line()).toBe("* PREAUTH [CAPABILITY IMAP4rev1 LITERAL+ IDLE UIDPLUS] Logged in as alice.");
    expect(await v.command("s", "SELECT INBOX")).toEndWith("s OK [READ-WRITE] Select completed.\r\n");
    v.close();
  });

  test("cutLiteral, literalLonger, literalShorter, unsolicitedFetchDuring", async () => {
    await using cut = await startMockImap({ messages: [ONE, THREE], faults: { cutLiteral: { uid: 2, after: 5 } } });
    const w = await loggedIn(cut.port);
    await w.command("s", "SELECT INBOX");
    w.send("a FETCH 1:2 (UID BODY.PEEK[])\r\n");
    expect((await w.rest()).toString("latin1")).toBe(`* 1 FETCH (UID 1 BODY[] {${ONE.length}}\r\n${ONE})\r\n* 2 FETCH (UID 2 BODY[] {${THREE.length}}\r\n${THREE.slice(0, 5)}`);

    await using longer = await startMockImap({ messages: [ONE], faults: { literalLonger: { uid: 1, extra: 3 } } });
    const v = await loggedIn(longer.port);
    await v.command("s", "SELECT INBOX");
    expect(await v.command("a", "FETCH 1 BODY.PEEK[]")).toBe(`* 1 FETCH (BODY[] {${ONE.length}}\r\n${ONE}XXX)\r\na OK Fetch completed.\r\n`);

    await using shorter = await startMockImap({ messages: [ONE], faults: { literalShorter: { uid: 1, missing: 4 } } });
    const u = await loggedIn(shorter.port);
    await u.command("s", "SELECT INBOX");
    expect(await u.command("a", "FETCH 1 BODY.PEEK[]")).toBe(`* 1 FETCH (BODY[] {${ONE.length}}\r\n${ONE.slice(0, -4)})\r\na OK Fetch completed.\r\n`);

    await using noisy = await startMockImap({ messages: [ONE, ONE, THREE], faults: { unsolicitedFetchDuring: "FETCH" } });
    const t = await loggedIn(noisy.port);
    await t.command("s", "SELECT INBOX");
    expect(await t.command("a", "UID FETCH 1:2 FLAGS")).toBe(
      "* 1 FETCH (UID 1 FLAGS ())\r\n* 3 FETCH (UID 3 FLAGS (\\Flagged))\r\n* 2 FETCH (UID 2 FLAGS ())\r\na OK Fetch completed.\r\n",
    );
    for (const c of [v, u, t]) c.close();
  });

  test("STARTTLS: bytes sent with the command are dropped, afterStartTlsOk rides the OK, TLS then works", async () => {
    await using mock = await startMockImap({ tls: { cert: ca.certPem, key: ca.keyPem }, faults: { afterStartTlsOk: "* OK injected\r\n" } });
    const w = await Wire.connect(mock.port);
    expect(await w.line()).toContain("STARTTLS");
    w.send("a STARTTLS\r\nb NOOP\r\n");
    expect(await w.line()).toBe("a OK Begin TLS negotiation now.");
    expect(await w.line()).toBe("* OK injected");
    await w.startTls(ca.caPem);
    expect(await w.command("c", "CAPABILITY")).toBe("* CAPABILITY IMAP4rev1 LITERAL+ IDLE UIDPLUS AUTH=PLAIN\r\nc OK Capability completed.\r\n");
    expect(mock.commands[0]).toEqual(["a STARTTLS", "c CAPABILITY"]);
    w.close();
  });

  test("implicit TLS greets inside TLS and offers no STARTTLS", async () => {
    await using mock = await startMockImap({ tls: { cert: ca.certPem, key: ca.keyPem }, implicitTls: true });
    const w = await Wire.connect(mock.port, { ca: ca.caPem });
    expect(await w.line()).toBe("* OK [CAPABILITY IMAP4rev1 LITERAL+ IDLE UIDPLUS AUTH=PLAIN] mock IMAP ready.");
    w.close();
  });

  test("hugeLiteral: 256 MiB generated as the socket drains, RFC822.SIZE agrees, the backlog stays one chunk", async () => {
    const size = 256 * 1024 * 1024;
    await using mock = await startMockImap({ faults: { hugeLiteral: { uid: 5, size } } });
    const w = await loggedIn(mock.port);
    await w.command("s", "SELECT INBOX");
    expect(await w.command("a", "UID FETCH 5 RFC822.SIZE")).toBe(`* 1 FETCH (UID 5 RFC822.SIZE ${size})\r\na OK Fetch completed.\r\n`);
    // Count the literal on the fly instead of keeping it: this client must not hold 256 MiB either.
    const { promise, resolve } = Promise.withResolvers<{ total: number; head: string; tail: string; maxBacklog: number }>();
    let total = 0;
    let head = "";
    let tail = "";
    let maxBacklog = 0;
    const counter = await Bun.connect({
      hostname: "127.0.0.1",
      port: mock.port,
      socket: {
        data(_s, chunk) {
          total += chunk.length;
          if (head.length < 1000) head += chunk.subarray(0, 1000 - head.length).toString("latin1");
          tail = (tail + chunk.subarray(-80).toString("latin1")).slice(-80);
          maxBacklog = Math.max(maxBacklog, mock.backlog());
          if (tail.endsWith("\r\nb OK Fetch completed.\r\n")) resolve({ total, head, tail, maxBacklog });
        },
      },
    });
    counter.write("l LOGIN alice secret\r\ns SELECT INBOX\r\nb FETCH 1 BODY.PEEK[]\r\n");
    const got = await promise;
    const start = got.head.indexOf("* 1 FETCH (BODY[] {");
    expect(start).toBeGreaterThan(0);
    expect(got.head.slice(start)).toStartWith(`* 1 FETCH (BODY[] {${size}}\r\nFrom: huge@example.org\r\n`);
    expect(got.tail).toEndWith("0123456789\r\nhuge literal \r\n)\r\nb OK Fetch completed.\r\n");
    const prelude = got.head.slice(0, start).length + `* 1 FETCH (BODY[] {${size}}\r\n`.length;
    expect(got.total).toBe(prelude + size + ")\r\nb OK Fetch completed.\r\n".length);
    expect(got.maxBacklog).toBeLessThanOrEqual(64 * 1024);
    counter.end();
    w.close();
  });
});
