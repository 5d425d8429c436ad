// `mailsentry serve` and `unload` as a user runs them: a subprocess with a config file, its pidfile
// and control socket, SIGHUP reload without dropping sessions, and unload's exit codes.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startMockPop3, type MockPop3 } from "../helpers/mock-pop3.ts";
import { freePort, startProxyProcess, runCli } from "../helpers/proxy.ts";
import { TestClient } from "../helpers/proxy.ts";

let dir: string;
let mock: MockPop3;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "mailsentry-serve-"));
  mock = await startMockPop3({ messages: ["Subject: a\r\n\r\nhello\r\n"] });
});
afterAll(async () => {
  mock.stop();
  await rm(dir, { recursive: true, force: true });
});

async function login(port: number): Promise<{ c: TestClient; reply: string }> {
  const c = await TestClient.connect(port);
  await c.line();
  c.send(`USER alice/127.0.0.1:${mock.port}`);
  await c.line();
  c.send("PASS secret");
  return { c, reply: await c.line() };
}

describe("serve and unload", () => {
  test("serve runs, reloads on SIGHUP without dropping sessions, and unload stops it (exit 0); then unload says none runs (exit 1)", async () => {
    const home = join(dir, "run1");
    const port = await freePort();
    const cfg = join(home, "config.json");
    await mkdir(home, { recursive: true });
    await writeFile(cfg, JSON.stringify({ listeners: { pop3: { enabled: true, addresses: [`127.0.0.1:${port}`] }, pop3s: { enabled: false, addresses: [] }, imap: { enabled: false, addresses: [] }, imaps: { enabled: false, addresses: [] } }, allowedUpstreamPorts: [mock.port], upstreamTls: "off" }));
    const p = await startProxyProcess({ config: cfg, home, args: ["--log-format", "json"] });
    expect(existsSync(join(home, "state", "mailsentry", "mailsentry.pid"))).toBe(true);

    const old = await login(port);
    expect(old.reply).toBe("+OK Logged in as alice.");
    // Reload with a config that no longer allows the mock's port: new logins fail, the old session lives on.
    await writeFile(cfg, JSON.stringify({ listeners: { pop3: { enabled: true, addresses: [`127.0.0.1:${port}`] }, pop3s: { enabled: false, addresses: [] }, imap: { enabled: false, addresses: [] }, imaps: { enabled: false, addresses: [] } }, allowedUpstreamPorts: [110], upstreamTls: "off" }));
    p.proc.kill("SIGHUP");
    await p.waitLog((l) => l.includes("configuration reloaded"));
    const refused = await login(port);
    expect(refused.reply).toBe("-ERR [AUTH] Authentication failed.");
    old.c.send("RETR 1");
    expect((await old.c.multi()).body.toString()).toBe("Subject: a\r\n\r\nhello\r\n");
    old.c.send("QUIT");
    await old.c.line();

    // A client still connected but not logged in is closed at once, not waited for.
    const un = await runCli(["unload"], home);
    expect(await refused.c.line()).toBe("-ERR [SYS/TEMP] Proxy shutting down.");
    expect(un.stdout).toContain("stopped");
    expect(un.code).toBe(0);
    expect(await p.proc.exited).toBe(0);
    expect(existsSync(join(home, "state", "mailsentry", "mailsentry.pid"))).toBe(false);

    const again = await runCli(["unload"], home);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain("no proxy is running");
  }, 30_000);

  test("a stale pidfile: unload removes it and exits 1; serve starts anyway", async () => {
    const home = join(dir, "run2");
    const state = join(home, "state", "mailsentry");
    await mkdir(state, { recursive: true });
    await writeFile(join(state, "mailsentry.pid"), "999999\n");
    const un = await runCli(["unload"], home);
    expect(un.code).toBe(1);
    expect(un.stderr).toContain("stale pidfile");
    expect(existsSync(join(state, "mailsentry.pid"))).toBe(false);

    await writeFile(join(state, "mailsentry.pid"), "999999\n");
    const port = await freePort();
    const cfg = join(home, "config.json");
    await writeFile(cfg, JSON.stringify({ listeners: { pop3: { enabled: true, addresses: [`127.0.0.1:${port}`] }, pop3s: { enabled: false, addresses: [] }, imap: { enabled: false, addresses: [] }, imaps: { enabled: false, addresses: [] } } }));
    const p = await startProxyProcess({ config: cfg, home });
    p.proc.kill("SIGTERM");
    expect(await p.proc.exited).toBe(0);
  }, 30_000);

  test("a second serve refuses while one runs", async () => {
    const home = join(dir, "run3");
    const port = await freePort();
    const cfg = join(home, "config.json");
    await mkdir(home, { recursive: true });
    await writeFile(cfg, JSON.stringify({ listeners: { pop3: { enabled: true, addresses: [`127.0.0.1:${port}`] }, pop3s: { enabled: false, addresses: [] }, imap: { enabled: false, addresses: [] }, imaps: { enabled: false, addresses: [] } } }));
    const p = await startProxyProcess({ config: cfg, home });
    const second = await runCli(["serve", "--config", cfg], home);
    expect(second.code).toBe(2);
    expect(second.stderr).toContain("another mailsentry proxy is running");
    p.proc.kill("SIGTERM");
    expect(await p.proc.exited).toBe(0);
  }, 30_000);

  test("binding beyond loopback without an upstream allowlist is refused with a clear error", async () => {
    const home = join(dir, "run4");
    const cfg = join(home, "config.json");
    await mkdir(home, { recursive: true });
    await writeFile(cfg, JSON.stringify({ listeners: { pop3: { enabled: true, addresses: [`0.0.0.0:${await freePort()}`] }, pop3s: { enabled: false, addresses: [] }, imap: { enabled: false, addresses: [] }, imaps: { enabled: false, addresses: [] } } }));
    const r = await runCli(["serve", "--config", cfg], home);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("upstreamAllowlist");
  }, 30_000);
});
