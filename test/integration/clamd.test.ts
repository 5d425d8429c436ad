// The clamd engine against a real clamd started here (unix socket and TCP, its own test database):
// detections keep clamd's names, clamd's own limits become unscanned (never clean), addresses fail
// over, a clamd killed mid-scan or one that stalls is left for the next, all down is an error.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ClamdEngine, parseScanReply } from "../../core/net/engines/clamd.ts";
import { clamdRequest, parseClamdAddress } from "../../core/net/engines/clamd-wire.ts";
import { hdbLine, startClamd, type Clamd } from "../helpers/clamd.ts";
import { cliSandbox, runCli } from "../helpers/cli.ts";
import { have } from "../helpers/clients.ts";
import { eicar } from "../helpers/eicar.ts";
import { pseudoRandom } from "../helpers/messages.ts";

const PAYLOAD = "this harmless text stands in for malware that only clamd knows\n";
const engine = (addresses: string[], timeoutMs = 10_000) => new ClamdEngine({ addresses, timeoutMs, connections: 4 });

describe("clamd replies", () => {
  test("OK, FOUND (the name as clamd says it), clamd's limits as unscanned, and failures", () => {
    expect(parseScanReply("stream: OK")).toEqual({ kind: "clean" });
    expect(parseScanReply("stream: Test.Eicar.UNOFFICIAL FOUND")).toEqual({ kind: "infected", name: "Test.Eicar.UNOFFICIAL" });
    expect(parseScanReply("stream: Heuristics.Limits.Exceeded.MaxFileSize FOUND")).toMatchObject({ kind: "unscanned", reason: "too-large" });
    expect(parseScanReply("stream: Heuristics.Limits.Exceeded.MaxRecursion FOUND")).toMatchObject({ kind: "unscanned", reason: "too-deep" });
    expect(parseScanReply("stream: Heuristics.Limits.Exceeded.MaxScanTime FOUND")).toMatchObject({ kind: "unscanned", reason: "time-limit" });
    expect(parseScanReply("stream: Heuristics.Encrypted.Zip FOUND")).toMatchObject({ kind: "unscanned", reason: "encrypted" });
    expect(parseScanReply("stream: Heuristics.Phishing.Email.SpoofedDomain FOUND")).toEqual({ kind: "infected", name: "Heuristics.Phishing.Email.SpoofedDomain" });
    expect(parseScanReply("INSTREAM size limit exceeded. ERROR")).toMatchObject({ kind: "unscanned", reason: "too-large" });
    expect(() => parseScanReply("Can't allocate memory ERROR")).toThrow("clamd: Can't allocate memory ERROR");
  });

  test("addresses: unix and tcp forms, bad ones refused", () => {
    expect(parseClamdAddress("unix:/run/clamav/clamd.ctl")).toEqual({ kind: "unix", path: "/run/clamav/clamd.ctl" });
    expect(parseClamdAddress("/run/clamav/clamd.ctl")).toEqual({ kind: "unix", path: "/run/clamav/clamd.ctl" });
    expect(parseClamdAddress("tcp:10.0.0.5:3310")).toEqual({ kind: "tcp", host: "10.0.0.5", port: 3310 });
    expect(parseClamdAddress("tcp:[::1]:3310")).toEqual({ kind: "tcp", host: "::1", port: 3310 });
    for (const bad of ["unix:relative", "tcp:host", "tcp:host:0", "host:99999", ""]) expect(() => parseClamdAddress(bad)).toThrow("not a clamd address");
  });
});

describe.skipIf(!have("clamd"))("a real clamd", () => {
  let a: Clamd;
  let b: Clamd;
  beforeAll(async () => {
    const db = { "extra.hdb": `${hdbLine(PAYLOAD, "Test.Payload")}\n` };
    [a, b] = await Promise.all([startClamd({ db, tcp: true }), startClamd({ db, streamMaxLength: "1M" })]);
  }, 60_000);
  afterAll(async () => {
    await a?.[Symbol.asyncDispose]();
    await b?.[Symbol.asyncDispose]();
  });

  test("over the unix socket and TCP: EICAR and the test database's payload found under clamd's names; clean is clean", async () => {
    for (const address of [a.unix, a.tcp!]) {
      const e = engine([address]);
      expect(await e.scanMessage(eicar())).toEqual({ kind: "infected", name: "Test.Eicar.UNOFFICIAL" });
      expect(await e.scanMessage(new TextEncoder().encode(PAYLOAD))).toEqual({ kind: "infected", name: "Test.Payload.UNOFFICIAL" });
      expect(await e.scanMessage(pseudoRandom(300_000, 2))).toEqual({ kind: "clean" });
      expect(await e.scanMessage(new Uint8Array(0))).toEqual({ kind: "clean" });
    }
  });

  test("a stream over clamd's StreamMaxLength is unscanned (too-large), never clean; the answer comes while sending", async () => {
    const e = engine([b.unix]);
    expect(await e.scanMessage(pseudoRandom(3_000_000, 5))).toMatchObject({ kind: "unscanned", reason: "too-large" });
    // The connection was reset after the answer; the next scan on the same address works.
    expect(await e.scanMessage(eicar())).toEqual({ kind: "infected", name: "Test.Eicar.UNOFFICIAL" });
  });

  test("check(): version and latency per address; a dead address says why", async () => {
    const checks = await engine([a.unix, "unix:/nonexistent/clamd.sock"]).check();
    expect(checks[0]).toMatchObject({ engine: "clamd", address: a.unix, ok: true });
    expect(checks[0]!.version).toStartWith("ClamAV ");
    expect(checks[1]).toMatchObject({ ok: false });
    expect(checks[1]!.error).toContain("/nonexistent/clamd.sock");
  });

  test("round robin over two addresses, and failover past one that is down", async () => {
    const before = [(await a.log()).split("\n").length, (await b.log()).split("\n").length];
    const e = engine([a.unix, b.unix]);
    for (let i = 0; i < 10; i++) expect(await e.scanMessage(eicar())).toMatchObject({ kind: "infected" });
    const after = [(await a.log()).split("\n").length, (await b.log()).split("\n").length];
    expect(after[0]! - before[0]!).toBeGreaterThanOrEqual(4);
    expect(after[1]! - before[1]!).toBeGreaterThanOrEqual(4);
    const down = engine(["unix:/nonexistent/clamd.sock", a.unix]);
    for (let i = 0; i < 4; i++) expect(await down.scanMessage(eicar())).toMatchObject({ kind: "infected" });
  });

  test("a clamd that stalls (accepts, never answers) is timed out and the next address answers", async () => {
    const dir = await mkdtemp(join(tmpdir(), "mailsentry-stall-"));
    const path = join(dir, "stall.sock");
    const stall = Bun.listen({ unix: path, socket: { data() {} } });
    try {
      const e = engine([`unix:${path}`, a.unix], 500);
      const t0 = performance.now();
      expect(await e.scanMessage(eicar())).toMatchObject({ kind: "infected" });
      expect(performance.now() - t0).toBeLessThan(3000);
      const alone = engine([`unix:${path}`], 300);
      await expect(alone.scanMessage(eicar())).rejects.toThrow("every clamd address failed");
    } finally {
      stall.stop(true);
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("a clamd killed mid-scan: that scan goes to the next address; with every address down the scan fails", async () => {
    const victim = await startClamd({ streamMaxLength: "400M" });
    try {
      const e = engine([victim.unix, a.unix], 20_000);
      const big = pseudoRandom(80 * 1024 * 1024, 9); // under the next one's StreamMaxLength (100M)
      const seenByA = (await a.log()).split("\n").length;
      const scanning = e.scanMessage(big);
      await Bun.sleep(30);
      await victim.kill();
      expect(await scanning).toEqual({ kind: "clean" });
      // The answer came from the other clamd: the scan was cut by the kill and sent again. clamd may
      // write its log line after it has answered, so the line is waited for (2 s at most).
      let seenNow = seenByA;
      for (let i = 0; i < 40 && seenNow <= seenByA; i++) {
        await Bun.sleep(50);
        seenNow = (await a.log()).split("\n").length;
      }
      expect(seenNow).toBeGreaterThan(seenByA);
      expect(await clamdRequest(parseClamdAddress(a.unix), "zPING", 2000)).toBe("PONG");
      await expect(engine([victim.unix]).scanMessage(eicar())).rejects.toThrow("every clamd address failed");
    } finally {
      await victim[Symbol.asyncDispose]();
    }
  }, 60_000);
});

describe.skipIf(!have("clamd"))("the CLI with clamd", () => {
  let c: Clamd;
  let box: Awaited<ReturnType<typeof cliSandbox>>;
  beforeAll(async () => {
    c = await startClamd({ db: { "extra.hdb": `${hdbLine(PAYLOAD, "Test.Payload")}\n` } });
    box = await cliSandbox();
  }, 60_000);
  afterAll(async () => {
    await c?.[Symbol.asyncDispose]();
    await box?.[Symbol.asyncDispose]();
  });
  const run = (args: string[], env: Record<string, string> = {}) => runCli(args, { env: { ...box.env, ...env } });

  test("config engines: each engine's version and latency; exit 1 when one does not answer", async () => {
    const ok = await run(["config", "engines", "--clamd", c.unix]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain("builtin (EICAR only): mailsentry ");
    expect(ok.stdout).toMatch(new RegExp(`clamd ${c.unix}: ClamAV \\d`));
    const json = JSON.parse((await run(["config", "engines", "--json"], { MAILSENTRY_ENGINES: JSON.stringify(["builtin", { clamd: [c.unix, "unix:/nonexistent/clamd.sock"] }]) })).stdout);
    expect(json.engines.map((e: { engine: string; ok: boolean }) => [e.engine, e.ok])).toEqual([["builtin", true], ["clamd", true], ["clamd", false]]);
    const bad = await run(["config", "engines", "--clamd", "unix:/nonexistent/clamd.sock"]);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toContain("NOT ANSWERING");
  });

  test.skipIf(!have("python3"))("zip members the built-in reader cannot inflate: unsupported (per reason in the summary); clamd reads BZip2, not LZMA", async () => {
    // Real BZip2 and LZMA members, written by python's zipfile at test time.
    const script = "import sys, zipfile\ndata = open(sys.argv[1], 'rb').read()\nfor path, m in ((sys.argv[2], zipfile.ZIP_BZIP2), (sys.argv[3], zipfile.ZIP_LZMA)):\n  with zipfile.ZipFile(path, 'w', compression=m) as z: z.writestr('eicar.com', data)\n";
    const src = join(box.dir, "eicar.bin");
    const bz = join(box.dir, "bz.zip");
    const lz = join(box.dir, "lz.zip");
    await Bun.write(src, eicar());
    const py = Bun.spawn(["python3", "-c", script, src, bz, lz]);
    expect(await py.exited).toBe(0);
    const alone = await run(["scan-file", "--json", bz, lz]);
    expect(alone.code).toBe(0);
    const doc = JSON.parse(alone.stdout);
    expect(doc.files.map((f: { verdict: string; findings: { reason?: string; detail?: string }[] }) => [f.verdict, f.findings[0]?.reason, f.findings[0]?.detail])).toEqual([["unscanned", "unsupported", "BZip2"], ["unscanned", "unsupported", "LZMA"]]);
    expect(doc.summary.unscannedByReason).toEqual({ unsupported: 2 });
    const withClamd = JSON.parse((await run(["scan-file", "--json", "--clamd", c.unix, bz, lz])).stdout);
    // clamd read the BZip2 member and found EICAR; it answers OK for LZMA without reading it, so that stays unscanned.
    expect(withClamd.files.map((f: { verdict: string }) => f.verdict)).toEqual(["infected", "unscanned"]);
  });

  test("scan-file --clamd: what only clamd knows is infected under clamd's name, with its engine in the JSON", async () => {
    const file = join(box.dir, "tool.txt");
    await Bun.write(file, PAYLOAD);
    expect((await run(["scan-file", file])).code).toBe(0);
    const r = await run(["scan-file", "--json", "--clamd", c.unix, file]);
    expect(r.code).toBe(1);
    const f = JSON.parse(r.stdout).files[0];
    expect(f.verdict).toBe("infected");
    expect(f.findings).toEqual([{ kind: "infected", name: "Test.Payload.UNOFFICIAL", path: "", partId: "", engine: "clamd" }]);
    const down = await run(["scan-file", "--clamd", "unix:/nonexistent/clamd.sock", file]);
    expect(down.code).toBe(2);
    expect(down.stdout).toContain("error: engine clamd failed: every clamd address failed");
  });
});
