// Benchmark: POP3 downloads from a real Dovecot, directly and through mailsentry, in one run.
// 1. Throughput: {Bun client, python poplib, curl, fetchmail} × {plain, POP3S on both legs}, scanning
//    on, and pass-through (the server in excludedServers) for the first two; direct, through a bare
//    relay (relay-floor.ts, the floor of any proxy) and proxied, interleaved, medians; the ratio
//    beside the proxy's own CPU seconds per 100 MB.
// 2. One 25 MB message alone: the proxy's peak RSS, and how much longer than direct another
//    session waits for a NOOP reply while the proxy holds and scans it.
// 3. 500 sessions at once from a python asyncio client, 10 × 100 KB messages each: errors, latency,
//    peak RSS.
// Exits 1 when a target is missed. Usage: bun test/bench/pop3.ts (MAILSENTRY_BIN selects the
// compiled binary; BENCH_RUNS, BENCH_MODES e.g. "poplib-plain-scan,curl-tls-scan", BENCH_LOAD=0
// skips 2 and 3, BENCH_PROFILE=DIR writes --cpu-prof-md profiles of the proxy, BENCH_THREADS=1 prints
// each proxied run's CPU and page faults per thread).
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startDovecot, type Dovecot } from "../helpers/dovecot.ts";
import { bigMessage, MB, mixedMessages, sizedMessage } from "./mailbox.ts";
import { asyncioLoad, bunDownload, curlDownload, fetchmailDownload, noopPinger, poplibDownload, type DownloadStats, type Pop3Target } from "./pop3-client.ts";
import { startRelay } from "./relay-floor.ts";
import { printThreads, proxyCommand, spawnProxy, threadDelta, type ProxyProcess } from "./proxy-process.ts";
import { median, percentile } from "./stats.ts";

const RUNS = Math.max(1, Number(process.env.BENCH_RUNS ?? 5));
const SESSIONS = Number(process.env.BENCH_SESSIONS ?? 500);
const THREADS = process.env.BENCH_THREADS === "1";
const TARGET_RATIO = 1.15;
const TARGET_SCAN_CPU = 0.6; // s per 100 MB, scanning on
const TARGET_PASS_CPU = 0.25; // s per 100 MB, relayed unscanned
const TARGET_BIG_RSS_MB = 150;
const TARGET_LOAD_RSS_MB = 256;
/** "Never stalls the other sessions for more than a few milliseconds." */
const TARGET_STALL_MS = 10;
const PASSWORD = "pw";

const misses: string[] = [];
const miss = (what: string) => { misses.push(what); console.log(`MISSED: ${what}`); };

type Client = "bun" | "poplib" | "curl" | "fetchmail";
interface Mode { client: Client; tls: boolean; scan: boolean }
const modeName = (m: Mode) => `${m.client}-${m.tls ? "tls" : "plain"}-${m.scan ? "scan" : "pass"}`;

type Pop3Proxy = ProxyProcess & { ports: { pop3: number; pop3s: number } };

/** `serve` with POP3 and POP3S routed to this Dovecot; `scan: false` lists the server in excludedServers. */
async function startProxy(dir: string, dc: Dovecot, scan: boolean): Promise<Pop3Proxy> {
  const p = await spawnProxy(dir, 2, ([pop3, pop3s]) => ({
    listeners: {
      pop3: { enabled: true, addresses: [`127.0.0.1:${pop3}`] },
      pop3s: { enabled: true, addresses: [`127.0.0.1:${pop3s}`] },
      imap: { enabled: false, addresses: [] },
      imaps: { enabled: false, addresses: [] },
    },
    allowedUpstreamPorts: [dc.ports.pop3, dc.ports.pop3s],
    upstreamCaFile: dc.caFile,
    upstreamImplicitTlsPorts: { pop3: [dc.ports.pop3s], imap: [dc.ports.imaps] },
    // "plain" is plain on both legs: no STLS upstream on Dovecot's plain port.
    upstreamTls: "off",
    excludedServers: scan ? [] : ["127.0.0.1"],
  }));
  return { ...p, ports: { pop3: p.ports[0]!, pop3s: p.ports[1]! } };
}

/** fetchmail checks certificates against names only; everyone else connects to the address. */
const hostFor = (client: Client) => (client === "fetchmail" ? "localhost" : "127.0.0.1");

function direct(dc: Dovecot, client: Client, user: string, tls: boolean): Pop3Target {
  return { host: hostFor(client), port: tls ? dc.ports.pop3s : dc.ports.pop3, tls, caFile: dc.caFile, user, password: PASSWORD };
}

function proxied(p: Pop3Proxy, caFile: string, dc: Dovecot, client: Client, user: string, tls: boolean): Pop3Target {
  const upstream = tls ? dc.ports.pop3s : dc.ports.pop3;
  return { host: hostFor(client), port: tls ? p.ports.pop3s : p.ports.pop3, tls, caFile, user: `${user}/127.0.0.1:${upstream}`, password: PASSWORD };
}

function download(dir: string, client: Client, t: Pop3Target, count: number): Promise<DownloadStats> {
  switch (client) {
    case "bun": return bunDownload(t);
    case "poplib": return poplibDownload(t);
    case "curl": return curlDownload(t, count);
    case "fetchmail": return fetchmailDownload(t, join(dir, "fetchmail"));
  }
}

// ---- 1. throughput ------------------------------------------------------------------------------------

/** relay: the same download through a relay that only moves bytes (relay-floor.ts), what the hop alone costs. */
interface ModeResult { mode: Mode; direct: number[]; proxied: number[]; relay: number[]; cpu: number[]; firstPassCpu: number }

async function measureMode(dir: string, dc: Dovecot, caFile: string, mode: Mode, count: number): Promise<ModeResult> {
  const r: ModeResult = { mode, direct: [], proxied: [], relay: [], cpu: [], firstPassCpu: 0 };
  const relay = await startRelay("127.0.0.1", mode.tls ? dc.ports.pop3s : dc.ports.pop3);
  const proxy = await startProxy(dir, dc, mode.scan).catch(async (e) => { await relay.stop(); throw e; });
  try {
    // Warm-ups, outside the medians: Dovecot's caches on this mailbox, and the proxy on another one
    // of the same shape (POP3 keeps no verdicts, so nothing carries over but the JIT and the heap a
    // fresh process grows into; that first pass's CPU is reported on its own).
    const reference = await download(dir, mode.client, direct(dc, mode.client, "mixed", mode.tls), count);
    const w0 = await proxy.cpuSeconds();
    const warm = await download(dir, mode.client, proxied(proxy, caFile, dc, mode.client, "warm", mode.tls), count);
    r.firstPassCpu = (await proxy.cpuSeconds() - w0) / (warm.bytes / (100 * MB));
    const check = (what: string, s: DownloadStats) => {
      if (s.messages !== reference.messages || s.bytes !== reference.bytes) {
        throw new Error(`${what}: ${s.messages} messages, ${s.bytes} bytes; direct gave ${reference.messages}, ${reference.bytes}`);
      }
    };
    const runDirect = async () => {
      const s = await download(dir, mode.client, direct(dc, mode.client, "mixed", mode.tls), count);
      check("direct", s);
      r.direct.push(s.wallMs);
    };
    const runRelay = async () => {
      const s = await download(dir, mode.client, { ...direct(dc, mode.client, "mixed", mode.tls), port: relay.port }, count);
      check("relay", s);
      r.relay.push(s.wallMs);
    };
    const runProxied = async () => {
      const t0 = THREADS ? await proxy.threads() : null;
      const c0 = await proxy.cpuSeconds();
      const s = await download(dir, mode.client, proxied(proxy, caFile, dc, mode.client, "mixed", mode.tls), count);
      const c1 = await proxy.cpuSeconds();
      if (t0) printThreads(modeName(mode), threadDelta(t0, await proxy.threads()), reference.bytes);
      check("proxied", s);
      r.proxied.push(s.wallMs);
      r.cpu.push((c1 - c0) / (reference.bytes / (100 * MB)));
    };
    for (let i = 0; i < RUNS; i++) {
      // Rotate which goes first, so a drift in the machine's load hits all three alike.
      const order = [runDirect, runRelay, runProxied];
      for (let k = 0; k < order.length; k++) await order[(i + k) % order.length]!();
    }
  } catch (e) {
    throw new Error(`${(e as Error).message}\n-- proxy log (last lines):\n${proxy.logTail()}`);
  } finally {
    await proxy.stop();
    await relay.stop();
  }
  return r;
}

function printTable(results: ModeResult[]): void {
  const range = (v: number[]) => `${Math.min(...v).toFixed(0)}-${Math.max(...v).toFixed(0)}`;
  const rows = [
    ["mode", "direct ms", "proxied ms", "ratio", "CPU s/100MB", "direct range", "proxied range", "CPU range", "relay ms", "relay ratio"],
    ...results.map((m) => [
      modeName(m.mode), median(m.direct).toFixed(0), median(m.proxied).toFixed(0), (median(m.proxied) / median(m.direct)).toFixed(2),
      median(m.cpu).toFixed(2), range(m.direct), range(m.proxied), `${Math.min(...m.cpu).toFixed(2)}-${Math.max(...m.cpu).toFixed(2)}`,
      median(m.relay).toFixed(0), (median(m.relay) / median(m.direct)).toFixed(2),
    ]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  console.log(`\nPOP3 throughput, medians of ${RUNS} runs, direct and proxied interleaved; targets: ratio <= ${TARGET_RATIO}, ` +
    `proxy CPU (user+sys per 100 MB moved) <= ${TARGET_SCAN_CPU} scanning, <= ${TARGET_PASS_CPU} pass-through; relay: a bare zero-copy relay, the floor of any proxy (no target)`);
  for (const row of rows) console.log(row.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  "));
  for (const m of results) {
    const ratio = median(m.proxied) / median(m.direct);
    const cpu = median(m.cpu);
    const cpuTarget = m.mode.scan ? TARGET_SCAN_CPU : TARGET_PASS_CPU;
    if (ratio > TARGET_RATIO) miss(`${modeName(m.mode)}: proxied/direct ${ratio.toFixed(2)} > ${TARGET_RATIO}`);
    if (cpu > cpuTarget) miss(`${modeName(m.mode)}: proxy CPU ${cpu.toFixed(2)} s/100 MB > ${cpuTarget}`);
  }
}

// ---- 2. one 25 MB message: memory, and what the other sessions feel ------------------------------------

async function bigMessageRun(dir: string, dc: Dovecot, caFile: string): Promise<void> {
  // The same download straight from Dovecot first: the NOOP wait it shows is the machine's (two
  // clients and Dovecot share the cores), and what the proxy adds is measured against it.
  const directPinger = await noopPinger(direct(dc, "bun", "warm", false));
  await poplibDownload(direct(dc, "poplib", "big", false));
  const base = await directPinger.stop();
  const proxy = await startProxy(dir, dc, true);
  try {
    const pinger = await noopPinger(proxied(proxy, caFile, dc, "bun", "warm", false));
    const s = await poplibDownload(proxied(proxy, caFile, dc, "poplib", "big", false));
    const stall = await pinger.stop();
    const rss = await proxy.peakRssMB();
    const added = stall.maxMs - base.maxMs;
    console.log(`one 25 MB message (poplib): ${(s.wallMs / 1000).toFixed(2)} s; proxy peak RSS ${rss.toFixed(0)} MB (target <= ${TARGET_BIG_RSS_MB}); ` +
      `another session's longest NOOP wait meanwhile ${stall.maxMs.toFixed(1)} ms over ${stall.pings} NOOPs, direct ${base.maxMs.toFixed(1)} ms ` +
      `over ${base.pings}: the proxy adds ${added.toFixed(1)} ms (target <= ${TARGET_STALL_MS})`);
    if (rss > TARGET_BIG_RSS_MB) miss(`25 MB message: peak RSS ${rss.toFixed(0)} MB > ${TARGET_BIG_RSS_MB}`);
    if (added > TARGET_STALL_MS) miss(`25 MB message: another session waited ${added.toFixed(1)} ms longer for a NOOP reply than direct > ${TARGET_STALL_MS}`);
  } finally {
    await proxy.stop();
  }
}

// ---- 3. many sessions at once --------------------------------------------------------------------------

async function loadRun(dir: string, dc: Dovecot, caFile: string, perSession: number): Promise<void> {
  const proxy = await startProxy(dir, dc, true);
  try {
    const c0 = await proxy.cpuSeconds();
    const s = await asyncioLoad(proxied(proxy, caFile, dc, "poplib", "load", false), SESSIONS);
    const cpu = (await proxy.cpuSeconds()) - c0;
    const rss = await proxy.peakRssMB();
    const mb = (s.messages * perSession) / MB;
    console.log(`${SESSIONS} sessions at once (python asyncio, 10 × 100 KB each): ${s.errors.length} errors, ${s.messages} messages (${mb.toFixed(0)} MB) in ` +
      `${(s.wallMs / 1000).toFixed(2)} s, p50 ${percentile(s.latenciesMs, 50).toFixed(0)} ms, p99 ${percentile(s.latenciesMs, 99).toFixed(0)} ms per message; ` +
      `proxy CPU ${(cpu / (mb / 100)).toFixed(2)} s/100 MB; peak RSS ${rss.toFixed(0)} MB (targets: 0 errors, <= ${TARGET_LOAD_RSS_MB} MB)`);
    if (s.errors.length) {
      miss(`${SESSIONS} sessions: ${s.errors.length} errors, e.g. ${s.errors[0]}`);
      console.log(`-- proxy log (last lines):\n${proxy.logTail()}`);
    }
    if (rss > TARGET_LOAD_RSS_MB) miss(`${SESSIONS} sessions: peak RSS ${rss.toFixed(0)} MB > ${TARGET_LOAD_RSS_MB}`);
  } finally {
    await proxy.stop();
  }
}

// ---- main ------------------------------------------------------------------------------------------------

const dir = await mkdtemp(join(tmpdir(), "mailsentry-pop3bench-"));
const dc = await startDovecot({
  users: ["mixed", "warm", "big", "load"].map((name) => ({ name, password: PASSWORD })),
  processLimit: SESSIONS + 500,
});
try {
  const mixed = mixedMessages(200, 1);
  const loadBox = Array.from({ length: 10 }, (_, i) => sizedMessage(i, 100 * 1024));
  await dc.seed("mixed", [...mixed, bigMessage(25)]);
  await dc.seed("warm", [...mixedMessages(200, 3), bigMessage(25)]);
  await dc.seed("big", [bigMessage(25)]);
  await dc.seed("load", loadBox);
  const count = mixed.length + 1;
  const totalMB = (mixed.reduce((n, m) => n + m.length, 0) + bigMessage(25).length) / MB;
  console.log(`mailbox: ${mixed.length} mixed messages + one 25 MB message (${totalMB.toFixed(0)} MB), as in the IMAP bench; Dovecot ${dc.host}; ` +
    `proxy: ${proxyCommand().join(" ")}; ${RUNS} runs per mode, medians`);

  // The client-leg CA exists once the proxy has started once; it stays for every later start.
  const first = await startProxy(dir, dc, true);
  await first.stop();
  const caFile = join(first.stateDir, "ca", "ca.pem");
  if (process.env.BENCH_PROFILE) await mkdir(process.env.BENCH_PROFILE, { recursive: true });

  const only = process.env.BENCH_MODES?.split(",").map((s) => s.trim()).filter(Boolean);
  const modes: Mode[] = [];
  for (const client of ["bun", "poplib", "curl", "fetchmail"] as const) for (const tls of [false, true]) modes.push({ client, tls, scan: true });
  for (const client of ["bun", "poplib"] as const) modes.push({ client, tls: false, scan: false });
  const results: ModeResult[] = [];
  for (const mode of modes.filter((m) => !only || only.includes(modeName(m)))) {
    try {
      const r = await measureMode(dir, dc, caFile, mode, count);
      console.log(`${modeName(mode).padEnd(20)} direct ${median(r.direct).toFixed(0).padStart(6)} ms  proxied ${median(r.proxied).toFixed(0).padStart(6)} ms  ` +
        `ratio ${(median(r.proxied) / median(r.direct)).toFixed(2)}  proxy CPU ${median(r.cpu).toFixed(2)} s/100 MB (a fresh proxy's first pass ${r.firstPassCpu.toFixed(2)})`);
      results.push(r);
    } catch (e) {
      miss(`${modeName(mode)}: failed: ${(e as Error).message}`);
    }
  }
  if (results.length) printTable(results);

  if (process.env.BENCH_LOAD !== "0") {
    for (const [name, fn] of [["25 MB message", () => bigMessageRun(dir, dc, caFile)], [`${SESSIONS} sessions`, () => loadRun(dir, dc, caFile, loadBox[0]!.length)]] as const) {
      try {
        await fn();
      } catch (e) {
        miss(`${name}: failed: ${(e as Error).message}`);
      }
    }
  }
} finally {
  await dc.stop();
  await rm(dir, { recursive: true, force: true });
}
if (misses.length) {
  console.log(`\n${misses.length} target(s) missed:\n  ${misses.join("\n  ")}`);
  process.exit(1);
}
console.log("\nall POP3 targets met");
