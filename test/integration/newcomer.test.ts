// What a newcomer hit in the first hour: each defect as a user saw it, checked the way they would.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { cliSandbox, runCli } from "../helpers/cli.ts";
import { startProxy } from "../helpers/proxy.ts";

let box: Awaited<ReturnType<typeof cliSandbox>>;
const run = (args: string[], env: Record<string, string> = {}) => runCli(args, { env: { ...box.env, ...env } });
beforeAll(async () => { box = await cliSandbox(); });
afterAll(async () => { await box?.[Symbol.asyncDispose](); });

describe("first-hour defects", () => {
  test("a busy port names the address, the listener and why", async () => {
    const busy = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    try {
      const off = { enabled: false, addresses: [] };
      await expect(startProxy({ listeners: { pop3: { enabled: true, addresses: [`127.0.0.1:${busy.port}`] }, pop3s: off, imap: off, imaps: off } }))
        .rejects.toThrow(`cannot listen on 127.0.0.1:${busy.port} (listeners.pop3): the address is in use`);
    } finally {
      busy.stop(true);
    }
  });

  test("scan-mbox on something that is not an mbox: random bytes are an error (exit 2); one message is scanned as #1, and said so", async () => {
    const rnd = join(box.dir, "random.bin");
    await Bun.write(rnd, new Uint8Array(4096).map((_, i) => (i * 131 + 7) & 0xff));
    const r = await run(["scan-mbox", rnd]);
    expect(r.code).toBe(2);
    expect(r.stdout).toContain(`${rnd}: error: not an mbox`);
    const eml = join(box.dir, "one.eml");
    await Bun.write(eml, "From: a@example.org\nSubject: hi\nMessage-ID: <one@x>\n\nhello\n");
    const one = await run(["scan-mbox", eml]);
    expect(one.code).toBe(0);
    expect(one.stdout).toContain(`${eml}#1 @0 <one@x>: clean`);
    expect(one.stderr).toContain("is not an mbox (no \"From \" line): scanned as one message");
  });

  test("help shows the files the scan commands take and the whole command line of subcommands", async () => {
    expect((await run(["scan-file", "--help"])).stdout).toContain("USAGE mailsentry scan-file [OPTIONS] [FILES]");
    expect((await run(["scan-mbox", "--help"])).stdout).toContain("[MBOXES]");
    expect((await run(["config", "set", "--help"])).stdout).toContain("USAGE mailsentry config set");
    expect((await run(["quarantine", "list", "--help"])).stdout).toContain("USAGE mailsentry quarantine list");
  });

  test("a signatures directory that does not exist: refused by config set, named (key, variable or flag) by validate and scans; --json still prints a document", async () => {
    const missing = join(box.dir, "no-such-sigs");
    const set = await run(["config", "set", "signatures", missing]);
    expect(set.code).toBe(2);
    expect(set.stderr).toBe(`mailsentry: signatures: ${missing}: no such directory (not written)\n`);
    const validate = await run(["config", "validate"], { MAILSENTRY_SIGNATURES: missing });
    expect(validate.code).toBe(2);
    expect(validate.stderr).toContain(`environment MAILSENTRY_SIGNATURES: ${missing}: no such directory`);
    const f = join(box.dir, "b.eml");
    await Bun.write(f, "From: a@example.org\nSubject: hi\n\nhello\n");
    const scan = await run(["scan-file", "--json", "--sigs", missing, f]);
    expect(scan.code).toBe(2);
    expect(JSON.parse(scan.stdout)).toMatchObject({ error: `--sigs: ${missing}: no such directory`, exitCode: 2 });
  });

  test("no line about loading signatures when none are configured", async () => {
    const f = join(box.dir, "a.eml");
    await Bun.write(f, "From: a@example.org\nSubject: hi\n\nhello\n");
    const r = await run(["scan-file", f]);
    expect(r.code).toBe(0);
    expect(r.stderr).not.toContain("signatures:");
  });
});
