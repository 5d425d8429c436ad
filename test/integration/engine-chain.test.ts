// The chain and the clamd wire against a scripted clamd (a unix socket that parses INSTREAM the way
// clamd does): the framing (no empty chunk before the end), engineMode first-detection versus all,
// the worst verdict winning with each finding naming its engine, and the cleaned copy asked again.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_CONFIG, type Config } from "../../core/config/types.ts";
import { filterMessage } from "../../core/filter/index.ts";
import { inlineScanner } from "../../core/filter/scan-job.ts";
import { createLogger } from "../../core/log.ts";
import { QuarantineStore } from "../../core/quarantine/store.ts";
import { policyFromConfig } from "../../core/rewrite/index.ts";
import { chainFromConfig } from "../../core/net/engines/index.ts";
import { BuiltinEngine } from "../../core/scan/engines/builtin.ts";
import { eicar } from "../helpers/eicar.ts";
import { attachment, leaf, message, multipart, pseudoRandom } from "../helpers/messages.ts";

const dir = mkdtempSync(join(tmpdir(), "mailsentry-chain-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let sockets = 0;

interface Scan {
  /** The length of every chunk clamd received, the last (0) included. */
  chunks: number[];
  data: Buffer;
}

/** A clamd that answers INSTREAM with reply(data) after delayMs; every scan is recorded. */
function scriptedClamd(reply: (data: Buffer) => string, delayMs = 0): { address: string; scans: Scan[]; stop(): void } {
  const path = join(dir, `clamd-${++sockets}.sock`);
  const scans: Scan[] = [];
  const server = Bun.listen<{ buf: Buffer; scan: Scan | null; done: boolean }>({
    unix: path,
    socket: {
      open(s) { s.data = { buf: Buffer.alloc(0), scan: null, done: false }; },
      data(s, chunk) {
        const st = s.data;
        st.buf = Buffer.concat([st.buf, chunk]);
        if (!st.scan) {
          const nul = st.buf.indexOf(0);
          if (nul < 0) return;
          const cmd = st.buf.subarray(0, nul).toString();
          st.buf = st.buf.subarray(nul + 1);
          if (cmd === "zPING") { s.end("PONG\0"); return; }
          if (cmd === "zVERSION") { s.end("ClamAV 9.9.9/1/scripted\0"); return; }
          st.scan = { chunks: [], data: Buffer.alloc(0) };
        }
        const scan = st.scan;
        while (!st.done && st.buf.length >= 4) {
          const n = st.buf.readUInt32BE(0);
          if (st.buf.length < 4 + n) return;
          scan.chunks.push(n);
          scan.data = Buffer.concat([scan.data, st.buf.subarray(4, 4 + n)]);
          st.buf = st.buf.subarray(4 + n);
          if (n === 0) {
            st.done = true;
            scans.push(scan);
            setTimeout(() => s.end(`stream: ${reply(scan.data)}\0`), delayMs);
          }
        }
      },
    },
  });
  return { address: `unix:${path}`, scans, stop: () => server.stop(true) };
}

const enc = new TextEncoder();
const eicarMail = enc.encode(message(multipart("E", [leaf({ headers: ["Content-Type: text/plain"], body: "hello" }), attachment("x.com", eicar())])));
const cleanMail = enc.encode(message(multipart("C", [leaf({ headers: ["Content-Type: text/plain"], body: "hello" }), attachment("data.bin", pseudoRandom(200_000, 3))])));
const log = createLogger({ format: "json", level: "error", write: () => {} });

function filterFor(engines: Config["engines"], mode: Config["engineMode"] = "all") {
  const config = { ...structuredClone(DEFAULT_CONFIG), engines, engineMode: mode } as Config;
  const ctx = {
    scanner: inlineScanner(BuiltinEngine.eicarOnly()),
    limits: config.limits,
    policy: policyFromConfig(config, "mailsentry test", { sameSize: false }),
    quarantine: new QuarantineStore(join(dir, "q")),
    chain: chainFromConfig(config),
  };
  return async (raw: Uint8Array) => {
    await Promise.all(ctx.chain.engines.map((e) => e.check())); // as serve does at start: versions known
    return filterMessage(ctx, raw, { msg: "1", partial: false, log }, "test");
  };
}

describe("the clamd wire, seen from clamd's side", () => {
  test("64 KiB chunks, never an empty one before the single zero-length chunk at the end", async () => {
    const c = scriptedClamd(() => "OK");
    try {
      const out = await filterFor(["builtin", { clamd: [c.address] }])(cleanMail);
      expect(out.kind).toBe("deliver");
      const scan = c.scans[0]!;
      expect(scan.data.equals(Buffer.from(cleanMail))).toBe(true);
      expect(scan.chunks.at(-1)).toBe(0);
      expect(scan.chunks.slice(0, -1).every((n) => n > 0 && n <= 64 * 1024)).toBe(true);
    } finally { c.stop(); }
  });
});

describe("the chain", () => {
  test("all: a detection only clamd makes replaces the message; X-Virus-Scanned names both engines", async () => {
    const c = scriptedClamd(() => "Scripted.Only-Clamd FOUND");
    try {
      const out = await filterFor(["builtin", { clamd: [c.address] }])(cleanMail);
      expect(out).toMatchObject({ kind: "deliver", detected: true });
      const text = Buffer.from((out as { bytes: Uint8Array }).bytes).toString("latin1");
      expect(text).toContain("Scripted.Only-Clamd");
      expect(text).toMatch(/X-Virus-Scanned: mailsentry test \(builtin, ClamAV 9\.9\.9\/1\)/);
    } finally { c.stop(); }
  });

  test("all: when the built-in engine cleaned the part clamd objects to, the cleaned copy is asked again and kept", async () => {
    // This clamd finds EICAR wherever it is, as the real one does.
    const b64 = Buffer.from(eicar()).toString("base64");
    const c = scriptedClamd((d) => (d.toString("latin1").replace(/\r?\n/g, "").includes(b64) ? "Scripted.Eicar FOUND" : "OK"));
    try {
      const out = await filterFor(["builtin", { clamd: [c.address] }])(eicarMail);
      const text = Buffer.from((out as { bytes: Uint8Array }).bytes).toString("latin1");
      expect(text).toContain("X-Virus-Status: Cleaned (Eicar-Test-Signature)");
      expect(text).toContain("hello"); // the text part kept: not replaced
      expect(c.scans.length).toBe(2); // the original, then the cleaned copy
    } finally { c.stop(); }
  });

  test("first-detection: a built-in detection does not wait for a slow clamd; all waits and merges", async () => {
    const slow = scriptedClamd(() => "Scripted.Slow FOUND", 1500);
    try {
      let t0 = performance.now();
      const first = await filterFor(["builtin", { clamd: [slow.address] }], "first-detection")(eicarMail);
      expect(performance.now() - t0).toBeLessThan(1000);
      expect(Buffer.from((first as { bytes: Uint8Array }).bytes).toString("latin1")).not.toContain("Scripted.Slow");
      t0 = performance.now();
      const all = await filterFor(["builtin", { clamd: [slow.address] }], "all")(eicarMail);
      expect(performance.now() - t0).toBeGreaterThanOrEqual(1400);
      expect(Buffer.from((all as { bytes: Uint8Array }).bytes).toString("latin1")).toContain("Scripted.Slow");
    } finally { slow.stop(); }
  });

  test("clamd's limits are unscanned, never clean: a tagged delivery naming the reason", async () => {
    const c = scriptedClamd(() => "Heuristics.Limits.Exceeded.MaxScanSize FOUND");
    try {
      const out = await filterFor(["builtin", { clamd: [c.address] }])(cleanMail);
      expect(Buffer.from((out as { bytes: Uint8Array }).bytes).toString("latin1")).toContain("X-Virus-Status: Unscanned (too-large)");
    } finally { c.stop(); }
  });
});
