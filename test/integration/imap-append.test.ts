// APPEND in the forms Dovecot 2.3 cannot take, through the proxy against the scripted server that
// offers UTF8=ACCEPT: ENABLE UTF8=ACCEPT relayed, APPEND … UTF8 (~{n}) with the server's continuation
// relayed before the client's literal, UTF8 (~{n+}) with NUL and 8-bit bytes, and a MULTIAPPEND that
// mixes both kinds. The server must see exactly the bytes the client sent, and the appended mail is
// then served — scanned — like any other.
import { describe, expect, test } from "bun:test";
import { EICAR_TEXT } from "../helpers/eicar.ts";
import { startMockImap } from "../helpers/mock-imap.ts";
import { startProxy, TestClient } from "../helpers/proxy.ts";

const latin1 = (s: string) => Buffer.from(s, "latin1");
const utf8Message = Buffer.from("Subject: gr\u00fc\u00dfe\r\nFrom: j\u00f6rg@\u4f8b\u3048.jp\r\n\r\nhallo\r\n", "utf8");
// literal8 may carry NUL (RFC 3516): a UTF8 APPEND of a message with a binary body.
const binaryMessage = Buffer.concat([latin1("Subject: binary\r\nContent-Transfer-Encoding: binary\r\n\r\n"), Buffer.from([0, 1, 2, 0xff, 0x0d, 0x0a])]);
const infected = latin1(`From: m@example.test\r\nSubject: appended\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="A"\r\n\r\n` +
  `--A\r\nContent-Type: text/plain\r\n\r\nhello\r\n--A\r\nContent-Type: application/octet-stream; name="e.com"\r\n\r\n${EICAR_TEXT}\r\n--A--\r\n`);

async function session() {
  const mock = await startMockImap({
    messages: ["From: a@example.test\r\nSubject: one\r\n\r\nfirst\r\n"],
    capabilities: ["IMAP4rev1", "LITERAL+", "IDLE", "UIDPLUS", "MULTIAPPEND", "ENABLE", "UTF8=ACCEPT", "AUTH=PLAIN"],
  });
  const proxy = await startProxy({ allowedUpstreamPorts: [mock.port], upstreamTls: "off" });
  const c = await TestClient.connect(proxy.ports.imap);
  await c.line();
  c.send(`l LOGIN "alice/127.0.0.1:${mock.port}" secret`);
  const login = await c.untilTagged("l");
  return {
    mock, c, login,
    async [Symbol.asyncDispose]() { c.close(); await proxy.stop(); mock.stop(); },
  };
}

describe("APPEND UTF8 and MULTIAPPEND through the proxy", () => {
  test("ENABLE UTF8=ACCEPT, then ~{n} waits for the server's +, ~{n+} does not; the server gets the client's bytes exactly", async () => {
    await using s = await session();
    expect(s.login.at(-1)).toContain("UTF8=ACCEPT");
    s.c.send("a ENABLE UTF8=ACCEPT");
    expect(await s.c.untilTagged("a")).toEqual(["* ENABLED UTF8=ACCEPT", "a OK Enabled."]);

    const syncHead = latin1(`b APPEND INBOX (\\Seen) UTF8 (~{${utf8Message.length}}\r\n`);
    s.c.sendRaw(syncHead);
    expect(await s.c.line()).toBe("+ OK"); // the server's continuation, relayed
    s.c.sendRaw(Buffer.concat([utf8Message, latin1(")\r\n")]));
    expect(await s.c.untilTagged("b")).toEqual(["b OK [APPENDUID 1 2] Append completed."]);

    const nonSync = Buffer.concat([latin1(`c APPEND INBOX UTF8 (~{${binaryMessage.length}+}\r\n`), binaryMessage, latin1(")\r\n")]);
    s.c.sendRaw(nonSync);
    expect(await s.c.untilTagged("c")).toEqual(["c OK [APPENDUID 1 3] Append completed."]);

    const commands = s.mock.commands[0]!;
    expect(latin1(commands.at(-2)!)).toEqual(Buffer.concat([syncHead, utf8Message, latin1(")")]));
    expect(latin1(commands.at(-1)!)).toEqual(nonSync.subarray(0, nonSync.length - 2));

    s.c.send("d SELECT INBOX");
    await s.c.untilTagged("d");
    s.c.send("e UID FETCH 2 BODY.PEEK[]");
    const fetched = (await s.c.untilTagged("e")).join("\r\n");
    expect(fetched).toContain(`BODY[] {${utf8Message.length}}\r\n${utf8Message.toString("latin1")})`);
  });

  test("MULTIAPPEND of a plain literal, a UTF8 one and an infected one: one command upstream; the infected one is then served cleaned", async () => {
    await using s = await session();
    s.c.send("a ENABLE UTF8=ACCEPT");
    await s.c.untilTagged("a");
    const plain = latin1("Subject: plain\r\n\r\nplain\r\n");
    s.c.sendRaw(latin1(`b APPEND INBOX {${plain.length}}\r\n`));
    expect(await s.c.line()).toBe("+ OK");
    s.c.sendRaw(Buffer.concat([plain, latin1(` (\\Draft) UTF8 (~{${utf8Message.length}+}\r\n`), utf8Message, latin1(`) {${infected.length}}\r\n`)]));
    expect(await s.c.line()).toBe("+ OK");
    s.c.sendRaw(Buffer.concat([infected, latin1("\r\n")]));
    expect(await s.c.untilTagged("b")).toEqual(["b OK [APPENDUID 1 2:4] Append completed."]);
    expect(s.mock.appended("INBOX")).toBe(3);
    expect(s.mock.flags(3)).toEqual(["\\Draft"]);

    s.c.send("c SELECT INBOX");
    await s.c.untilTagged("c");
    s.c.send("d UID FETCH 4 BODY.PEEK[]");
    const fetched = (await s.c.untilTagged("d")).join("\r\n");
    expect(fetched).toContain(`BODY[] {${infected.length}}`);
    expect(fetched).not.toContain(EICAR_TEXT);
    expect(fetched).toContain("mailsentry removed");
    expect(fetched).toMatch(/^d OK/m);
  });
});
