// Benchmark: IMAP downloads from a real Dovecot, directly and through mailsentry (scanning on), in one
// run: {bulk, chunked} × {plain, TLS on both legs} × {Bun client, python imaplib}, direct and proxied
// interleaved, medians; then 1,000 concurrent sessions (900 in IDLE, 100 downloading). Prints wall
// times, ratios, the proxy's CPU seconds per 100 MB and its peak RSS; exits 1 when a target is missed.
// Usage: bun test/bench/imap.ts   (MAILSENTRY_BIN selects the compiled binary; BENCH_RUNS, BENCH_MODES
// e.g. "bun-tls-chunked,imaplib-plain-bulk", BENCH_LOAD=0 skips the load test, BENCH_PROFILE=DIR writes
// --cpu-prof-md profiles of every proxied run, BENCH_COMPRESS=0|1 sets upstreamCompress false or "always")
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sendControl } from "../../core/control.ts";
import { startDovecot, type Dovecot } from "../helpers/dovecot.ts";
import { eicar } from "../helpers/eicar.ts";
import { prng } from "./corpus.ts";
import { fetchMailbox, idle, imaplibFetch, median, percentile, type FetchStats, type IdleSession, type ImapTarget, type Shape } from "./imap-client.ts";

const RUNS = Math.max(1, Number(process.env.BENCH_RUNS ?? 5));
const IDLERS = Number(process.env.BENCH_IDLE ?? 900);
const DOWNLOADERS = Number(process.env.BENCH_DOWNLOADERS ?? 100);
/** Sessions opened at once: Dovecot forks a login and an imap process per session. */
const WAVE = 50;
const TARGET_RATIO = 1.5;
const TARGET_RSS_MB = 256;
/** The load test's cache bound: small, so the cleaned copies of its infected messages overflow it. */
const LOAD_CACHE_BYTES = 8 * 1024 * 1024;
const MB = 1024 * 1024;
const PASSWORD = "pw";

const misses: string[] = [];
const miss = (what: string) => { misses.push(what); console.log(`MISSED: ${what}`); };

// ---- mailboxes (the POP3 bench's generator and seeds, so both benches move the same bytes) --------

function mixedMessages(count: number, seed: number): Uint8Array[] {
  const rand = prng(seed);
  const out: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const kind = i % 4;
    const text = "Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n".repeat(20 + Math.floor(rand() * 300));
    let body: string;
    if (kind === 3) {
      const b64 = base64Lines(randomBytes(rand, 20_000 + Math.floor(rand() * 300_000)));
      body = `Content-Type: multipart/mixed; boundary="b${i}"\r\n\r\n--b${i}\r\nContent-Type: text/plain\r\n\r\n${text}\r\n--b${i}\r\nContent-Type: application/pdf; name="doc${i}.pdf"\r\nContent-Disposition: attachment; filename="doc${i}.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n${b64}\r\n--b${i}--\r\n`;
    } else if (kind === 2) {
      body = `Content-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>${text}</p></body></html>\r\n`;
    } else {
      body = `Content-Type: text/plain; charset=utf-8\r\n\r\n${text}`;
    }
    out.push(Buffer.from(`From: a${i}@example.org\r\nTo: user@example.net\r\nSubject: bench ${i}\r\nMessage-ID: <${seed}.${i}@example.org>\r\nMIME-Version: 1.0\r\n${body}`));
  }
  return out;
}

function randomBytes(rand: () => number, n: number): Uint8Array {
  const data = new Uint8Array(n);
  for (let j = 0; j < n; j++) data[j] = (rand() * 256) | 0;
  return data;
}

function base64Lines(data: Uint8Array): string {
  return Buffer.from(data).toString("base64").replace(/.{76}/g, "$&\r\n");
}

function bigMessage(mb: number): Uint8Array {
  const rand = prng(25);
  const data = new Uint8Array(Math.floor(mb * MB * 0.74));
  for (let j = 0; j < data.length; j += 4) { const v = (rand() * 0x100000000) >>> 0; data[j] = v; data[j + 1] = v >> 8; data[j + 2] = v >> 16; data[j + 3] = v >> 24; }
  return Buffer.from(`From: big@example.org\r\nTo: user@example.net\r\nSubject: big\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="big"\r\n\r\n--big\r\nContent-Type: text/plain\r\n\r\nlarge file attached\r\n--big\r\nContent-Type: application/octet-stream; name="video.mp4"\r\nContent-Disposition: attachment; filename="video.mp4"\r\nContent-Transfer-Encoding: base64\r\n\r\n${base64Lines(data)}\r\n--big--\r\n`);
}

/** An invoice with EICAR as its attachment, after `padding` bytes of another attachment. */
function infectedMessage(i: number, padding = 0): Uint8Array {
  const pad = padding ? `--v${i}\r\nContent-Type: application/pdf; name="scan${i}.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n${base64Lines(randomBytes(prng(900 + i), padding))}\r\n` : "";
  return Buffer.from(`From: billing${i}@example.org\r\nTo: user@example.net\r\nSubject: invoice ${i}\r\nMessage-ID: <infected.${i}@example.org>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="v${i}"\r\n\r\n--v${i}\r\nContent-Type: text/plain\r\n\r\nThe invoice is attached.\r\n${pad}--v${i}\r\nContent-Type: application/octet-stream; name="invoice${i}.com"\r\nContent-Disposition: attachment; filename="invoice${i}.com"\r\nContent-Transfer-Encoding: base64\r\n\r\n${base64Lines(eicar())}\r\n--v${i}--\r\n`);
}

// ---- the proxy as a subprocess ----------------------------------------------------------------------

interface ProxyProcess {
  pid: number;
  ports: { imap: number; imaps: number };
  stateDir: string;
  /** utime + stime so far, in seconds. */
  cpuSeconds(): Promise<number>;
  /** Peak resident set so far (VmHWM), MB. */
  peakRssMB(): Promise<number>;
  /** Resident set now and its peak so far, MB. */
  memory(): Promise<{ rssMB: number; peakMB: number }>;
  /** The last lines of its log (serve writes it to stderr). */
  logTail(lines?: number): string;
  stop(): Promise<void>;
}

const CLK_TCK = 100; // Linux USER_HZ: /proc/PID/stat counts CPU time in these ticks

async function cpuSecondsOf(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" "); // f[0] is field 3 (state)
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}

async function peakRssOf(pid: number): Promise<number> {
  return (await memoryOf(pid)).peakMB;
}

/** Resident set now (VmRSS) and its peak so far (VmHWM), MB. */
async function memoryOf(pid: number): Promise<{ rssMB: number; peakMB: number }> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  return { rssMB: kb("VmRSS") / 1024, peakMB: kb("VmHWM") / 1024 };
}

function proxyCommand(): string[] {
  const bin = process.env.MAILSENTRY_BIN ?? (existsSync("dist/mailsentry") ? "dist/mailsentry" : null);
  if (bin) return [bin];
  const prof = process.env.BENCH_PROFILE;
  return [process.execPath, ...(prof ? ["--cpu-prof-md", `--cpu-prof-dir=${prof}`] : []), "cli/main.ts"];
}

/** Ports the OS hands out now (bound together, so distinct), released for the proxy to bind. */
function freePorts(n: number): number[] {
  const socks = Array.from({ length: n }, () => Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } }));
  const ports = socks.map((s) => s.port);
  for (const s of socks) s.stop(true);
  return ports;
}

/**
 * Starts `serve` with IMAP and IMAPS on free loopback ports (the config refuses port 0, so the OS's
 * choice is taken and released first; a port taken in between means another try), routed to this
 * Dovecot. The state directory is kept across starts (one client-leg CA) but its clean index is
 * removed, so every start scans the mailbox afresh.
 */
async function startProxy(dir: string, dc: Dovecot, limits: Record<string, number> = {}): Promise<ProxyProcess> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startProxyOnce(dir, dc, limits);
    } catch (e) {
      if (attempt === 3 || !/EADDRINUSE|address already in use/i.test((e as Error).message)) throw e;
    }
  }
}

async function startProxyOnce(dir: string, dc: Dovecot, limits: Record<string, number>): Promise<ProxyProcess> {
  const xdgState = join(dir, "state");
  const stateDir = join(xdgState, "mailsentry");
  await rm(join(stateDir, "imap-clean.idx"), { force: true });
  const [imap, imaps] = freePorts(2);
  const config = {
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
    logFormat: "json",
    logLevel: "info",
  };
  const cfg = join(dir, "proxy.json");
  await writeFile(cfg, JSON.stringify(config));
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
    ports: { imap, imaps },
    stateDir,
    cpuSeconds: () => cpuSecondsOf(proc.pid),
    peakRssMB: () => peakRssOf(proc.pid),
    memory: () => memoryOf(proc.pid),
    logTail: (n = 40) => log.slice(-n).join("\n"),
    async stop() {
      if (proc.exitCode === null) proc.kill("SIGTERM");
      await proc.exited;
    },
  };
}

// ---- targets and clients -----------------------------------------------------------------------------

type Client = "bun" | "imaplib";
interface Mode { client: Client; tls: boolean; shape: Extract<Shape, "bulk" | "chunked"> }
const modeName = (m: Mode) => `${m.client}-${m.tls ? "tls" : "plain"}-${m.shape}`;

function direct(dc: Dovecot, user: string, tls: boolean): ImapTarget {
  return { host: dc.host, port: tls ? dc.ports.imaps : dc.ports.imap, tls, ca: dc.caPem, caFile: dc.caFile, user, password: PASSWORD };
}

function proxied(p: ProxyProcess, proxyCa: { pem: string; file: string }, dc: Dovecot, user: string, tls: boolean): ImapTarget {
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
  resyncCpuPer100MB: number;
  peakRssMB: number;
  withheld: string[];
  /** Every run's wall time, for the spread. */
  directRuns: number[];
  proxiedRuns: number[];
}

async function measureMode(dir: string, dc: Dovecot, proxyCa: { pem: string; file: string }, mode: Mode, expectBytes: number): Promise<ModeResult> {
  const d: number[] = [], p: number[] = [], r: number[] = [], cpu: number[] = [], rcpu: number[] = [];
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
  const runProxied = async () => {
    const proxy = await startProxy(dir, dc);
    try {
      await download(mode.client, proxied(proxy, proxyCa, dc, "warm", mode.tls), mode.shape); // JIT warm-up on another account
      const c0 = await proxy.cpuSeconds();
      const s = await download(mode.client, proxied(proxy, proxyCa, dc, "mixed", mode.tls), mode.shape);
      const c1 = await proxy.cpuSeconds();
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
  for (let i = 0; i < RUNS; i++) {
    // Alternate which goes first, so a drift in the machine's load hits both sides alike.
    if (i % 2 === 0) { await runDirect(); await runProxied(); } else { await runProxied(); await runDirect(); }
  }
  return {
    mode, directMs: median(d), proxiedMs: median(p), resyncMs: median(r),
    cpuPer100MB: median(cpu), resyncCpuPer100MB: median(rcpu), peakRssMB: rss, withheld: [...withheld],
    directRuns: d, proxiedRuns: p,
  };
}

function printMode(m: ModeResult): void {
  const ratio = m.proxiedMs / m.directMs;
  console.log(
    `${modeName(m.mode).padEnd(22)} direct ${m.directMs.toFixed(0).padStart(6)} ms  proxied ${m.proxiedMs.toFixed(0).padStart(6)} ms  ` +
    `ratio ${ratio.toFixed(2)} (target <= ${TARGET_RATIO})  proxy CPU ${m.cpuPer100MB.toFixed(2)} s/100 MB  | ` +
    `re-sync ${m.resyncMs.toFixed(0)} ms ratio ${(m.resyncMs / m.directMs).toFixed(2)} CPU ${m.resyncCpuPer100MB.toFixed(2)} s/100 MB  | peak RSS ${m.peakRssMB.toFixed(0)} MB`,
  );
  if (m.withheld.length) console.log(`  withheld by the proxy (${m.withheld.length} distinct answers), e.g. ${m.withheld[0]}`);
}

/** The summary: one row per mode, medians; ranges show the spread over the runs. */
function printTable(results: ModeResult[]): void {
  const range = (v: number[]) => `${Math.min(...v).toFixed(0)}-${Math.max(...v).toFixed(0)}`;
  const rows = [
    ["mode", "direct ms", "proxied ms", "ratio", "CPU s/100MB", "direct range", "proxied range", "re-sync ms", "re-sync ratio", "re-sync CPU"],
    ...results.map((m) => [
      modeName(m.mode), m.directMs.toFixed(0), m.proxiedMs.toFixed(0), (m.proxiedMs / m.directMs).toFixed(2), m.cpuPer100MB.toFixed(2),
      range(m.directRuns), range(m.proxiedRuns), m.resyncMs.toFixed(0), (m.resyncMs / m.directMs).toFixed(2), m.resyncCpuPer100MB.toFixed(2),
    ]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  console.log(`\nIMAP throughput, medians of ${RUNS} runs (proxied: fresh proxy, first download scans everything; ` +
    `re-sync: same proxy again, all known clean); target ratio <= ${TARGET_RATIO}; CPU = proxy user+sys per 100 MB moved`);
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
  await dc.seed("warm", mixedMessages(12, 3));
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
    `proxy: ${proxyCommand().join(" ")}; ${RUNS} runs per mode, medians; every proxied run on a fresh proxy (nothing known clean yet)`);

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
