// The proxy's message filter (scan → action → quarantine): what a protocol is told to do with one
// downloaded message, above all the refusals that keep a message on the server rather than lose it.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_CONFIG } from "../../../core/config/types.ts";
import { filterMessage, type FilterContext } from "../../../core/filter/index.ts";
import { inlineScanner } from "../../../core/filter/scan-job.ts";
import { DEFAULT_LIMITS } from "../../../core/limits.ts";
import { createLogger } from "../../../core/log.ts";
import { QuarantineStore } from "../../../core/quarantine/store.ts";
import { policyFromConfig } from "../../../core/rewrite/index.ts";
import { BuiltinEngine } from "../../../core/scan/engines/builtin.ts";
import { eicar } from "../../helpers/eicar.ts";
import { throwingEngine } from "../../helpers/engine.ts";
import { attachment, message, multipart } from "../../helpers/messages.ts";

const enc = new TextEncoder();
const dec = (b: Uint8Array) => Buffer.from(b).toString("latin1");
const infected = enc.encode(message(multipart("b", [attachment("notes.txt", "hello"), attachment("x.com", eicar())])));
const clean = enc.encode(message(multipart("b", [attachment("notes.txt", "hello")])));

let dir: string;
beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), "mailsentry-filter-")); });
afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

function context(over: Partial<FilterContext> = {}, action = DEFAULT_CONFIG.action): FilterContext {
  return {
    scanner: inlineScanner(BuiltinEngine.eicarOnly()),
    limits: DEFAULT_LIMITS,
    policy: policyFromConfig({ ...DEFAULT_CONFIG, action }, "mailsentry test"),
    quarantine: new QuarantineStore(join(dir, `q-${Math.random().toString(36).slice(2)}`)),
    ...over,
  };
}
const run = (ctx: FilterContext, raw: Uint8Array, partial = false, lines: string[] = []) =>
  filterMessage(ctx, raw, { msg: "1", partial, log: createLogger({ format: "json", write: (l) => lines.push(l) }) }, "pop3 a@b #1");

describe("message filter", () => {
  test("a clean message is delivered as the very same bytes", async () => {
    const out = await run(context(), clean);
    expect(out).toEqual({ kind: "deliver", bytes: clean, detected: false, clean: true });
  });

  test("an infected message: the original is in quarantine, the client gets the cleaned copy", async () => {
    const ctx = context();
    const out = await run(ctx, infected);
    expect(out.kind).toBe("deliver");
    if (out.kind !== "deliver") return;
    expect(out.detected).toBe(true);
    expect(dec(out.bytes)).toContain("X-Virus-Status: Cleaned (Eicar-Test-Signature)");
    const [entry, ...more] = await ctx.quarantine.list();
    expect(more).toEqual([]);
    expect(new Uint8Array(await Bun.file(entry!.path).bytes())).toEqual(infected);
  });

  test("a quarantine that cannot be written withholds the message (tempfail), never delivers it uncopied", async () => {
    const blocker = join(dir, "not-a-directory");
    await writeFile(blocker, "x");
    const lines: string[] = [];
    const out = await run(context({ quarantine: new QuarantineStore(join(blocker, "q")) }), infected, false, lines);
    expect(out).toEqual({ kind: "refuse", why: "tempfail", detected: true });
    expect(lines.some((l) => l.includes("quarantine write failed"))).toBe(true);
  });

  test("a failing engine is a temporary failure under the default onError", async () => {
    expect(await run(context({ scanner: inlineScanner(throwingEngine()) }), clean)).toEqual({ kind: "refuse", why: "tempfail", detected: false });
  });

  test("part of an infected message (TOP) is refused, unless the action is ignore; nothing is quarantined", async () => {
    const ctx = context();
    expect(await run(ctx, infected, true)).toEqual({ kind: "refuse", why: "infected-partial", detected: true });
    expect(await run(context({}, "ignore"), infected, true)).toEqual({ kind: "deliver", bytes: infected, detected: true, clean: false });
    expect(await ctx.quarantine.list()).toEqual([]);
  });
});
