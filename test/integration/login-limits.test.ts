// What a client that will not or cannot log in gets: a deadline for the whole authorization state,
// a few failed logins per connection, a name that keeps failing from one address refused without
// asking the server, and a cap on connections per address that have not logged in. Both protocols.
import { describe, expect, test } from "bun:test";
import { MAX_NAME_FAILURES } from "../../core/net/login-guard.ts";
import { startMockImap } from "../helpers/mock-imap.ts";
import { startMockPop3 } from "../helpers/mock-pop3.ts";
import { logObjects, startProxy, TestClient } from "../helpers/proxy.ts";

describe("POP3 login limits", () => {
  test("the third wrong password closes the connection; the server saw each attempt once", async () => {
    await using mock = await startMockPop3();
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port], upstreamTls: "off" });
    await using c = await TestClient.connect(proxy.ports.pop3);
    await c.line();
    for (let i = 0; i < 3; i++) {
      c.send(`USER alice/127.0.0.1:${mock.port}`);
      expect(await c.line()).toStartWith("+OK");
      c.send("PASS wrong");
      expect(await c.line()).toBe("-ERR [AUTH] Authentication failed.");
    }
    await c.closed;
    expect(mock.commands.flat().filter((l) => l.startsWith("PASS") || l.startsWith("AUTH")).length).toBe(3);
    expect(logObjects(proxy.logs).find((l) => l.msg === "session end")?.end).toBe("too many failed logins");
  });

  test(`after ${MAX_NAME_FAILURES} failures of one name from one address, that name is refused there without asking the server; another name still logs in`, async () => {
    await using mock = await startMockPop3({ users: { alice: "secret", bob: "pw" } });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port], upstreamTls: "off", limits: { maxLoginFailures: 100 } });
    const login = async (user: string, pw: string) => {
      const c = await TestClient.connect(proxy.ports.pop3);
      try {
        await c.line();
        c.send(`USER ${user}/127.0.0.1:${mock.port}`);
        await c.line();
        c.send(`PASS ${pw}`);
        return await c.line();
      } finally {
        await c[Symbol.asyncDispose]();
      }
    };
    for (let i = 0; i < MAX_NAME_FAILURES; i++) expect(await login("alice", "guess" + i)).toStartWith("-ERR [AUTH]");
    const asked = mock.commands.flat().filter((l) => l.startsWith("AUTH") || l.startsWith("PASS")).length;
    expect(await login("alice", "secret")).toBe("-ERR [AUTH] Authentication failed.");
    expect(mock.commands.flat().filter((l) => l.startsWith("AUTH") || l.startsWith("PASS")).length).toBe(asked);
    expect(await login("bob", "pw")).toStartWith("+OK");
  });

  test("a client that keeps the line busy but never logs in is disconnected at clientLoginTimeout", async () => {
    await using proxy = await startProxy({ limits: { clientLoginTimeout: 500 } });
    await using c = await TestClient.connect(proxy.ports.pop3);
    await c.line();
    const started = performance.now();
    const drip = setInterval(() => c.sendRaw("N"), 100); // a command that never ends, a byte at a time
    try {
      expect(await c.line()).toBe("-ERR Disconnected: no login in time.");
      await c.closed;
    } finally {
      clearInterval(drip);
    }
    expect(performance.now() - started).toBeLessThan(2500);
  });

  test("past maxUnauthenticatedPerClient, a new connection is turned away at the greeting; a login frees a place", async () => {
    await using mock = await startMockPop3();
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port], upstreamTls: "off", limits: { maxUnauthenticatedPerClient: 2 } });
    await using a = await TestClient.connect(proxy.ports.pop3);
    await using b = await TestClient.connect(proxy.ports.pop3);
    expect(await a.line()).toStartWith("+OK");
    expect(await b.line()).toStartWith("+OK");
    await using refused = await TestClient.connect(proxy.ports.pop3);
    expect(await refused.line()).toStartWith("-ERR [SYS/TEMP] Too many connections from your address");
    await refused.closed;
    a.send(`USER alice/127.0.0.1:${mock.port}`);
    await a.line();
    a.send("PASS secret");
    expect(await a.line()).toStartWith("+OK");
    await using next = await TestClient.connect(proxy.ports.pop3);
    expect(await next.line()).toStartWith("+OK mailsentry");
  });
});

describe("IMAP login limits", () => {
  test("the third failed LOGIN gets its NO, then BYE, and the connection closes", async () => {
    await using mock = await startMockImap();
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port], upstreamTls: "off" });
    await using c = await TestClient.connect(proxy.ports.imap);
    await c.line();
    for (let i = 1; i <= 3; i++) {
      c.send(`a${i} LOGIN "alice/127.0.0.1:${mock.port}" "wrong${i}"`);
      expect(await c.line()).toStartWith(`a${i} NO [AUTHENTICATIONFAILED]`);
    }
    expect(await c.line()).toBe("* BYE Too many failed logins.");
    await c.closed;
  });

  test("a client that never logs in is told BYE at clientLoginTimeout", async () => {
    await using proxy = await startProxy({ limits: { clientLoginTimeout: 500 } });
    await using c = await TestClient.connect(proxy.ports.imap);
    await c.line();
    const drip = setInterval(() => c.sendRaw("x"), 100);
    try {
      expect(await c.line()).toBe("* BYE Disconnected: no login in time.");
      await c.closed;
    } finally {
      clearInterval(drip);
    }
  });

  test("past maxUnauthenticatedPerClient, a new IMAP connection gets BYE [UNAVAILABLE] at once", async () => {
    await using proxy = await startProxy({ limits: { maxUnauthenticatedPerClient: 1 } });
    await using a = await TestClient.connect(proxy.ports.imap);
    expect(await a.line()).toStartWith("* OK");
    await using b = await TestClient.connect(proxy.ports.imap);
    expect(await b.line()).toStartWith("* BYE [UNAVAILABLE] Too many connections");
    await b.closed;
  });
});
