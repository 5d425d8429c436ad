// `npm run bench`: every benchmark in one run, each printing its figures and ratios.
const benches = ["test/bench/signatures.ts", "test/bench/scan-mbox.ts", "test/bench/pop3.ts", "test/bench/imap.ts", "test/bench/engines.ts"];
let failed = 0;
for (const b of benches) {
  if (!(await Bun.file(b).exists())) continue;
  console.log(`\n== ${b}`);
  const p = Bun.spawn([process.execPath, b], { stdout: "inherit", stderr: "inherit" });
  if ((await p.exited) !== 0) failed++;
}
process.exit(failed ? 1 : 0);
