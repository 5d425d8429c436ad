// The evasion corpus as users meet it: stored in a real Dovecot and downloaded with python's poplib,
// directly (the payload is still there for some reader) and through the proxy (no reader finds it,
// ours or postal-mime's); and on disk, where `scan-file` and `scan-mbox` must call every one infected.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import PostalMime from "postal-mime";
import { DEFAULT_LIMITS } from "../../core/limits.ts";
import { BuiltinEngine } from "../../core/scan/engines/builtin.ts";
import { scanMessage } from "../../core/scan/pipeline.ts";
import { cliSandbox, runCli } from "../helpers/cli.ts";
import { have, messagesOf, poplib, type PopOp } from "../helpers/clients.ts";
import { startDovecot, type Dovecot } from "../helpers/dovecot.ts";
import { EICAR_TEXT } from "../helpers/eicar.ts";
import { evasionCorpus } from "../helpers/evasion.ts";
import { startProxy, type StartedProxy } from "../helpers/proxy.ts";

const corpus = await evasionCorpus();
const engine = BuiltinEngine.eicarOnly();
const PW = "evasion-pw";
const scan = async (raw: Uint8Array) => (await scanMessage(raw, { engine, limits: DEFAULT_LIMITS })).result.verdict.kind;

/** True when postal-mime, reading the message its own way, hands an application the payload. */
async function postalFinds(raw: Uint8Array): Promise<boolean> {
  const email = await PostalMime.parse(raw);
  const objects: Uint8Array[] = email.attachments.map((a) => (typeof a.content === "string" ? Buffer.from(a.content) : new Uint8Array(a.content)));
  for (const s of [email.text ?? "", email.html ?? ""]) {
    objects.push(Buffer.from(s, "utf8"));
    for (const m of s.matchAll(/data:[^,"']*;base64,([^"')>]+)/g)) objects.push(Buffer.from(m[1]!.replace(/\s+/g, ""), "base64"));
  }
  return objects.some((o) => Buffer.from(o).includes(EICAR_TEXT));
}

describe.skipIf(!have("dovecot") || !have("python3"))("evasion messages from Dovecot, read with poplib", () => {
  let dc: Dovecot;
  let proxy: StartedProxy;
  beforeAll(async () => {
    dc = await startDovecot({ users: [{ name: "eve", password: PW }] });
    await dc.seed("eve", corpus.map((c) => c.raw));
    proxy = await startProxy({ allowedUpstreamPorts: [dc.ports.pop3], upstreamTls: "off" });
  }, 30_000);
  afterAll(async () => {
    await proxy?.stop();
    await dc?.stop();
  });

  test("every payload survives Dovecot for some reader, and none reaches a client through the proxy", async () => {
    const ops: PopOp[] = corpus.map((_, i) => ["retr", i + 1]);
    const [direct, proxied] = await Promise.all([
      poplib({ mode: "plain", port: dc.ports.pop3, user: "eve", password: PW, ops }),
      poplib({ mode: "plain", port: proxy.ports.pop3, user: `eve/127.0.0.1:${dc.ports.pop3}`, password: PW, ops }),
    ]);
    const got = messagesOf(direct);
    const delivered = messagesOf(proxied);
    expect(delivered.length).toBe(corpus.length);
    const report: string[] = [];
    for (let i = 0; i < corpus.length; i++) {
      const name = corpus[i]!.name;
      // As Dovecot serves it, the message still carries the payload for our readings…
      if ((await scan(got[i]!)) !== "infected") report.push(`${name}: not infected as served directly`);
      // …and through the proxy nobody gets it: our readings, postal-mime's, or the status header says so.
      if ((await scan(delivered[i]!)) !== "clean") report.push(`${name}: delivered copy not clean`);
      if (await postalFinds(delivered[i]!)) report.push(`${name}: postal-mime extracts the payload from the delivered copy`);
      if (!/^X-Virus-Status: (Infected|Cleaned) \(Eicar/m.test(Buffer.from(delivered[i]!).toString("latin1"))) report.push(`${name}: no Infected or Cleaned status`);
    }
    expect(report).toEqual([]);
  }, 60_000);
});

describe("evasion messages on disk", () => {
  let box: Awaited<ReturnType<typeof cliSandbox>>;
  beforeAll(async () => {
    box = await cliSandbox();
    for (const [i, c] of corpus.entries()) await writeFile(join(box.dir, `evasion-${String(i).padStart(2, "0")}.eml`), c.raw);
    const mbox = corpus.map((c, i) => `From evasion${i}@example.org Mon Dec  7 10:00:00 2026\n` + Buffer.from(c.raw).toString("latin1").replace(/^(>*From )/gm, ">$1") + "\n").join("");
    await writeFile(join(box.dir, "evasion.mbox"), Buffer.from(mbox, "latin1"));
  });
  afterAll(() => box[Symbol.asyncDispose]());

  test("scan-file calls every one infected and exits 1", async () => {
    const files = corpus.map((_, i) => join(box.dir, `evasion-${String(i).padStart(2, "0")}.eml`));
    const r = await runCli(["scan-file", "--json", ...files], { env: box.env });
    expect(r.code).toBe(1);
    const out = JSON.parse(r.stdout).files as { file: string; kind: string; verdict: string }[];
    expect(out.map((f) => [f.kind, f.verdict])).toEqual(corpus.map(() => ["message", "infected"]));
  });

  test("scan-mbox calls every one infected and exits 1", async () => {
    const r = await runCli(["scan-mbox", "--json", join(box.dir, "evasion.mbox")], { env: box.env });
    expect(r.code).toBe(1);
    const [file] = JSON.parse(r.stdout).files as { messages: { verdict: string }[] }[];
    expect(file!.messages.map((m) => m.verdict)).toEqual(corpus.map(() => "infected"));
  });
});
