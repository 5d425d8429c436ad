// Running the proxy as a service: `service install` writes a systemd user unit that names this very
// program by its absolute path (and that path runs), uninstall removes only its own unit; and a
// proxy started by `npm start` ends when npm is killed instead of living on as an orphan.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { cliSandbox, runCli } from "../helpers/cli.ts";
import { have } from "../helpers/clients.ts";
import { freePort } from "../helpers/proxy.ts";

const ROOT = resolve(import.meta.dir, "../..");
let box: Awaited<ReturnType<typeof cliSandbox>>;
const run = (args: string[]) => runCli(args, { env: box.env });
const unit = () => join(box.env.XDG_CONFIG_HOME!, "systemd", "user", "mailsentry.service");
beforeAll(async () => { box = await cliSandbox(); });
afterAll(async () => { await box?.[Symbol.asyncDispose](); });

describe("mailsentry service", () => {
  test("install: a user unit with the absolute command, serve to start, unload to stop, restart on failure; says how to enable it", async () => {
    const r = await run(["service", "install", "--config", join(box.dir, "my.json")]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("systemctl --user enable --now mailsentry");
    const text = await readFile(unit(), "utf8");
    const exec = /^ExecStart=(.+) serve$/m.exec(text)![1]!;
    expect(text).toMatch(new RegExp(`^ExecStop=${exec.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} unload$`, "m"));
    expect(text).toContain("Restart=on-failure");
    expect(text).toContain(`Environment=MAILSENTRY_CONFIG=${join(box.dir, "my.json")}`);
    expect(text).toContain("WantedBy=default.target");
    // The command the unit runs is this program, from anywhere.
    const words = exec.split(" ");
    expect(words.every((w) => w.startsWith("/"))).toBe(true);
    const p = Bun.spawn([...words, "--version"], { cwd: "/", stdout: "pipe", stderr: "pipe" });
    expect(await p.exited).toBe(0);
    // Again: the same unit, nothing to do; a different one is not replaced without --force.
    expect((await run(["service", "install", "--config", join(box.dir, "my.json")])).code).toBe(0);
    const other = await run(["service", "install"]);
    expect(other.code).toBe(2);
    expect(other.stderr).toContain("exists and differs; --force replaces it");
    expect((await run(["service", "install", "--force"])).code).toBe(0);
  });

  test("uninstall removes its own unit, leaves a foreign one, and is harmless twice", async () => {
    expect((await run(["service", "uninstall"])).code).toBe(0);
    expect(await Bun.file(unit()).exists()).toBe(false);
    expect((await run(["service", "uninstall"])).stdout).toContain("nothing to remove");
    await writeFile(unit(), "[Service]\nExecStart=/bin/true\n");
    const foreign = await run(["service", "uninstall"]);
    expect(foreign.code).toBe(2);
    expect(await Bun.file(unit()).exists()).toBe(true);
  });

  test("uninstall puts the mail clients back (unless --keep-clients), so they do not point at a proxy that no longer starts", async () => {
    const rcFile = join(box.dir, ".fetchmailrc");
    const rc = 'poll pop.example.com protocol pop3 user "ann" password "pw"\n';
    await writeFile(rcFile, rc, { mode: 0o600 });
    expect((await run(["service", "install", "--force"])).code).toBe(0);
    expect((await run(["clients", "apply"])).code).toBe(0);
    const applied = await readFile(rcFile, "utf8");
    expect(applied).toContain("ann/pop.example.com:110");
    // `mailsentry clients` alone lists, once.
    const listed = await run(["clients"]);
    expect([listed.code, listed.stdout.split(rcFile).length - 1, listed.stdout]).toEqual([0, 1, expect.stringContaining("user ann/pop.example.com:110: through mailsentry")]);
    const kept = await run(["service", "uninstall", "--keep-clients"]);
    expect([kept.code, await readFile(rcFile, "utf8")]).toEqual([0, applied]);
    expect((await run(["service", "install"])).code).toBe(0);
    const r = await run(["service", "uninstall"]);
    expect([r.code, r.stdout]).toEqual([0, expect.stringContaining("put back poll 1/user#1")]);
    expect(await readFile(rcFile, "utf8")).toBe(rc);
    // And unload --restore-clients does it with no proxy running: exit 1 (none ran), the clients back.
    expect((await run(["clients", "apply"])).code).toBe(0);
    const unload = await run(["unload", "--restore-clients"]);
    expect([unload.code, await readFile(rcFile, "utf8")]).toEqual([1, rc]);
  });
});

describe.skipIf(!have("npm"))("npm start", () => {
  test("killing npm ends the proxy it started (no orphan)", async () => {
    const home = join(box.dir, "npm-home");
    const config = join(home, "config.json");
    const off = { enabled: false, addresses: [] };
    await Bun.write(config, JSON.stringify({ listeners: { pop3: { enabled: true, addresses: [`127.0.0.1:${await freePort()}`] }, pop3s: off, imap: off, imaps: off } }));
    const env: Record<string, string> = { PATH: process.env.PATH!, HOME: home, XDG_CONFIG_HOME: join(home, "config"), XDG_STATE_HOME: join(home, "state"), MAILSENTRY_CONFIG: config, NO_COLOR: "1" };
    const npm = Bun.spawn(["npm", "start", "--silent"], { cwd: ROOT, env, stdout: "ignore", stderr: "pipe", stdin: "ignore" });
    let log = "";
    const dec = new TextDecoder();
    const reader = (npm.stderr as ReadableStream<Uint8Array>).getReader();
    while (!log.includes("mailsentry proxy running")) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`npm start ended: ${log}`);
      log += dec.decode(value);
    }
    const pid = Number(/pid[=: ]+"?(\d+)/.exec(log)![1]);
    expect(pid).not.toBe(npm.pid);
    npm.kill("SIGKILL");
    await npm.exited;
    const alive = () => { try { process.kill(pid, 0); return true; } catch { return false; } };
    const deadline = Date.now() + 10_000;
    while (alive() && Date.now() < deadline) await Bun.sleep(100);
    const stillAlive = alive();
    if (stillAlive) process.kill(pid, "SIGKILL");
    expect(stillAlive).toBe(false);
  }, 30_000);
});
