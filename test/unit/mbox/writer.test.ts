import { expect, test } from "bun:test";
import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MboxSplitter, unquote } from "../../../core/mbox/reader.ts";
import { defaultFromLine, MboxWriter, quoteMboxrd } from "../../../core/mbox/writer.ts";
import { Progress } from "../../../cli/progress.ts";

const enc = (s: string) => Buffer.from(s, "latin1");

test("mboxrd quoting round-trips through the reader's unquoting", () => {
  for (const s of ["From x\n>From y\n>>From z\nFrom\nFromage\n", "no quoting\n", ">From first", "a\r\nFrom b\r\n"]) {
    const q = quoteMboxrd(enc(s));
    expect(Buffer.from(unquote(q, "mboxrd")).toString("latin1")).toBe(s);
  }
  expect(Buffer.from(quoteMboxrd(enc("From x\n>From y\nFromage\n"))).toString("latin1")).toBe(">From x\n>>From y\nFromage\n");
});

test("the writer produces an mbox the reader splits back into the same messages; nothing left on abort", async () => {
  const dir = await mkdtemp(join(tmpdir(), "mailsentry-mbox-"));
  try {
    const msgs = ["Subject: a\n\nFrom here\n", "Subject: b\r\n\r\nno newline at end", "Subject: c\n\n>From q\n"];
    const w = await MboxWriter.create(join(dir, "out.mbox"));
    await w.add("From a@x Mon Jan  1 00:00:00 2024", enc(msgs[0]!));
    await w.add("From b@x Mon Jan  1 00:00:00 2024", enc(msgs[1]!), "\r\n");
    await w.add(null, enc(msgs[2]!));
    await w.close();
    const s = new MboxSplitter();
    const got = [...s.push(await readFile(join(dir, "out.mbox"))), ...s.end()];
    expect(got.map((m) => Buffer.from(m.bytes!).toString("latin1"))).toEqual([msgs[0], `${msgs[1]}\r\n`, msgs[2]]);
    expect(got[2]!.fromLine).toMatch(/^From MAILER-DAEMON \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}$/);
    const a = await MboxWriter.create(join(dir, "gone.mbox"));
    await a.add(null, enc("x\n"));
    await a.abort();
    expect(await readdir(dir)).toEqual(["out.mbox"]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("defaultFromLine uses the asctime layout", () => {
  expect(defaultFromLine(new Date(Date.UTC(2024, 0, 5, 7, 8, 9)))).toBe("From MAILER-DAEMON Fri Jan  5 07:08:09 2024");
});

test("progress draws only on a TTY, at most once per interval, and erases itself", () => {
  const writes: string[] = [];
  const tty = { isTTY: true, write: (s: string) => writes.push(s) };
  const p = new Progress(1000, tty, true, 60_000);
  p.update(10, 1);
  p.update(20, 2); // within the interval: not drawn
  p.done();
  expect(writes.length).toBe(2);
  expect(writes[0]).toStartWith("\r\x1b[K10 B of 1000 B");
  expect(writes[1]).toBe("\r\x1b[K");
  const quiet: string[] = [];
  const off = new Progress(null, { isTTY: false, write: (s: string) => quiet.push(s) });
  off.update(1, 1);
  off.done();
  expect(quiet).toEqual([]);
});
