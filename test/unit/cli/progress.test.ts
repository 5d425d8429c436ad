// On a terminal the progress line (stderr) and result lines (stdout) share one screen: a result
// line must start on a cleared line, never glued to the end of the progress text.
import { expect, test } from "bun:test";
import { Progress } from "../../../cli/progress.ts";
import { Reporter } from "../../../cli/report.ts";

test("a result line is printed after the progress line was erased, and progress comes back after it", () => {
  const screen: string[] = [];
  const tty = { isTTY: true, write: (s: string) => screen.push(s) };
  const progress = new Progress(1000, tty, true, 0);
  const reporter = new Reporter({ json: false, quiet: false, unscannedFails: false }, (l) => screen.push(`${l}\n`));
  reporter.beforeLine = () => progress.clear();
  progress.update(100, 1);
  reporter.message("big.mbox", { index: 1, messageId: null, offset: 0, verdict: "clean", detail: "clean", findings: [] }, []);
  progress.update(200, 2);
  const text = screen.join("");
  // What the terminal shows: "\r\x1b[K" erases the line before the result is written.
  expect(text).toMatch(/messages, [^\r]*\/s\r\x1b\[Kbig\.mbox#1 @0: clean\n\r\x1b\[K200 B of/);
  expect(text).not.toMatch(/\/sbig\.mbox/);
});
