// Throughput of the engine chain: 400 mixed messages (about 25 MB) through the proxy's filter (scan
// workers, chain, policy; no protocol), 8 at a time as 8 sessions would, with builtin alone, with
// builtin + clamd over a unix socket, and with builtin + two clamd addresses; beside it clamd by
// itself (INSTREAM straight from here, same concurrency). Target: with clamd in the chain the
// proxy scans at least 0.8 of what clamd alone does (its throughput is clamd's, not the proxy's).
// Prints messages/s, MB/s and the proxy's own CPU seconds per 100 MB; exits 1 when a target is missed.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_CONFIG, type Config } from "../../core/config/types.ts";
import { filterMessage } from "../../core/filter/index.ts";
import { ScanPool } from "../../core/filter/pool.ts";
import { createLogger } from "../../core/log.ts";
import { QuarantineStore } from "../../core/quarantine/store.ts";
import { policyFromConfig } from "../../core/rewrite/index.ts";
import { chainFromConfig } from "../../core/net/engines/index.ts";
import { clamdRequest, parseClamdAddress } from "../../core/net/engines/clamd-wire.ts";
import { startClamd } from "../helpers/clamd.ts";
import { MB, mixedMessages } from "./mailbox.ts";
import { median } from "./stats.ts";

const CONCURRENCY = 8;
const ROUNDS = 5;
const TARGET_RATIO = 0.8;

const messages = mixedMessages(400, 42);
const bytes = messages.reduce((n, m) => n + m.length, 0);

/** Runs work over every message, CONCURRENCY at a time; seconds of wall time and of this process's CPU. */
async function timed(work: (m: Uint8Array) => Promise<unknown>): Promise<{ wall: number; cpu: number }> {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let next = 0;
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < messages.length) await work(messages[next++]!);
  }));
  const c = process.cpuUsage(cpu0);
  return { wall: (performance.now() - t0) / 1000, cpu: (c.user + c.system) / 1e6 };
}

async function best(work: (m: Uint8Array) => Promise<unknown>): Promise<{ wall: number; cpu: number }> {
  const runs = [];
  for (let i = 0; i < ROUNDS; i++) runs.push(await timed(work));
  return { wall: median(runs.map((r) => r.wall)), cpu: median(runs.map((r) => r.cpu)) };
}

const dir = await mkdtemp(join(tmpdir(), "mailsentry-bench-engines-"));
const [a, b] = await Promise.all([startClamd(), startClamd()]);
const pool = await ScanPool.open(null);
const quarantine = new QuarantineStore(join(dir, "q"));
const log = createLogger({ format: "json", level: "error", write: () => {} });
try {
  const filterWith = (engines: Config["engines"]) => {
    const config = { ...structuredClone(DEFAULT_CONFIG), engines } as Config;
    const ctx = { scanner: pool.scan, limits: config.limits, policy: policyFromConfig(config, "bench", { sameSize: true }), quarantine, chain: chainFromConfig(config) };
    return (m: Uint8Array) => filterMessage(ctx, m, { msg: "1", partial: false, log }, "bench");
  };
  const rows: [string, { wall: number; cpu: number }][] = [];
  rows.push(["clamd alone (INSTREAM from here)", await best((m) => clamdRequest(parseClamdAddress(a.unix), "zINSTREAM", 60_000, m))]);
  rows.push(["builtin", await best(filterWith(["builtin"]))]);
  rows.push(["builtin + clamd (unix socket)", await best(filterWith(["builtin", { clamd: [a.unix] }]))]);
  rows.push(["clamd alone in the chain", await best(filterWith([{ clamd: [a.unix] }]))]);
  rows.push(["builtin + two clamd addresses", await best(filterWith(["builtin", { clamd: [a.unix, b.unix] }]))]);
  const mb = bytes / MB;
  console.log(`${messages.length} messages, ${mb.toFixed(1)} MB, ${CONCURRENCY} at a time, median of ${ROUNDS}`);
  console.log("chain                                 msgs/s     MB/s   CPU s/100MB (this process)");
  for (const [name, r] of rows) {
    console.log(`${name.padEnd(36)} ${(messages.length / r.wall).toFixed(0).padStart(7)} ${(mb / r.wall).toFixed(1).padStart(8)}   ${((r.cpu / mb) * 100).toFixed(2).padStart(6)}`);
  }
  const clamdAlone = rows[0]![1].wall;
  const withClamd = rows[2]![1].wall;
  const ratio = clamdAlone / withClamd;
  console.log(`with clamd the proxy scans at ${ratio.toFixed(2)} of clamd's own throughput (target ≥ ${TARGET_RATIO}); ` +
    `with clamd as the only engine at ${(clamdAlone / rows[3]![1].wall).toFixed(2)} (the rest is the built-in scan sharing the cores)`);
  if (ratio < TARGET_RATIO) {
    console.log(`MISSED: builtin + clamd runs at ${ratio.toFixed(2)} of clamd alone`);
    process.exitCode = 1;
  }
} finally {
  pool.close();
  await a[Symbol.asyncDispose]();
  await b[Symbol.asyncDispose]();
  await rm(dir, { recursive: true, force: true });
}
