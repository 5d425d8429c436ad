// The compiled executable over IMAP as a user runs it: `mailsentry serve --config FILE` in front of a
// real Dovecot, python3 imaplib reading through STARTTLS (whole and in Thunderbird-style chunks) and
// through IMAPS to Dovecot's implicit-TLS port, trusting the CA serve created; the infected message
// arrives as one cleaned copy of the original's size, the original quarantined and the detection
// logged with its mailbox and UID; then `mailsentry unload` stops it cleanly.
// MAILSENTRY_BIN names a prebuilt binary (CI); otherwise one is built here so this always runs.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { QuarantineStore } from "../../core/quarantine/store.ts";
import { buildBinary, withServe } from "../helpers/binary.ts";
import { asCrlf, cleanCorpus, have, infectedMessage } from "../helpers/clients.ts";
import { startDovecot, type Dovecot } from "../helpers/dovecot.ts";
import { eicar, EICAR_TEXT } from "../helpers/eicar.ts";
import { bodiesOf, imaplib, type ImapConnect } from "../helpers/imap-clients.ts";
import { freePort } from "../helpers/proxy.ts";

const PW = "bin-imap-pw";
const clean = asCrlf(cleanCorpus().find((c) => c.name === "dots")!.bytes);
const infected = infectedMessage(eicar(), "tool.com", "tool");
const text = (b: Uint8Array) => Buffer.from(b).toString("latin1");

describe.skipIf(!have("dovecot") || !have("python3"))("compiled binary over IMAP: serve, download, unload", () => {
  let dc: Dovecot;
  let dir: string;
  let bin: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "mailsentry-bin-imap-"));
    const building = buildBinary(dir);
    dc = await startDovecot({ users: [{ name: "ivy", password: PW }] });
    await dc.seed("ivy", [clean, infected]);
    bin = await building;
  }, 90_000);
  afterAll(async () => {
    await dc?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test("STARTTLS whole and chunked, IMAPS to implicit TLS upstream: one cleaned copy of the original's size; unload exits 0 and so does serve", async () => {
    const [imap, imaps] = await Promise.all([freePort(), freePort()]);
    const config = {
      listeners: {
        pop3: { enabled: false, addresses: [] }, pop3s: { enabled: false, addresses: [] },
        imap: { enabled: true, addresses: [`127.0.0.1:${imap}`] }, imaps: { enabled: true, addresses: [`127.0.0.1:${imaps}`] },
      },
      allowedUpstreamPorts: [dc.ports.imap, dc.ports.imaps],
      upstreamCaFile: dc.caFile,
      upstreamImplicitTlsPorts: { pop3: [dc.ports.pop3s], imap: [dc.ports.imaps] },
    };
    await withServe(bin, join(dir, "home"), config, async (served, state) => {
      const caFile = join(state, "ca", "ca.pem"); // created by serve for the client leg
      const starttls: ImapConnect = { host: "127.0.0.1", port: imap, mode: "starttls", user: `ivy/127.0.0.1:${dc.ports.imap}`, password: PW, caFile };
      const implicit: ImapConnect = { host: "127.0.0.1", port: imaps, mode: "imaps", user: `ivy/127.0.0.1:${dc.ports.imaps}`, password: PW, caFile };

      const whole = await imaplib({ ...starttls, readonly: true }, "whole");
      const [gotClean, cleaned] = bodiesOf(whole);
      expect(gotClean).toEqual(clean);
      expect(text(cleaned!)).not.toContain(EICAR_TEXT);
      expect(text(cleaned!).replace(/\r\n/g, "")).not.toContain(Buffer.from(EICAR_TEXT).toString("base64"));
      expect(text(cleaned!)).toMatch(/^X-Virus-Status: Cleaned \(Eicar-Test-Signature\)\r$/m);
      expect(text(cleaned!)).toContain('removed the attachment "tool.com"');
      // RFC822.SIZE announced before the fetch is the size of what the fetch then delivers.
      expect(cleaned!.length).toBe(infected.length);
      expect(whole.messages.map((m) => m.size)).toEqual([clean.length, infected.length]);

      // Small chunks cut the cleaned copy in many places; joined they are the same bytes.
      const chunked = await imaplib({ ...starttls, readonly: true, chunkSize: 200 }, "chunked");
      expect(bodiesOf(chunked)).toEqual([clean, cleaned!]);
      expect(chunked.messages[1]!.chunks!.length).toBeGreaterThan(2);

      // Another server address (Dovecot's IMAPS port, TLS on both legs) scans again, to the same copy.
      const viaImaps = await imaplib({ ...implicit, readonly: true }, "whole");
      expect(bodiesOf(viaImaps)).toEqual([clean, cleaned!]);

      const detections = served.logObjects().filter((l) => l.msg === "detection");
      expect(detections.length).toBe(2);
      const q = await new QuarantineStore(join(state, "quarantine")).list();
      for (const d of detections) {
        expect(d).toMatchObject({ action: "clean", mailbox: "INBOX", uid: 2 });
        const entry = q.find((e) => e.id === d.quarantine);
        expect(entry).toBeDefined();
        expect(new Uint8Array(await Bun.file(entry!.path).bytes())).toEqual(infected);
      }
      // Reading through the proxy left Dovecot's copy as it was.
      expect((await dc.maildirMessages("ivy")).map(asCrlf)).toEqual([clean, asCrlf(infected)]);
    });
  }, 60_000);
});
