// The IMAP proxy in front of a real Dovecot, driven by python3 imaplib: clean mail passes byte-identical
// in every fetch shape; an infected message is served as one cleaned copy of the same size whether it is
// fetched whole, in Thunderbird's 64 KiB chunks, by parts, or in another session; the original is in
// quarantine first; capabilities hide what the proxy cannot inspect; a scanner failure withholds.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { startDovecot, type Dovecot } from "../helpers/dovecot.ts";
import { logObjects, startProxy, type StartedProxy } from "../helpers/proxy.ts";
import { bodiesOf, have, imaplib, imaplibIdle, type ImapConnect } from "../helpers/imap-clients.ts";
import { EICAR_TEXT } from "../helpers/eicar.ts";
import { attachment, leaf, message, multipart } from "../helpers/messages.ts";
import { parseMessage } from "../../core/mime/parse.ts";

const enc = new TextEncoder();
const hasEicar = (b: Uint8Array) => Buffer.from(b).includes(EICAR_TEXT);

const clean1 = enc.encode("From: a@example.test\r\nTo: alice@example.test\r\nSubject: one\r\nMessage-ID: <one@x>\r\n\r\nfirst body\r\n");
const clean2 = enc.encode(message(multipart("b2", [
  leaf({ headers: ["Content-Type: text/plain"], body: "see attached" }),
  attachment("data.bin", new Uint8Array(200_000).map((_, i) => (i * 7) & 0xff)),
]), "\r\n", "big clean"));
// Over 64 KiB, so Thunderbird-style chunking spans several chunks around the infected part.
const infected = enc.encode(message(multipart("b3", [
  leaf({ headers: ["Content-Type: text/plain"], body: "filler line\r\n".repeat(6000) }),
  attachment("eicar.com", EICAR_TEXT),
  leaf({ headers: ["Content-Type: text/plain"], body: "after" }),
]), "\r\n", "infected"));

describe.skipIf(!have("dovecot") || !have("python3"))("IMAP proxy in front of Dovecot", () => {
  let dc: Dovecot;
  let proxy: StartedProxy;
  let conn: (mode?: ImapConnect["mode"]) => ImapConnect;

  beforeAll(async () => {
    dc = await startDovecot();
    await dc.seed("alice", [clean1, clean2, infected]);
    proxy = await startProxy({ allowedUpstreamPorts: [dc.ports.imap, dc.ports.imaps], upstreamCaFile: dc.caFile, upstreamImplicitTlsPorts: { pop3: [dc.ports.pop3s], imap: [dc.ports.imaps] } }, { env: {} });
    const caFile = join(proxy.stateDir, "test-proxy-ca.pem");
    await writeFile(caFile, proxy.caPem);
    conn = (mode = "plain") => ({
      host: "127.0.0.1",
      port: mode === "imaps" ? proxy.ports.imaps : proxy.ports.imap,
      mode,
      user: `alice/127.0.0.1:${dc.ports.imap}`,
      password: "alice-secret",
      caFile,
    });
  });
  afterAll(async () => {
    await proxy?.stop();
    await dc?.stop();
  });

  test("whole fetches of clean mail are byte-identical; capabilities hide COMPRESS", async () => {
    const r = await imaplib({ ...conn(), uids: [1, 2] }, "whole");
    const got = bodiesOf(r);
    expect(Buffer.from(got[0]!).equals(Buffer.from(clean1))).toBe(true);
    expect(Buffer.from(got[1]!).equals(Buffer.from(clean2))).toBe(true);
    expect(r.messages[1]!.size).toBe(clean2.length);
    expect(r.capabilities.some((c) => /^COMPRESS=/i.test(c))).toBe(false);
  });

  test("an infected message is served as one cleaned copy of its own size, whole or in chunks; the log names mailbox and UID", async () => {
    const whole = (await imaplib({ ...conn("starttls"), uids: [3] }, "whole")).messages[0]!;
    const body = whole.items["BODY[]"]!;
    expect(hasEicar(body)).toBe(false);
    expect(body.length).toBe(infected.length);
    expect(whole.size).toBe(infected.length);
    const chunked = (await imaplib({ ...conn(), uids: [3] }, "chunked")).messages[0]!;
    expect(Buffer.from(chunked.items["BODY[]"]!).equals(Buffer.from(body))).toBe(true);
    // Section numbers stay: part 3 is still the text after the attachment.
    expect(parseMessage(body).children.map((p) => p.contentType)).toEqual(["text/plain", "text/plain", "text/plain"]);
    const files = (await readdir(proxy.quarantineDir)).filter((f) => f.endsWith(".eml"));
    expect(files.length).toBeGreaterThanOrEqual(1);
    const detection = logObjects(proxy.logs).find((l) => l.msg === "detection");
    expect(detection).toMatchObject({ mailbox: "INBOX", uid: 3, action: "clean" });
    expect(String(detection!.verdict)).toContain("Eicar");
    expect(files.map((f) => f.replace(/\.eml$/, ""))).toContain(String(detection!.quarantine));
  });

  test("clean messages stay byte-identical in chunks and parts", async () => {
    const c = (await imaplib({ ...conn(), uids: [2] }, "chunked")).messages[0]!;
    expect(Buffer.from(c.items["BODY[]"]!).equals(Buffer.from(clean2))).toBe(true);
  });

  test("IDLE through the proxy sees new mail", async () => {
    const r = await imaplibIdle(conn(), () => dc.seed("alice", [enc.encode("From: d@example.test\r\nSubject: new\r\n\r\nnew\r\n")]));
    expect(r.untagged.some((l) => /EXISTS/i.test(l))).toBe(true);
  });
});
