// The compiled executable under test: built once per file (or MAILSENTRY_BIN, as CI passes it) and
// started as `mailsentry serve --config FILE --log-format json`, its stderr lines kept for asserts.
import { expect } from "bun:test";
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { run } from "./clients.ts";
import { cliEnv } from "./proxy.ts";

const ROOT = join(import.meta.dir, "../..");

/** MAILSENTRY_BIN when set; otherwise builds the executable into `dir` with build.ts. */
export async function buildBinary(dir: string): Promise<string> {
  if (process.env.MAILSENTRY_BIN) return process.env.MAILSENTRY_BIN;
  const out = join(dir, "mailsentry");
  const r = await run([process.execPath, "build.ts", out], { cwd: ROOT });
  if (r.code !== 0) throw new Error(`build failed: ${r.err}`);
  return out;
}

/** A started `serve` subprocess with its stderr lines. */
export interface Served {
  proc: ReturnType<typeof Bun.spawn>;
  lines: string[];
  /** Resolves once serve logged that it runs; rejects if it exited first. */
  ready: Promise<void>;
  /** The JSON log lines parsed. */
  logObjects(): Record<string, unknown>[];
}

/** Runs `bin serve` with `config`, in `home` (its HOME and XDG directories, see cliEnv). */
export function serveBinary(bin: string, config: string, home: string): Served {
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
  return {
    proc, lines, ready: ready.promise,
    logObjects: () => lines.flatMap((l) => { try { return [JSON.parse(l) as Record<string, unknown>]; } catch { return []; } }),
  };
}

/**
 * Starts serve with `config` written into `home`, runs `fn` once it runs, and ends with `mailsentry
 * unload`, checked as a user would: it says "stopped" and exits 0, serve exits 0, the pid file is gone.
 * A failure anywhere kills serve so no process outlives the test.
 */
export async function withServe(bin: string, home: string, config: object, fn: (served: Served, state: string) => Promise<void>): Promise<void> {
  await mkdir(home, { recursive: true });
  const file = join(home, "config.json");
  await writeFile(file, JSON.stringify(config));
  const served = serveBinary(bin, file, home);
  const state = join(home, "state", "mailsentry");
  let stopped = false;
  try {
    await served.ready;
    await fn(served, state);
    const un = await run([bin, "unload"], { env: cliEnv(home), cwd: home });
    expect(new TextDecoder().decode(un.out)).toContain("stopped");
    expect(un.code).toBe(0);
    expect(await served.proc.exited).toBe(0);
    stopped = true;
    expect(existsSync(join(state, "mailsentry.pid"))).toBe(false);
  } finally {
    if (!stopped) served.proc.kill("SIGKILL");
  }
}
