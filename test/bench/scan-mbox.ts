// Benchmark: mailsentry scan-mbox against clamscan on the same ~200 MB mbox with the same
// signatures, in one run. Prints MB/s, messages/s, peak RSS and the ratios.
// Usage: bun test/bench/scan-mbox.ts [sizeMB]   (MAILSENTRY_BIN selects the compiled binary)
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeCorpus } from "./corpus.ts";

interface Run { seconds: number; maxRssMB: number; exitCode: number; stdout: string }

async function timed(cmd: string[], env: Record<string, string> = {}): Promise<Run> {
  const t0 = performance.now();
  const proc = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe", env: { ...process.env, ...env } });
  const [stdout] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  const exitCode = await proc.exited;
  const seconds = (performance.now() - t0) / 1000;
  const usage = proc.resourceUsage();
  return { seconds, maxRssMB: (usage?.maxRSS ?? 0) / 1024 / 1024, exitCode, stdout };
}

const sizeMB = Number(process.argv[2] ?? 200);
const dir = await mkdtemp(join(tmpdir(), "mailsentry-bench-"));
try {
  const t0 = performance.now();
  const corpus = await makeCorpus(dir, sizeMB);
  const mb = corpus.bytes / 1024 / 1024;
  console.log(`corpus: ${mb.toFixed(0)} MB, ${corpus.messages} messages (${corpus.infected} infected), 10,000 .ndb + 1,000 .hdb signatures; generated in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  const bin = process.env.MAILSENTRY_BIN ?? (existsSync("dist/mailsentry") ? "dist/mailsentry" : null);
  const ours = bin ? [bin] : [process.execPath, "cli/main.ts"];
  const env = { XDG_CONFIG_HOME: join(dir, "cfg"), XDG_STATE_HOME: join(dir, "state") };
  const m = await timed([...ours, "scan-mbox", "--quiet", "--json", "--sigs", corpus.sigDir, corpus.mbox], env);
  let found = -1;
  try { found = JSON.parse(m.stdout).summary.infected; } catch {}
  // clamscan decodes the mbox itself (it recognises the format) and scans every attachment.
  const c = await timed(["clamscan", "--no-summary", "--infected", "--allmatch=no", "-d", corpus.sigDir,
    "--max-filesize=400M", "--max-scansize=400M", corpus.mbox]);

  const row = (name: string, r: Run) =>
    `${name.padEnd(12)} ${r.seconds.toFixed(2).padStart(7)} s  ${(mb / r.seconds).toFixed(1).padStart(7)} MB/s  ${(corpus.messages / r.seconds).toFixed(0).padStart(7)} msg/s  peak RSS ${r.maxRssMB.toFixed(0).padStart(4)} MB  exit ${r.exitCode}`;
  console.log(`mailsentry: ${bin ?? "bun cli/main.ts"}`);
  console.log(row("mailsentry", m));
  console.log(row("clamscan", c));
  console.log(`throughput ratio mailsentry/clamscan: ${(c.seconds / m.seconds).toFixed(2)}x (target >= 2x)`);
  console.log(`peak RSS mailsentry: ${m.maxRssMB.toFixed(0)} MB (target < 300 MB)`);
  console.log(`infected messages reported by mailsentry: ${found} of ${corpus.infected}`);
} finally {
  await rm(dir, { recursive: true, force: true });
}
