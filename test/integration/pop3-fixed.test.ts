// Fixed-upstream listeners: the proxy connects first, passes the server's greeting through (so APOP
// works), relays the login as it is, and scans as usual; a server that greets like IMAP is handed to the IMAP side.
import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { eicar } from "../helpers/eicar.ts";
import { startMockPop3 } from "../helpers/mock-pop3.ts";
import { logObjects, startProxy, TestClient, unstuff } from "../helpers/proxy.ts";

const fixed = (port: number) => ({
  listeners: {
    pop3: { enabled: true, addresses: [{ address: "127.0.0.1:0", upstream: `127.0.0.1:${port}` }] },
    pop3s: { enabled: false, addresses: [] },
    imap: { enabled: false, addresses: [] },
    imaps: { enabled: false, addresses: [] },
  },
});

describe("fixed upstream listener", () => {
  test("greeting passes through; USER/PASS relayed as is; CAPA filtered; RETR scanned", async () => {
    const infected = `Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n${Buffer.from(eicar()).toString("base64")}\r\n`;
    const mock = await startMockPop3({ messages: ["Subject: clean\r\n\r\nok\r\n", infected], capa: ["USER", "TOP", "UIDL", "SASL PLAIN GSSAPI", "STLS"] });
    await using proxy = await startProxy(fixed(mock.port));
    await using c = await TestClient.connect(proxy.ports.pop3);
    expect(await c.line()).toBe("+OK mock ready <1.2@mock>");
    c.send("CAPA");
    const capa = (await c.multi()).body.toString().split("\r\n").filter(Boolean);
    // The server's STLS is the proxy's business upstream; the client leg gets the proxy's own STLS.
    expect(capa).toEqual(["USER", "TOP", "UIDL", "SASL PLAIN", "STLS", "IMPLEMENTATION mailsentry"]);
    c.send("USER alice");
    expect(await c.line()).toBe("+OK");
    c.send("PASS secret");
    expect(await c.line()).toBe("+OK Logged in as alice.");
    c.sendRaw("RETR 1\r\nRETR 2\r\n");
    expect(unstuff((await c.multi()).body).toString()).toBe("Subject: clean\r\n\r\nok\r\n");
    const r2 = unstuff((await c.multi()).body).toString();
    expect(r2).not.toContain(Buffer.from(eicar()).toString("base64"));
    expect(mock.commands[0]).toContain("USER alice");
    expect(logObjects(proxy.logs).some((l) => l.msg === "detection")).toBe(true);
    mock.stop();
  });

  test("APOP works because the greeting's timestamp is the server's", async () => {
    const mock = await startMockPop3({ messages: ["Subject: clean\r\n\r\nok\r\n"] });
    await using proxy = await startProxy(fixed(mock.port));
    await using c = await TestClient.connect(proxy.ports.pop3);
    const greeting = await c.line();
    const stamp = /<[^>]+>/.exec(greeting)![0];
    const digest = createHash("md5").update(stamp + "secret").digest("hex");
    c.send(`APOP alice ${digest}`);
    // The mock does not implement APOP, but the line reached it unchanged.
    await c.line();
    expect(mock.commands[0]).toContain(`APOP alice ${digest}`);
    expect(proxy.logs.join("\n")).not.toContain(digest);
    mock.stop();
  });

  test("a server that greets like IMAP is handed to the IMAP side, which greets with its own capabilities", async () => {
    const mock = await startMockPop3({ faults: { greeting: "* OK [CAPABILITY IMAP4rev1] ready" } });
    await using proxy = await startProxy(fixed(mock.port));
    await using c = await TestClient.connect(proxy.ports.pop3);
    const greeting = await c.line();
    expect(greeting).toMatch(/^\* OK \[CAPABILITY IMAP4rev1 [^\]]*\] mailsentry ready\.$/);
    const caps = /\[CAPABILITY ([^\]]*)\]/.exec(greeting)![1]!.split(" ");
    expect(caps).toEqual(expect.arrayContaining(["STARTTLS", "AUTH=PLAIN", "AUTH=LOGIN"]));
    mock.stop();
  });
});

describe("client idle timeout", () => {
  test("an idle client is disconnected after clientIdleTimeout", async () => {
    await using proxy = await startProxy({ limits: { clientIdleTimeout: 200 } });
    await using c = await TestClient.connect(proxy.ports.pop3);
    await c.line();
    expect((await c.rest()).toString()).toBe("-ERR Disconnected for inactivity.\r\n");
    expect(logObjects(proxy.logs).find((l) => l.msg === "session end")?.end).toBe("idle timeout");
  });
});
