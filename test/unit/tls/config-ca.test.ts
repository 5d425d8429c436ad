// `mailsentry config ca` as a user runs it: it makes the CA in the XDG state dir on first use,
// prints the path and fingerprint with trust steps, --pem prints the certificate, --export writes it.
import { afterAll, expect, test } from "bun:test";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

const root = await mkdtemp(join(tmpdir(), "mailsentry-config-ca-"));
afterAll(() => rm(root, { recursive: true, force: true }));

const RUNNER = `import { runMain } from "citty"; import ca from "./cli/commands/config-ca.ts"; await runMain(ca, { rawArgs: JSON.parse(process.env.CA_ARGS!) });`;

async function configCa(...args: string[]) {
  const p = Bun.spawn([process.execPath, "-e", RUNNER], {
    cwd: join(import.meta.dir, "../../.."),
    env: { ...process.env, CA_ARGS: JSON.stringify(args), XDG_STATE_HOME: join(root, "state"), NO_COLOR: "1" },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { out, err, code };
}

const caFile = join(root, "state", "mailsentry", "ca", "ca.pem");

test("prints the CA path, its fingerprint and how to trust it, creating the CA on first use", async () => {
  const r = await configCa();
  expect(r.code).toBe(0);
  expect(r.out).toContain(`Certificate:  ${caFile}`);
  const fp = /SHA-256:\s+(\S+)/.exec(r.out)?.[1];
  expect(fp).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
  expect(r.out).toContain(`/usr/local/share/ca-certificates/mailsentry.crt && sudo update-ca-certificates`);
  expect(r.out).toContain("Authorities › Import");
  expect(r.out).toContain(`--sslcertfile ${caFile} --sslcertck`);
  expect(r.out).toContain(`--cacert ${caFile}`);
  // Same CA the second time.
  expect((await configCa()).out).toContain(fp!);
});

test("--pem prints exactly the CA certificate", async () => {
  const r = await configCa("--pem");
  expect(r.code).toBe(0);
  expect(r.out).toBe(await readFile(caFile, "utf8"));
});

test("--export writes the CA certificate to the file", async () => {
  const target = join(root, "exported.crt");
  const r = await configCa("--export", target);
  expect(r.code).toBe(0);
  expect(r.out).toContain(target);
  expect(await readFile(target, "utf8")).toBe(await readFile(caFile, "utf8"));
});

test("--export with no file name is a usage error", async () => {
  const r = await configCa("--export", "");
  expect(r.code).not.toBe(0);
  expect(r.err).toContain("--export needs a file name");
});
