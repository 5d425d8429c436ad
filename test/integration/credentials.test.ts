// Credentials with control bytes never reach a server: a CR or LF in a password (or a SASL answer)
// would end the upstream PASS/LOGIN line early and run the rest as the client's own command, with
// every later reply one step late. Each case checks what the scripted server received.
import { describe, expect, test } from "bun:test";
import { startMockImap } from "../helpers/mock-imap.ts";
import { startMockPop3 } from "../helpers/mock-pop3.ts";
import { createLogger } from "../../core/log.ts";
import { logObjects, startProxy, TestClient } from "../helpers/proxy.ts";

const b64 = (s: string) => Buffer.from(s, "latin1").toString("base64");
/** A server without SASL PLAIN: the proxy logs in with USER/PASS, where a line break would split PASS. */
const USER_PASS_ONLY = ["USER", "TOP", "UIDL"];
const LOGIN_COMMANDS = /^(USER|PASS|AUTH|LIST|DELE|RETR)\b/i;

describe("POP3: control bytes in credentials", () => {
  test("AUTH PLAIN with CR LF inside the password is refused before anything is sent upstream", async () => {
    await using mock = await startMockPop3({ messages: ["Subject: x\r\n\r\nbody\r\n"], capa: USER_PASS_ONLY });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port] });
    await using c = await TestClient.connect(proxy.ports.pop3);
    await c.line();
    c.send(`AUTH PLAIN ${b64(`\0alice/127.0.0.1:${mock.port}\0secret\r\nLIST`)}`);
    expect(await c.line()).toStartWith("-ERR [AUTH]");
    expect(mock.commands.flat().filter((l) => LOGIN_COMMANDS.test(l))).toEqual([]);
    expect(logObjects(proxy.logs).find((l) => l.msg === "login refused")?.reason).toBe("control bytes in password");
    // The session is still usable: a clean login works.
    c.send(`USER alice/127.0.0.1:${mock.port}`);
    await c.line();
    c.send("PASS secret");
    expect(await c.line()).toStartWith("+OK");
  });

  test("AUTH PLAIN with CR LF inside the user part of the routed name sends nothing upstream", async () => {
    await using mock = await startMockPop3({ messages: ["Subject: x\r\n\r\nbody\r\n"], capa: USER_PASS_ONLY });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port] });
    await using c = await TestClient.connect(proxy.ports.pop3);
    await c.line();
    c.send(`AUTH PLAIN ${b64(`\0alice\r\nDELE 1/127.0.0.1:${mock.port}\0secret`)}`);
    expect(await c.line()).toStartWith("-ERR [AUTH]");
    expect(mock.commands.flat().filter((l) => LOGIN_COMMANDS.test(l))).toEqual([]);
    expect(mock.deleted).toEqual([]);
  });

  test("PASS with a bare CR or another control byte inside is refused", async () => {
    await using mock = await startMockPop3({ messages: [], capa: USER_PASS_ONLY });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port] });
    for (const password of ["secret\rLIST", "sec\x00ret", "sec\x1bret"]) {
      await using c = await TestClient.connect(proxy.ports.pop3);
      await c.line();
      c.send(`USER alice/127.0.0.1:${mock.port}`);
      await c.line();
      c.sendRaw(`PASS ${password}\r\n`);
      expect(await c.line()).toStartWith("-ERR [AUTH]");
    }
    expect(mock.commands.flat().filter((l) => LOGIN_COMMANDS.test(l))).toEqual([]);
  });

  test("a fixed upstream gets no login line holding a bare CR or NUL, nor such an AUTH answer", async () => {
    await using mock = await startMockPop3({ messages: [] });
    await using proxy = await startProxy({
      listeners: {
        pop3: { enabled: true, addresses: [{ address: "127.0.0.1:0", upstream: `127.0.0.1:${mock.port}` }] },
        pop3s: { enabled: false, addresses: [] },
        imap: { enabled: false, addresses: [] },
        imaps: { enabled: false, addresses: [] },
      },
      upstreamTls: "off",
    });
    await using c = await TestClient.connect(proxy.ports.pop3);
    await c.line();
    c.send("USER alice");
    expect(await c.line()).toStartWith("+OK");
    c.sendRaw("PASS secret\rLIST\r\n");
    expect(await c.line()).toStartWith("-ERR [AUTH]");
    c.send("AUTH PLAIN");
    expect(await c.line()).toStartWith("+");
    c.sendRaw(`${b64("\0alice\0secret")}\x00\r\n`);
    expect(await c.line()).toStartWith("-ERR [AUTH]");
    const sent = mock.commands.flat();
    expect(sent.filter((l) => /[\r\0]/.test(l))).toEqual([]);
    expect(sent.filter((l) => /^PASS\b/i.test(l))).toEqual([]);
    // The exchange upstream was cancelled, not left waiting for an answer.
    expect(sent).toContain("*");
  });
});

describe("IMAP: control bytes in credentials", () => {
  async function setup() {
    const mock = await startMockImap({ messages: ["From: a@example.test\r\n\r\nbody\r\n"], users: { alice: "secret" } });
    const proxy = await startProxy({ allowedUpstreamPorts: [mock.port], upstreamTls: "off" });
    const c = await TestClient.connect(proxy.ports.imap);
    await c.line();
    return {
      mock, proxy, c, user: `alice/127.0.0.1:${mock.port}`,
      /** Every line the server got after its connection's greeting that logs in. */
      logins: () => mock.commands.flat().filter((l) => /\b(LOGIN|AUTHENTICATE)\b/i.test(l)),
      async [Symbol.asyncDispose]() { c.close(); await proxy.stop(); await mock[Symbol.asyncDispose](); },
    };
  }

  test("LOGIN with CR LF inside a literal password is refused; the server sees no login", async () => {
    await using s = await setup();
    const password = "secret\r\nb DELETE INBOX";
    s.c.sendRaw(`a LOGIN ${s.user} {${password.length}+}\r\n${password}\r\n`);
    expect((await s.c.untilTagged("a")).at(-1)).toStartWith("a NO [AUTHENTICATIONFAILED]");
    expect(s.logins()).toEqual([]);
  });

  test("AUTHENTICATE PLAIN and LOGIN with a line break in the password are refused", async () => {
    await using s = await setup();
    s.c.send(`a AUTHENTICATE PLAIN ${b64(`\0${s.user}\0secret\r\nb LOGOUT`)}`);
    expect((await s.c.untilTagged("a")).at(-1)).toStartWith("a NO");
    s.c.send("b AUTHENTICATE LOGIN");
    await s.c.line();
    s.c.send(b64(s.user));
    await s.c.line();
    s.c.send(b64("secret\nx"));
    expect((await s.c.untilTagged("b")).at(-1)).toStartWith("b NO");
    expect(s.logins()).toEqual([]);
    // A clean login on the same connection still works.
    s.c.send(`c LOGIN ${s.user} secret`);
    expect((await s.c.untilTagged("c")).at(-1)).toStartWith("c OK");
  });
});

describe("the session's password never reaches the log, whatever sends it", () => {
  const PW = "Echo-Me-9c4e";

  test("a server that echoes the password (and the SASL response) in its -ERR: masked in every line", async () => {
    for (const capa of [USER_PASS_ONLY, ["USER", "SASL PLAIN"]]) {
      await using mock = await startMockPop3({ capa, faults: { echoPassword: true } });
      await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port], upstreamTls: "off" });
      await using c = await TestClient.connect(proxy.ports.pop3);
      await c.line();
      c.send(`USER alice/127.0.0.1:${mock.port}`);
      await c.line();
      c.send(`PASS ${PW}`);
      expect(await c.line()).toBe("-ERR [AUTH] Authentication failed.");
      const clientB64 = b64(`\0alice/127.0.0.1:${mock.port}\0${PW}`);
      c.send(`AUTH PLAIN ${clientB64}`);
      expect(await c.line()).toBe("-ERR [AUTH] Authentication failed.");
      c.send("QUIT");
      await c.closed;
      await proxy.service.stop();
      // The server did echo it: the proxy logged the server's reply, masked.
      const all = proxy.logs.join("\n");
      expect(all).toContain("upstream login failed");
      expect(all).toContain("***");
      for (const secret of [PW, clientB64, b64(`alice\0alice\0${PW}`), b64(`\0alice\0${PW}`)]) expect(all).not.toContain(secret);
    }
  });

  test("a logger masks a secret in the message, in nested fields and in errors, for children made before and after", () => {
    const lines: string[] = [];
    const root = createLogger({ format: "json", write: (l) => lines.push(l) });
    const session = root.child({ session: 1 });
    const early = session.child({ mailbox: "INBOX" });
    session.addSecret("hunter22");
    const late = session.child({ uid: 7 });
    early.warn("reply hunter22", { reply: "-ERR bad hunter22", nested: { list: ["x hunter22"] }, error: new Error("echo hunter22") });
    late.info("ok", { reply: "hunter22!" });
    root.child({ session: 2 }).info("another session's hunter22 is not this one's secret");
    expect(lines.slice(0, 2).join("\n")).not.toContain("hunter22");
    expect(lines[0]).toContain("***");
    expect(lines[2]).toContain("hunter22");
  });
});
