// Client logins the IMAP proxy answers itself, against the scripted upstream: AUTHENTICATE LOGIN with
// and without an initial response, a UTF-8 password reaching the server byte for byte, cancelling,
// and responses that are not base64.
import { describe, expect, test } from "bun:test";
import { startMockImap } from "../helpers/mock-imap.ts";
import { startProxy, TestClient } from "../helpers/proxy.ts";

const b64 = (s: string) => Buffer.from(s, "utf8").toString("base64");
const PASSWORD = 'gr\u00fc\u00df "x" \u2603';
/** The mock compares bytes as latin1 text: this is the UTF-8 password as it must arrive. */
const PASSWORD_ON_WIRE = Buffer.from(PASSWORD, "utf8").toString("latin1");

async function setup() {
  const mock = await startMockImap({ messages: ["From: a@example.test\r\n\r\nbody\r\n"], users: { alice: PASSWORD_ON_WIRE } });
  const proxy = await startProxy({ allowedUpstreamPorts: [mock.port], upstreamTls: "off" });
  const c = await TestClient.connect(proxy.ports.imap);
  const greeting = await c.line();
  return {
    mock, proxy, c, greeting, user: `alice/127.0.0.1:${mock.port}`,
    async [Symbol.asyncDispose]() { c.close(); await proxy.stop(); await mock[Symbol.asyncDispose](); },
  };
}

describe("AUTHENTICATE LOGIN", () => {
  test("is offered before login, beside PLAIN", async () => {
    await using s = await setup();
    expect(s.greeting).toContain("AUTH=PLAIN");
    expect(s.greeting).toContain("AUTH=LOGIN");
  });

  test("the two challenges, then the routed user logs in upstream with the UTF-8 password intact", async () => {
    await using s = await setup();
    s.c.send("a AUTHENTICATE LOGIN");
    expect(await s.c.line()).toBe(`+ ${b64("Username:")}`);
    s.c.send(b64(s.user));
    expect(await s.c.line()).toBe(`+ ${b64("Password:")}`);
    s.c.send(b64(PASSWORD));
    expect((await s.c.untilTagged("a")).at(-1)).toStartWith("a OK");
    s.c.send("b SELECT INBOX");
    expect((await s.c.untilTagged("b")).at(-1)).toStartWith("b OK");
    expect(s.mock.connections()).toBe(1);
  });

  test("with the user name as an initial response (SASL-IR) only the password is asked for", async () => {
    await using s = await setup();
    s.c.send(`a AUTHENTICATE LOGIN ${b64(s.user)}`);
    expect(await s.c.line()).toBe(`+ ${b64("Password:")}`);
    s.c.send(b64(PASSWORD));
    expect((await s.c.untilTagged("a")).at(-1)).toStartWith("a OK");
  });

  test("a wrong password is the server's refusal; the session can try again", async () => {
    await using s = await setup();
    s.c.send(`a AUTHENTICATE LOGIN ${b64(s.user)}`);
    await s.c.line();
    s.c.send(b64("wrong"));
    expect((await s.c.untilTagged("a")).at(-1)).toMatch(/^a NO /);
    s.c.send(`b AUTHENTICATE LOGIN ${b64(s.user)}`);
    await s.c.line();
    s.c.send(b64(PASSWORD));
    expect((await s.c.untilTagged("b")).at(-1)).toStartWith("b OK");
  });

  test("* at either challenge cancels with BAD and reaches no server; a response that is not base64 is refused", async () => {
    await using s = await setup();
    s.c.send("a AUTHENTICATE LOGIN");
    await s.c.line();
    s.c.send("*");
    expect(await s.c.line()).toStartWith("a BAD");
    s.c.send(`b AUTHENTICATE LOGIN ${b64(s.user)}`);
    await s.c.line();
    s.c.send("*");
    expect(await s.c.line()).toStartWith("b BAD");
    s.c.send("c AUTHENTICATE LOGIN");
    await s.c.line();
    s.c.send("not base64!");
    await s.c.line();
    s.c.send(b64(PASSWORD));
    expect(await s.c.line()).toMatch(/^c NO /);
    expect(s.mock.connections()).toBe(0);
    s.c.send("d AUTHENTICATE CRAM-MD5");
    expect(await s.c.line()).toMatch(/^d NO \[CANNOT\]/);
  });
});
