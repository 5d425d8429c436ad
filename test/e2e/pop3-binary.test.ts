// The compiled executable as a user runs it: `mailsentry serve --config FILE` in front of a real
// Dovecot, python3 poplib downloading through it (STLS and POP3S with the CA serve created), DELE +
// QUIT with the original quarantined, then `mailsentry unload` stopping it cleanly.
// MAILSENTRY_BIN names a prebuilt binary (CI); otherwise one is built here so this always runs.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { QuarantineStore } from "../../core/quarantine/store.ts";
import { buildBinary, withServe } from "../helpers/binary.ts";
import { cleanCorpus, have, infectedMessage, messagesOf, poplib } from "../helpers/clients.ts";
import { startDovecot, type Dovecot } from "../helpers/dovecot.ts";
import { eicar, EICAR_TEXT } from "../helpers/eicar.ts";
import { freePort } from "../helpers/proxy.ts";

const PW = "bin-pw";
const clean = cleanCorpus().find((c) => c.name === "dots")!.bytes;
const infected = infectedMessage(eicar(), "tool.com", "tool");

describe.skipIf(!have("dovecot") || !have("python3"))("compiled binary: serve, download, unload", () => {
  let dc: Dovecot;
  let dir: string;
  let bin: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "mailsentry-bin-"));
    const building = buildBinary(dir);
    dc = await startDovecot({ users: [{ name: "henry", password: PW }] });
    await dc.seed("henry", [clean, infected]);
    bin = await building;
  }, 90_000);
  afterAll(async () => {
    await dc?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test("one clean and one infected message through the binary; DELE+QUIT; unload exits 0 and so does serve", async () => {
    const [pop3, pop3s] = await Promise.all([freePort(), freePort()]);
    const config = {
      listeners: { pop3: { enabled: true, addresses: [`127.0.0.1:${pop3}`] }, pop3s: { enabled: true, addresses: [`127.0.0.1:${pop3s}`] }, imap: { enabled: false, addresses: [] }, imaps: { enabled: false, addresses: [] } },
      allowedUpstreamPorts: [dc.ports.pop3],
      upstreamCaFile: dc.caFile,
    };
    await withServe(bin, join(dir, "home"), config, async (served, state) => {
      const caFile = join(state, "ca", "ca.pem"); // created by serve for the client leg
      const user = `henry/127.0.0.1:${dc.ports.pop3}`;

      // POP3S first, read only; then STLS with DELE of both and QUIT.
      const viaPop3s = await poplib({ mode: "pop3s", port: pop3s, caFile, user, password: PW, ops: [["retr", 1]] });
      expect(messagesOf(viaPop3s)).toEqual([clean]);
      const r = await poplib({
        mode: "stls", host: "localhost", port: pop3, caFile, user, password: PW,
        ops: [["stat"], ["retr", 1], ["retr", 2], ["dele", 1], ["dele", 2], ["quit"]],
      });
      expect(r.results[0]!.ok).toEqual([2, clean.length + infected.length]);
      expect(r.results[1]!.data).toEqual(clean);
      const cleaned = Buffer.from(r.results[2]!.data!).toString("latin1");
      expect(cleaned).not.toContain(EICAR_TEXT);
      expect(cleaned.replace(/\r\n/g, "")).not.toContain(Buffer.from(EICAR_TEXT).toString("base64"));
      expect(cleaned).toMatch(/^X-Virus-Status: Cleaned \(Eicar-Test-Signature\)\r$/m);
      expect(cleaned).toContain('removed the attachment "tool.com"');
      expect(r.results[2]!.data!.length).toBe(infected.length);
      expect(r.results.slice(3).every((x) => String(x.ok).startsWith("+OK"))).toBe(true);

      expect(await dc.maildirMessages("henry")).toEqual([]);
      const q = await new QuarantineStore(join(state, "quarantine")).list();
      expect(q.length).toBe(1);
      expect(new Uint8Array(await Bun.file(q[0]!.path).bytes())).toEqual(infected);
      const detection = served.logObjects().find((l) => l.msg === "detection");
      expect(detection).toMatchObject({ action: "clean", quarantine: q[0]!.id });
    });
  }, 30_000);
});
