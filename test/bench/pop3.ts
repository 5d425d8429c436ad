// Benchmark: POP3 downloads from a real Dovecot, directly and through mailsentry (scanning on), in
// one run; then 500 concurrent sessions through mailsentry; then one 25 MB message alone.
// Prints times, the proxied/direct ratio, errors, p50/p99 per-message latency and peak RSS.
// Usage: bun test/bench/pop3.ts   (MAILSENTRY_BIN selects the compiled binary)
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startDovecot } from "../helpers/dovecot.ts";
import { prng } from "./corpus.ts";
import { downloadAll, percentile } from "./pop3-client.ts";

const CONCURRENT = Number(process.env.BENCH_SESSIONS ?? 500);

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer().listen(0, "127.0.0.1", () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    }).on("error", reject);
  });
}

/** Mixed messages: text, HTML, base64 attachments; CRLF as Dovecot stores them for POP3. */
function mixedMessages(count: number, seed: number): Uint8Array[] {
  const rand = prng(seed);
  const out: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const kind = i % 4;
    const text = "Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n".repeat(20 + Math.floor(rand() * 300));
    let body: string;
    if (kind === 3) {
      const data = new Uint8Array(20_000 + Math.floor(rand() * 300_000));
      for (let j = 0; j < data.length; j++) data[j] = (rand() * 256) | 0;
      const b64 = Buffer.from(data).toString("base64").replace(/.{76}/g, "$&\r\n");
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

function bigMessage(mb: number): Uint8Array {
  const rand = prng(25);
  const data = new Uint8Array(Math.floor(mb * 1024 * 1024 * 0.74));
  for (let j = 0; j < data.length; j += 4) { const v = (rand() * 0x100000000) >>> 0; data[j] = v; data[j + 1] = v >> 8; data[j + 2] = v >> 16; data[j + 3] = v >> 24; }
  const b64 = Buffer.from(data).toString("base64").replace(/.{76}/g, "$&\r\n");
  return Buffer.from(`From: big@example.org\r\nTo: user@example.net\r\nSubject: big\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="big"\r\n\r\n--big\r\nContent-Type: text/plain\r\n\r\nlarge file attached\r\n--big\r\nContent-Type: application/octet-stream; name="video.mp4"\r\nContent-Disposition: attachment; filename="video.mp4"\r\nContent-Transfer-Encoding: base64\r\n\r\n${b64}\r\n--big--\r\n`);
}

/** Peak resident set of a running process so far (VmHWM), in MB. */
async function peakRssMB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  return Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
}

async function startProxyProcess(dir: string, dovecotPort: number) {
  const port = await freePort();
  const config = {
    listeners: { pop3: { enabled: true, addresses: [`127.0.0.1:${port}`] }, pop3s: { enabled: false, addresses: [] }, imap: { enabled: false, addresses: [] }, imaps: { enabled: false, addresses: [] } },
    allowedUpstreamPorts: [dovecotPort],
    upstreamTls: "off",
    logLevel: "warn",
  };
  const cfg = join(dir, `proxy-${port}.json`);
  await writeFile(cfg, JSON.stringify(config));
  const bin = process.env.MAILSENTRY_BIN ?? (existsSync("dist/mailsentry") ? "dist/mailsentry" : null);
  const cmd = bin ? [bin] : [process.execPath, "cli/main.ts"];
  const proc = Bun.spawn([...cmd, "serve", "--config", cfg], {
    stdout: "ignore", stderr: "inherit",
    env: { ...process.env, XDG_STATE_HOME: join(dir, `state-${port}`), XDG_CONFIG_HOME: join(dir, "cfg") },
  });
  for (let i = 0; i < 200; i++) { // wait until it accepts connections
    const ok = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } }).then(s => { s.end(); return true }, () => false);
    if (ok) break;
    await Bun.sleep(50);
  }
  return { port, proc, async stop() { proc.kill("SIGTERM"); await proc.exited; } };
}

const dir = await mkdtemp(join(tmpdir(), "mailsentry-pop3bench-"));
const dovecot = await startDovecot({ users: [{ name: "mixed", password: "pw" }, { name: "load", password: "pw" }, { name: "big", password: "pw" }] });
try {
  const mixed = mixedMessages(200, 1);
  await dovecot.seed("mixed", [...mixed, bigMessage(25)]);
  await dovecot.seed("load", mixedMessages(10, 2));
  await dovecot.seed("big", [bigMessage(25)]);
  const totalMB = [...mixed].reduce((n, m) => n + m.length, 0) / 1024 / 1024 + 25;
  console.log(`mailbox: 200 mixed messages + one 25 MB message (${totalMB.toFixed(0)} MB); Dovecot ${dovecot.host}`);

  // 1. The same mailbox directly and through mailsentry, best of three each to damp noise.
  const proxy = await startProxyProcess(dir, dovecot.ports.pop3);
  const best = async (fn: () => Promise<unknown>) => { let b = Infinity; for (let i = 0; i < 3; i++) { const t = performance.now(); await fn(); b = Math.min(b, performance.now() - t); } return b; };
  const direct = await best(() => downloadAll(dovecot.host, dovecot.ports.pop3, "mixed", "pw"));
  const proxied = await best(() => downloadAll("127.0.0.1", proxy.port, `mixed/127.0.0.1:${dovecot.ports.pop3}`, "pw"));
  console.log(`direct   ${(direct / 1000).toFixed(2)} s`);
  console.log(`proxied  ${(proxied / 1000).toFixed(2)} s (scanning on)`);
  console.log(`proxied/direct: ${(proxied / direct).toFixed(2)} (target <= 1.15)`);
  await proxy.stop();

  // 2. Concurrent sessions through a fresh proxy.
  const load = await startProxyProcess(dir, dovecot.ports.pop3);
  const t0 = performance.now();
  const results = await Promise.allSettled(Array.from({ length: CONCURRENT }, () =>
    downloadAll("127.0.0.1", load.port, `load/127.0.0.1:${dovecot.ports.pop3}`, "pw")));
  const wall = performance.now() - t0;
  const ok = results.filter(r => r.status === "fulfilled") as PromiseFulfilledResult<Awaited<ReturnType<typeof downloadAll>>>[];
  const errors = results.length - ok.length;
  const lat = ok.flatMap(r => r.value.latenciesMs);
  const rss = await peakRssMB(load.proc.pid);
  console.log(`${CONCURRENT} concurrent sessions: ${errors} errors, ${lat.length} messages in ${(wall / 1000).toFixed(2)} s, p50 ${percentile(lat, 50).toFixed(1)} ms, p99 ${percentile(lat, 99).toFixed(1)} ms, proxy peak RSS ${rss.toFixed(0)} MB (targets: 0 errors, <= 256 MB)`);
  if (errors) console.log(`first error: ${(results.find(r => r.status === "rejected") as PromiseRejectedResult).reason}`);
  await load.stop();

  // 3. One 25 MB message through a fresh proxy: peak RSS.
  const single = await startProxyProcess(dir, dovecot.ports.pop3);
  const t1 = performance.now();
  await downloadAll("127.0.0.1", single.port, `big/127.0.0.1:${dovecot.ports.pop3}`, "pw");
  const bigRss = await peakRssMB(single.proc.pid);
  console.log(`one 25 MB message: ${((performance.now() - t1) / 1000).toFixed(2)} s, proxy peak RSS ${bigRss.toFixed(0)} MB (target <= 150 MB)`);
  await single.stop();
} finally {
  await dovecot.stop();
  await rm(dir, { recursive: true, force: true });
}
