// Benchmark: mailsentry scan-mbox against clamscan on the same ~200 MB mbox with the same
// signatures, in one run. Prints MB/s, messages/s, peak RSS and the ratios.
// Usage: bun test/bench/scan-mbox.ts [sizeMB]   (MAILSENTRY_BIN selects the compiled binary)
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeCorpus } from "./corpus.ts";

interface Run { seconds: number; maxRssMB: number; exitCode: number; stdout: string }

/** Runs cmd under GNU time, which reports this one process's peak RSS (rusage of a single child). */
async function timed(cmd: string[], env: Record<string, string> = {}): Promise<Run> {
  const rssFile = join(dir, `rss-${Math.random().toString(36).slice(2)}`);
  const t0 = performance.now();
  const proc = Bun.spawn(["/usr/bin/time", "-f", "%M", "-o", rssFile, ...cmd], { stdout: "pipe", stderr: "pipe", env: { ...process.env, ...env } });
  const [stdout] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  const exitCode = await proc.exited;
  const seconds = (performance.now() - t0) / 1000;
  const kb = Number((await Bun.file(rssFile).text()).trim().split("\n").pop());
  return { seconds, maxRssMB: kb / 1024, exitCode, stdout };
}

const sizeMB = Number(process.argv[2] ?? 200);
const dir = await mkdtemp(join(tmpdir(), "mailsentry-bench-"));
try {
  const t0 = performance.now();
  // Same seed, so the clean mbox is the mixed one with the infected attachments swapped for clean zips.
  const mixed = await makeCorpus(dir, sizeMB);
  const clean = await makeCorpus(dir, sizeMB, 10_000, false, "clean.mbox");
  console.log(`corpus: ${(mixed.bytes / 1048576).toFixed(0)} MB, ${mixed.messages} messages (${mixed.infected} infected) and the same without infected messages; 10,000 .ndb + 1,000 .hdb signatures; generated in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  const bin = process.env.MAILSENTRY_BIN ?? (existsSync("dist/mailsentry") ? "dist/mailsentry" : null);
  const ours = bin ? [bin] : [process.execPath, "cli/main.ts"];
  const env = { XDG_CONFIG_HOME: join(dir, "cfg"), XDG_STATE_HOME: join(dir, "state") };
  const mailsentry = (mbox: string) => timed([...ours, "scan-mbox", "--quiet", "--json", "--sigs", mixed.sigDir, mbox], env);
  // clamscan parses the mbox itself and scans every attachment. It stops at the first detection in
  // a file unless --allmatch, so the clean mbox is the fair throughput comparison; on the mixed one
  // --allmatch is the only way it reports every infected message.
  const clamscan = (mbox: string, all: boolean) => timed(["clamscan", "--no-summary", "--infected", ...(all ? ["--allmatch"] : []),
    "-d", mixed.sigDir, "--max-filesize=4000M", "--max-scansize=4000M", mbox]);

  const mb = clean.bytes / 1048576;
  const row = (name: string, r: Run, bytes: number, messages: number) =>
    `${name.padEnd(28)} ${r.seconds.toFixed(2).padStart(7)} s  ${(bytes / 1048576 / r.seconds).toFixed(1).padStart(7)} MB/s  ${(messages / r.seconds).toFixed(0).padStart(6)} msg/s  peak RSS ${r.maxRssMB.toFixed(0).padStart(4)} MB  exit ${r.exitCode}`;
  console.log(`mailsentry: ${bin ?? "bun cli/main.ts"}`);
  const mc = await mailsentry(clean.mbox), cc = await clamscan(clean.mbox, false);
  console.log(row("mailsentry, clean mbox", mc, clean.bytes, clean.messages));
  console.log(row("clamscan, clean mbox", cc, clean.bytes, clean.messages));
  const mm = await mailsentry(mixed.mbox), cm = await clamscan(mixed.mbox, true);
  console.log(row("mailsentry, mixed mbox", mm, mixed.bytes, mixed.messages));
  console.log(row("clamscan --allmatch, mixed", cm, mixed.bytes, mixed.messages));
  let found = -1;
  try { found = JSON.parse(mm.stdout).summary.infected; } catch {}
  console.log(`throughput ratio mailsentry/clamscan, clean mbox: ${(cc.seconds / mc.seconds).toFixed(2)}x (target >= 2x); mixed mbox: ${(cm.seconds / mm.seconds).toFixed(2)}x`);
  console.log(`peak RSS mailsentry: ${Math.max(mc.maxRssMB, mm.maxRssMB).toFixed(0)} MB (target < 300 MB); ${mb.toFixed(0)} MB scanned per run`);
  console.log(`infected messages reported by mailsentry: ${found} of ${mixed.infected}; clamscan detections: ${cm.stdout.split("\n").filter(l => l.endsWith("FOUND")).length}`);
} finally {
  await rm(dir, { recursive: true, force: true });
}
