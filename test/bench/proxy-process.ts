// `mailsentry serve` as a subprocess for the benchmarks: started on a written config, ready once
// it logs that it runs; its own CPU seconds and memory read from /proc, its log kept for errors.
import { existsSync } from "node:fs";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { MB } from "./mailbox.ts";

export interface ProxyProcess {
  pid: number;
  /** XDG_STATE_HOME/mailsentry: the CA, the quarantine, the control socket. */
  stateDir: string;
  /** utime + stime so far, in seconds. */
  cpuSeconds(): Promise<number>;
  /** Its threads' counters now (threadDelta compares two). */
  threads(): Promise<Map<string, ThreadTimes>>;
  /** Peak resident set so far (VmHWM), MB. */
  peakRssMB(): Promise<number>;
  /** Resident set now and its peak so far, MB. */
  memory(): Promise<{ rssMB: number; peakMB: number }>;
  /** The last lines of its log (serve writes it to stderr). */
  logTail(lines?: number): string;
  stop(): Promise<void>;
}

const CLK_TCK = 100; // Linux USER_HZ: /proc/PID/stat counts CPU time in these ticks

/** One thread's counters: its name (comm), CPU seconds (user, system) and minor page faults. */
export interface ThreadTimes { name: string; user: number; sys: number; faults: number }

/** Every live thread of pid by TID (`bun.exe` is the event loop, `Worker` a scan worker). */
export async function threadsOf(pid: number): Promise<Map<string, ThreadTimes>> {
  const out = new Map<string, ThreadTimes>();
  for (const tid of await readdir(`/proc/${pid}/task`).catch(() => [] as string[])) {
    const stat = await readFile(`/proc/${pid}/task/${tid}/stat`, "utf8").catch(() => "");
    if (!stat) continue; // the thread ended in between
    const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    out.set(tid, { name, user: Number(f[11]) / CLK_TCK, sys: Number(f[12]) / CLK_TCK, faults: Number(f[7]) });
  }
  return out;
}

/** What each thread name spent between two snapshots (threads that came and went count from 0). */
export function threadDelta(before: Map<string, ThreadTimes>, after: Map<string, ThreadTimes>): ThreadTimes[] {
  const byName = new Map<string, ThreadTimes>();
  for (const [tid, a] of after) {
    const b = before.get(tid) ?? { name: a.name, user: 0, sys: 0, faults: 0 };
    const t = byName.get(a.name) ?? { name: a.name, user: 0, sys: 0, faults: 0 };
    t.user += a.user - b.user; t.sys += a.sys - b.sys; t.faults += a.faults - b.faults;
    byName.set(a.name, t);
  }
  return [...byName.values()].filter((t) => t.user + t.sys > 0 || t.faults > 0).sort((x, y) => y.user + y.sys - (x.user + x.sys));
}

/** BENCH_THREADS=1: one proxied run's CPU and page faults per thread, per 100 MB moved. */
export function printThreads(name: string, threads: ThreadTimes[], bytes: number): void {
  const per = (100 * MB) / bytes;
  const cells = threads.map((t) => `${t.name} ${(t.user * per).toFixed(2)}u+${(t.sys * per).toFixed(2)}s ${Math.round(t.faults * per)}flt`);
  console.log(`  ${name} per 100 MB: ${cells.join(", ")}`);
}

export async function cpuSecondsOf(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" "); // f[0] is field 3 (state)
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}

/** Resident set now (VmRSS) and its peak so far (VmHWM), MB. */
export async function memoryOf(pid: number): Promise<{ rssMB: number; peakMB: number }> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  return { rssMB: kb("VmRSS") / 1024, peakMB: kb("VmHWM") / 1024 };
}

/** The compiled binary when MAILSENTRY_BIN names it or dist/ has one; else the sources (BENCH_PROFILE adds --cpu-prof-md). */
export function proxyCommand(): string[] {
  const bin = process.env.MAILSENTRY_BIN ?? (existsSync("dist/mailsentry") ? "dist/mailsentry" : null);
  if (bin) return [bin];
  const prof = process.env.BENCH_PROFILE;
  return [process.execPath, ...(prof ? ["--cpu-prof-md", `--cpu-prof-dir=${prof}`] : []), "cli/main.ts"];
}

/** Ports the OS hands out now (bound together, so distinct), released for the proxy to bind. */
export function freePorts(n: number): number[] {
  const socks = Array.from({ length: n }, () => Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } }));
  const ports = socks.map((s) => s.port);
  for (const s of socks) s.stop(true);
  return ports;
}

/**
 * Starts `serve` on the config `makeConfig` builds for freshly chosen ports (the config refuses port
 * 0, so the OS's choice is taken and released first; a port taken in between means another try).
 * `dir/state` is XDG_STATE_HOME, kept across starts so the client-leg CA stays the same.
 */
export async function spawnProxy(dir: string, portCount: number, makeConfig: (ports: number[]) => object): Promise<ProxyProcess & { ports: number[] }> {
  for (let attempt = 1; ; attempt++) {
    const ports = freePorts(portCount);
    try {
      return { ...(await spawnOnce(dir, makeConfig(ports))), ports };
    } catch (e) {
      if (attempt === 3 || !/EADDRINUSE|address already in use/i.test((e as Error).message)) throw e;
    }
  }
}

async function spawnOnce(dir: string, config: object): Promise<ProxyProcess> {
  const xdgState = join(dir, "state");
  const cfg = join(dir, "proxy.json");
  // Every bench client comes from 127.0.0.1 and opens hundreds of sessions at once (the load runs),
  // far past the default cap on connections per address that have not logged in yet.
  const limits = { maxUnauthenticatedPerClient: 5000, ...((config as { limits?: object }).limits ?? {}) };
  await writeFile(cfg, JSON.stringify({ logFormat: "json", logLevel: "info", ...config, limits }));
  const proc = Bun.spawn([...proxyCommand(), "serve", "--config", cfg], {
    stdout: "ignore", stderr: "pipe", stdin: "ignore",
    env: { ...process.env, XDG_STATE_HOME: xdgState, XDG_CONFIG_HOME: join(dir, "config"), NO_COLOR: "1" },
  });
  const log: string[] = [];
  const ready = Promise.withResolvers<void>();
  void (async () => {
    const dec = new TextDecoder();
    let rest = "";
    for await (const chunk of proc.stderr) {
      rest += dec.decode(chunk, { stream: true });
      const lines = rest.split("\n");
      rest = lines.pop()!;
      for (const line of lines) {
        log.push(line);
        if (log.length > 2000) log.splice(0, 1000);
        let o: Record<string, unknown>;
        try { o = JSON.parse(line); } catch { continue; }
        if (o.msg === "mailsentry proxy running") ready.resolve();
      }
    }
  })();
  const exited = proc.exited.then((code) => { throw new Error(`proxy exited (${code}) before it was ready:\n${log.slice(-30).join("\n")}`); });
  exited.catch(() => {});
  await Promise.race([ready.promise, exited]);
  return {
    pid: proc.pid,
    stateDir: join(xdgState, "mailsentry"),
    cpuSeconds: () => cpuSecondsOf(proc.pid),
    threads: () => threadsOf(proc.pid),
    peakRssMB: async () => (await memoryOf(proc.pid)).peakMB,
    memory: () => memoryOf(proc.pid),
    logTail: (n = 40) => log.slice(-n).join("\n"),
    async stop() {
      if (proc.exitCode === null) proc.kill("SIGTERM");
      await proc.exited;
    },
  };
}
