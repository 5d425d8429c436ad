// A real clamd (Debian's clamav-daemon binary) for tests: its own config, a database written at test
// time (EICAR's hash and whatever the test adds, never a downloaded one), a unix socket in a temp
// directory and, when asked, a TCP port on loopback. Stopped (and its files removed) on dispose.
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { clamdRequest, parseClamdAddress } from "../../core/net/engines/clamd-wire.ts";
import { EICAR_TEXT } from "./eicar.ts";
import { freePort } from "./proxy.ts";

export interface Clamd extends AsyncDisposable {
  /** unix:/… */
  unix: string;
  /** tcp:127.0.0.1:PORT, when started with tcp. */
  tcp: string | null;
  pid: number;
  /** Lines clamd logged (LogClean is on: one line per scan). */
  log(): Promise<string>;
  kill(): Promise<void>;
}

export interface ClamdOptions {
  /** Extra database files, name → content (e.g. "extra.hdb"). EICAR's hash is always there, as Test.Eicar. */
  db?: Record<string, string>;
  tcp?: boolean;
  /** clamd's StreamMaxLength, e.g. "1M". */
  streamMaxLength?: string;
}

/** md5:size:name, the .hdb line for content. */
export function hdbLine(content: string | Uint8Array, name: string): string {
  const bytes = typeof content === "string" ? new TextEncoder().encode(content) : content;
  return `${new Bun.CryptoHasher("md5").update(bytes).digest("hex")}:${bytes.length}:${name}`;
}

export async function startClamd(o: ClamdOptions = {}): Promise<Clamd> {
  const dir = await mkdtemp(join(tmpdir(), "mailsentry-clamd-"));
  const db = join(dir, "db");
  await Bun.write(join(db, "test.hdb"), `${hdbLine(EICAR_TEXT, "Test.Eicar")}\n`);
  for (const [name, content] of Object.entries(o.db ?? {})) await Bun.write(join(db, name), content);
  const socket = join(dir, "clamd.sock");
  const port = o.tcp ? await freePort() : null;
  const conf = [
    "Foreground yes",
    `LocalSocket ${socket}`,
    ...(port ? ["TCPAddr 127.0.0.1", `TCPSocket ${port}`] : []),
    `DatabaseDirectory ${db}`,
    `LogFile ${join(dir, "clamd.log")}`,
    "LogClean yes",
    `PidFile ${join(dir, "clamd.pid")}`,
    `StreamMaxLength ${o.streamMaxLength ?? "100M"}`,
    "AlertExceedsMax yes",
    "SelfCheck 0",
  ];
  await writeFile(join(dir, "clamd.conf"), conf.join("\n") + "\n");
  const proc = Bun.spawn(["clamd", "-c", join(dir, "clamd.conf")], { stdout: "ignore", stderr: "pipe" });
  const unix = `unix:${socket}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      if ((await clamdRequest(parseClamdAddress(unix), "zPING", 1000)) === "PONG") break;
    } catch { /* not up yet */ }
    if (proc.exitCode !== null || Date.now() > deadline) {
      const err = await new Response(proc.stderr).text().catch(() => "");
      throw new Error(`clamd did not start: ${err.slice(-500)}`);
    }
    await Bun.sleep(50);
  }
  const kill = async () => {
    if (proc.exitCode === null) proc.kill("SIGKILL");
    await proc.exited;
  };
  return {
    unix,
    tcp: port ? `tcp:127.0.0.1:${port}` : null,
    pid: proc.pid,
    log: () => readFile(join(dir, "clamd.log"), "utf8").catch(() => ""),
    kill,
    async [Symbol.asyncDispose]() {
      await kill();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
