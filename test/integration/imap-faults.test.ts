// Faults a real server will not produce on demand, through the IMAP proxy against the scripted upstream:
// a literal cut mid-message never reaches the client as a complete one, a server that never greets is
// reported with the implicit-TLS hint, and an unsolicited FETCH with a body during IDLE is scanned too.
import { describe, expect, test } from "bun:test";
import { startMockImap } from "../helpers/mock-imap.ts";
import { TestClient, logObjects, startProxy } from "../helpers/proxy.ts";
import { EICAR_TEXT } from "../helpers/eicar.ts";

const body = (n: number) => `From: a@example.test\r\nSubject: m${n}\r\n\r\n${"line of text\r\n".repeat(200)}`;

async function login(port: number, upstreamPort: number): Promise<TestClient> {
  const c = await TestClient.connect(port);
  expect(await c.line()).toStartWith("* OK");
  c.send(`a LOGIN "alice/127.0.0.1:${upstreamPort}" "secret"`);
  for (;;) {
    const l = await c.line();
    if (l.startsWith("a ")) { expect(l).toStartWith("a OK"); break; }
  }
  return c;
}

describe("IMAP upstream faults", () => {
  test("a literal cut mid-message closes the client without a tagged OK", async () => {
    await using mock = await startMockImap({ messages: [body(1)], faults: { cutLiteral: { uid: 1, after: 100 } } });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port], upstreamTls: "off" });
    await using c = await login(proxy.ports.imap, mock.port);
    c.send("b SELECT INBOX");
    for (;;) if ((await c.line()).startsWith("b ")) break;
    c.send("c UID FETCH 1 BODY.PEEK[]");
    const rest = (await c.rest()).toString("latin1");
    expect(rest).not.toContain("c OK");
    expect(rest).not.toContain("line of text"); // nothing of the cut message was handed out
  });

  test("a server that never greets: the client is told the port may expect implicit TLS", async () => {
    await using mock = await startMockImap({ faults: { noGreeting: true } });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port], upstreamTls: "off" });
    await using c = await TestClient.connect(proxy.ports.imap);
    await c.line();
    c.send(`a LOGIN "alice/127.0.0.1:${mock.port}" "secret"`);
    const l = await c.line();
    expect(l).toStartWith("a NO [UNAVAILABLE]");
    expect(l).toContain("implicit TLS");
  }, 15_000);

  test("a server that trickles its login reply a byte at a time: upstreamLoginTimeout ends the login, not the read idle timer", async () => {
    await using mock = await startMockImap({ faults: { stallLogin: 50 } });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port], upstreamTls: "off", limits: { upstreamLoginTimeout: 700 } });
    await using c = await TestClient.connect(proxy.ports.imap);
    await c.line();
    const started = performance.now();
    c.send(`a LOGIN "alice/127.0.0.1:${mock.port}" "secret"`);
    expect(await c.line()).toStartWith("a NO [UNAVAILABLE]");
    const waited = performance.now() - started;
    expect(waited).toBeGreaterThanOrEqual(600);
    expect(waited).toBeLessThan(3000);
  });

  test("a tagged completion for a command nobody sent ends the session before it can answer the wrong command", async () => {
    await using mock = await startMockImap({ messages: [body(1)], faults: { strayTagged: "b2 OK SELECT completed (answering nothing)" } });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port], upstreamTls: "off" });
    await using c = await login(proxy.ports.imap, mock.port);
    c.send("b1 NOOP");
    expect(await c.line()).toBe("b1 OK NOOP completed.");
    await Bun.sleep(150);
    c.sendRaw("b2 SELECT INBOX\r\n");
    const rest = (await c.rest()).toString("latin1");
    expect(rest).not.toContain("answering nothing");
    expect(logObjects(proxy.logs).find((l) => l.msg === "session end")?.end).toContain("completed a command nobody sent");
  });

  test("an unsolicited FETCH with an infected body during IDLE is not passed on as it is", async () => {
    const infected = `From: a@example.test\r\nSubject: bad\r\n\r\n${EICAR_TEXT}\r\n`;
    await using mock = await startMockImap({ messages: [body(1), infected] });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port], upstreamTls: "off" });
    await using c = await login(proxy.ports.imap, mock.port);
    c.send("b SELECT INBOX");
    for (;;) if ((await c.line()).startsWith("b ")) break;
    c.send("i IDLE");
    expect(await c.line()).toStartWith("+");
    await mock.whenIdle();
    mock.pushIdleFetch(2);
    c.send("DONE");
    let seen = "";
    for (;;) {
      const l = await c.line();
      seen += l + "\n";
      if (l.startsWith("i ")) break;
    }
    expect(seen).not.toContain(EICAR_TEXT);
  });
});
