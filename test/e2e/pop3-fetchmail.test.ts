// fetchmail through the proxy into an mbox, as a user would run it: STLS to the proxy with its CA
// checked (sslcertck), the proxy upgrading to Dovecot upstream. Clean mail lands as Dovecot holds
// it, the infected message lands cleaned; with --nokeep the server is emptied and the original
// waits in quarantine.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { QuarantineStore } from "../../core/quarantine/store.ts";
import { cleanCorpus, fetchmail, have, infectedMessage, splitMbox } from "../helpers/clients.ts";
import { startDovecot, type Dovecot } from "../helpers/dovecot.ts";
import { eicar, EICAR_TEXT } from "../helpers/eicar.ts";
import { logObjects, startProxy, type StartedProxy } from "../helpers/proxy.ts";

const PW = "fetch-pw";
// The 5 MB message is exercised by the poplib tests; fetchmail gets the small shapes.
const corpus = cleanCorpus().filter((c) => c.name !== "large");
const infected = infectedMessage(eicar(), "payload.com", "payload");
const EICAR_B64 = Buffer.from(EICAR_TEXT).toString("base64");

/** What fetchmail hands the MDA: LF line ends (and its own Received: line on top). */
const asLf = (m: Uint8Array) => Buffer.from(m).toString("latin1").replace(/\r\n/g, "\n");

describe.skipIf(!have("dovecot") || !have("fetchmail"))("fetchmail through the proxy", () => {
  let dc: Dovecot;
  let proxy: StartedProxy;
  let dir: string;
  let caFile: string;

  beforeAll(async () => {
    dc = await startDovecot({ users: [{ name: "frank", password: PW }, { name: "grace", password: PW }] });
    await dc.seed("frank", [...corpus.map((c) => c.bytes), infected]);
    await dc.seed("grace", [corpus[0]!.bytes, infected, corpus[1]!.bytes]);
    proxy = await startProxy({ allowedUpstreamPorts: [dc.ports.pop3], upstreamCaFile: dc.caFile });
    dir = await mkdtemp(join(tmpdir(), "mailsentry-fetchmail-"));
    caFile = join(dir, "proxy-ca.pem");
    await writeFile(caFile, proxy.caPem);
  }, 30_000);
  afterAll(async () => {
    await proxy?.stop();
    await dc?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const poll = async (user: string, keep: boolean, implicitTls = false) => {
    const work = await mkdtemp(join(dir, `${user}-`));
    const mbox = join(work, "mbox");
    // fetchmail 6.4 matches certificates against DNS names only: poll "localhost".
    const r = await fetchmail({ dir: work, host: "localhost", port: implicitTls ? proxy.ports.pop3s : proxy.ports.pop3,
      user: `${user}/127.0.0.1:${dc.ports.pop3}`, password: PW, caFile, keep, mbox, implicitTls });
    if (r.code !== 0) console.error(r.err);
    expect(r.code).toBe(0);
    return splitMbox(Buffer.from(await Bun.file(mbox).bytes()).toString("latin1")); // 8-bit bytes as they are
  };

  test("keep: every clean message arrives as Dovecot holds it, the infected one cleaned; the server keeps all", async () => {
    const got = await poll("frank", true);
    expect(got.length).toBe(corpus.length + 1);
    for (let i = 0; i < corpus.length; i++) {
      // fetchmail prepends a Received: header (folded lines) and turns CRLF into LF; the rest is the message.
      expect(got[i]!).toEndWith(asLf(corpus[i]!.bytes));
      expect(got[i]!).toStartWith("Received: from ");
    }
    const cleaned = got[corpus.length]!;
    expect(cleaned).not.toContain(EICAR_TEXT);
    expect(cleaned.replace(/\n/g, "")).not.toContain(EICAR_B64);
    expect(cleaned).toMatch(/^X-Virus-Status: Cleaned \(Eicar-Test-Signature\)$/m);
    expect(cleaned).toContain('removed the attachment "payload.com"');
    expect(cleaned).toMatch(/^Detection: Eicar-Test-Signature/m);
    expect(cleaned).toContain("Please find the invoice attached.\n.dotted line\n");
    expect((await dc.maildirMessages("frank")).length).toBe(corpus.length + 1);
    // fetchmail talked STLS to the proxy, and the proxy STLS to Dovecot.
    expect(logObjects(proxy.logs).find((l) => l.msg === "logged in" && l.user === "frank")).toMatchObject({ clientTls: true, upstreamTls: true });
  });

  test("ssl (implicit TLS) to the proxy's POP3S listener delivers the same mbox as STLS", async () => {
    const [stls, pop3s] = [await poll("frank", true), await poll("frank", true, true)];
    const body = (m: string) => m.slice(m.indexOf("\n", m.indexOf("\tfor ")) + 1); // past the Received: lines
    expect(pop3s.map(body)).toEqual(stls.map(body));
    expect(pop3s.length).toBe(corpus.length + 1);
    expect(body(pop3s[0]!)).toBe(asLf(corpus[0]!.bytes));
  });

  test("--nokeep: DELE + QUIT empties the maildir; the infected original is in quarantine byte for byte", async () => {
    const got = await poll("grace", false);
    expect(got.length).toBe(3);
    expect(got[0]!).toEndWith(asLf(corpus[0]!.bytes));
    expect(got[1]!).not.toContain(EICAR_TEXT);
    expect(got[1]!).toContain('removed the attachment "payload.com"');
    expect(got[2]!).toEndWith(asLf(corpus[1]!.bytes));
    expect(await dc.maildirMessages("grace")).toEqual([]);
    // One entry per message, named by its bytes (the same infected message fetched for another user
    // earlier is that entry).
    const sha = new Bun.CryptoHasher("sha256").update(infected).digest("hex");
    const entry = (await new QuarantineStore(proxy.quarantineDir).list()).find((e) => e.sha256 === sha)!;
    expect(new Uint8Array(await Bun.file(entry.path).bytes())).toEqual(infected);
  });
});
