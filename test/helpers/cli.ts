// Runs the mailsentry CLI as a subprocess: `bun cli/main.ts …`, or the compiled binary when
// MAILSENTRY_BIN is set. Each run gets its own XDG dirs and no MAILSENTRY_* from the parent.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "../..");

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  env?: Record<string, string>;
  /** Bytes, or a file (a device such as /dev/zero too) opened as stdin. */
  stdin?: string | Uint8Array | { file: string };
  cwd?: string;
}

/** The argv prefix that starts the CLI. */
export function cliCommand(): string[] {
  const bin = process.env.MAILSENTRY_BIN;
  return bin ? [bin] : [process.execPath, join(ROOT, "cli/main.ts")];
}

/** A scratch directory with its own XDG config/state dirs; removed on dispose. */
export async function cliSandbox(): Promise<{ dir: string; env: Record<string, string>; [Symbol.asyncDispose](): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "mailsentry-cli-"));
  return {
    dir,
    env: { XDG_CONFIG_HOME: join(dir, "config"), XDG_STATE_HOME: join(dir, "state"), HOME: dir },
    [Symbol.asyncDispose]: () => rm(dir, { recursive: true, force: true }),
  };
}

export async function runCli(args: string[], opts: CliOptions = {}): Promise<CliResult> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("MAILSENTRY_")) env[k] = v;
  env.NO_COLOR = "1";
  Object.assign(env, opts.env);
  const proc = Bun.spawn([...cliCommand(), ...args], {
    cwd: opts.cwd ?? ROOT,
    env,
    stdin: opts.stdin === undefined ? "ignore" : typeof opts.stdin === "object" && "file" in opts.stdin ? Bun.file(opts.stdin.file) : new Blob([opts.stdin]),
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}
