// Benchmark: IMAP downloads from a real Dovecot, directly and through mailsentry (scanning on), in one
// run: {bulk, chunked} × {plain, TLS on both legs} × {Bun client, python imaplib}, direct, through a
// bare relay (relay-floor.ts, the floor of any proxy) and proxied, interleaved, medians; then 1,000 concurrent sessions (900 in IDLE, 100 downloading). Prints wall
// times, ratios, the proxy's CPU seconds per 100 MB and its peak RSS; exits 1 when a target is missed.
// Usage: bun test/bench/imap.ts   (MAILSENTRY_BIN selects the compiled binary; BENCH_RUNS, BENCH_MODES
// e.g. "bun-tls-chunked,imaplib-plain-bulk", BENCH_LOAD=0 skips the load test, BENCH_PROFILE=DIR writes
// --cpu-prof-md profiles of every proxied run, BENCH_COMPRESS=0|1 sets upstreamCompress false or "always",
// BENCH_THREADS=1 prints each measured download's CPU and page faults per thread of the proxy)
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sendControl } from "../../core/control.ts";
import { startDovecot, type Dovecot } from "../helpers/dovecot.ts";
import { fetchMailbox, idle, imaplibFetch, type FetchStats, type IdleSession, type ImapTarget, type Shape } from "./imap-client.ts";
import { bigMessage, infectedMessage, MB, mixedMessages } from "./mailbox.ts";
import { startRelay } from "./relay-floor.ts";
import { printThreads, proxyCommand, spawnProxy, threadDelta, type ProxyProcess } from "./proxy-process.ts";
import { median, percentile } from "./stats.ts";

const RUNS = Math.max(1, Number(process.env.BENCH_RUNS ?? 5));
const THREADS = process.env.BENCH_THREADS === "1";
const IDLERS = Number(process.env.BENCH_IDLE ?? 900);
const DOWNLOADERS = Number(process.env.BENCH_DOWNLOADERS ?? 100);
/** Sessions opened at once: Dovecot forks a login and an imap process per session. */
const WAVE = 50;
const TARGET_RATIO = 1.5;
const TARGET_RSS_MB = 256;
/** The load test's cache bound: small, so the cleaned copies of its infected messages overflow it. */
const LOAD_CACHE_BYTES = 8 * 1024 * 1024;
const PASSWORD = "pw";

const misses: string[] = [];
const miss = (what: string) => { misses.push(what); console.log(`MISSED: ${what}`); };

// ---- the proxy as a subprocess ----------------------------------------------------------------------

type ImapProxy = ProxyProcess & { ports: { imap: number; imaps: number } };

/**
 * Starts `serve` with IMAP and IMAPS on free loopback ports, routed to this Dovecot. The state
 * directory is kept across starts (one client-leg CA) but its clean index is removed, so every
 * start scans the mailbox afresh.
 */
async function startProxy(dir: string, dc: Dovecot, limits: Record<string, number> = {}): Promise<ImapProxy> {
  await rm(join(dir, "state", "mailsentry", "imap-clean.idx"), { force: true });
  const p = await spawnProxy(dir, 2, ([imap, imaps]) => ({
    listeners: {
      pop3: { enabled: false, addresses: [] },
      pop3s: { enabled: false, addresses: [] },
      imap: { enabled: true, addresses: [`127.0.0.1:${imap}`] },
      imaps: { enabled: true, addresses: [`127.0.0.1:${imaps}`] },
    },
    allowedUpstreamPorts: [dc.ports.imap, dc.ports.imaps],
    upstreamCaFile: dc.caFile,
    upstreamImplicitTlsPorts: { pop3: [dc.ports.pop3s], imap: [dc.ports.imaps] },
    // "plain" means plain on both legs: no STARTTLS upstream on Dovecot's plain port.
    upstreamTls: "off",
    ...(process.env.BENCH_COMPRESS ? { upstreamCompress: process.env.BENCH_COMPRESS === "1" ? "always" : false } : {}),
    limits,
  }));
  return { ...p, ports: { imap: p.ports[0]!, imaps: p.ports[1]! } };
}

// ---- targets and clients -----------------------------------------------------------------------------

type Client = "bun" | "imaplib";
interface Mode { client: Client; tls: boolean; shape: Extract<Shape, "bulk" | "chunked"> }
const modeName = (m: Mode) => `${m.client}-${m.tls ? "tls" : "plain"}-${m.shape}`;

function direct(dc: Dovecot, user: string, tls: boolean): ImapTarget {
  return { host: dc.host, port: tls ? dc.ports.imaps : dc.ports.imap, tls, ca: dc.caPem, caFile: dc.caFile, user, password: PASSWORD };
}

function proxied(p: ImapProxy, proxyCa: { pem: string; file: string }, dc: Dovecot, user: string, tls: boolean): ImapTarget {
  const upstream = tls ? dc.ports.imaps : dc.ports.imap;
  return { host: "127.0.0.1", port: tls ? p.ports.imaps : p.ports.imap, tls, ca: proxyCa.pem, caFile: proxyCa.file, user: `${user}/127.0.0.1:${upstream}`, password: PASSWORD };
}

function download(client: Client, t: ImapTarget, shape: Shape): Promise<FetchStats> {
  return client === "bun" ? fetchMailbox(t, shape) : imaplibFetch(t, shape);
}

// ---- 1. throughput: direct and proxied, interleaved ---------------------------------------------------

interface ModeResult {
  mode: Mode;
  directMs: number;
  proxiedMs: number;
  /** Same proxy, second download: every message is known clean, nothing is scanned again. */
  resyncMs: number;
  cpuPer100MB: number;
  /** The fresh process's first download (the warm-up account): the heap and buffers it grows into, and the JIT. */
  freshCpuPer100MB: number;
  resyncCpuPer100MB: number;
  peakRssMB: number;
  withheld: string[];
  /** The same download through a relay that only moves bytes (relay-floor.ts): what the hop alone costs. */
  relayMs: number;
  /** Every run's wall time, for the spread. */
  directRuns: number[];
  proxiedRuns: number[];
}

async function measureMode(dir: string, dc: Dovecot, proxyCa: { pem: string; file: string }, mode: Mode, expectBytes: number): Promise<ModeResult> {
  const d: number[] = [], p: number[] = [], r: number[] = [], cpu: number[] = [], rcpu: number[] = [], fresh: number[] = [], floor: number[] = [];
  let rss = 0;
  const withheld = new Set<string>();
  const check = (what: string, s: FetchStats) => {
    for (const w of s.refused) withheld.add(w);
    if (s.bytes !== expectBytes && s.refused.length === 0) throw new Error(`${what}: ${s.bytes} message bytes, expected ${expectBytes}`);
  };
  await download(mode.client, direct(dc, "mixed", mode.tls), mode.shape); // Dovecot's caches warm, unmeasured
  const runDirect = async () => {
    const s = await download(mode.client, direct(dc, "mixed", mode.tls), mode.shape);
    check("direct", s);
    if (s.refused.length) throw new Error(`direct: Dovecot refused ${s.refused[0]}`);
    d.push(s.wallMs);
  };
  const relay = await startRelay(dc.host, mode.tls ? dc.ports.imaps : dc.ports.imap);
  const runRelay = async () => {
    const s = await download(mode.client, { ...direct(dc, "mixed", mode.tls), port: relay.port }, mode.shape);
    check("relay", s);
    floor.push(s.wallMs);
  };
  const runProxied = async () => {
    const proxy = await startProxy(dir, dc);
    try {
      // A proxy runs for days: what is measured is its first download of a mailbox it has not seen,
      // after it has scanned another of the same shape (a fresh process's first is reported apart).
      const w0 = await proxy.cpuSeconds();
      const warm = await download(mode.client, proxied(proxy, proxyCa, dc, "warm", mode.tls), mode.shape);
      const c0 = await proxy.cpuSeconds();
      fresh.push((c0 - w0) / (warm.bytes / (100 * MB)));
      const t0 = THREADS ? await proxy.threads() : null;
      const s = await download(mode.client, proxied(proxy, proxyCa, dc, "mixed", mode.tls), mode.shape);
      const c1 = await proxy.cpuSeconds();
      if (t0) printThreads(modeName(mode), threadDelta(t0, await proxy.threads()), s.bytes);
      check("proxied", s);
      p.push(s.wallMs);
      cpu.push((c1 - c0) / (s.bytes / (100 * MB)));
      const again = await download(mode.client, proxied(proxy, proxyCa, dc, "mixed", mode.tls), mode.shape);
      const c2 = await proxy.cpuSeconds();
      check("re-sync", again);
      r.push(again.wallMs);
      rcpu.push((c2 - c1) / (again.bytes / (100 * MB)));
      rss = Math.max(rss, await proxy.peakRssMB());
    } catch (e) {
      throw new Error(`${(e as Error).message}\n-- proxy log (last lines):\n${proxy.logTail()}`);
    } finally {
      await proxy.stop();
    }
  };
  try {
    for (let i = 0; i < RUNS; i++) {
      // Rotate which goes first, so a drift in the machine's load hits all three alike.
      const order = [runDirect, runRelay, runProxied];
      for (let k = 0; k < order.length; k++) await order[(i + k) % order.length]!();
    }
  } finally {
    await relay.stop();
  }
  return {
    mode, directMs: median(d), proxiedMs: median(p), resyncMs: median(r), relayMs: median(floor),
    cpuPer100MB: median(cpu), freshCpuPer100MB: median(fresh), resyncCpuPer100MB: median(rcpu), peakRssMB: rss, withheld: [...withheld],
    directRuns: d, proxiedRuns: p,
  };
}

function printMode(m: ModeResult): void {
  const ratio = m.proxiedMs / m.directMs;
  console.log(
    `${modeName(m.mode).padEnd(22)} direct ${m.directMs.toFixed(0).padStart(6)} ms  proxied ${m.proxiedMs.toFixed(0).padStart(6)} ms  ` +
    `ratio ${ratio.toFixed(2)} (target <= ${TARGET_RATIO})  proxy CPU ${m.cpuPer100MB.toFixed(2)} s/100 MB (a fresh proxy's first download ${m.freshCpuPer100MB.toFixed(2)})  | ` +
    `re-sync ${m.resyncMs.toFixed(0)} ms ratio ${(m.resyncMs / m.directMs).toFixed(2)} CPU ${m.resyncCpuPer100MB.toFixed(2)} s/100 MB  | ` +
    `bare relay ${m.relayMs.toFixed(0)} ms ratio ${(m.relayMs / m.directMs).toFixed(2)}  | peak RSS ${m.peakRssMB.toFixed(0)} MB`,
  );
  if (m.withheld.length) console.log(`  withheld by the proxy (${m.withheld.length} distinct answers), e.g. ${m.withheld[0]}`);
}

/** The summary: one row per mode, medians; ranges show the spread over the runs. */
function printTable(results: ModeResult[]): void {
  const range = (v: number[]) => `${Math.min(...v).toFixed(0)}-${Math.max(...v).toFixed(0)}`;
  const rows = [
    ["mode", "direct ms", "proxied ms", "ratio", "CPU s/100MB", "direct range", "proxied range", "re-sync ms", "re-sync ratio", "re-sync CPU", "relay ms", "relay ratio"],
    ...results.map((m) => [
      modeName(m.mode), m.directMs.toFixed(0), m.proxiedMs.toFixed(0), (m.proxiedMs / m.directMs).toFixed(2), m.cpuPer100MB.toFixed(2),
      range(m.directRuns), range(m.proxiedRuns), m.resyncMs.toFixed(0), (m.resyncMs / m.directMs).toFixed(2), m.resyncCpuPer100MB.toFixed(2),
      m.relayMs.toFixed(0), (m.relayMs / m.directMs).toFixed(2),
    ]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  console.log(`\nIMAP throughput, medians of ${RUNS} runs (proxied: a new proxy warmed on another mailbox of the same shape, then its first download of this one, scanning everything; ` +
    `re-sync: same proxy again, all known clean; relay: a bare zero-copy relay, the floor of any proxy, no target); target ratio <= ${TARGET_RATIO}; ` +
    `CPU = proxy user+sys per 100 MB moved`);
  for (const r of rows) console.log(r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  "));
  for (const m of results) {
    const ratio = m.proxiedMs / m.directMs;
    if (ratio > TARGET_RATIO) miss(`${modeName(m.mode)}: proxied/direct ${ratio.toFixed(2)} > ${TARGET_RATIO}`);
  }
}

// ---- 2. 1,000 concurrent sessions: IDLE plus downloads --------------------------------------------------

async function inWaves<T>(n: number, open: (i: number) => Promise<T>): Promise<PromiseSettledResult<T>[]> {
  const out: PromiseSettledResult<T>[] = [];
  for (let i = 0; i < n; i += WAVE) out.push(...await Promise.allSettled(Array.from({ length: Math.min(WAVE, n - i) }, (_, k) => open(i + k))));
  return out;
}

const reasons = (rs: PromiseSettledResult<unknown>[]) => rs.filter((r): r is PromiseRejectedResult => r.status === "rejected").map((r) => String(r.reason?.message ?? r.reason));

async function loadTest(dir: string, dc: Dovecot, proxyCa: { pem: string; file: string }, loadBytes: number[]): Promise<void> {
  const proxy = await startProxy(dir, dc, { messageCacheSize: LOAD_CACHE_BYTES });
  const errors: string[] = [];
  let idlers: IdleSession[] = [];
  try {
    const t0 = performance.now();
    const opened = await inWaves(IDLERS, () => idle(proxied(proxy, proxyCa, dc, "idle", false)));
    idlers = opened.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
    errors.push(...reasons(opened).map((e) => `IDLE session: ${e}`));
    const idleCount = idlers.length;
    const idleMem = await proxy.memory();
    console.log(`${idlers.length} sessions in IDLE after ${((performance.now() - t0) / 1000).toFixed(1)} s; proxy RSS ${idleMem.rssMB.toFixed(0)} MB (peak ${idleMem.peakMB.toFixed(0)} MB)`);

    // Downloaders log in in waves too and wait until all are in, so all sessions are open at once;
    // then every one downloads its mailbox at the same time.
    const start = Promise.withResolvers<void>();
    const downloads: Promise<FetchStats>[] = [];
    for (let i = 0; i < DOWNLOADERS; i += WAVE) {
      const wave = Array.from({ length: Math.min(WAVE, DOWNLOADERS - i) }, (_, k) => {
        const loggedIn = Promise.withResolvers<void>();
        const user = i + k;
        const d = fetchMailbox(proxied(proxy, proxyCa, dc, `load${user}`, false), "chunked", { onLoggedIn: () => loggedIn.resolve(), start: start.promise })
          .then((s) => {
            if (s.bytes !== loadBytes[user] && s.refused.length === 0) throw new Error(`load${user}: ${s.bytes} message bytes, expected ${loadBytes[user]}`);
            return s;
          });
        d.catch(() => loggedIn.resolve());
        downloads.push(d);
        return loggedIn.promise;
      });
      await Promise.all(wave);
    }
    const status = await sendControl(proxy.stateDir, "status").catch((e) => `error ${(e as Error).message}`);
    const sessionsOpen = Number(/(\d+) session/.exec(status)?.[1] ?? NaN);
    const loadedMem = await proxy.memory();
    const c0 = await proxy.cpuSeconds();
    const t1 = performance.now();
    start.resolve();
    const settled = await Promise.allSettled(downloads);
    const wall = performance.now() - t1;
    const cpu = (await proxy.cpuSeconds()) - c0;
    errors.push(...reasons(settled).map((e) => `download: ${e}`));
    const ok = settled.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
    const withheld = ok.flatMap((s) => s.refused);
    const lat = ok.flatMap((s) => s.latenciesMs);
    const bytes = ok.reduce((n, s) => n + s.bytes, 0);

    // Every idler must still be live: one new message, and each must see its EXISTS.
    await dc.seed("idle", mixedMessages(1, 77));
    const noticed = await Promise.allSettled(idlers.map((s) => Promise.race([
      s.newMail,
      Bun.sleep(60_000).then(() => { throw new Error("no EXISTS within 60 s of new mail"); }),
    ])));
    errors.push(...reasons(noticed).map((e) => `IDLE session: ${e}`));
    const closed = await inWaves(idlers.length, (i) => idlers[i]!.finish());
    errors.push(...reasons(closed).map((e) => `IDLE DONE/LOGOUT: ${e}`));
    idlers = [];
    const finalStatus = await sendControl(proxy.stateDir, "status").catch((e) => `error ${(e as Error).message}`);
    const rss = await proxy.peakRssMB();

    console.log(`${IDLERS} IDLE + ${DOWNLOADERS} downloading (Bun client, chunked, plain): ${errors.length} errors; ` +
      `${lat.length} messages (${(bytes / MB).toFixed(0)} MB) in ${(wall / 1000).toFixed(2)} s, p50 ${percentile(lat, 50).toFixed(0)} ms, p99 ${percentile(lat, 99).toFixed(0)} ms per message; ` +
      `proxy CPU ${(cpu / (bytes / (100 * MB))).toFixed(2)} s/100 MB; peak RSS ${rss.toFixed(0)} MB (targets: 0 errors, <= ${TARGET_RSS_MB} MB)`);
    console.log(`proxy RSS: ${idleMem.rssMB.toFixed(0)} MB with ${idleCount} idling, ${loadedMem.rssMB.toFixed(0)} MB once all ${DOWNLOADERS} downloaders were in, peak ${rss.toFixed(0)} MB`);
    console.log(`proxy status with every session open, before the downloads: ${status}`);
    console.log(`proxy status at the end: ${finalStatus}`);
    if (withheld.length) console.log(`withheld by the proxy: ${withheld.length} messages, e.g. ${withheld[0]}`);
    // The cache's own figures: the most it ever held (peak) against its bound.
    const cache = /message cache (\d+) of (\d+) bytes \(peak (\d+), (\d+) messages\)/.exec(finalStatus);
    if (!cache) miss(`message cache: the status answer has no cache figure: ${finalStatus}`);
    else if (Number(cache[2]) !== LOAD_CACHE_BYTES) miss(`message cache bound is ${cache[2]} bytes, not the configured ${LOAD_CACHE_BYTES}`);
    else if (Number(cache[3]) > LOAD_CACHE_BYTES) miss(`message cache held up to ${cache[3]} bytes, above its bound ${LOAD_CACHE_BYTES}`);
    else console.log(`message cache: peak ${(Number(cache[3]) / MB).toFixed(1)} MB of its ${LOAD_CACHE_BYTES / MB} MB bound; ${cache[4]} messages, ${(Number(cache[1]) / MB).toFixed(1)} MB at the end`);
    if (errors.length) {
      miss(`1,000 sessions: ${errors.length} errors`);
      for (const e of [...new Set(errors)].slice(0, 5)) console.log(`  ${e}`);
      console.log(`-- proxy log (last lines):\n${proxy.logTail()}`);
    }
    if (!(sessionsOpen >= IDLERS + DOWNLOADERS)) miss(`1,000 sessions: the proxy held ${sessionsOpen} sessions at once, not ${IDLERS + DOWNLOADERS}`);
    if (rss > TARGET_RSS_MB) miss(`1,000 sessions: peak RSS ${rss.toFixed(0)} MB > ${TARGET_RSS_MB} MB`);
  } finally {
    for (const s of idlers) s.destroy();
    await proxy.stop();
  }
}

// ---- main ---------------------------------------------------------------------------------------------------

const dir = await mkdtemp(join(tmpdir(), "mailsentry-imapbench-"));
const loadUsers = Array.from({ length: DOWNLOADERS }, (_, i) => ({ name: `load${i}`, password: PASSWORD }));
const dc = await startDovecot({
  users: [{ name: "mixed", password: PASSWORD }, { name: "warm", password: PASSWORD }, { name: "idle", password: PASSWORD }, ...loadUsers],
  compress: process.env.BENCH_COMPRESS !== "0",
  // One imap process per session (plus a login process per session still logging in): headroom above 1,000.
  processLimit: IDLERS + DOWNLOADERS + 500,
});
try {
  const mixed = mixedMessages(200, 1);
  const big = bigMessage(25);
  await dc.seed("mixed", [...mixed, big]);
  await dc.seed("warm", [...mixedMessages(200, 3), big]);
  await dc.seed("idle", mixedMessages(5, 4));
  // Each downloader its own account (nothing is scanned once for all); every tenth holds an invoice
  // with EICAR behind 1 MB of attachment, so the cleaned copies overflow the load test's cache bound.
  const loadBytes: number[] = [];
  if (process.env.BENCH_LOAD !== "0") {
    for (let i = 0; i < DOWNLOADERS; i++) {
      const box = i % 10 === 0 ? [...mixedMessages(9, 100 + i), infectedMessage(100 + i, MB)] : mixedMessages(10, 100 + i);
      await dc.seed(`load${i}`, box);
      loadBytes.push(box.reduce((n, m) => n + m.length, 0)); // a cleaned copy keeps the original's size
    }
  }
  const expectBytes = mixed.reduce((n, m) => n + m.length, 0) + big.length;
  console.log(`mailbox: ${mixed.length} mixed messages + one 25 MB message (${(expectBytes / MB).toFixed(0)} MB), as in the POP3 bench; Dovecot ${dc.host}; ` +
    `upstream COMPRESS=DEFLATE ${process.env.BENCH_COMPRESS === "0" ? "off" : process.env.BENCH_COMPRESS === "1" ? "forced (\"always\")" : "as configured by default (offered, but not used to a loopback server)"}; ` +
    `proxy: ${proxyCommand().join(" ")}; ${RUNS} runs per mode, medians; every proxied run on a new proxy, warmed on another account (nothing of this one known clean yet)`);

  // The client-leg CA exists once the proxy has started once; it stays for every later start.
  const first = await startProxy(dir, dc);
  await first.stop();
  const caFile = join(first.stateDir, "ca", "ca.pem");
  const proxyCa = { pem: await readFile(caFile, "utf8"), file: caFile };
  if (process.env.BENCH_PROFILE) await mkdir(process.env.BENCH_PROFILE, { recursive: true });

  const only = process.env.BENCH_MODES?.split(",").map((s) => s.trim()).filter(Boolean);
  const modes: Mode[] = [];
  for (const client of ["bun", "imaplib"] as const) for (const tls of [false, true]) for (const shape of ["bulk", "chunked"] as const) modes.push({ client, tls, shape });
  let rssMax = 0;
  const results: ModeResult[] = [];
  for (const mode of modes.filter((m) => !only || only.includes(modeName(m)))) {
    try {
      const r = await measureMode(dir, dc, proxyCa, mode, expectBytes);
      printMode(r);
      results.push(r);
      rssMax = Math.max(rssMax, r.peakRssMB);
    } catch (e) {
      miss(`${modeName(mode)}: failed: ${(e as Error).message}`);
    }
  }
  if (results.length) printTable(results);
  if (rssMax) console.log(`proxy peak RSS over the throughput runs: ${rssMax.toFixed(0)} MB`);

  if (process.env.BENCH_LOAD !== "0") {
    try {
      await loadTest(dir, dc, proxyCa, loadBytes);
    } catch (e) {
      miss(`1,000 sessions: failed: ${(e as Error).message}`);
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
console.log("\nall IMAP targets met");
