// The compiled executable as a user runs it: `mailsentry serve --config FILE` in front of a real
// Dovecot, python3 poplib downloading through it (STLS and POP3S with the CA serve created), DELE +
// QUIT with the original quarantined, then `mailsentry unload` stopping it cleanly.
// MAILSENTRY_BIN names a prebuilt binary (CI); otherwise one is built here so this always runs.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { QuarantineStore } from "../../core/quarantine/store.ts";
import { cleanCorpus, have, infectedMessage, messagesOf, poplib, run } from "../helpers/clients.ts";
import { startDovecot, type Dovecot } from "../helpers/dovecot.ts";
import { eicar, EICAR_TEXT } from "../helpers/eicar.ts";
import { cliEnv, freePort } from "../helpers/proxy.ts";

const ROOT = join(import.meta.dir, "../..");
const PW = "bin-pw";
const clean = cleanCorpus().find((c) => c.name === "dots")!.bytes;
const infected = infectedMessage(eicar(), "tool.com", "tool");

/** A started `serve` subprocess with its stderr lines. */
interface Served {
  proc: ReturnType<typeof Bun.spawn>;
  lines: string[];
  ready: Promise<void>;
}

function serve(bin: string, config: string, home: string): Served {
  const proc = Bun.spawn([bin, "serve", "--config", config, "--log-format", "json"], {
    cwd: home, env: cliEnv(home), stdin: "ignore", stdout: "ignore", stderr: "pipe",
  });
  const lines: string[] = [];
  const ready = Promise.withResolvers<void>();
  void (async () => {
    const dec = new TextDecoder();
    let buf = "";
    for await (const chunk of proc.stderr as ReadableStream<Uint8Array>) {
      buf += dec.decode(chunk, { stream: true });
      for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        lines.push(line);
        if (process.env.MAILSENTRY_TEST_LOG === "1") process.stderr.write(line + "\n");
        if (line.includes("mailsentry proxy running")) ready.resolve();
      }
    }
  })();
  void proc.exited.then((code) => ready.reject(new Error(`serve exited (${code}) before it ran:\n${lines.join("\n")}`)));
  return { proc, lines, ready: ready.promise };
}

describe.skipIf(!have("dovecot") || !have("python3"))("compiled binary: serve, download, unload", () => {
  let dc: Dovecot;
  let dir: string;
  let bin: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "mailsentry-bin-"));
    const building = (async () => {
      if (process.env.MAILSENTRY_BIN) return process.env.MAILSENTRY_BIN;
      const out = join(dir, "mailsentry");
      const r = await run([process.execPath, "build.ts", out], { cwd: ROOT });
      if (r.code !== 0) throw new Error(`build failed: ${r.err}`);
      return out;
    })();
    dc = await startDovecot({ users: [{ name: "henry", password: PW }] });
    await dc.seed("henry", [clean, infected]);
    bin = await building;
  }, 90_000);
  afterAll(async () => {
    await dc?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test("one clean and one infected message through the binary; DELE+QUIT; unload exits 0 and so does serve", async () => {
    const home = join(dir, "home");
    await mkdir(home, { recursive: true });
    const [pop3, pop3s] = await Promise.all([freePort(), freePort()]);
    const config = join(home, "config.json");
    await writeFile(config, JSON.stringify({
      listeners: { pop3: { enabled: true, addresses: [`127.0.0.1:${pop3}`] }, pop3s: { enabled: true, addresses: [`127.0.0.1:${pop3s}`] }, imap: { enabled: false, addresses: [] }, imaps: { enabled: false, addresses: [] } },
      allowedUpstreamPorts: [dc.ports.pop3],
      upstreamCaFile: dc.caFile,
    }));
    const served = serve(bin, config, home);
    let stopped = false;
    try {
      await served.ready;
      const state = join(home, "state", "mailsentry");
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
      const detection = served.lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === "detection");
      expect(detection).toMatchObject({ action: "clean", quarantine: q[0]!.id });

      const un = await run([bin, "unload"], { env: cliEnv(home), cwd: home });
      expect(new TextDecoder().decode(un.out)).toContain("stopped");
      expect(un.code).toBe(0);
      expect(await served.proc.exited).toBe(0);
      stopped = true;
      expect(existsSync(join(state, "mailsentry.pid"))).toBe(false);
    } finally {
      if (!stopped) served.proc.kill("SIGKILL");
    }
  }, 30_000);
});
