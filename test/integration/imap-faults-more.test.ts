// More upstream faults through the IMAP proxy, against the scripted server: literals longer or shorter
// than announced, bytes injected after the server's STARTTLS OK, commands pipelined past the client's
// STARTTLS, PREAUTH on fixed listeners with and without required TLS, a 1 GB literal (bounded memory,
// withheld or streamed whole), unsolicited FETCH responses inside a body FETCH, and a cut ENVELOPE.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EICAR_TEXT } from "../helpers/eicar.ts";
import { startMockImap } from "../helpers/mock-imap.ts";
import { freePort, logObjects, startProxy, startProxyProcess, type ConfigOverrides } from "../helpers/proxy.ts";
import { makeTestCa, type TestCa } from "../helpers/test-ca.ts";

/** A raw IMAP client: lines and exact byte counts, literals counted without being kept when asked. */
class Wire {
  private chunks: Buffer[] = [];
  private size = 0;
  private waiter: (() => void) | null = null;
  private sock!: Socket<undefined>;
  private upgraded = false;
  /** Bytes still to be counted and dropped as they arrive (a literal too big to keep). */
  private skipLeft = 0;
  private skipDone: (() => void) | null = null;
  private onSkipped: ((c: Buffer) => void) | null = null;
  isClosed = false;

  static async connect(port: number): Promise<Wire> {
    const w = new Wire();
    w.sock = await Bun.connect({ hostname: "127.0.0.1", port, socket: w.handlers(false) });
    return w;
  }

  private handlers(tls: boolean) {
    const stale = () => this.upgraded && !tls;
    return {
      data: (_s: Socket<undefined>, chunk: Buffer) => { if (!stale()) this.push(chunk); },
      close: () => { if (!stale()) { this.isClosed = true; this.wake(); } },
      end: () => { if (!stale()) { this.isClosed = true; this.wake(); } },
      error: () => {},
    };
  }

  private push(chunk: Buffer): void {
    if (this.skipLeft > 0) {
      const n = Math.min(this.skipLeft, chunk.length);
      this.onSkipped?.(chunk.subarray(0, n));
      this.skipLeft -= n;
      chunk = chunk.subarray(n);
      if (this.skipLeft === 0) this.skipDone?.();
    }
    if (chunk.length) { this.chunks.push(chunk); this.size += chunk.length; }
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  private async more(): Promise<void> {
    if (this.isClosed) throw new Error(`connection closed; buffered: ${JSON.stringify(this.peek().slice(0, 300))}`);
    await new Promise<void>((r) => { this.waiter = r; });
  }

  private peek(): string { return Buffer.concat(this.chunks).toString("latin1"); }

  private take(n: number): Buffer {
    const all = Buffer.concat(this.chunks);
    this.chunks = n < all.length ? [all.subarray(n)] : [];
    this.size -= n;
    return all.subarray(0, n);
  }

  send(text: string): void { this.sock.write(text); }

  /** The next line without CRLF. */
  async line(): Promise<string> {
    for (;;) {
      const nl = this.chunks.length ? Buffer.concat(this.chunks).indexOf("\r\n") : -1;
      if (nl >= 0) return this.take(nl + 2).subarray(0, nl).toString("latin1");
      await this.more();
    }
  }

  /** Exactly n bytes. */
  async bytes(n: number): Promise<Buffer> {
    while (this.size < n) await this.more();
    return this.take(n);
  }

  /** Counts n bytes away without keeping them; each piece goes to look() first. */
  async skip(n: number, look: (c: Buffer) => void = () => {}): Promise<void> {
    let left = n;
    while (left > 0 && this.chunks.length) {
      const c = this.chunks.shift()!;
      const k = Math.min(left, c.length);
      look(c.subarray(0, k));
      left -= k;
      this.size -= c.length;
      if (k < c.length) { this.chunks.unshift(c.subarray(k)); this.size += c.length - k; }
    }
    if (left === 0) return;
    const { promise, resolve } = Promise.withResolvers<void>();
    this.skipLeft = left;
    this.onSkipped = look;
    this.skipDone = resolve;
    const closed = (async () => { while (this.skipLeft > 0) await this.more(); })();
    await Promise.race([promise, closed]);
    this.onSkipped = null;
    this.skipDone = null;
  }

  /** One response: lines, with every literal read into the text, until the tagged line of tag. */
  async command(tag: string, text: string): Promise<string> {
    this.send(`${tag} ${text}\r\n`);
    return this.until(tag);
  }

  async until(tag: string): Promise<string> {
    let out = "";
    for (;;) {
      const l = await this.line();
      out += l + "\r\n";
      const lit = /\{(\d+)\}$/.exec(l);
      if (lit) { out += (await this.bytes(Number(lit[1]))).toString("latin1"); continue; }
      if (l.startsWith(`${tag} `)) return out;
    }
  }

  /** Everything until the proxy closes the connection. */
  async rest(): Promise<string> {
    while (!this.isClosed) await this.more().catch(() => {});
    return this.take(this.size).toString("latin1");
  }

  async startTls(ca: string): Promise<void> {
    this.upgraded = true;
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    const [, tls] = this.sock.upgradeTLS<undefined>({
      data: undefined,
      tls: { ca, serverName: "localhost" },
      socket: { ...this.handlers(true), handshake: (_s, ok, e) => (ok ? resolve() : reject(e ?? new Error("handshake failed"))) },
    });
    this.sock = tls;
    await promise;
  }

  close(): void {
    try { this.sock.end(); } catch { /* gone */ }
  }

  async [Symbol.asyncDispose](): Promise<void> { this.close(); }
}

const body = (n: number) => `From: a@example.test\r\nSubject: m${n}\r\n\r\n${`line ${n} of text\r\n`.repeat(200)}`;
const infected = () => `From: a@example.test\r\nSubject: bad\r\n\r\n${EICAR_TEXT}\r\n`;

/** Logs in through the proxy with a routed name and selects INBOX. */
async function session(proxyPort: number, upstreamPort: number): Promise<Wire> {
  const w = await Wire.connect(proxyPort);
  expect(await w.line()).toStartWith("* OK");
  expect((await w.command("a", `LOGIN "alice/127.0.0.1:${upstreamPort}" "secret"`)).split("\r\n").at(-2)).toStartWith("a OK");
  expect(await w.command("s", "SELECT INBOX")).toContain("s OK");
  return w;
}

/** The tagged line of a response text. */
const taggedLine = (response: string, tag: string) => response.split("\r\n").find((l) => l.startsWith(`${tag} `)) ?? null;

let dir: string;
let ca: TestCa;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "mailsentry-imap-faults-"));
  ca = await makeTestCa(join(dir, "ca"));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const plain = (mockPort: number, more: ConfigOverrides = {}): ConfigOverrides => ({ allowedUpstreamPorts: [mockPort], upstreamTls: "off", ...more });

// ---- 1. literals that lie about their size ----------------------------------------------------

describe("literals that lie about their size", () => {
  test("longer than announced: nothing of the message or the extra bytes reaches the client, which is closed; the next session works", async () => {
    await using mock = await startMockImap({ messages: [body(1), body(2)], faults: { literalLonger: { uid: 1, extra: 40 } } });
    await using proxy = await startProxy(plain(mock.port));
    const w = await session(proxy.ports.imap, mock.port);
    // LOGOUT right behind it, so a proxy that answers instead of closing still closes in the end.
    w.send("f UID FETCH 1 BODY.PEEK[]\r\nz LOGOUT\r\n");
    const seen = await w.rest();
    // Either the client is closed with nothing of the response (what the proxy does: after the announced
    // bytes, "XXXX…)" is no FETCH item, and it will not guess where the response ends), or it gets a
    // well-formed response whose message is the announced bytes only.
    const esc = (t: string) => t.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    const wellFormed = `(\\* 1 FETCH \\(UID 1 BODY\\[\\] \\{${body(1).length}\\}\r\n${esc(body(1))}\\)\r\n)?f (OK|NO|BAD) [^\r\n]*\r\n(\\* BYE [^\r\n]*\r\n)?(z OK [^\r\n]*\r\n)?`;
    expect(seen).toMatch(new RegExp(`^(${wellFormed})?$`));
    expect(w.isClosed).toBe(true);
    expect(seen).not.toContain("XXXX");

    await using next = await session(proxy.ports.imap, mock.port);
    expect(await next.command("g", "UID FETCH 2 BODY.PEEK[]")).toBe(`* 2 FETCH (UID 2 BODY[] {${body(2).length}}\r\n${body(2)})\r\ng OK Fetch completed.\r\n`);
  });

  for (const missing of [100, 3]) {
    // 100: the literal's end never comes (the proxy waits, then times out); 3: the announced count runs
    // into the server's ")" and tagged line, which the proxy must not take for the end of the response.
    test(`shorter than announced by ${missing} bytes: no complete-looking message and no tagged OK; the next session works`, async () => {
      await using mock = await startMockImap({ messages: [body(1), body(2)], faults: { literalShorter: { uid: 1, missing } } });
      await using proxy = await startProxy(plain(mock.port, { limits: { upstreamReadTimeout: 1000 } }));
      const w = await session(proxy.ports.imap, mock.port);
      w.send("f UID FETCH 1 BODY.PEEK[]\r\n");
      const seen = await w.rest();
      expect(seen).not.toContain("f OK");
      expect(seen).not.toContain("line 1 of text");
      expect(seen).toBe("");
      const stop = logObjects(proxy.logs).find((l) => l.msg === "relay stopped: closing the client without completing the response");
      expect(String((stop?.error as { message?: string } | undefined)?.message ?? JSON.stringify(stop))).toContain("no data for 1000 ms");

      await using next = await session(proxy.ports.imap, mock.port);
      expect(await next.command("g", "UID FETCH 2 BODY.PEEK[]")).toBe(`* 2 FETCH (UID 2 BODY[] {${body(2).length}}\r\n${body(2)})\r\ng OK Fetch completed.\r\n`);
    }, 15_000);
  }
});

// ---- 2. response injection after the server's STARTTLS OK -------------------------------------

describe("bytes after the server's STARTTLS OK", () => {
  const cases: [string, "required" | "opportunistic", string][] = [
    ["required", "required", "* OK [CAPABILITY IMAP4rev1]\r\n"],
    ["opportunistic (STARTTLS offered, so used)", "opportunistic", "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN X-INJECTED] injected\r\n"],
  ];
  for (const [name, upstreamTls, injected] of cases) {
    test(`upstreamTls ${name}: the login fails with NO, the injected text never reaches the client, no credentials go upstream`, async () => {
      await using mock = await startMockImap({ messages: [body(1)], tls: { cert: ca.certPem, key: ca.keyPem }, faults: { afterStartTlsOk: injected } });
      await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port], upstreamTls, upstreamCaFile: ca.caFile });
      await using w = await Wire.connect(proxy.ports.imap);
      await w.line();
      const r = await w.command("a", `LOGIN "alice/127.0.0.1:${mock.port}" "secret"`);
      expect(r).toBe("a NO [UNAVAILABLE] Could not establish a trusted TLS connection to the mail server.\r\n");
      expect(r).not.toContain(injected.trim());
      expect(mock.commands).toEqual([["ms1 STARTTLS"]]);
      const warn = logObjects(proxy.logs).find((l) => l.msg === "upstream TLS failed");
      expect(String(warn?.reason)).toContain("after its STARTTLS OK");
    });
  }

  test("control: the same server without the injected bytes is reached over TLS and the login works", async () => {
    await using mock = await startMockImap({ messages: [body(1)], tls: { cert: ca.certPem, key: ca.keyPem } });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port], upstreamTls: "required", upstreamCaFile: ca.caFile });
    await using w = await session(proxy.ports.imap, mock.port);
    expect(mock.commands[0]!.slice(0, 2)).toEqual(["ms1 STARTTLS", "ms2 CAPABILITY"]);
    expect(logObjects(proxy.logs).find((l) => l.msg === "logged in")?.upstreamTls).toBe(true);
  });
});

// ---- 3. client commands pipelined past STARTTLS -----------------------------------------------

describe("a command pipelined after the client's STARTTLS", () => {
  test("is dropped: the server never sees the LOGIN, and after the handshake the client is not logged in", async () => {
    await using mock = await startMockImap({ messages: [body(1)] });
    await using proxy = await startProxy(plain(mock.port));
    await using w = await Wire.connect(proxy.ports.imap);
    expect(await w.line()).toContain("STARTTLS");
    w.send(`a STARTTLS\r\nb LOGIN "alice/127.0.0.1:${mock.port}" "secret"\r\n`);
    expect(await w.line()).toBe("a OK Begin TLS negotiation now.");
    await w.startTls(proxy.caPem);
    // Had the LOGIN survived, its tagged answer would come before this NOOP's.
    expect(await w.command("c", "NOOP")).toBe("c OK NOOP completed.\r\n");
    expect(await w.command("d", "SELECT INBOX")).toBe("d BAD Log in first.\r\n");
    expect(mock.connections()).toBe(0);
    expect(logObjects(proxy.logs).find((l) => l.msg === "dropped bytes sent after STARTTLS in the same packet")?.bytes).toBe(`b LOGIN "alice/127.0.0.1:${mock.port}" "secret"\r\n`.length);
    // The same LOGIN sent on its own after the handshake works: the drop above was the defence, not a broken login.
    expect(taggedLine(await w.command("e", `LOGIN "alice/127.0.0.1:${mock.port}" "secret"`), "e")).toStartWith("e OK");
    expect(mock.connections()).toBe(1);
    expect(mock.commands[0]![0]).toBe("ms1 AUTHENTICATE PLAIN");
  });
});

// ---- 4. PREAUTH on a fixed-upstream listener --------------------------------------------------

const fixedImap = (mockPort: number): ConfigOverrides => ({
  listeners: {
    pop3: { enabled: false, addresses: [] },
    pop3s: { enabled: false, addresses: [] },
    imap: { enabled: true, addresses: [{ address: "127.0.0.1:0", upstream: `127.0.0.1:${mockPort}` }] },
    imaps: { enabled: false, addresses: [] },
  },
});

/** SELECT and a body FETCH of a clean and an infected message, as a client on a PREAUTH session does. */
async function fetchScanned(w: Wire): Promise<void> {
  expect(await w.command("s", "SELECT INBOX")).toContain("s OK");
  const r = await w.command("f", "UID FETCH 1:2 BODY.PEEK[]");
  expect(r).toStartWith(`* 1 FETCH (UID 1 BODY[] {${body(1).length}}\r\n${body(1)})\r\n* 2 FETCH (UID 2 BODY[] {${infected().length}}\r\n`);
  expect(r).not.toContain(EICAR_TEXT);
  expect(r).toEndWith(")\r\nf OK Fetch completed.\r\n");
}

describe("PREAUTH greeting on a fixed-upstream listener", () => {
  test("no TLS required: the client is preauthenticated too, and what it fetches is scanned", async () => {
    await using mock = await startMockImap({ messages: [body(1), infected()], faults: { preauth: true } });
    await using proxy = await startProxy(fixedImap(mock.port));
    await using w = await Wire.connect(proxy.ports.imap);
    expect(await w.line()).toMatch(/^\* PREAUTH \[CAPABILITY IMAP4rev1 [^\]]*\] mailsentry: logged in by the server\.$/);
    await fetchScanned(w);
    expect(logObjects(proxy.logs).some((l) => l.msg === "detection")).toBe(true);
  });

  test("TLS required: a PREAUTH greeting in clear ends the session with a BYE that says why", async () => {
    await using mock = await startMockImap({ messages: [body(1)], faults: { preauth: true } });
    await using proxy = await startProxy({ ...fixedImap(mock.port), upstreamTls: "required" });
    await using w = await Wire.connect(proxy.ports.imap);
    expect(await w.rest()).toBe("* BYE [PRIVACYREQUIRED] The mail server logged in without TLS (PREAUTH), and TLS is required.\r\n");
    expect(mock.commands).toEqual([[]]);
  });

  test("TLS required and the server is implicit TLS: PREAUTH inside TLS is accepted and scanned", async () => {
    await using mock = await startMockImap({ messages: [body(1), infected()], tls: { cert: ca.certPem, key: ca.keyPem }, implicitTls: true, faults: { preauth: true } });
    await using proxy = await startProxy({ ...fixedImap(mock.port), upstreamTls: "required", upstreamCaFile: ca.caFile, upstreamImplicitTlsPorts: { pop3: [995], imap: [mock.port] } });
    await using w = await Wire.connect(proxy.ports.imap);
    expect(await w.line()).toStartWith("* PREAUTH ");
    await fetchScanned(w);
  });
});

// ---- 5. a 1 GB literal ------------------------------------------------------------------------

const GB = 1024 * 1024 * 1024;

/** Peak and current resident memory of a process, in MiB (Linux /proc). */
async function memory(pid: number): Promise<{ hwm: number; rss: number; anon: number }> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN);
  return { hwm: kb("VmHWM") / 1024, rss: kb("VmRSS") / 1024, anon: kb("RssAnon") / 1024 };
}

/** Samples the process's anonymous memory (heap, not file pages) every 50 ms until stopped; resolves with the most seen, MiB. */
function sampleAnon(pid: number): { stop(): Promise<number> } {
  let most = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      most = Math.max(most, (await memory(pid).catch(() => ({ anon: 0 }))).anon);
      await Bun.sleep(50);
    }
  })();
  return { async stop() { running = false; await loop; return most; } };
}

/** `mailsentry serve` as its own process (so its memory is its own), IMAP only, routed to the mock. */
async function proxyProcess(name: string, mockPort: number, config: Record<string, unknown>) {
  const home = join(dir, name);
  await mkdir(home, { recursive: true });
  const port = await freePort();
  const file = join(home, "config.json");
  const off = { enabled: false, addresses: [] };
  await writeFile(file, JSON.stringify({
    listeners: { pop3: off, pop3s: off, imap: { enabled: true, addresses: [`127.0.0.1:${port}`] }, imaps: off },
    allowedUpstreamPorts: [mockPort], upstreamTls: "off", ...config,
  }));
  const p = await startProxyProcess({ config: file, home });
  return { ...p, port, async [Symbol.asyncDispose]() { p.proc.kill("SIGTERM"); await p.proc.exited; } };
}

describe("a 1 GB literal (maxMessageSize 100 MB)", () => {
  test("spooled and scanned (default limits): exactly 1 GB delivered, the proxy's heap stays bounded while the file is mapped", async () => {
    await using mock = await startMockImap({ messages: [body(1)], faults: { hugeLiteral: { uid: 2, size: GB } } });
    await using proxy = await proxyProcess("huge-spooled", mock.port, {});
    await using w = await session(proxy.port, mock.port);
    const anon = sampleAnon(proxy.proc.pid);
    const started = performance.now();
    w.send("f UID FETCH 2 BODY.PEEK[]\r\n");
    expect(await w.line()).toBe(`* 2 FETCH (UID 2 BODY[] {${GB}}`);
    let count = 0;
    let head = Buffer.alloc(0);
    await w.skip(GB, (c) => {
      count += c.length;
      if (head.length < 64) head = Buffer.concat([head, c.subarray(0, 64 - head.length)]);
    });
    expect(await w.line()).toBe(")");
    expect(await w.line()).toBe("f OK Fetch completed.");
    const seconds = (performance.now() - started) / 1000;
    const peakAnon = await anon.stop();
    const mem = await memory(proxy.proc.pid);
    expect(count).toBe(GB);
    expect(head.toString("latin1")).toStartWith("From: huge@example.org\r\nSubject: huge literal\r\n\r\n");
    console.info(`1 GB spooled and scanned: ${seconds.toFixed(1)} s, proxy anonymous memory at most ${peakAnon.toFixed(0)} MiB, peak RSS ${mem.hwm.toFixed(0)} MiB (mapped file pages included)`);
    expect(peakAnon).toBeLessThan(300);
    expect(proxy.lines.join("\n")).toContain("spooled to disk to be scanned");
    expect(proxy.lines.join("\n")).not.toContain("too large to scan");
  }, 120_000);

  test("onUnscanned tempfail over maxSpooledMessageSize: withheld as NIL with NO [UNAVAILABLE], and the proxy's memory stays bounded", async () => {
    await using mock = await startMockImap({ messages: [body(1)], faults: { hugeLiteral: { uid: 2, size: GB } } });
    await using proxy = await proxyProcess("huge-tempfail", mock.port, { onUnscanned: "tempfail", limits: { maxSpooledMessageSize: 512 * 1024 * 1024 } });
    await using w = await session(proxy.port, mock.port);
    const before = await memory(proxy.proc.pid);
    const started = performance.now();
    const r = await w.command("f", "UID FETCH 2 BODY.PEEK[]");
    const seconds = (performance.now() - started) / 1000;
    expect(r).toBe("* 2 FETCH (UID 2 BODY[] NIL)\r\nf NO [UNAVAILABLE] Some messages could not be scanned and were withheld; try again later.\r\n");
    // The session goes on: the next message arrives whole.
    expect(await w.command("g", "UID FETCH 1 BODY.PEEK[]")).toBe(`* 1 FETCH (UID 1 BODY[] {${body(1).length}}\r\n${body(1)})\r\ng OK Fetch completed.\r\n`);
    const mem = await memory(proxy.proc.pid);
    console.info(`1 GB withheld: ${seconds.toFixed(1)} s (${(1024 / seconds).toFixed(0)} MiB/s), proxy peak RSS ${mem.hwm.toFixed(0)} MiB (${before.hwm.toFixed(0)} MiB before the fetch)`);
    expect(mem.hwm).toBeLessThan(300);
  }, 120_000);

  test("onUnscanned deliver (the default) over maxSpooledMessageSize: exactly 1 GB streamed to the client, proxy peak RSS under 300 MiB", async () => {
    await using mock = await startMockImap({ messages: [body(1)], faults: { hugeLiteral: { uid: 2, size: GB } } });
    await using proxy = await proxyProcess("huge-deliver", mock.port, { limits: { maxSpooledMessageSize: 512 * 1024 * 1024 } });
    await using w = await session(proxy.port, mock.port);
    const before = await memory(proxy.proc.pid);
    const started = performance.now();
    w.send("f UID FETCH 2 BODY.PEEK[]\r\n");
    expect(await w.line()).toBe(`* 2 FETCH (UID 2 BODY[] {${GB}}`);
    let count = 0;
    let head = Buffer.alloc(0);
    let tail = Buffer.alloc(0);
    await w.skip(GB, (c) => {
      count += c.length;
      if (head.length < 64) head = Buffer.concat([head, c.subarray(0, 64 - head.length)]);
      tail = Buffer.concat([tail, c.subarray(-64)]).subarray(-64);
    });
    expect(await w.line()).toBe(")");
    expect(await w.line()).toBe("f OK Fetch completed.");
    const seconds = (performance.now() - started) / 1000;
    expect(count).toBe(GB);
    expect(head.toString("latin1")).toStartWith("From: huge@example.org\r\nSubject: huge literal\r\n\r\n");
    expect(tail.toString("latin1")).toEndWith("\r\n");
    const mem = await memory(proxy.proc.pid);
    console.info(`1 GB delivered: ${seconds.toFixed(1)} s (${(1024 / seconds).toFixed(0)} MiB/s), proxy peak RSS ${mem.hwm.toFixed(0)} MiB (${before.hwm.toFixed(0)} MiB before the fetch)`);
    expect(mem.hwm).toBeLessThan(300);
    // The oversize message is in the log as delivered unscanned.
    expect(proxy.lines.join("\n")).toContain("too large to scan, delivered unscanned");
  }, 120_000);
});

// ---- 6. unsolicited FETCH inside a body FETCH -------------------------------------------------

describe("an unsolicited FETCH during a body FETCH", () => {
  test("UID FETCH: the flag update passes unchanged between the scanned responses", async () => {
    await using mock = await startMockImap({ messages: [body(1), infected(), body(3)], faults: { unsolicitedFetchDuring: "FETCH" } });
    await using proxy = await startProxy(plain(mock.port));
    await using w = await session(proxy.ports.imap, mock.port);
    const r = await w.command("f", "UID FETCH 1:2 BODY.PEEK[]");
    const parts = r.split(/(?=^\* \d+ FETCH |^f )/m);
    expect(parts.length).toBe(4);
    expect(parts[0]).toBe(`* 1 FETCH (UID 1 BODY[] {${body(1).length}}\r\n${body(1)})\r\n`);
    expect(parts[1]).toBe("* 3 FETCH (UID 3 FLAGS (\\Flagged))\r\n");
    expect(parts[2]).toStartWith(`* 2 FETCH (UID 2 BODY[] {${infected().length}}\r\n`);
    expect(parts[2]).not.toContain(EICAR_TEXT);
    expect(parts[3]).toBe("f OK Fetch completed.\r\n");
  });

  test("FETCH by sequence number: the UID the proxy adds is gone from the solicited response, the unsolicited one is as sent", async () => {
    await using mock = await startMockImap({ messages: [body(1), body(2)], faults: { unsolicitedFetchDuring: "FETCH" } });
    await using proxy = await startProxy(plain(mock.port));
    await using w = await session(proxy.ports.imap, mock.port);
    expect(await w.command("f", "FETCH 1 BODY.PEEK[]")).toBe(`* 1 FETCH (BODY[] {${body(1).length}}\r\n${body(1)})\r\n* 2 FETCH (FLAGS (\\Flagged))\r\nf OK Fetch completed.\r\n`);
    expect(mock.commands[0]).toContain("f FETCH 1 (UID BODY.PEEK[])");
  });
});

// ---- 7. the server closes inside a non-body item ----------------------------------------------

describe("the server closes inside an ENVELOPE literal", () => {
  // An 8-bit Subject: Dovecot sends such a value as a literal inside the ENVELOPE list.
  const eightBit = Buffer.from("From: A <a@example.test>\r\nSubject: Gr\xfc\xdfe aus K\xf6ln\r\n\r\nhello\r\n", "latin1");

  test("control: an ENVELOPE with a literal inside passes through exactly as the server sent it", async () => {
    await using mock = await startMockImap({ messages: [eightBit] });
    await using proxy = await startProxy(plain(mock.port));
    await using w = await session(proxy.ports.imap, mock.port);
    const r = await w.command("f", "UID FETCH 1 (FLAGS ENVELOPE)");
    expect(r).toStartWith("* 1 FETCH (UID 1 FLAGS () ENVELOPE (NIL {14}\r\nGr\xfc\xdfe aus K\xf6ln ((");
    // Byte for byte what the server says to a client that asks it directly.
    await using direct = await Wire.connect(mock.port);
    await direct.line();
    await direct.command("l", "LOGIN alice secret");
    await direct.command("s", "SELECT INBOX");
    expect(r).toBe(await direct.command("f", "UID FETCH 1 (FLAGS ENVELOPE)"));
  });

  test("the client is closed with no tagged OK and nothing of the cut response", async () => {
    await using mock = await startMockImap({ messages: [eightBit, body(2)], faults: { cutEnvelope: { uid: 1, after: 5 } } });
    await using proxy = await startProxy(plain(mock.port));
    const w = await session(proxy.ports.imap, mock.port);
    w.send("f UID FETCH 1 (FLAGS ENVELOPE)\r\n");
    const seen = await w.rest();
    expect(seen).not.toContain("f OK");
    expect(seen).toBe("");
    expect(w.isClosed).toBe(true);
  });
});

// ---- a nested literal too big to hold: a relay bug, kept here until core/imap/relay.ts is fixed ----

describe("a nested literal bigger than the relay's streaming threshold (256 KiB)", () => {
  // relay.ts fetchResponse streams any passable literal over STREAM_THRESHOLD, then calls
  // r.literalStreamed(), which accepts only top-level literals: a big literal inside ENVELOPE or
  // BODYSTRUCTURE (a 300 KiB 8-bit Subject here) is half written, then the client is cut off with
  // "no top-level literal to stream". A healthy server's answer must pass whole.
  test("an ENVELOPE with a 300 KiB literal Subject passes through whole", async () => {
    const msg = Buffer.from(`From: a@example.test\r\nSubject: ${"\xe9".repeat(300 * 1024)}\r\n\r\nhello\r\n`, "latin1");
    await using mock = await startMockImap({ messages: [msg] });
    await using proxy = await startProxy(plain(mock.port));
    await using w = await session(proxy.ports.imap, mock.port);
    const r = await w.command("f", "UID FETCH 1 (FLAGS ENVELOPE)");
    await using direct = await Wire.connect(mock.port);
    await direct.line();
    await direct.command("l", "LOGIN alice secret");
    await direct.command("s", "SELECT INBOX");
    expect(r).toBe(await direct.command("f", "UID FETCH 1 (FLAGS ENVELOPE)"));
  });
});
