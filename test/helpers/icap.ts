// Debian's c-icap with its virus_scan service for tests, in front of a test clamd (clamd.ts): its
// own config in a temp directory, a free loopback port. Stopped (and its files removed) on dispose.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { IcapEngine } from "../../core/net/engines/icap.ts";
import { freePort } from "./proxy.ts";

export interface CIcap extends AsyncDisposable {
  /** icap://127.0.0.1:PORT/avscan */
  url: string;
}

const MODULES = "/usr/lib/x86_64-linux-gnu/c_icap";

/** c-icap scanning through the clamd at clamdUnix ("unix:/…"). */
export async function startCIcap(clamdUnix: string): Promise<CIcap> {
  const dir = await mkdtemp(join(tmpdir(), "mailsentry-icap-"));
  const port = await freePort();
  const modules = (await Bun.file(join(MODULES, "virus_scan.so")).exists()) ? MODULES : "/usr/lib/c_icap";
  await writeFile(join(dir, "c-icap.conf"), [
    `PidFile ${join(dir, "c-icap.pid")}`,
    `CommandsSocket ${join(dir, "c-icap.ctl")}`,
    "Timeout 60", "StartServers 1", "MaxServers 2", "MinSpareThreads 2", "MaxSpareThreads 8", "ThreadsPerChild 8",
    `Port 127.0.0.1:${port}`,
    "ServerName mailsentry-test",
    `TmpDir ${dir}`,
    `ModulesDir ${modules}`, `ServicesDir ${modules}`,
    "TemplateDir /usr/share/c_icap/templates/",
    "LoadMagicFile /etc/c-icap/c-icap.magic",
    `ServerLog ${join(dir, "server.log")}`, `AccessLog ${join(dir, "access.log")}`,
    "Module common clamd_mod.so",
    `clamd_mod.ClamdSocket ${clamdUnix.replace(/^unix:/, "")}`,
    "Service antivirus_module virus_scan.so",
    "ServiceAlias avscan virus_scan?allow204=on&sizelimit=off&mode=simple",
    "virus_scan.ScanFileTypes TEXT DATA EXECUTABLE ARCHIVE GIF JPEG MSOFFICE",
    "virus_scan.MaxObjectSize 100M",
    "virus_scan.DefaultEngine clamd",
  ].join("\n") + "\n");
  const proc = Bun.spawn(["c-icap", "-N", "-f", join(dir, "c-icap.conf")], { stdout: "ignore", stderr: "pipe" });
  const url = `icap://127.0.0.1:${port}/avscan`;
  const probe = new IcapEngine({ urls: [url], timeoutMs: 1000, connections: 1 });
  const deadline = Date.now() + 30_000;
  while (!(await probe.check())[0]!.ok) {
    if (proc.exitCode !== null || Date.now() > deadline) {
      proc.kill("SIGKILL");
      throw new Error(`c-icap did not start: ${(await new Response(proc.stderr).text().catch(() => "")).slice(-500)}`);
    }
    await Bun.sleep(100);
  }
  return {
    url,
    async [Symbol.asyncDispose]() {
      // c-icap forks its servers: SIGTERM lets the main process stop them; what is left is killed.
      proc.kill("SIGTERM");
      const done = await Promise.race([proc.exited.then(() => true), Bun.sleep(3000).then(() => false)]);
      await Bun.spawn(["pkill", "-KILL", "-P", String(proc.pid)]).exited;
      if (!done) proc.kill("SIGKILL");
      await proc.exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}
