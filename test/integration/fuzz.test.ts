// The CI-sized fuzzing run: every target of test/fuzz/targets.ts on a fixed seed, a bounded number of
// inputs each (`npm run fuzz` runs the same targets for as long as wanted). No exception past the
// documented ones, the same result however a stream is split, bounded time and memory, and the
// differential oracle: whatever postal-mime hands an application and the engine flags, we flag too.
import { describe, expect, test } from "bun:test";
import { newTally, runTarget, seeds, TARGETS } from "../fuzz/targets.ts";

const SEED = 2026;
const PER_TARGET = Number(process.env.FUZZ_INPUTS ?? 400);
const s = await seeds();

describe("fuzzing (CI-sized)", () => {
  for (const name of Object.keys(TARGETS)) {
    test(`${name}: ${PER_TARGET} mutated inputs, no failure`, async () => {
      const tally = newTally();
      const rss0 = process.memoryUsage().rss;
      const t0 = performance.now();
      const next = await runTarget(name, s, SEED, 0, PER_TARGET, tally, t0 + 40_000);
      const seconds = (performance.now() - t0) / 1000;
      if (name === "scan") {
        console.log(`fuzz oracle (seed ${SEED}): payload extracted by postal-mime from ${tally.oracleInfected} of ${tally.inputs} inputs, all flagged by us` +
          ` (${tally.oracleUnscanned} as unscanned); ${tally.oracleUncovered} of ${tally.oracleAttachments} attachments of clean messages decoded differently from any object we scanned`);
      }
      expect(tally.failures.map((f) => `${f.target} #${f.index}: ${f.error.split("\n")[0]}`)).toEqual([]);
      expect(next).toBeGreaterThan(PER_TARGET / 4); // the time bound cut it short only on a very slow machine
      expect(seconds).toBeLessThan(45);
      expect(process.memoryUsage().rss - rss0).toBeLessThan(1024 * 1024 * 1024);
    }, 90_000);
  }
});
