// The proxy with `engines: ["builtin", {clamd}]` in front of a real Dovecot, read with python's
// poplib and imaplib, a real clamd behind it: what only clamd knows is found (and the message
// replaced, clamd names no part), what both know is cleaned by part (the cleaned copy is asked
// again), X-Virus-Scanned names both engines, and a clamd that is down withholds (onError).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { QuarantineStore } from "../../core/quarantine/store.ts";
import { hdbLine, startClamd, type Clamd } from "../helpers/clamd.ts";
import { cleanCorpus, have, infectedMessage, messagesOf, poplib } from "../helpers/clients.ts";
import { startDovecot, type Dovecot } from "../helpers/dovecot.ts";
import { eicar, EICAR_TEXT } from "../helpers/eicar.ts";
import { startCIcap } from "../helpers/icap.ts";
import { imaplib } from "../helpers/imap-clients.ts";
import { attachment, leaf, message, multipart } from "../helpers/messages.ts";
import { logObjects, startProxy, type StartedProxy } from "../helpers/proxy.ts";

const PW = "secret-pw";
const PAYLOAD = "this harmless text stands in for malware that only clamd knows\r\n";
const enc = new TextEncoder();
const onlyClamd = enc.encode(message(multipart("OC", [
  leaf({ headers: ["Content-Type: text/plain"], body: "see the attachment" }),
  attachment("tool.txt", PAYLOAD),
]), "\r\n", "only clamd"));
const clean = cleanCorpus()[0]!.bytes;
const both = infectedMessage(eicar());
const text = (b: Uint8Array) => Buffer.from(b).toString("latin1");

describe.skipIf(!have("dovecot") || !have("python3") || !have("clamd"))("the proxy with clamd in the chain", () => {
  let dc: Dovecot;
  let clamd: Clamd;
  let proxy: StartedProxy;
  const routed = (port: number) => `alice/127.0.0.1:${port}`;

  beforeAll(async () => {
    [dc, clamd] = await Promise.all([
      startDovecot({ users: [{ name: "alice", password: PW }] }),
      startClamd({ db: { "extra.hdb": `${hdbLine(PAYLOAD, "Test.Payload")}\n` } }),
    ]);
    await dc.seed("alice", [clean, both, onlyClamd]);
    proxy = await startProxy({ allowedUpstreamPorts: [dc.ports.pop3, dc.ports.imap], upstreamCaFile: dc.caFile, engines: ["builtin", { clamd: [clamd.unix] }] });
  }, 60_000);
  afterAll(async () => {
    await proxy?.stop();
    await dc?.stop();
    await clamd?.[Symbol.asyncDispose]();
  });

  test("POP3: clean passes unchanged, EICAR is cleaned by part, clamd's own detection replaces the message; originals quarantined", async () => {
    const got = messagesOf(await poplib({ mode: "plain", port: proxy.ports.pop3, user: routed(dc.ports.pop3), password: PW, ops: [["retr", 1], ["retr", 2], ["retr", 3]] }));
    expect(Buffer.from(got[0]!).equals(Buffer.from(clean))).toBe(true);
    expect(text(got[1]!)).toContain("X-Virus-Status: Cleaned (Eicar-Test-Signature)");
    expect(text(got[1]!)).toContain("Please find the invoice attached."); // the text part stays
    expect(text(got[1]!)).not.toContain(Buffer.from(EICAR_TEXT).toString("base64").slice(0, 40));
    const replaced = text(got[2]!);
    expect(replaced).toContain("Test.Payload.UNOFFICIAL");
    expect(replaced).not.toContain(PAYLOAD.trim());
    expect(replaced).toMatch(/X-Virus-Scanned: mailsentry [^\r\n]*\(builtin, ClamAV \d/);
    const q = await new QuarantineStore(proxy.quarantineDir).list();
    expect(q.map((e) => e.size).sort()).toEqual([both.length, onlyClamd.length].sort());
    const det = logObjects(proxy.logs).filter((l) => l.msg === "detection").map((l) => String(l.verdict));
    expect(det.some((v) => v.includes("Test.Payload.UNOFFICIAL"))).toBe(true);
  });

  test("IMAP: clamd's detection gives a replaced copy of the message's own size", async () => {
    const r = await imaplib({ host: "127.0.0.1", port: proxy.ports.imap, mode: "plain", user: routed(dc.ports.imap), password: PW, uids: [3] }, "whole");
    const body = r.messages[0]!.items["BODY[]"]!;
    expect(body.length).toBe(onlyClamd.length);
    expect(text(body)).not.toContain(PAYLOAD.trim());
    expect(text(body)).toContain("malware");
  });

  test.skipIf(!have("c-icap"))("ICAP (c-icap in front of the same clamd): what only clamd knows is found through it and the message replaced", async () => {
    await using icap = await startCIcap(clamd.unix);
    await using p = await startProxy({ allowedUpstreamPorts: [dc.ports.pop3], upstreamCaFile: dc.caFile, engines: ["builtin", { icap: [icap.url] }] });
    const got = messagesOf(await poplib({ mode: "plain", port: p.ports.pop3, user: routed(dc.ports.pop3), password: PW, ops: [["retr", 1], ["retr", 3]] }));
    expect(Buffer.from(got[0]!).equals(Buffer.from(clean))).toBe(true);
    expect(text(got[1]!)).toContain("Test.Payload.UNOFFICIAL");
    expect(text(got[1]!)).not.toContain(PAYLOAD.trim());
    expect(text(got[1]!)).toMatch(/X-Virus-Scanned: mailsentry [^\r\n]*\(builtin, ICAP C-ICAP/);
  }, 60_000);

  test("clamd down: the message is withheld as a temporary failure (onError), never passed unscanned", async () => {
    await using p = await startProxy({ allowedUpstreamPorts: [dc.ports.pop3], upstreamCaFile: dc.caFile, engines: ["builtin", { clamd: ["unix:/nonexistent/clamd.sock"], timeout: 2000 }] });
    const r = await poplib({ mode: "plain", port: p.ports.pop3, user: routed(dc.ports.pop3), password: PW, ops: [["retr", 1]] });
    expect(r.results[0]!.err).toStartWith("-ERR [SYS/TEMP]");
    expect(logObjects(p.logs).some((l) => l.msg === "engine not answering (messages wait for it or fail over)")).toBe(true);
  });
});
