// `npm run fuzz`: long seeded fuzzing runs of every target (test/fuzz/targets.ts), resumable. Input i
// of seed s is always the same bytes, so a run is cut anywhere and taken up again with --resume, and a
// failure replays with --seed s --from i --count 1. State and failures go to .fuzz/ in the project.
//
//   npm run fuzz -- [--seed N] [--count N per target] [--minutes M] [--targets mime,scan,...] [--resume] [--from I]
import { mkdir, readFile, writeFile, appendFile } from "node:fs/promises";
import { join } from "node:path";
import { newTally, runTarget, seeds, TARGETS } from "./targets.ts";

const arg = (name: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? undefined : process.argv[i + 1];
};
const flag = (name: string) => process.argv.includes(`--${name}`);

const dir = join(import.meta.dir, "../../.fuzz");
const stateFile = join(dir, "state.json");
await mkdir(dir, { recursive: true });
type State = { seed: number; next: Record<string, number> };
const saved: State | null = flag("resume") ? JSON.parse(await readFile(stateFile, "utf8").catch(() => "null")) : null;
const seed = Number(arg("seed") ?? saved?.seed ?? 1);
const count = Number(arg("count") ?? 100_000);
const minutes = Number(arg("minutes") ?? Infinity);
const names = (arg("targets") ?? Object.keys(TARGETS).join(",")).split(",").filter((n) => n in TARGETS);
const state: State = { seed, next: saved?.seed === seed ? saved.next : {} };
const s = await seeds();
const tally = newTally();
const deadline = performance.now() + minutes * 60_000;
const perTarget = (deadline - performance.now()) / names.length;
let peakRss = 0;
const rssTimer = setInterval(() => { peakRss = Math.max(peakRss, process.memoryUsage().rss); }, 250);

for (const name of names) {
  const from = Number(arg("from") ?? state.next[name] ?? 0);
  const before = tally.failures.length;
  const t0 = performance.now();
  const end = Number.isFinite(perTarget) ? performance.now() + perTarget : Infinity;
  const next = await runTarget(name, s, seed, from, from + count, tally, Math.min(end, deadline));
  state.next[name] = next;
  await writeFile(stateFile, JSON.stringify(state, null, 2));
  for (const f of tally.failures.slice(before)) await appendFile(join(dir, "failures.jsonl"), JSON.stringify({ seed, ...f }) + "\n");
  console.log(`${name.padEnd(8)} inputs ${from}..${next - 1}  ${((performance.now() - t0) / 1000).toFixed(1)} s  failures ${tally.failures.length - before}`);
}
clearInterval(rssTimer);
console.log(`seed ${seed}: ${tally.inputs} inputs, ${tally.failures.length} failures, peak RSS ${(peakRss / 2 ** 20).toFixed(0)} MiB`);
console.log(`oracle: postal-mime extracted the payload from ${tally.oracleInfected} inputs (${tally.oracleUnscanned} of them unscanned by us, none clean unless a failure says so); ` +
  `${tally.oracleUncovered} of ${tally.oracleAttachments} attachments of messages we called clean were bytes no scanned object contains`);
for (const f of tally.failures.slice(0, 10)) console.log(`FAIL ${f.target} #${f.index} (replay: --seed ${seed} --targets ${f.target} --from ${f.index} --count 1)\n  ${f.error.split("\n").slice(0, 3).join("\n  ")}`);
process.exit(tally.failures.length ? 1 : 0);
