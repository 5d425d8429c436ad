// `mailsentry quarantine` as a user runs it on what the proxy kept: list (newest first), show,
// export (exact bytes, never over a file), restore into an mbox and a maildir, delete and purge;
// and the notice a cleaned message carries names the id that finds the original.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { DEFAULT_CONFIG } from "../../core/config/types.ts";
import { MboxSplitter } from "../../core/mbox/reader.ts";
import { parseMessage } from "../../core/mime/parse.ts";
import { QuarantineStore } from "../../core/quarantine/store.ts";
import { applyPolicy, policyFromConfig } from "../../core/rewrite/index.ts";
import { BuiltinEngine } from "../../core/scan/engines/builtin.ts";
import { scanMessage } from "../../core/scan/pipeline.ts";
import { cliSandbox, runCli } from "../helpers/cli.ts";
import { eicar } from "../helpers/eicar.ts";
import { attachment, leaf, message, multipart } from "../helpers/messages.ts";

let box: Awaited<ReturnType<typeof cliSandbox>>;
let q: QuarantineStore;
const run = (args: string[]) => runCli(args, { env: box.env });
const mail = (n: number) => new TextEncoder().encode(message(multipart(`Q${n}`, [
  leaf({ headers: ["Content-Type: text/plain"], body: `message ${n}\r\nFrom the desk of n\r\n` }),
  attachment("x.com", eicar()),
]), "\r\n", `invoice ${n}`));
const ids: string[] = [];

beforeAll(async () => {
  box = await cliSandbox();
  q = new QuarantineStore(join(box.env.XDG_STATE_HOME!, "mailsentry", "quarantine"));
  for (let i = 1; i <= 3; i++) {
    const raw = mail(i);
    const { result } = await scanMessage(raw, { engine: BuiltinEngine.eicarOnly(), limits: DEFAULT_CONFIG.limits });
    ids.push((await q.put(raw, { verdict: result.verdict, source: `pop3 alice@mail.example.org:995 #${i}`, findings: result.findings })).id);
    await Bun.sleep(5);
  }
});
afterAll(async () => { await box?.[Symbol.asyncDispose](); });

describe("mailsentry quarantine", () => {
  test("list: newest first with verdict, from, subject, size and source; --json for scripts", async () => {
    const r = await run(["quarantine", "list"]);
    expect(r.code).toBe(0);
    const order = ids.map((id) => r.stdout.indexOf(id));
    expect(order[2]!).toBeLessThan(order[1]!);
    expect(order[1]!).toBeLessThan(order[0]!);
    expect(r.stdout).toContain("infected: Eicar-Test-Signature");
    expect(r.stdout).toContain("subject invoice 1");
    expect(r.stdout).toContain("via pop3 alice@mail.example.org:995 #1");
    const json = JSON.parse((await run(["quarantine", "list", "--json"])).stdout);
    expect(json.map((e: { id: string }) => e.id)).toEqual([...ids].reverse());
    expect(json[0]).toMatchObject({ subject: "invoice 3", from: expect.stringContaining("@"), verdict: { kind: "infected" } });
  });

  test("show: metadata and findings; an unknown id is exit 2", async () => {
    const r = await run(["quarantine", "show", ids[0]!]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`id:         ${ids[0]}`);
    expect(r.stdout).toMatch(/finding: {4}infected: Eicar-Test-Signature in attachment "x\.com" \[builtin\]/);
    const missing = await run(["quarantine", "show", "0".repeat(20)]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("no quarantine entry");
  });

  test("export: the original byte for byte, never over an existing file", async () => {
    const file = join(box.dir, "exported.eml");
    expect((await run(["quarantine", "export", ids[0]!, file])).code).toBe(0);
    expect(new Uint8Array(await readFile(file))).toEqual(mail(1));
    const again = await run(["quarantine", "export", ids[0]!, file]);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain("already exists");
  });

  test("restore: appended to an mbox (twice: two messages, quoting undone on reading) and into a maildir", async () => {
    const mbox = join(box.dir, "restored.mbox");
    await writeFile(mbox, "From someone Mon Jan  1 00:00:00 2024\nSubject: already here\n\nhello\n");
    expect((await run(["quarantine", "restore", ids[0]!, mbox])).code).toBe(0);
    expect((await run(["quarantine", "restore", ids[1]!, mbox])).code).toBe(0);
    const s = new MboxSplitter();
    const msgs = [...s.push(await readFile(mbox)), ...s.end()];
    expect(msgs.length).toBe(3);
    expect(Buffer.from(msgs[1]!.bytes!).equals(Buffer.from(mail(1)))).toBe(true);
    expect(Buffer.from(msgs[2]!.bytes!).equals(Buffer.from(mail(2)))).toBe(true);
    const maildir = join(box.dir, "Maildir");
    for (const d of ["cur", "new", "tmp"]) await mkdir(join(maildir, d), { recursive: true });
    expect((await run(["quarantine", "restore", ids[2]!, maildir])).code).toBe(0);
    const delivered = await readdir(join(maildir, "new"));
    expect(delivered.length).toBe(1);
    expect(new Uint8Array(await readFile(join(maildir, "new", delivered[0]!)))).toEqual(mail(3));
    expect(await readdir(join(maildir, "tmp"))).toEqual([]);
    const notMaildir = await run(["quarantine", "restore", ids[2]!, box.dir]);
    expect(notMaildir.code).toBe(2);
    expect(notMaildir.stderr).toContain("not a maildir");
  });

  test("the notice in a cleaned copy names the id, and that id finds the original", async () => {
    const raw = mail(1);
    const { result, tree } = await scanMessage(raw, { engine: BuiltinEngine.eicarOnly(), limits: DEFAULT_CONFIG.limits });
    const out = applyPolicy(raw, tree, result, policyFromConfig(DEFAULT_CONFIG, "mailsentry test"));
    const text = Buffer.from(out.bytes).toString("latin1");
    expect(text).toContain(`The original message was kept in quarantine as ${ids[0]}.`);
    expect(parseMessage(out.bytes).children.length).toBe(2);
  });

  test("delete and purge", async () => {
    const gone = await run(["quarantine", "delete", ids[0]!, "f".repeat(20)]);
    expect(gone.code).toBe(2); // one of the two did not exist
    expect(gone.stdout).toContain(`deleted ${ids[0]}`);
    // Make one entry old, as if kept 40 days ago.
    const meta = join(q.dir, `${ids[1]}.json`);
    const m = JSON.parse(await readFile(meta, "utf8"));
    await writeFile(meta, JSON.stringify({ ...m, time: new Date(Date.now() - 40 * 86_400_000).toISOString() }));
    const p = await run(["quarantine", "purge", "--older-than", "30d"]);
    expect(p.code).toBe(0);
    expect(p.stdout).toContain("removed 1 entry");
    expect((await q.list()).map((e) => e.id)).toEqual([ids[2]]);
    expect((await run(["quarantine", "purge", "--older-than", "soon"])).code).toBe(2);
  });
});
