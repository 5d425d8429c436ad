// The CLI end to end, as a user runs it: exit codes, report lines, --json, stdin, --clean-to (input
// unchanged), --quiet, --unscanned, --sigs, the config subcommands, and usage mistakes.
import { beforeAll, afterAll, describe, expect, test } from "bun:test";
import { mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { MboxSplitter } from "../../core/mbox/reader.ts";
import { makeZip } from "../helpers/archives.ts";
import { cliSandbox, runCli, type CliOptions } from "../helpers/cli.ts";
import { eicar, EICAR_TEXT } from "../helpers/eicar.ts";

let box: Awaited<ReturnType<typeof cliSandbox>>;
let d: string;
const p = (name: string) => join(d, name);
const sha = async (f: string) => new Bun.CryptoHasher("sha256").update(await readFile(f)).digest("hex");
const run = (args: string[], opts: { stdin?: CliOptions["stdin"]; env?: Record<string, string> } = {}) => runCli(args, { ...opts, env: { ...box.env, ...opts.env } });

const cleanEml = (id: string) => `From: a@example.org\nTo: b@example.org\nSubject: hello ${id}\nMessage-ID: <${id}@example.org>\n\nJust text.\nFrom the desk of a.\n`;
const infectedEml = (id: string) =>
  `From: a@example.org\nTo: b@example.org\nSubject: bad ${id}\nMessage-ID: <${id}@example.org>\nMIME-Version: 1.0\n` +
  `Content-Type: multipart/mixed; boundary="b1"\n\n--b1\nContent-Type: text/plain\n\nsee attachment\n--b1\n` +
  `Content-Type: application/octet-stream; name="e.com"\nContent-Transfer-Encoding: base64\nContent-Disposition: attachment; filename="e.com"\n\n` +
  `${Buffer.from(EICAR_TEXT).toString("base64")}\n--b1--\n`;
const quote = (m: string) => m.replace(/^(>*From )/gm, ">$1");
const mbox = (msgs: string[]) => msgs.map((m, i) => `From sender${i}@example.org Mon Jan  1 00:00:0${i} 2024\n${quote(m)}\n`).join("");

beforeAll(async () => {
  box = await cliSandbox();
  d = box.dir;
  await writeFile(p("clean.eml"), cleanEml("c1"));
  await writeFile(p("infected.eml"), infectedEml("i1"));
  await writeFile(p("eicar.com"), eicar());
  await writeFile(p("notes.txt"), "just some text, nothing to see\n");
  await writeFile(p("archive.zip"), await makeZip([{ name: "readme.txt", data: "hi" }, { name: "x/eicar.com", data: eicar() }]));
  await writeFile(p("box.mbox"), mbox([cleanEml("m1"), infectedEml("m2"), cleanEml("m3")]));
  await writeFile(p("crlf.mbox"), mbox([cleanEml("r1"), infectedEml("r2")]).replace(/\n/g, "\r\n"));
  await writeFile(p("clean.mbox"), mbox([cleanEml("k1"), cleanEml("k2")]));
});
afterAll(() => box[Symbol.asyncDispose]());

describe("scan-file", () => {
  test("a clean message: exit 0, one line per file and a summary", async () => {
    const r = await run(["scan-file", p("clean.eml"), p("notes.txt")]);
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split("\n");
    expect(lines.slice(0, 2)).toEqual([`${p("clean.eml")}: clean`, `${p("notes.txt")}: clean`]);
    expect(lines[2]).toStartWith("scanned 2 files: 2 clean, 0 infected, 0 unscanned, 0 errors");
  });

  test("an infected message: exit 1 with detection and where", async () => {
    const r = await run(["scan-file", p("infected.eml")]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(`${p("infected.eml")}: infected: Eicar-Test-Signature in attachment "e.com"`);
  });

  test("an infected .eml with a NUL or 8-bit byte in its header is scanned as a message, not called clean", async () => {
    const infected = infectedEml("h1");
    const cases = {
      "nul-in-subject.eml": infected.replace("Subject: bad h1", "Subject: bad\0h1"),
      "latin1-in-subject.eml": infected.replace("Subject: bad h1", "Subject: caf\xe9 h1"),
      "nul-line.eml": infected.replace("To: b@example.org", "\0"),
    };
    for (const [name, text] of Object.entries(cases)) await writeFile(p(name), Buffer.from(text, "latin1"));
    const r = await run(["scan-file", "--json", ...Object.keys(cases).map(p)]);
    expect(r.code).toBe(1);
    const files = JSON.parse(r.stdout).files as { file: string; kind: string; verdict: string }[];
    expect(files.map((f) => [f.kind, f.verdict])).toEqual(Object.keys(cases).map(() => ["message", "infected"]));
  });

  test("raw files and archives are scanned as objects", async () => {
    const r = await run(["scan-file", "--json", p("eicar.com"), p("archive.zip")]);
    expect(r.code).toBe(1);
    const doc = JSON.parse(r.stdout);
    expect(doc.files.map((f: { kind: string; verdict: string }) => [f.kind, f.verdict])).toEqual([["object", "infected"], ["object", "infected"]]);
    expect(doc.files[1].findings[0].path).toContain("eicar.com");
  });

  test("--json: one document with files, findings and summary", async () => {
    const r = await run(["scan-file", "--json", p("clean.eml"), p("infected.eml")]);
    expect(r.code).toBe(1);
    const doc = JSON.parse(r.stdout);
    expect(doc.files[0]).toEqual({ file: p("clean.eml"), kind: "message", verdict: "clean", detail: "clean", findings: [], messageId: "<c1@example.org>" });
    expect(doc.files[1]).toMatchObject({
      file: p("infected.eml"), kind: "message", verdict: "infected", messageId: "<i1@example.org>",
      findings: [{ kind: "infected", name: "Eicar-Test-Signature", path: 'attachment "e.com"', partId: "2" }],
    });
    expect(doc.summary).toMatchObject({ files: 2, scanned: 2, clean: 1, infected: 1, unscanned: 0, errors: 0 });
    expect(doc.exitCode).toBe(1);
  });

  test("an unreadable file among good ones: exit 2, the others are still reported", async () => {
    const r = await run(["scan-file", p("clean.eml"), p("missing.eml"), p("infected.eml"), d]);
    expect(r.code).toBe(2);
    expect(r.stdout).toContain(`${p("clean.eml")}: clean`);
    expect(r.stdout).toContain(`${p("missing.eml")}: error: no such file`);
    expect(r.stdout).toContain(`${p("infected.eml")}: infected`);
    expect(r.stdout).toContain(`${d}: error: is a directory`);
  });

  test("- reads stdin", async () => {
    const r = await run(["scan-file", "--json", "-"], { stdin: infectedEml("s1") });
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout).files[0]).toMatchObject({ file: "(stdin)", verdict: "infected", messageId: "<s1@example.org>" });
    expect((await run(["scan-file", "-"], { stdin: cleanEml("s2") })).code).toBe(0);
  });

  test("--quiet prints only infected and error lines", async () => {
    const r = await run(["scan-file", "-q", p("clean.eml"), p("infected.eml"), p("missing.eml")]);
    expect(r.code).toBe(2);
    expect(r.stdout.trim().split("\n")).toEqual([
      `${p("infected.eml")}: infected: Eicar-Test-Signature in attachment "e.com"`,
      `${p("missing.eml")}: error: no such file`,
    ]);
  });

  test("--clean-to writes cleaned .eml copies; the inputs stay byte-identical", async () => {
    const before = [await sha(p("infected.eml")), await sha(p("clean.eml"))];
    const out = p("cleaned");
    const r = await run(["scan-file", "--clean-to", out, p("infected.eml"), p("clean.eml")]);
    expect(r.code).toBe(1);
    expect([await sha(p("infected.eml")), await sha(p("clean.eml"))]).toEqual(before);
    expect(await readFile(join(out, "clean.eml"), "utf8")).toBe(cleanEml("c1"));
    const cleaned = await readFile(join(out, "infected.eml"), "utf8");
    expect(cleaned).toContain("Message-ID: <i1@example.org>");
    expect(cleaned).not.toContain(Buffer.from(EICAR_TEXT).toString("base64"));
    // The CLI keeps no quarantine: the notice must point at the untouched input instead.
    expect(cleaned).toContain("The original message is unchanged in the scanned file.");
    expect(cleaned).not.toContain("quarantine");
    const again = await run(["scan-file", join(out, "infected.eml")]);
    expect(again.code).toBe(0);
  });

  test("--unscanned: over a limit is reported; ok exits 0, fail exits 1", async () => {
    await writeFile(p("long.eml"), cleanEml("long") + "a line of text\n".repeat(200));
    const env = { MAILSENTRY_LIMITS_MAXSCANSIZE: "1024" };
    const ok = await run(["scan-file", p("long.eml")], { env });
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain(`${p("long.eml")}: unscanned (too-large: over limits.maxScanSize 1.0 KB)`);
    const fail = await run(["scan-file", "--unscanned=fail", "-q", p("long.eml")], { env });
    expect(fail.code).toBe(1);
    expect(fail.stdout).toContain("unscanned (too-large: over limits.maxScanSize 1.0 KB)");
  });

  test("a message padded past maxMessageSize is scanned through the spool (file, stdin and FIFO); --clean-to keeps the padding", async () => {
    const pad = "padding line of an innocent looking text part\n".repeat(30_000);
    const eml = infectedEml("pad").replace("--b1\n", `--b1\nContent-Type: text/plain\n\n${pad}--b1\n`);
    expect(eml.length).toBeGreaterThan(1_000_000);
    await writeFile(p("padded.eml"), eml);
    // maxScanSize under the message's size too: only a spooled scan (budget = its size) reads it whole.
    const env = { MAILSENTRY_LIMITS_MAXMESSAGESIZE: "100000", MAILSENTRY_LIMITS_MAXSCANSIZE: "500000" };
    const before = await sha(p("padded.eml"));
    const out = p("padded-out");
    const file = await run(["scan-file", "--clean-to", out, p("padded.eml")], { env });
    expect([file.code, file.stdout]).toEqual([1, expect.stringContaining("infected: Eicar-Test-Signature")]);
    expect(await sha(p("padded.eml"))).toBe(before);
    const cleaned = await readFile(join(out, "padded.eml"), "utf8");
    expect(cleaned).toContain(pad);
    expect(cleaned).not.toContain(Buffer.from(EICAR_TEXT).toString("base64"));
    const stdin = await run(["scan-file", "-"], { env, stdin: eml });
    expect([stdin.code, stdin.stdout]).toEqual([1, expect.stringContaining("infected: Eicar-Test-Signature")]);
    const fifo = p("padded.fifo");
    await Bun.spawn(["mkfifo", fifo]).exited;
    const writer = Bun.spawn(["sh", "-c", `cat "${p("padded.eml")}" > "${fifo}"`]);
    const viaFifo = await run(["scan-file", fifo], { env });
    await writer.exited;
    expect([viaFifo.code, viaFifo.stdout]).toEqual([1, expect.stringContaining("infected: Eicar-Test-Signature")]);
    // Past maxSpooledMessageSize it is too large, and reading stops there.
    const capped = await run(["scan-file", "-"], { env: { ...env, MAILSENTRY_LIMITS_MAXSPOOLEDMESSAGESIZE: "500000" }, stdin: eml });
    expect([capped.code, capped.stdout]).toEqual([0, expect.stringContaining("unscanned (too-large: over limits.maxSpooledMessageSize 488.3 KB)")]);
    const spool = join(box.env.XDG_STATE_HOME!, "mailsentry", "spool");
    const left = await readdir(spool).then(async (ds) => (await Promise.all(ds.map((x) => readdir(join(spool, x))))).flat(), () => []);
    expect(left).toEqual([]);
  });

  test("endless input (a device, stdin, a pipe) stops at the limit that applies and names it", async () => {
    const env = { MAILSENTRY_LIMITS_MAXFILESIZE: "2000000" };
    const device = await run(["scan-file", "--json", "/dev/zero"], { env });
    const doc = JSON.parse(device.stdout);
    expect([device.code, doc.files[0].detail]).toEqual([0, "unscanned (too-large: over limits.maxFileSize 1.9 MB)"]);
    // Read just past the limit, not 0 B and not forever.
    expect(doc.summary.bytes).toBeGreaterThan(2_000_000);
    expect(doc.summary.bytes).toBeLessThan(3_000_000);
    const stdin = await run(["scan-file", "-"], { env, stdin: { file: "/dev/zero" } });
    expect([stdin.code, stdin.stdout]).toEqual([0, expect.stringContaining("(stdin): unscanned (too-large: over limits.maxFileSize 1.9 MB)")]);
    const fifo = p("endless.fifo");
    await Bun.spawn(["mkfifo", fifo]).exited;
    const writer = Bun.spawn(["sh", "-c", `yes "random words, not a message" > "${fifo}"`], { stderr: "ignore" });
    const viaFifo = await run(["scan-file", fifo], { env });
    await writer.exited; // yes ends with SIGPIPE once the reader closed the pipe
    expect([viaFifo.code, viaFifo.stdout]).toEqual([0, expect.stringContaining(`${fifo}: unscanned (too-large: over limits.maxFileSize 1.9 MB)`)]);
    // A message is not held to maxFileSize: it is read (and spooled) up to maxSpooledMessageSize.
    const eml = infectedEml("long-pipe") + "x".repeat(3_000_000);
    const msg = await run(["scan-file", "-"], { env, stdin: eml });
    expect([msg.code, msg.stdout]).toEqual([1, expect.stringContaining("infected: Eicar-Test-Signature")]);
  });

  test("--clean-to onto a file is a usage error; copies are owner-only; an unreadable input is an error, not a scanned file", async () => {
    const notDir = p("not-a-dir");
    await writeFile(notDir, "x");
    const r = await run(["scan-file", "--clean-to", notDir, p("clean.eml")]);
    expect([r.code, r.stderr]).toEqual([2, expect.stringContaining(`--clean-to ${notDir}: exists and is not a directory`)]);
    expect(await readFile(notDir, "utf8")).toBe("x");
    const out = p("owner-only");
    const ok = await run(["scan-file", "--json", "--clean-to", out, p("clean.eml"), p("missing.eml")]);
    expect(ok.code).toBe(2);
    expect(JSON.parse(ok.stdout).summary).toMatchObject({ files: 2, scanned: 1, clean: 1, errors: 1 });
    expect((await stat(join(out, "clean.eml"))).mode & 0o777).toBe(0o600);
  });

  test("--sigs loads ClamAV hash signatures from a directory", async () => {
    const sigs = p("sigs");
    await mkdir(sigs, { recursive: true });
    const payload = "this harmless text stands in for malware\n";
    await writeFile(p("sample.bin"), payload);
    const md5 = new Bun.CryptoHasher("md5").update(payload).digest("hex");
    await writeFile(join(sigs, "test.hdb"), `${md5}:${payload.length}:Test.Sample.Hash\n`);
    const r = await run(["scan-file", "--sigs", sigs, p("sample.bin")]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("infected: Test.Sample.Hash");
    expect((await run(["scan-file", p("sample.bin")])).code).toBe(0);
  });
});

describe("scan-mbox", () => {
  test("each message with its number, Message-ID and byte offset", async () => {
    const text = await readFile(p("box.mbox"), "latin1");
    const offsets = [...text.matchAll(/^From /gm)].map((m) => m.index);
    const r = await run(["scan-mbox", "--json", p("box.mbox")]);
    expect(r.code).toBe(1);
    const doc = JSON.parse(r.stdout);
    expect(doc.files[0].messages.map((m: { index: number; messageId: string; offset: number; verdict: string }) => [m.index, m.messageId, m.offset, m.verdict])).toEqual([
      [1, "<m1@example.org>", offsets[0], "clean"],
      [2, "<m2@example.org>", offsets[1], "infected"],
      [3, "<m3@example.org>", offsets[2], "clean"],
    ]);
    expect(doc.summary).toMatchObject({ files: 1, scanned: 3, clean: 2, infected: 1, errors: 0 });
    const human = await run(["scan-mbox", p("box.mbox")]);
    expect(human.stdout).toContain(`${p("box.mbox")}#2 @${offsets[1]} <m2@example.org>: infected: Eicar-Test-Signature`);
    expect(human.stdout).toContain("scanned 3 messages in 1 file: 2 clean, 1 infected");
  });

  test("a message over maxScanSize is unscanned but still named by its Message-ID", async () => {
    await writeFile(p("big.mbox"), mbox([cleanEml("small"), cleanEml("big") + "x".repeat(4000) + "\n"]));
    const r = await run(["scan-mbox", "--json", p("big.mbox")], { env: { MAILSENTRY_LIMITS_MAXSCANSIZE: "1000" } });
    expect(r.code).toBe(0);
    const got = JSON.parse(r.stdout).files[0].messages.map((m: { index: number; messageId: string; verdict: string }) => [m.index, m.messageId, m.verdict]);
    expect(got).toEqual([[1, "<small@example.org>", "clean"], [2, "<big@example.org>", "unscanned"]]);
  });

  test("CRLF mboxes, clean mboxes, stdin and a missing file", async () => {
    expect((await run(["scan-mbox", "-q", p("crlf.mbox")])).stdout).toContain("#2 ");
    expect((await run(["scan-mbox", p("clean.mbox")])).code).toBe(0);
    const s = await run(["scan-mbox", "--json", "-"], { stdin: await readFile(p("box.mbox")) });
    expect(JSON.parse(s.stdout).summary).toMatchObject({ scanned: 3, infected: 1 });
    const m = await run(["scan-mbox", p("clean.mbox"), p("nope.mbox")]);
    expect(m.code).toBe(2);
    expect(m.stdout).toContain(`${p("nope.mbox")}: error: no such file`);
    expect(m.stdout).toContain("scanned 2 messages in 2 files");
  });

  test("--clean-to writes a cleaned mbox that parses; the input is unchanged", async () => {
    for (const name of ["box.mbox", "crlf.mbox"]) {
      const before = await sha(p(name));
      const out = p(`cleaned-${name}`);
      const r = await run(["scan-mbox", "--clean-to", out, p(name)]);
      expect(r.code).toBe(1);
      expect(await sha(p(name))).toBe(before);
      const s = new MboxSplitter();
      const msgs = [...s.push(await readFile(out)), ...s.end()];
      const orig = new MboxSplitter();
      const origMsgs = [...orig.push(await readFile(p(name))), ...orig.end()];
      expect(msgs.map((m) => m.fromLine)).toEqual(origMsgs.map((m) => m.fromLine));
      expect(Buffer.from(msgs[0]!.bytes!).equals(Buffer.from(origMsgs[0]!.bytes!))).toBe(true); // clean: byte-identical
      expect((await run(["scan-mbox", out])).code).toBe(0);
    }
  });

  test("messages padded past maxMessageSize are spooled and scanned (file and stdin); --clean-to keeps them whole", async () => {
    // Text lines starting "From " inside the big messages: quoted in the mbox, unquoted to be scanned.
    const pad = "From the archive: an innocent padding line\n".repeat(30_000);
    const bigInfected = infectedEml("bigbad").replace("--b1\n", `--b1\nContent-Type: text/plain\n\n${pad}--b1\n`);
    const bigClean = cleanEml("bigclean") + pad;
    await writeFile(p("padded.mbox"), mbox([cleanEml("s1"), bigInfected, bigClean, infectedEml("s2")]));
    const env = { MAILSENTRY_LIMITS_MAXMESSAGESIZE: "100000", MAILSENTRY_LIMITS_MAXSCANSIZE: "500000" };
    const before = await sha(p("padded.mbox"));
    const verdicts = (r: { stdout: string }) => JSON.parse(r.stdout).files[0].messages.map((m: { messageId: string; verdict: string }) => [m.messageId, m.verdict]);
    const expected = [["<s1@example.org>", "clean"], ["<bigbad@example.org>", "infected"], ["<bigclean@example.org>", "clean"], ["<s2@example.org>", "infected"]];
    const out = p("padded-clean.mbox");
    const r = await run(["scan-mbox", "--json", "--clean-to", out, p("padded.mbox")], { env });
    expect(r.code).toBe(1);
    expect(verdicts(r)).toEqual(expected);
    expect(await sha(p("padded.mbox"))).toBe(before);
    const reread = new MboxSplitter();
    const all = [...reread.push(await readFile(out)), ...reread.end()];
    expect(all.length).toBe(4);
    const text = (i: number) => Buffer.from(all[i]!.bytes!).toString("latin1");
    expect(text(1)).toContain(pad); // unquoted again on reading: the From lines came through whole
    expect(text(1)).not.toContain(Buffer.from(EICAR_TEXT).toString("base64"));
    expect(text(2)).toBe(bigClean);
    expect((await run(["scan-mbox", out], { env })).code).toBe(0);
    const stdin = await run(["scan-mbox", "--json", "-"], { env, stdin: await readFile(p("padded.mbox")) });
    expect(verdicts(stdin)).toEqual(expected);
    // Past maxSpooledMessageSize: too large, and still named.
    const capped = await run(["scan-mbox", "--json", p("padded.mbox")], { env: { ...env, MAILSENTRY_LIMITS_MAXSPOOLEDMESSAGESIZE: "1000000" } });
    expect(verdicts(capped).map((x: string[]) => x[1])).toEqual(["clean", "unscanned", "unscanned", "infected"]);
    const spool = join(box.env.XDG_STATE_HOME!, "mailsentry", "spool");
    const left = await readdir(spool).then(async (ds) => (await Promise.all(ds.map((x) => readdir(join(spool, x))))).flat(), () => []);
    expect(left).toEqual([]);
  });

  test("--clean-to with several inputs writes PATH/<name> for each", async () => {
    const out = p("many");
    const r = await run(["scan-mbox", "-q", "--clean-to", out, p("box.mbox"), p("clean.mbox")]);
    expect(r.code).toBe(1);
    expect(await readFile(join(out, "clean.mbox"), "utf8")).toBe(await readFile(p("clean.mbox"), "utf8"));
    expect((await run(["scan-mbox", join(out, "box.mbox")])).code).toBe(0);
  });
});

describe("usage mistakes: one line on stderr, exit 2", () => {
  for (const args of [["scan-file", "--bogus", "x"], ["scan-mbox", "--json=1", "--nope"], ["frobnicate"], ["scan-file"], ["scan-file", "--action", "explode", "x"], ["scan-file", "--unscanned", "maybe", "x"], ["config", "get"], ["scan-mbox", "--sigs"]]) {
    test(args.join(" "), async () => {
      const r = await run(args);
      expect(r.code).toBe(2);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).toStartWith("mailsentry: ");
      expect(r.stderr).not.toContain("    at ");
    });
  }

  test("--help prints usage and exits 0", async () => {
    const r = await run(["scan-mbox", "--help"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("--clean-to");
  });
});

describe("config", () => {
  test("an empty config file means the defaults; broken JSON is named by line and column", async () => {
    const file = p("hand-edited.json");
    await writeFile(file, "");
    const empty = await run(["config", "validate", file]);
    expect(empty.code).toBe(0);
    await writeFile(file, '{\n  "action": "clean",\n  "tagClean": tru\n}\n');
    const broken = await run(["--config", file, "config", "show"]);
    expect([broken.code, broken.stderr]).toEqual([2, expect.stringContaining(`${file}: invalid JSON at line 3, column 15`)]);
  });

  test("path, set, get, unset, show, validate", async () => {
    const file = join(box.env.XDG_CONFIG_HOME!, "mailsentry", "config.json");
    const path = await run(["config", "path"]);
    expect(path.stdout).toContain(file);
    expect(path.stdout).toContain(join(box.env.XDG_STATE_HOME!, "mailsentry"));

    expect((await run(["config", "set", "limits.maxFileSize", "1000"])).code).toBe(0);
    expect((await run(["config", "set", "action", "delete"])).code).toBe(0);
    expect((await run(["config", "set", "excludedApps", "fetchmail,mutt"])).code).toBe(0);
    expect(JSON.parse(await readFile(file, "utf8"))).toEqual({ limits: { maxFileSize: 1000 }, action: "delete", excludedApps: ["fetchmail", "mutt"] });
    expect((await run(["config", "get", "limits.maxFileSize"])).stdout).toBe("1000\n");
    expect((await run(["config", "get", "action"])).stdout).toBe("delete\n");

    const shown = JSON.parse((await run(["config", "show"], { env: { MAILSENTRY_ACTION: "ignore" } })).stdout);
    expect(shown).toMatchObject({ action: "ignore", limits: { maxFileSize: 1000, maxRecursion: 16 }, onError: "tempfail" });

    const bad = await run(["config", "set", "limits.maxFileSize", "-1"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe(`mailsentry: ${file}: limits.maxFileSize: must not be negative (got -1)\n`);
    expect((await run(["config", "get", "limits.maxFileSize"])).stdout).toBe("1000\n"); // not written

    expect((await run(["config", "set", "nope.key", "1"])).code).toBe(2);
    expect((await run(["config", "unset", "limits.maxFileSize"])).code).toBe(0);
    expect((await run(["config", "get", "limits.maxFileSize"])).stdout).toBe(`${30 * 1024 * 1024}\n`);

    expect((await run(["config", "validate"])).stdout).toBe(`${file}: ok\n`);
    await writeFile(file, JSON.stringify({ limits: { maxScanSize: -5 } }));
    const v = await run(["config", "validate"]);
    expect([v.code, v.stderr]).toEqual([2, `mailsentry: ${file}: limits.maxScanSize: must not be negative (got -5)\n`]);
    // a broken config stops a scan with the same message
    const s = await run(["scan-file", p("clean.eml")]);
    expect([s.code, s.stderr]).toEqual([2, `mailsentry: ${file}: limits.maxScanSize: must not be negative (got -5)\n`]);
    await writeFile(file, "{}");
  });

  test("--config FILE, before or after the command", async () => {
    const f = p("other.json");
    await writeFile(f, JSON.stringify({ action: "clean" }));
    expect((await run(["config", "get", "action", "--config", f])).stdout).toBe("clean\n");
    expect((await run(["--config", f, "config", "get", "action"])).stdout).toBe("clean\n");
    const missing = await run(["--config", p("none.json"), "config", "show"]);
    expect([missing.code, missing.stderr]).toEqual([2, `mailsentry: ${p("none.json")}: no such file\n`]);
  });
});
