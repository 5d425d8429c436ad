// Out of file descriptors, as a user with `ulimit -n` low meets it: the proxy serves as many sessions
// as its open-file limit leaves room for, answers the rest at once with a temporary failure (instead
// of running into EMFILE, where accept spins at 100% CPU and new clients time out), stays idle while
// refusing, and serves again as soon as sessions end.
import { expect, test } from "bun:test";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FDS_PER_SESSION, RESERVED_FDS } from "../../core/net/fd-limit.ts";
import { freePort, startProxyProcess, TestClient } from "../helpers/proxy.ts";

const FILE_LIMIT = 220;
const CAP = (FILE_LIMIT - RESERVED_FDS) / FDS_PER_SESSION;

/** CPU seconds (user + system) of a process and its children that were reaped, from /proc. */
async function cpuSeconds(pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, "utf8")).split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** The process doing the work: serve re-executes itself once (allocator settings), so it may be the only child. */
async function worker(pid: number): Promise<number> {
  const children = (await readFile(`/proc/${pid}/task/${pid}/children`, "utf8").catch(() => "")).trim().split(/\s+/).filter(Boolean).map(Number);
  return children.length === 1 ? children[0]! : pid;
}

test(`with ulimit -n ${FILE_LIMIT}: ${CAP} sessions served, the next refused at once, no spinning, served again after`, async () => {
  const home = await mkdtemp(join(tmpdir(), "mailsentry-fd-"));
  try {
    const port = await freePort();
    const cfg = join(home, "config.json");
    await mkdir(home, { recursive: true });
    await writeFile(cfg, JSON.stringify({ listeners: { pop3: { enabled: true, addresses: [`127.0.0.1:${port}`] }, pop3s: { enabled: false, addresses: [] }, imap: { enabled: false, addresses: [] }, imaps: { enabled: false, addresses: [] } }, limits: { maxUnauthenticatedPerClient: 10_000 } }));
    const p = await startProxyProcess({ config: cfg, home, fileLimit: FILE_LIMIT });
    try {
      const clients: TestClient[] = [];
      for (let i = 0; i < CAP; i++) {
        const c = await TestClient.connect(port);
        expect(await c.line()).toStartWith("+OK");
        clients.push(c);
      }
      const refused: TestClient[] = [];
      for (let i = 0; i < 40; i++) {
        const c = await TestClient.connect(port);
        const started = performance.now();
        expect(await c.line()).toBe("-ERR [SYS/TEMP] mailsentry is at its connection limit; try again later.");
        expect(performance.now() - started).toBeLessThan(1000);
        refused.push(c);
      }
      // Holding the limit costs nothing: no accept loop spinning on EMFILE.
      const pid = await worker(p.proc.pid);
      const cpu0 = await cpuSeconds(pid);
      await Bun.sleep(1000);
      expect(await cpuSeconds(pid) - cpu0).toBeLessThan(0.3);
      for (const c of [...clients.splice(0, 5), ...refused]) await c[Symbol.asyncDispose]();
      await Bun.sleep(200);
      const again = await TestClient.connect(port);
      expect(await again.line()).toStartWith("+OK mailsentry");
      await again[Symbol.asyncDispose]();
      for (const c of clients) await c[Symbol.asyncDispose]();
    } finally {
      p.proc.kill();
      await p.proc.exited;
    }
  } finally {
    await rm(home, { recursive: true, force: true });
  }
}, 60_000);
