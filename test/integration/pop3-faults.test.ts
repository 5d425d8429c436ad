// The POP3 proxy against a misbehaving server: what a client sees must never be a truncated message.
import { describe, expect, test } from "bun:test";
import { throwingEngine } from "../helpers/engine.ts";
import { startMockPop3, startUnresponsive } from "../helpers/mock-pop3.ts";
import { logObjects, popLoggedIn, startProxy, TestClient, unstuff } from "../helpers/proxy.ts";

function bigMessage(size: number): string {
  const line = "The quick brown fox jumps over the lazy dog 0123456789 abcdefghijklmnopqrstuvwxyz\r\n";
  let body = "";
  while (body.length < size) body += (body.length % 7 === 0 ? "." : "") + line;
  return `Subject: big\r\n\r\n${body}`;
}

describe("POP3 faults", () => {
  test("an upstream that never answers the connect: after upstreamConnectTimeout the login gets the temporary-failure reply", async () => {
    await using dead = await startUnresponsive();
    await using proxy = await startProxy({ allowedUpstreamPorts: [dead.port], limits: { upstreamConnectTimeout: 200 } });
    await using c = await TestClient.connect(proxy.ports.pop3);
    await c.line();
    c.send(`USER alice/127.0.0.1:${dead.port}`);
    await c.line();
    const started = performance.now();
    c.send("PASS secret");
    expect(await c.line()).toBe("-ERR [SYS/TEMP] Mail server unavailable, try again later.");
    expect(performance.now() - started).toBeGreaterThanOrEqual(190);
    const why = logObjects(proxy.logs).find((l) => l.msg === "upstream unavailable");
    expect(why?.reason).toBe(`connect to 127.0.0.1:${dead.port} timed out after 200 ms`);
    // The session goes on: the client may try another server.
    c.send("NOOP");
    expect(await c.line()).toBe("-ERR Command not valid in this state.");
  });

  test("a fixed upstream that never answers the connect: the client gets the temporary-failure reply as its greeting", async () => {
    await using dead = await startUnresponsive();
    await using proxy = await startProxy({
      listeners: {
        pop3: { enabled: true, addresses: [{ address: "127.0.0.1:0", upstream: `127.0.0.1:${dead.port}` }] },
        pop3s: { enabled: false, addresses: [] },
        imap: { enabled: false, addresses: [] },
        imaps: { enabled: false, addresses: [] },
      },
      limits: { upstreamConnectTimeout: 200 },
    });
    await using c = await TestClient.connect(proxy.ports.pop3);
    expect(await c.line()).toBe("-ERR [SYS/TEMP] Mail server unavailable, try again later.");
    await c.closed;
    expect(logObjects(proxy.logs).find((l) => l.msg === "upstream unavailable")?.reason).toContain("timed out after 200 ms");
  });

  test("an upstream that accepts and never greets: the login fails after upstreamLoginTimeout, not upstreamReadTimeout", async () => {
    await using mute = await startMockPop3({ faults: { greeting: null } });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mute.port], limits: { upstreamLoginTimeout: 400 } });
    await using c = await TestClient.connect(proxy.ports.pop3);
    await c.line();
    c.send(`USER alice/127.0.0.1:${mute.port}`);
    await c.line();
    const started = performance.now();
    c.send("PASS secret");
    expect(await c.line()).toBe("-ERR [SYS/TEMP] Mail server unavailable, try again later.");
    const waited = performance.now() - started;
    expect(waited).toBeGreaterThanOrEqual(390);
    expect(waited).toBeLessThan(3000);
  });

  test("an upstream that trickles its login replies a byte at a time: one deadline for all login steps ends it", async () => {
    await using slow = await startMockPop3({ capa: ["USER"], faults: { stallLogin: 50 } });
    await using proxy = await startProxy({ allowedUpstreamPorts: [slow.port], upstreamTls: "off", limits: { upstreamLoginTimeout: 600 } });
    await using c = await TestClient.connect(proxy.ports.pop3);
    await c.line();
    c.send(`USER alice/127.0.0.1:${slow.port}`);
    await c.line();
    const started = performance.now();
    c.send("PASS secret");
    expect(await c.line()).toBe("-ERR [SYS/TEMP] Mail server unavailable, try again later.");
    expect(performance.now() - started).toBeLessThan(3000);
    // The password never went out: the server stalled on USER.
    expect(slow.commands.flat().some((l) => l.startsWith("PASS"))).toBe(false);
  });

  for (const when of ["now", "later"] as const) {
    test(`a server that sends a reply nobody asked for (${when === "now" ? "with the last reply" : "while idle"}): the session ends before it answers the next command`, async () => {
      const stray = "+OK 2 messages (not asked for)\r\n1 120\r\n2 999\r\n.\r\n";
      await using mock = await startMockPop3({ messages: ["Subject: a\r\n\r\nx\r\n"], faults: { unsolicited: { text: stray, when } } });
      await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port] });
      await using c = await popLoggedIn(proxy.ports.pop3, mock.port);
      c.send("NOOP");
      expect(await c.line()).toBe("+OK");
      await Bun.sleep(200);
      c.sendRaw("LIST\r\n");
      const rest = (await c.rest()).toString("latin1");
      expect(rest).not.toContain("not asked for");
      expect(rest).not.toContain("2 999");
      expect(logObjects(proxy.logs).find((l) => l.msg === "session end")?.end).toContain("no command asked for");
    });
  }

  for (const verb of ["LIST", "UIDL"]) {
    test(`upstream cut inside a ${verb} listing: the client never gets the final dot`, async () => {
      const messages = Array.from({ length: 3000 }, (_, i) => `Subject: m${i}\r\n\r\nbody\r\n`);
      await using mock = await startMockPop3({ messages, faults: { cutListing: 20_000 } });
      await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port] });
      await using c = await popLoggedIn(proxy.ports.pop3, mock.port);
      c.send(verb);
      const rest = (await c.rest()).toString("latin1");
      expect(rest).toStartWith("+OK");
      expect(rest.length).toBeLessThanOrEqual(20_000);
      expect(rest).not.toContain("\r\n.\r\n");
      expect(rest.endsWith(".\r\n")).toBe(false);
    });
  }

  test("a client that vanishes without QUIT: the proxy sends no QUIT either, so its DELE is not committed", async () => {
    await using mock = await startMockPop3({ messages: ["Subject: a\r\n\r\nx\r\n", "Subject: b\r\n\r\ny\r\n"] });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port] });
    const c = await popLoggedIn(proxy.ports.pop3, mock.port);
    c.send("DELE 1");
    expect(await c.line()).toStartWith("+OK");
    await c[Symbol.asyncDispose](); // gone: no QUIT, the socket just closes
    await proxy.waitLog((l) => l.msg === "session end");
    await Bun.sleep(50);
    expect(mock.commands.flat()).not.toContain("QUIT");
    expect(mock.deleted).toEqual([]);
  });

  test("upstream cut mid-message: the client gets no part of it and no terminating dot; the connection closes", async () => {
    const msg = bigMessage(200_000);
    const mock = await startMockPop3({ messages: [msg], faults: { cutRetr: { msg: 1, cutAfter: 100_000 } } });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port] });
    await using c = await popLoggedIn(proxy.ports.pop3, mock.port);
    c.send("RETR 1");
    const rest = await c.rest();
    expect(rest.toString("latin1")).not.toContain("\r\n.\r\n");
    expect(rest.length).toBe(0);
    expect(logObjects(proxy.logs).find((l) => l.msg === "session end")?.end).toStartWith("upstream fault");
    mock.stop();
  });

  test("upstream cut mid-message while streaming an unscanned message: closed without the dot", async () => {
    const msg = bigMessage(300_000);
    const mock = await startMockPop3({ messages: [msg], faults: { cutRetr: { msg: 1, cutAfter: 250_000 } } });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port], limits: { maxMessageSize: 50_000, maxSpooledMessageSize: 100_000 } });
    await using c = await popLoggedIn(proxy.ports.pop3, mock.port);
    c.send("RETR 1");
    const rest = (await c.rest()).toString("latin1");
    expect(rest).toStartWith("+OK");
    expect(rest).toContain("X-Virus-Status: Unscanned (too-large)\r\n");
    expect(rest).not.toContain("\r\n.\r\n");
    mock.stop();
  });

  test("upstream cut mid-message in an excluded session (relayed as the server sent it): closed without the dot", async () => {
    const msg = bigMessage(500_000);
    const mock = await startMockPop3({ messages: [msg], faults: { cutRetr: { msg: 1, cutAfter: 100_000 } } });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port], excludedServers: ["127.0.0.1"] });
    await using c = await popLoggedIn(proxy.ports.pop3, mock.port);
    c.send("RETR 1");
    // Settled by what arrives, not by a timeout: the connection closes, or a terminating dot shows.
    const DOT = Buffer.from("\r\n.\r\n");
    const seen = () => Buffer.concat(c.received);
    while (!c.isClosed && !seen().includes(DOT)) await Bun.sleep(20);
    const rest = seen().toString("latin1");
    expect(rest).toStartWith("+OK");
    // What arrived is the part the server sent, and nothing that ends it as a complete message.
    expect(rest.length).toBeLessThan(100_100);
    expect(rest).not.toContain("\r\n.\r\n");
    expect(logObjects(proxy.logs).find((l) => l.msg === "session end")?.end).toStartWith("upstream fault");
    mock.stop();
  });

  test("a stalled upstream hits the read timeout and the client is closed without a dot", async () => {
    const mock = await startMockPop3({ messages: ["Subject: x\r\n\r\nbody\r\n"], faults: { stallRetr: 1 } });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port], limits: { upstreamReadTimeout: 300 } });
    await using c = await popLoggedIn(proxy.ports.pop3, mock.port);
    c.send("RETR 1");
    const rest = (await c.rest()).toString("latin1");
    expect(rest).not.toContain("\r\n.\r\n");
    expect(logObjects(proxy.logs).find((l) => l.msg === "session end")?.end).toContain("no data for 300 ms");
    mock.stop();
  });

  test("a status line over maxUpstreamLine ends the session", async () => {
    const mock = await startMockPop3({ messages: ["Subject: x\r\n\r\nbody\r\n"], faults: { hugeStatLine: 5000 } });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port], limits: { maxUpstreamLine: 1024 } });
    await using c = await popLoggedIn(proxy.ports.pop3, mock.port);
    c.send("STAT");
    expect((await c.rest()).length).toBe(0);
    expect(logObjects(proxy.logs).find((l) => l.msg === "session end")?.end).toContain("longer than 1024");
    mock.stop();
  });

  test("garbage replies from the server end the session instead of being relayed", async () => {
    const mock = await startMockPop3({ messages: ["Subject: x\r\n\r\nbody\r\n"], faults: { garbageAfterLogin: "HELLO I AM NOT POP3" } });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port] });
    const c = await TestClient.connect(proxy.ports.pop3);
    await c.line();
    c.send(`USER alice/127.0.0.1:${mock.port}`);
    await c.line();
    c.send("PASS secret");
    // Even the login reply is garbage: the client gets a temporary failure, not the garbage.
    expect(await c.line()).toBe("-ERR [SYS/TEMP] Mail server unavailable, try again later.");
    c.close();
    mock.stop();
  });

  test("garbage greeting: temporary failure", async () => {
    const mock = await startMockPop3({ faults: { greeting: "220 smtp.example.org ESMTP" } });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port] });
    await using c = await TestClient.connect(proxy.ports.pop3);
    await c.line();
    c.send(`USER alice/127.0.0.1:${mock.port}`);
    await c.line();
    c.send("PASS secret");
    expect(await c.line()).toBe("-ERR [SYS/TEMP] Mail server unavailable, try again later.");
    mock.stop();
  });

  test("nothing listening upstream: temporary failure", async () => {
    const mock = await startMockPop3();
    const port = mock.port;
    mock.stop();
    await using proxy = await startProxy({ allowedUpstreamPorts: [port] });
    await using c = await TestClient.connect(proxy.ports.pop3);
    await c.line();
    c.send(`USER alice/127.0.0.1:${port}`);
    await c.line();
    c.send("PASS secret");
    expect(await c.line()).toBe("-ERR [SYS/TEMP] Mail server unavailable, try again later.");
  });

  test("too large with onUnscanned tempfail: -ERR and the session goes on in step", async () => {
    const mock = await startMockPop3({ messages: [bigMessage(300_000), "Subject: small\r\n\r\nok\r\n"] });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port], onUnscanned: "tempfail", limits: { maxMessageSize: 50_000, maxSpooledMessageSize: 100_000 } });
    await using c = await popLoggedIn(proxy.ports.pop3, mock.port);
    c.sendRaw("RETR 1\r\nRETR 2\r\n");
    expect(await c.line()).toBe("-ERR [SYS/PERM] Message is larger than the proxy may scan (maxSpooledMessageSize).");
    expect(unstuff((await c.multi()).body).toString()).toBe("Subject: small\r\n\r\nok\r\n");
    mock.stop();
  });

  test("too large with onUnscanned deliver: streamed whole, tagged, with its final dot", async () => {
    const msg = bigMessage(3_000_000);
    const mock = await startMockPop3({ messages: [msg] });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port], limits: { maxMessageSize: 100_000, maxSpooledMessageSize: 1_000_000 } });
    await using c = await popLoggedIn(proxy.ports.pop3, mock.port);
    c.send("RETR 1");
    const r = await c.multi();
    expect(unstuff(r.body).toString("latin1")).toBe("X-Virus-Status: Unscanned (too-large)\r\n" + msg);
    mock.stop();
  });

  test("a scanner failure is a temporary failure (onError tempfail); the session continues", async () => {
    const mock = await startMockPop3({ messages: ["Subject: x\r\n\r\nbody\r\n"] });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port] }, { engine: throwingEngine("async") });
    await using c = await popLoggedIn(proxy.ports.pop3, mock.port);
    c.send("RETR 1");
    expect(await c.line()).toStartWith("-ERR [SYS/TEMP]");
    c.send("NOOP");
    expect(await c.line()).toBe("+OK");
    mock.stop();
  });

  test("a slow client: big messages arrive intact while the client reads late", async () => {
    const msgs = [bigMessage(4_000_000), bigMessage(4_000_000)];
    const mock = await startMockPop3({ messages: msgs });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port] });
    await using c = await popLoggedIn(proxy.ports.pop3, mock.port);
    c.sendRaw("RETR 1\r\nRETR 2\r\n");
    const a = await c.multi();
    const b = await c.multi();
    expect(unstuff(a.body).toString("latin1")).toBe(msgs[0]!);
    expect(unstuff(b.body).toString("latin1")).toBe(msgs[1]!);
    mock.stop();
  });

  test("client lines over maxClientLine are refused and the session ends", async () => {
    await using proxy = await startProxy({ limits: { maxClientLine: 512 } });
    await using c = await TestClient.connect(proxy.ports.pop3);
    await c.line();
    c.send("USER " + "a".repeat(2000));
    expect((await c.rest()).toString()).toBe("-ERR Line too long.\r\n");
  });
});
