// The POP3 proxy against the scripted mock server: normal flows a mail client sees.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { eicar } from "../helpers/eicar.ts";
import { mockStuff, startMockPop3, type MockPop3 } from "../helpers/mock-pop3.ts";
import { logObjects, startProxy, TestClient, unstuff, type StartedProxy } from "../helpers/proxy.ts";
import { makeTestCa, type TestCa } from "../helpers/test-ca.ts";
import { connectUpstream, loadTrust, UpstreamError } from "../../core/net/upstream.ts";
import { ServerConn } from "../../core/pop3/server.ts";

const CLEAN = "From: a@example.org\r\nTo: b@example.org\r\nSubject: hello\r\nMessage-ID: <1@example.org>\r\n\r\n.leading dot line\r\nbody\r\n..two dots\r\n.\r\nend\r\n";

function infectedMessage(): string {
  const b64 = Buffer.from(eicar()).toString("base64");
  return [
    "From: a@example.org", "To: b@example.org", "Subject: invoice", "Message-ID: <2@example.org>", "MIME-Version: 1.0",
    'Content-Type: multipart/mixed; boundary="XX"', "", "--XX", "Content-Type: text/plain", "", "Please see attached.", "--XX",
    'Content-Type: application/octet-stream; name="eicar.com"', 'Content-Disposition: attachment; filename="eicar.com"',
    "Content-Transfer-Encoding: base64", "", b64, "--XX--", "",
  ].join("\r\n");
}

async function login(c: TestClient, mock: MockPop3, user = "alice", pass = "secret") {
  expect(await c.line()).toStartWith("+OK");
  c.send(`USER ${user}/127.0.0.1:${mock.port}`);
  expect(await c.line()).toBe("+OK");
  c.send(`PASS ${pass}`);
  return c.line();
}

let dir: string;
let ca: TestCa;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "mailsentry-relay-"));
  ca = await makeTestCa(join(dir, "ca"));
});
afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

describe("POP3 relay", () => {
  test("pipelined commands are answered in order; a clean RETR is byte-identical", async () => {
    const mock = await startMockPop3({ messages: [CLEAN, "Subject: two\r\n\r\nsecond\r\n"] });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port] });
    await using c = await TestClient.connect(proxy.ports.pop3);
    expect(await login(c, mock)).toBe("+OK Logged in as alice.");
    c.sendRaw("STAT\r\nLIST\r\nUIDL 2\r\nRETR 1\r\nTOP 2 0\r\nDELE 2\r\nNOOP\r\nBOGUS\r\nQUIT\r\n");
    const stat = await c.line();
    const list = await c.multi();
    const uidl = await c.line();
    const retr = await c.multi();
    const top = await c.multi();
    const dele = await c.line();
    const noop = await c.line();
    const bogus = await c.line();
    const quit = await c.line();
    expect({ stat, list: list.body.toString(), uidl, retrStatus: retr.status, topStatus: top.status, dele, noop, bogus, quit }).toEqual({
      stat: `+OK 2 ${CLEAN.length + 24}`,
      list: `1 ${CLEAN.length}\r\n2 24\r\n`,
      uidl: "+OK 2 uid2",
      retrStatus: `+OK ${CLEAN.length} octets`,
      topStatus: "+OK",
      dele: "+OK message 2 deleted",
      noop: "+OK",
      bogus: "-ERR Unknown command.",
      quit: "+OK Bye",
    });
    // Byte-identical: exactly the stuffed form the server sent.
    expect(Buffer.concat([retr.body, Buffer.from(".\r\n")])).toEqual(Buffer.from(mockStuff(Buffer.from(CLEAN))));
    expect(unstuff(retr.body).toString()).toBe(CLEAN);
    expect(top.body.toString()).toBe("Subject: two\r\n\r\n");
    await c.closed;
    expect(mock.deleted).toEqual([2]);
    // The bogus command never reached the server.
    expect(mock.commands[0]).not.toContain("BOGUS");
    mock.stop();
  });

  test("an infected message is cleaned, and the original is quarantined before delivery", async () => {
    const mock = await startMockPop3({ messages: [infectedMessage()] });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port] });
    await using c = await TestClient.connect(proxy.ports.pop3);
    await login(c, mock);
    c.send("LIST 1");
    const listed = Number((await c.line()).split(" ")[2]);
    expect(listed).toBe(Buffer.byteLength(infectedMessage()));
    c.send("RETR 1");
    const retr = await c.multi();
    expect(retr.status).toStartWith("+OK");
    // The cleaned copy keeps the size LIST announced (clients compare the two).
    expect(unstuff(retr.body).length).toBe(listed);
    const delivered = unstuff(retr.body).toString("latin1");
    expect(delivered).not.toContain(Buffer.from(eicar()).toString("base64"));
    expect(delivered).toContain("Subject:");
    expect(delivered).toContain("Please see attached.");
    const files = (await readdir(proxy.quarantineDir)).filter((f) => f.endsWith(".eml"));
    expect(files).toHaveLength(1);
    expect((await readFile(join(proxy.quarantineDir, files[0]!))).toString("latin1")).toBe(infectedMessage());
    c.send("QUIT");
    await c.line();
    await c.closed;
    const detection = logObjects(proxy.logs).find((l) => l.msg === "detection");
    expect(detection).toMatchObject({ msg: "detection", action: "clean", quarantine: files[0]!.replace(/\.eml$/, "") });
    expect(String(detection!.verdict)).toContain("Eicar");
    const end = logObjects(proxy.logs).find((l) => l.msg === "session end");
    expect(end).toMatchObject({ user: "alice", messages: 1, detections: 1, end: "quit" });
    mock.stop();
  });

  test("action delete: the notice replaces the message; TOP of an infected message is refused", async () => {
    const mock = await startMockPop3({ messages: [infectedMessage()] });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port], action: "quarantine" });
    await using c = await TestClient.connect(proxy.ports.pop3);
    await login(c, mock);
    c.send("TOP 1 100");
    expect(await c.line()).toStartWith("-ERR [SYS/PERM]");
    c.send("RETR 1");
    const retr = await c.multi();
    const delivered = unstuff(retr.body).toString("latin1");
    expect(delivered).toContain("Subject:");
    expect(delivered).not.toContain("Please see attached.");
    expect(retr.status).toBe(`+OK ${unstuff(retr.body).length} octets`);
    expect(unstuff(retr.body).length).toBe(Buffer.byteLength(infectedMessage()));
    expect((await readdir(proxy.quarantineDir)).filter((f) => f.endsWith(".eml"))).toHaveLength(1);
    mock.stop();
  });

  test("AUTH PLAIN with an initial response and with a continuation; upstream gets the bare name", async () => {
    const mock = await startMockPop3({ messages: [CLEAN] });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port] });
    const b64 = (u: string, p: string) => Buffer.from(`\0${u}\0${p}`).toString("base64");
    {
      await using c = await TestClient.connect(proxy.ports.pop3);
      await c.line();
      c.send(`AUTH PLAIN ${b64(`alice#127.0.0.1:${mock.port}`, "secret")}`);
      expect(await c.line()).toBe("+OK Logged in as alice.");
      c.send("QUIT");
      await c.line();
    }
    {
      await using c = await TestClient.connect(proxy.ports.pop3);
      await c.line();
      c.send("AUTH PLAIN");
      expect(await c.line()).toBe("+ ");
      c.send(b64(`alice/127.0.0.1:${mock.port}`, "secret"));
      expect(await c.line()).toBe("+OK Logged in as alice.");
      c.send("STAT");
      expect(await c.line()).toStartWith("+OK 1 ");
    }
    // The mock offers SASL PLAIN, so the proxy logs in upstream with AUTH PLAIN as "alice".
    expect(mock.commands[0]!.some((l) => l.startsWith("AUTH PLAIN ") && Buffer.from(l.slice(11), "base64").toString() === "\0alice\0secret")).toBe(true);
    mock.stop();
  });

  test("USER/PASS upstream when the server has no SASL PLAIN", async () => {
    const mock = await startMockPop3({ messages: [CLEAN], capa: ["USER", "TOP", "UIDL"] });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port] });
    await using c = await TestClient.connect(proxy.ports.pop3);
    expect(await login(c, mock)).toBe("+OK Logged in as alice.");
    c.send("CAPA");
    const capa = await c.multi();
    expect(capa.body.toString().split("\r\n").filter(Boolean)).toEqual(["TOP", "UIDL", "IMPLEMENTATION mailsentry"]);
    expect(mock.commands[0]!.filter((l) => /^(USER|PASS)/.test(l))).toEqual(["USER alice", "PASS secret"]);
    mock.stop();
  });

  test("wrong password, refused port and malformed name all get the one uniform failure; no password in the logs", async () => {
    const mock = await startMockPop3({ messages: [CLEAN] });
    // Four failures on one connection: past the default maxLoginFailures (3), which closes it.
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port], limits: { maxLoginFailures: 10 } });
    await using c = await TestClient.connect(proxy.ports.pop3);
    expect(await login(c, mock, "alice", "Wrong-Pa55word")).toBe("-ERR [AUTH] Authentication failed.");
    c.send("USER alice/127.0.0.1:25");
    await c.line();
    c.send("PASS Wrong-Pa55word");
    expect(await c.line()).toBe("-ERR [AUTH] Authentication failed.");
    c.send("USER alice-without-server");
    await c.line();
    c.send("PASS Wrong-Pa55word");
    expect(await c.line()).toBe("-ERR [AUTH] Authentication failed.");
    c.send(`AUTH PLAIN ${Buffer.from(`\0alice/127.0.0.1:${mock.port}\0Wrong-Pa55word`).toString("base64")}`);
    expect(await c.line()).toBe("-ERR [AUTH] Authentication failed.");
    c.send("QUIT");
    await c.line();
    await c.closed;
    await proxy.service.stop();
    const all = proxy.logs.join("\n");
    expect(all).not.toContain("Wrong-Pa55word");
    expect(all).not.toContain(Buffer.from(`\0alice/127.0.0.1:${mock.port}\0Wrong-Pa55word`).toString("base64"));
    expect(all).toContain("allowedUpstreamPorts");
    mock.stop();
  });

  test("10 invalid commands before login end the session", async () => {
    await using proxy = await startProxy();
    await using c = await TestClient.connect(proxy.ports.pop3);
    await c.line();
    c.sendRaw(Array.from({ length: 12 }, (_, i) => `NONSENSE${i}\r\n`).join(""));
    const rest = (await c.rest()).toString();
    expect(rest.match(/-ERR Unknown command\./g)).toHaveLength(10);
    expect(rest).toEndWith("-ERR Too many invalid commands.\r\n");
  });

  test("STLS on the client leg; bytes pipelined after STLS are dropped; CAPA no longer offers STLS", async () => {
    const mock = await startMockPop3({ messages: [CLEAN] });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port] });
    await using c = await TestClient.connect(proxy.ports.pop3);
    await c.line();
    c.send("CAPA");
    expect((await c.multi()).body.toString()).toContain("STLS\r\n");
    c.sendRaw(`STLS\r\nUSER injected/127.0.0.1:${mock.port}\r\n`);
    expect(await c.line()).toBe("+OK Begin TLS negotiation now.");
    await c.startTls(proxy.caPem);
    c.send("CAPA");
    const capa = await c.multi();
    expect(capa.body.toString()).not.toContain("STLS");
    // The injected USER was dropped: PASS now has no USER before it.
    c.send("PASS secret");
    expect(await c.line()).toBe("-ERR USER first.");
    c.send(`USER alice/127.0.0.1:${mock.port}`);
    await c.line();
    c.send("PASS secret");
    expect(await c.line()).toBe("+OK Logged in as alice.");
    c.send("RETR 1");
    expect(unstuff((await c.multi()).body).toString()).toBe(CLEAN);
    expect(logObjects(proxy.logs).some((l) => l.msg === "dropped bytes sent after STLS in the same packet")).toBe(true);
    mock.stop();
  });

  test("POP3S: implicit TLS on the client leg with the proxy's certificate", async () => {
    const mock = await startMockPop3({ messages: [CLEAN] });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port] });
    await using c = await TestClient.connect(proxy.ports.pop3s, { tls: { ca: proxy.caPem } });
    expect(await login(c, mock)).toBe("+OK Logged in as alice.");
    c.send("CAPA");
    expect((await c.multi()).body.toString()).not.toContain("STLS");
    c.send("RETR 1");
    expect(unstuff((await c.multi()).body).toString()).toBe(CLEAN);
    mock.stop();
  });

  describe("upstream TLS", () => {
    test("STLS upstream when offered, verified against upstreamCaFile", async () => {
      const mock = await startMockPop3({ messages: [CLEAN], tls: { cert: ca.certPem, key: ca.keyPem } });
      await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port], upstreamCaFile: ca.caFile, upstreamTls: "required" });
      await using c = await TestClient.connect(proxy.ports.pop3);
      expect(await login(c, mock)).toBe("+OK Logged in as alice.");
      c.send("RETR 1");
      expect(unstuff((await c.multi()).body).toString()).toBe(CLEAN);
      expect(mock.commands[0]).toContain("STLS");
      expect(logObjects(proxy.logs).find((l) => l.msg === "logged in")).toMatchObject({ upstreamTls: true });
      mock.stop();
    });

    test("an untrusted upstream certificate fails the login with a clear reason", async () => {
      const mock = await startMockPop3({ messages: [CLEAN], tls: { cert: ca.certPem, key: ca.keyPem } });
      await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port] });
      await using c = await TestClient.connect(proxy.ports.pop3);
      expect(await login(c, mock)).toStartWith("-ERR [SYS/PERM] TLS with the mail server failed");
      expect(logObjects(proxy.logs).some((l) => l.msg === "upstream TLS failed")).toBe(true);
      mock.stop();
    });

    test("insecureUpstreamHosts skips verification and logs a warning", async () => {
      const mock = await startMockPop3({ messages: [CLEAN], tls: { cert: ca.certPem, key: ca.keyPem } });
      await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port], insecureUpstreamHosts: ["127.0.0.1"] });
      await using c = await TestClient.connect(proxy.ports.pop3);
      expect(await login(c, mock)).toBe("+OK Logged in as alice.");
      expect(logObjects(proxy.logs).some((l) => l.level === "warn" && String(l.msg).includes("NOT verified"))).toBe(true);
      mock.stop();
    });

    test("upstreamTls required refuses a server without STLS, never logging in in clear", async () => {
      const mock = await startMockPop3({ messages: [CLEAN] });
      await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port], upstreamTls: "required" });
      await using c = await TestClient.connect(proxy.ports.pop3);
      expect(await login(c, mock)).toBe("-ERR [SYS/PERM] The mail server offers no TLS and mailsentry requires it (upstreamTls: required).");
      expect(mock.commands[0]!.some((l) => l.startsWith("PASS") || l.startsWith("AUTH"))).toBe(false);
      mock.stop();
    });

    test("implicit TLS (the port-995 path): verified with the CA file, refused without it", async () => {
      const mock = await startMockPop3({ messages: [CLEAN], tls: { cert: ca.certPem, key: ca.keyPem }, implicitTls: true });
      const trusted = await loadTrust({ caFile: ca.caFile, insecureHosts: [], env: {} });
      const ch = await connectUpstream({ host: "127.0.0.1", ip: "127.0.0.1", port: mock.port, implicitTls: true, trust: trusted, timeoutMs: 5000 });
      const server = new ServerConn(ch, { maxUpstreamLine: 1024, upstreamReadTimeout: 5000 });
      expect((await server.status()).line).toBe("+OK mock ready <1.2@mock>");
      ch.destroy();
      const untrusted = await loadTrust({ caFile: null, insecureHosts: [], env: {} });
      const refused = await connectUpstream({ host: "127.0.0.1", ip: "127.0.0.1", port: mock.port, implicitTls: true, trust: untrusted, timeoutMs: 5000 }).catch((e) => e);
      expect(refused).toBeInstanceOf(UpstreamError);
      expect(refused.code).toBe("tls");
      mock.stop();
    });

    test("a CA in the system bundle (SSL_CERT_FILE) or NODE_EXTRA_CA_CERTS is trusted without upstreamCaFile", async () => {
      const mock = await startMockPop3({ messages: [CLEAN], tls: { cert: ca.certPem, key: ca.keyPem }, implicitTls: true });
      for (const env of [{ SSL_CERT_FILE: ca.caFile }, { NODE_EXTRA_CA_CERTS: ca.caFile }]) {
        const trust = await loadTrust({ caFile: null, insecureHosts: [], env });
        const ch = await connectUpstream({ host: "127.0.0.1", ip: "127.0.0.1", port: mock.port, implicitTls: true, trust, timeoutMs: 5000 });
        const server = new ServerConn(ch, { maxUpstreamLine: 1024, upstreamReadTimeout: 5000 });
        expect((await server.status()).line).toBe("+OK mock ready <1.2@mock>");
        ch.destroy();
      }
      mock.stop();
    });

    test("upstreamTls off never upgrades", async () => {
      const mock = await startMockPop3({ messages: [CLEAN], tls: { cert: ca.certPem, key: ca.keyPem } });
      await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port], upstreamTls: "off" });
      await using c = await TestClient.connect(proxy.ports.pop3);
      expect(await login(c, mock)).toBe("+OK Logged in as alice.");
      expect(mock.commands[0]).not.toContain("STLS");
      mock.stop();
    });
  });

  test("a large message whose every line starts with a dot arrives intact", async () => {
    // Four million stuffed lines: once a view per line, which overflowed the stack of the final write.
    const body = "Subject: dots\r\n\r\n" + ".x\r\n".repeat(4_000_000);
    const mock = await startMockPop3({ messages: [body] });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port] });
    await using c = await TestClient.connect(proxy.ports.pop3);
    expect(await login(c, mock)).toBe("+OK Logged in as alice.");
    c.send("RETR 1");
    const retr = await c.multi();
    expect(retr.status).toStartWith("+OK");
    expect(unstuff(retr.body).equals(Buffer.from(body))).toBe(true);
    mock.stop();
  });

  test.skipIf(process.platform !== "linux")("excludedApps: a local client program found through /proc is relayed unscanned", async () => {
    const mock = await startMockPop3({ messages: [infectedMessage()] });
    // The client here is this test process itself.
    const me = (await Bun.file("/proc/self/comm").text()).trim();
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port], excludedApps: [me] });
    await using c = await TestClient.connect(proxy.ports.pop3);
    await login(c, mock);
    c.send("RETR 1");
    expect(unstuff((await c.multi()).body).toString("latin1")).toBe(infectedMessage());
    expect(logObjects(proxy.logs).find((l) => l.msg === "session relayed without scanning")).toMatchObject({ exclusion: `excludedApps: ${me}` });
    mock.stop();
  });

  test("pass-through gives the client the very bytes the server sent: its stuffing, every reply", async () => {
    const bodies = ["Subject: a\r\n\r\n.one\r\n..two\r\n.\r\nend\r\n", "Subject: b\r\n\r\n" + ".x\r\nplain line\r\n".repeat(50_000)];
    const mock = await startMockPop3({ messages: bodies });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port], excludedServers: ["127.0.0.0/8"] });
    await using c = await TestClient.connect(proxy.ports.pop3);
    await login(c, mock);
    for (const [i, body] of bodies.entries()) {
      c.send(`RETR ${i + 1}`);
      const r = await c.multi();
      const wire = mockStuff(new TextEncoder().encode(body));
      expect(Buffer.concat([r.body, Buffer.from(".\r\n")]).equals(Buffer.from(wire))).toBe(true);
    }
    c.send("LIST");
    expect((await c.multi()).body.toString("latin1")).toBe(bodies.map((b, i) => `${i + 1} ${b.length}\r\n`).join(""));
    mock.stop();
  });

  test("excludedServers: relayed unscanned, and the log says which exclusion applied", async () => {
    const mock = await startMockPop3({ messages: [infectedMessage()] });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port], excludedServers: ["127.0.0.0/8"] });
    await using c = await TestClient.connect(proxy.ports.pop3);
    await login(c, mock);
    c.send("RETR 1");
    expect(unstuff((await c.multi()).body).toString("latin1")).toBe(infectedMessage());
    expect(logObjects(proxy.logs).find((l) => l.msg === "session relayed without scanning")).toMatchObject({ exclusion: "excludedServers: 127.0.0.0/8" });
    mock.stop();
  });
});
