// The POP3 proxy in front of a real Dovecot, read with real clients (python3 poplib, curl): clean
// mail arrives exactly as a direct session to Dovecot gets it, on every TLS combination of the two
// legs; infected mail is handled per the configured action; DELE + QUIT removes the server copy
// while the original waits in quarantine.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createServer, connect, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { writeFile } from "node:fs/promises";
import { QuarantineStore } from "../../core/quarantine/store.ts";
import { asCrlf, cleanCorpus, curl, have, infectedMessage, INFECTED_TEXT_PART, poplib, type PopOp, messagesOf } from "../helpers/clients.ts";
import { startDovecot, type Dovecot } from "../helpers/dovecot.ts";
import { eicar, EICAR_TEXT } from "../helpers/eicar.ts";
import { throwingEngine } from "../helpers/engine.ts";
import { logObjects, startProxy, TestClient, type ConfigOverrides, type StartedProxy } from "../helpers/proxy.ts";

const ready = have("dovecot") && have("python3");
const PW = "secret-pw";
const USERS = ["alice", "bob", "carol", "dave", "erin", "ivy", "frank"].map((name) => ({ name, password: PW }));
const corpus = cleanCorpus();
const infected = infectedMessage(eicar());
const EICAR_B64 = Buffer.from(EICAR_TEXT).toString("base64");

/** The proxy's client-leg CA as a file (each proxy's state dir has its own CA). */
async function caFileOf(p: StartedProxy): Promise<string> {
  const file = join(p.stateDir, "client-ca.pem");
  await writeFile(file, p.caPem);
  return file;
}

/** Maildir files are often stored with LF line ends (Dovecot's own deliveries are). */
const lfOnly = (m: Uint8Array) => new Uint8Array(Buffer.from(Buffer.from(m).toString("latin1").replace(/\r\n/g, "\n"), "latin1"));

const dec = (b: Uint8Array) => Buffer.from(b).toString("latin1");
const hasEicar = (b: Uint8Array) => dec(b).includes(EICAR_TEXT) || dec(b).replace(/\r\n/g, "").includes(EICAR_B64);

describe.skipIf(!ready)("POP3 proxy in front of Dovecot", () => {
  let dc: Dovecot;
  let proxy: StartedProxy;
  let proxyCa: string;
  /** Base overrides every proxy here needs to reach this Dovecot. */
  let base: ConfigOverrides;
  const routed = (user: string, sep = "/") => `${user}${sep}127.0.0.1:${dc.ports.pop3}`;

  beforeAll(async () => {
    dc = await startDovecot({ users: USERS });
    await dc.seed("alice", corpus.map((c) => c.bytes));
    await dc.seed("bob", [corpus[0]!.bytes, infected]);
    await dc.seed("carol", [corpus[0]!.bytes, infected, corpus[1]!.bytes]);
    await dc.seed("dave", [infected]);
    await dc.seed("erin", [corpus[0]!.bytes, corpus[1]!.bytes]);
    await dc.seed("ivy", [lfOnly(corpus[1]!.bytes), lfOnly(infected)]);
    base = { allowedUpstreamPorts: [dc.ports.pop3, dc.ports.pop3s, 995], upstreamCaFile: dc.caFile };
    proxy = await startProxy(base);
    proxyCa = await caFileOf(proxy);
  }, 30_000);
  afterAll(async () => {
    await proxy?.stop();
    await dc?.stop();
  });

  const allOps = (n: number): PopOp[] => Array.from({ length: n }, (_, i) => ["retr", i + 1] as PopOp);

  /** A direct poplib session to Dovecot: the reference every proxied download is compared with. */
  const direct = (user: string, ops: PopOp[]) => poplib({ mode: "plain", port: dc.ports.pop3, user, password: PW, ops });

  test("poplib, plain client leg (upstream STLS): every clean message and TOP equal a direct session's", async () => {
    const ops: PopOp[] = [["stat"], ["list"], ["uidl"], ...allOps(corpus.length), ...corpus.map((_, i) => ["top", i + 1, 0] as PopOp), ["top", 2, 3]];
    const [viaProxy, ref] = await Promise.all([
      poplib({ mode: "plain", port: proxy.ports.pop3, user: routed("alice"), password: PW, ops }),
      direct("alice", ops),
    ]);
    expect(viaProxy.results).toEqual(ref.results);
    // And what Dovecot sent is what was seeded (bare LF goes out as CRLF).
    expect(messagesOf(ref).slice(0, corpus.length)).toEqual(corpus.map((c) => asCrlf(c.bytes)));
    expect(viaProxy.welcome).toStartWith("+OK");
    const login = logObjects(proxy.logs).find((l) => l.msg === "logged in" && l.user === "alice");
    expect(login).toMatchObject({ upstreamTls: true, clientTls: false });
  });

  test("the raw wire bytes of RETR (dot-stuffed, terminator) are the same through the proxy as direct", async () => {
    const session = async (port: number, user: string) => {
      await using c = await TestClient.connect(port);
      await c.line();
      c.send(`USER ${user}`);
      await c.line();
      c.send(`PASS ${PW}`);
      expect(await c.line()).toStartWith("+OK");
      const bodies: Buffer[] = [];
      for (let i = 1; i <= corpus.length; i++) {
        c.send(`RETR ${i}`);
        const r = await c.multi();
        expect(r.status).toStartWith("+OK");
        bodies.push(r.body);
      }
      c.send("QUIT");
      await c.line();
      return bodies;
    };
    const [viaProxy, ref] = await Promise.all([session(proxy.ports.pop3, routed("alice")), session(dc.ports.pop3, "alice")]);
    expect(viaProxy.length).toBe(corpus.length);
    for (let i = 0; i < corpus.length; i++) expect(viaProxy[i]!.equals(ref[i]!)).toBe(true);
  });

  test("poplib with STLS on the client leg, verifying 127.0.0.1 and localhost, upstream STLS", async () => {
    const ops = allOps(corpus.length);
    const ref = messagesOf(await direct("alice", ops));
    for (const host of ["127.0.0.1", "localhost"]) {
      const r = await poplib({ mode: "stls", host, port: proxy.ports.pop3, caFile: proxyCa, user: routed("alice", "#"), password: PW, ops });
      expect(messagesOf(r)).toEqual(ref);
    }
    const logins = logObjects(proxy.logs).filter((l) => l.msg === "logged in" && l.clientTls === true);
    expect(logins.length).toBeGreaterThanOrEqual(2);
    expect(logins.every((l) => l.upstreamTls === true)).toBe(true);
  });

  test("poplib over POP3S to the proxy's pop3s listener", async () => {
    const ops = allOps(corpus.length);
    const [r, ref] = await Promise.all([
      poplib({ mode: "pop3s", port: proxy.ports.pop3s, caFile: proxyCa, user: routed("alice"), password: PW, ops }),
      direct("alice", ops),
    ]);
    expect(messagesOf(r)).toEqual(messagesOf(ref));
  });

  test("a client that does not trust the proxy CA is refused by poplib (hostname and chain are checked)", async () => {
    await expect(poplib({ mode: "pop3s", port: proxy.ports.pop3s, caFile: dc.caFile, user: routed("alice"), password: PW, ops: [] })).rejects.toThrow(/CERTIFICATE_VERIFY_FAILED|certificate verify failed/);
  });

  // Implicit TLS upstream happens only on port 995 (core/pop3/login.ts: implicitTls = port === 995).
  // Dovecot's pop3s listener is on a random port, so a byte-for-byte TCP forwarder on 127.0.0.1:995
  // stands in front of it; TLS still runs end to end between the proxy and Dovecot.
  let forwarder: Server | null = null;
  let forwarded = 0;
  const canBind995 = process.getuid?.() === 0;
  test.skipIf(!canBind995)("POP3S on both legs: client POP3S, upstream implicit TLS on 995 (through a TCP forwarder to Dovecot's pop3s)", async () => {
    const open = new Set<Socket>();
    forwarder = createServer((c) => {
      forwarded++;
      const u = connect(dc.ports.pop3s, "127.0.0.1");
      open.add(c).add(u);
      c.pipe(u);
      u.pipe(c);
      c.on("error", () => u.destroy());
      u.on("error", () => c.destroy());
    });
    const listening = await new Promise<boolean>((resolve) => {
      forwarder!.once("error", () => resolve(false));
      forwarder!.listen(995, "127.0.0.1", () => resolve(true));
    });
    if (!listening) {
      console.warn("port 995 is taken: upstream POP3S not tested");
      return;
    }
    try {
      const ops = allOps(corpus.length);
      const [r, ref] = await Promise.all([
        poplib({ mode: "pop3s", port: proxy.ports.pop3s, caFile: proxyCa, user: "alice/127.0.0.1:995", password: PW, ops }),
        direct("alice", ops),
      ]);
      expect(messagesOf(r)).toEqual(messagesOf(ref));
      expect(forwarded).toBe(1);
      const login = logObjects(proxy.logs).findLast((l) => l.msg === "logged in" && String(l.server).endsWith(":995"));
      expect(login).toMatchObject({ upstreamTls: true, clientTls: true });
    } finally {
      // Bun's node:net may never report the close of a piped socket whose peer closed, and
      // server.close() waits for every connection: destroy them first.
      for (const s of open) s.destroy();
      await new Promise((r) => forwarder!.close(r));
    }
  });

  test("four clients at once, each through its own upstream session, all get the 5 MB message intact", async () => {
    const large = corpus.findIndex((c) => c.name === "large") + 1;
    const ref = messagesOf(await direct("alice", [["retr", large]]));
    const runs = await Promise.all([0, 1, 2, 3].map((i) =>
      poplib({ mode: i % 2 ? "stls" : "plain", port: proxy.ports.pop3, caFile: proxyCa, user: routed("alice"), password: PW, ops: [["retr", large], ["retr", 1]] })));
    for (const r of runs) expect(Buffer.from(messagesOf(r)[0]!).equals(ref[0]!)).toBe(true);
  });

  test("upstream TLS policy against Dovecot: required works (STLS offered), off logs in in clear", async () => {
    for (const upstreamTls of ["required", "off"] as const) {
      await using p = await startProxy({ ...base, upstreamTls });
      const r = await poplib({ mode: "plain", port: p.ports.pop3, user: routed("alice"), password: PW, ops: [["retr", 1]] });
      expect(messagesOf(r)).toEqual([corpus[0]!.bytes]);
      expect(logObjects(p.logs).find((l) => l.msg === "logged in")).toMatchObject({ upstreamTls: upstreamTls === "required" });
    }
  });

  test("Dovecot's certificate not trusted (no upstreamCaFile): the client gets the TLS failure, not a login", async () => {
    await using p = await startProxy({ allowedUpstreamPorts: [dc.ports.pop3] });
    await expect(poplib({ mode: "plain", port: p.ports.pop3, user: routed("alice"), password: PW, ops: [] }))
      .rejects.toThrow("-ERR [SYS/PERM] TLS with the mail server failed");
  });

  test("over maxMessageSize: spooled, scanned and delivered exactly as Dovecot sends it", async () => {
    const large = corpus.findIndex((c) => c.name === "large") + 1;
    const ref = messagesOf(await direct("alice", [["retr", large]]));
    await using p = await startProxy({ ...base, limits: { maxMessageSize: 256 * 1024 } });
    const got = messagesOf(await poplib({ mode: "plain", port: p.ports.pop3, user: routed("alice"), password: PW, ops: [["retr", large], ["retr", 1]] }));
    expect(Buffer.from(got[0]!).equals(ref[0]!)).toBe(true);
    expect(got[1]).toEqual(corpus[0]!.bytes);
    expect(logObjects(p.logs).some((l) => l.msg === "message over maxMessageSize: spooled to disk to be scanned")).toBe(true);
  });

  test("a 200 MB message with EICAR after 199 MB of padding (default limits): found, cleaned, the original quarantined", async () => {
    // Padding past maxMessageSize was a bypass: such a message reached the client tagged Unscanned.
    const block = Buffer.from(Array.from({ length: 57 * 1024 }, (_, i) => (i * 7919) & 0xff)).toString("base64").replace(/.{76}/g, "$&\r\n");
    const head = Buffer.from("From: a@example.org\r\nTo: ivy@example.org\r\nSubject: big\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"B\"\r\n\r\n--B\r\n" +
      "Content-Type: video/mp4; name=\"holiday.mp4\"\r\nContent-Transfer-Encoding: base64\r\n\r\n", "latin1");
    const pad = Buffer.from(block, "latin1");
    const tail = Buffer.from(`--B\r\nContent-Type: application/octet-stream; name="tool.com"\r\nContent-Transfer-Encoding: base64\r\n\r\n${EICAR_B64}\r\n--B--\r\n`, "latin1");
    const copies = Math.ceil((200 * 1024 * 1024) / pad.length);
    const big = Buffer.concat([head, ...Array.from({ length: copies }, () => pad), tail]);
    await dc.seed("frank", [big]);
    await using p = await startProxy(base);
    const r = await poplib({ mode: "plain", port: p.ports.pop3, user: routed("frank"), password: PW, ops: [["retr-summary", 1, EICAR_B64]] });
    const s = r.results[0]!.summary!;
    expect(s.found).toBe(false);
    expect(s.header).toContain("X-Virus-Status: Cleaned (Eicar-Test-Signature)");
    expect(s.size).toBeGreaterThan(200 * 1024 * 1024); // the padding is kept: only the infected part went
    const q = await new QuarantineStore(p.quarantineDir).list();
    expect(q.length).toBe(1);
    expect(q[0]!.size).toBe(big.length);
    expect(q[0]!.sha256).toBe(new Bun.CryptoHasher("sha256").update(big).digest("hex"));
  }, 120_000);

  test("over maxSpooledMessageSize: onUnscanned deliver relays it as Dovecot sends it under an Unscanned header; tempfail withholds it", async () => {
    const large = corpus.findIndex((c) => c.name === "large") + 1;
    const ref = messagesOf(await direct("alice", [["retr", large]]));
    await using deliver = await startProxy({ ...base, limits: { maxMessageSize: 256 * 1024, maxSpooledMessageSize: 1024 * 1024 } });
    const r = await poplib({ mode: "plain", port: deliver.ports.pop3, user: routed("alice"), password: PW, ops: [["retr", large], ["retr", 1]] });
    const got = messagesOf(r);
    const header = Buffer.from("X-Virus-Status: Unscanned (too-large)\r\n");
    expect(Buffer.from(got[0]!).subarray(0, header.length).toString()).toBe(header.toString());
    expect(Buffer.from(got[0]!).subarray(header.length).equals(ref[0]!)).toBe(true);
    expect(got[1]).toEqual(corpus[0]!.bytes);
    await using tempfail = await startProxy({ ...base, onUnscanned: "tempfail", limits: { maxMessageSize: 256 * 1024, maxSpooledMessageSize: 1024 * 1024 } });
    const t = await poplib({ mode: "plain", port: tempfail.ports.pop3, user: routed("alice"), password: PW, ops: [["retr", large], ["retr", 1]] });
    expect(t.results[0]!.err).toStartWith("-ERR");
    expect(t.results[1]!.data).toEqual(corpus[0]!.bytes);
  });

  describe.skipIf(!have("curl"))("curl", () => {
    // curl -u splits user:password at the first colon, and a routed name holds one ("host:port"):
    // the credentials go into the URL, percent-encoded, which curl decodes.
    const url = (scheme: string, port: number, path: string, user = "alice") =>
      `${scheme}://${encodeURIComponent(routed(user))}:${PW}@127.0.0.1:${port}${path}`;
    const refUrl = (path: string) => `pop3://alice:${PW}@127.0.0.1:${dc.ports.pop3}${path}`;
    const get = (u: string, o: { caFile?: string; sslReqd?: boolean } = {}) =>
      curl({ url: u, ...o }).then((r) => {
        if (r.code !== 0) throw new Error(`curl ${r.code}: ${r.err}`);
        return r.out;
      });

    test("pop3:// lists and retrieves message N like a direct session", async () => {
      expect(dec(await get(url("pop3", proxy.ports.pop3, "/")))).toBe(dec(await get(refUrl("/"))));
      for (const n of [1, 2, 3, 6]) expect(await get(url("pop3", proxy.ports.pop3, `/${n}`))).toEqual(await get(refUrl(`/${n}`)));
    });

    test("pop3:// with --ssl-reqd (STLS to the proxy) and pop3s:// with --cacert <proxy CA>", async () => {
      for (const n of [2, 4]) {
        const ref = await get(refUrl(`/${n}`));
        expect(await get(url("pop3", proxy.ports.pop3, `/${n}`), { caFile: proxyCa, sslReqd: true })).toEqual(ref);
        expect(await get(url("pop3s", proxy.ports.pop3s, `/${n}`), { caFile: proxyCa })).toEqual(ref);
      }
      expect(dec(await get(url("pop3s", proxy.ports.pop3s, "/"), { caFile: proxyCa }))).toBe(dec(await get(refUrl("/"))));
    });

    test("pop3s:// without the proxy CA fails certificate verification", async () => {
      const r = await curl({ url: url("pop3s", proxy.ports.pop3s, "/1") });
      expect(r.code).toBe(60);
    });
  });

  describe("infected message, per action", () => {
    // bob holds [clean, infected]; nothing here deletes, so every proxy sees the same mailbox.
    const fetchBob = async (p: StartedProxy) =>
      poplib({ mode: "plain", port: p.ports.pop3, user: routed("bob"), password: PW, ops: [["retr", 1], ["retr", 2], ["top", 2, 0], ["top", 2, 100]] });

    test("auto-clean (default): the attachment becomes a notice, everything else stays byte for byte; original in quarantine", async () => {
      const before = (await new QuarantineStore(proxy.quarantineDir).list()).length;
      const r = await fetchBob(proxy);
      const [clean, cleaned] = [r.results[0]!.data!, r.results[1]!.data!];
      expect(clean).toEqual(corpus[0]!.bytes);
      const text = dec(cleaned);
      expect(hasEicar(cleaned)).toBe(false);
      expect(text).toMatch(/^X-Virus-Status: Cleaned \(Eicar-Test-Signature\)\r$/m);
      expect(text).toContain('removed the attachment "invoice.com"');
      expect(text).toMatch(/Detection: Eicar/);
      // Exactly the size LIST announced: the copy is padded or its notice shortened to fit.
      expect(cleaned.length).toBe(infected.length);
      // Everything before the infected part (headers, the text part) is the original, byte for byte,
      // below the added header lines (status, scanner, padding); the notice part follows and the
      // multipart closes as before.
      const original = dec(infected);
      const cut = original.indexOf("--INF\r\nContent-Type: application/octet-stream");
      const added = /^X-Virus-Status: [^\r\n]*\r\n(X-Virus-Scanned: [^\r\n]*\r\n)?(X-Mailsentry-Padding: [^\r\n]*\r\n( [^\r\n]*\r\n)*)?/.exec(text)?.[0] ?? "";
      expect(added).not.toBe("");
      expect(text.slice(added.length, added.length + cut + 7)).toBe(original.slice(0, cut + 7));
      expect(text).toContain(`--INF\r\n${INFECTED_TEXT_PART}--INF\r\nContent-Type: text/plain`);
      expect(text).toEndWith("--INF--\r\n");
      // TOP of the headers holds nothing infected and passes as Dovecot sends it; TOP reaching the
      // attachment is refused (a partial copy cannot be cleaned; RETR gives the cleaned one).
      const ref = await direct("bob", [["top", 2, 0]]);
      expect(r.results[2]).toEqual(ref.results[0]!);
      expect(r.results[3]!.err).toStartWith("-ERR [SYS/PERM]");
      const q = await new QuarantineStore(proxy.quarantineDir).list();
      expect(q.length).toBe(before + 1);
      expect(new Uint8Array(await Bun.file(q.at(-1)!.path).bytes())).toEqual(infected);
      expect(q.at(-1)!.verdict).toMatchObject({ kind: "infected" });
    });

    test("delete: a notice message keeping From, To, Subject, Date, Message-ID replaces it", async () => {
      await using p = await startProxy({ ...base, action: "delete" });
      const r = await fetchBob(p);
      expect(r.results[0]!.data).toEqual(corpus[0]!.bytes);
      const notice = r.results[1]!.data!;
      const text = dec(notice);
      expect(hasEicar(notice)).toBe(false);
      expect(text).not.toContain("Please find the invoice");
      for (const h of ["From: Mallory <m@example.test>", "To: alice@example.test", "Subject: invoice", "Date: Mon, 1 Jan 2024 10:00:00 +0000", "Message-ID: <invoice@example.test>"]) {
        expect(text).toContain(h + "\r\n");
      }
      expect(text).toMatch(/^X-Virus-Status: Infected/m);
      expect(text).toContain("invoice.com");
      // An explicit delete keeps no original, and the notice does not claim one.
      expect(text).not.toContain("quarantine");
      expect(await new QuarantineStore(p.quarantineDir).list()).toEqual([]);
    });

    test("ignore: delivered unchanged apart from the X-Virus-Status header", async () => {
      await using p = await startProxy({ ...base, action: "ignore" });
      const r = await fetchBob(p);
      const got = dec(r.results[1]!.data!);
      expect(got).toMatch(/^X-Virus-Status: Infected/m);
      const stripped = got.split("\r\n").filter((l) => !/^X-Virus-(Status|Scanned):/.test(l)).join("\r\n");
      expect(stripped).toBe(dec(infected));
      // TOP reaching the attachment is not refused either: ignore means delivered as it is.
      const ref = await direct("bob", [["top", 2, 100]]);
      expect(r.results[3]).toEqual(ref.results[0]!);
      expect(await new QuarantineStore(p.quarantineDir).list()).toEqual([]);
    });

    test("onError default (tempfail): a failing engine gives -ERR [SYS/TEMP] and the message stays on the server", async () => {
      await using p = await startProxy(base, { engine: throwingEngine() });
      const r = await poplib({ mode: "plain", port: p.ports.pop3, user: routed("dave"), password: PW, ops: [["stat"], ["retr", 1], ["top", 1, 0], ["quit"]] });
      expect(r.results[0]!.ok).toEqual([1, infected.length]);
      expect(r.results[1]!.err).toStartWith("-ERR [SYS/TEMP]");
      expect(r.results[2]!.err).toStartWith("-ERR [SYS/TEMP]");
      expect(r.results[3]!.ok).toStartWith("+OK");
      expect(await dc.maildirMessages("dave")).toEqual([infected]);
    });
  });

  test("DELE then QUIT removes the upstream copies; the infected original is in quarantine, byte for byte", async () => {
    await using p = await startProxy(base);
    const r = await poplib({
      mode: "stls", port: p.ports.pop3, caFile: await caFileOf(p), user: routed("carol"), password: PW,
      ops: [["retr", 1], ["retr", 2], ["retr", 3], ["dele", 1], ["dele", 2], ["dele", 3], ["quit"]],
    });
    expect(r.results.slice(3).map((x) => String(x.ok).slice(0, 3))).toEqual(["+OK", "+OK", "+OK", "+OK"]);
    expect(r.results[0]!.data).toEqual(corpus[0]!.bytes);
    expect(hasEicar(r.results[1]!.data!)).toBe(false);
    expect(r.results[2]!.data).toEqual(corpus[1]!.bytes);
    expect(await dc.maildirMessages("carol")).toEqual([]);
    const q = await new QuarantineStore(p.quarantineDir).list();
    expect(q.length).toBe(1);
    expect(new Uint8Array(await Bun.file(q[0]!.path).bytes())).toEqual(infected);
    expect(q[0]!.source).toContain("carol");
  });

  test("DELE without QUIT (client vanishes) deletes nothing upstream", async () => {
    await using c = await TestClient.connect(proxy.ports.pop3);
    await c.line();
    c.send(`USER ${routed("erin")}`);
    await c.line();
    c.send(`PASS ${PW}`);
    expect(await c.line()).toStartWith("+OK");
    c.send("DELE 1");
    expect(await c.line()).toStartWith("+OK");
    c.close();
    await c.closed;
    // The proxy's session must end (and drop its upstream leg without QUIT) before the check.
    const deadline = Date.now() + 5_000;
    while (!logObjects(proxy.logs).some((l) => l.msg === "session end" && l.user === "erin") && Date.now() < deadline) await Bun.sleep(10);
    expect(await dc.maildirMessages("erin")).toEqual([corpus[0]!.bytes, corpus[1]!.bytes]);
  });

  test("LF-only maildir files: clean passes as Dovecot sends it (CRLF), infected is cleaned, quarantine holds what Dovecot sent", async () => {
    await using p = await startProxy(base);
    const ops: PopOp[] = [["retr", 1], ["retr", 2], ["dele", 2], ["quit"]];
    const ref = await direct("ivy", [["retr", 1]]);
    const r = await poplib({ mode: "plain", port: p.ports.pop3, user: routed("ivy"), password: PW, ops });
    expect(r.results[0]).toEqual(ref.results[0]!);
    expect(r.results[0]!.data).toEqual(corpus[1]!.bytes);
    const cleaned = dec(r.results[1]!.data!);
    expect(hasEicar(r.results[1]!.data!)).toBe(false);
    expect(cleaned).toContain(`--INF\r\n${INFECTED_TEXT_PART}--INF\r\n`);
    const q = await new QuarantineStore(p.quarantineDir).list();
    expect(q.length).toBe(1);
    expect(new Uint8Array(await Bun.file(q[0]!.path).bytes())).toEqual(new Uint8Array(asCrlf(lfOnly(infected))));
    expect(await dc.maildirMessages("ivy")).toEqual([lfOnly(corpus[1]!.bytes)]);
  });

  // Last: Dovecot's auth penalty slows the next logins from 127.0.0.1 after a failed one.
  test("a wrong password gets the uniform -ERR [AUTH] reply", async () => {
    await expect(poplib({ mode: "plain", port: proxy.ports.pop3, user: routed("alice"), password: "wrong", ops: [] }))
      .rejects.toThrow("-ERR [AUTH] Authentication failed.");
  });
});
