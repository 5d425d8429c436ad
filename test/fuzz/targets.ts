// The fuzzing targets: each takes input i of a seeded run, mutates a seed from the corpus and checks
// what must hold whatever the bytes: no exception past the documented ones, bounded time, the same
// result however the stream is split, and (for messages) the differential oracle against postal-mime:
// when the engine flags anything postal-mime hands an application, our verdict is not clean.
import PostalMime from "postal-mime";
import { DEFAULT_LIMITS } from "../../core/limits.ts";
import { decodePartBody, findUuencoded } from "../../core/mime/decode.ts";
import { decodeBase64Runs, findDataUris, guessBoundary } from "../../core/mime/embedded.ts";
import { otherReadings, parseMessage, walkParts } from "../../core/mime/parse.ts";
import { ReadError } from "../../core/net/reader.ts";
import { DotDecoder, concatBytes, stuffBody } from "../../core/pop3/dot.ts";
import { SyntaxError as ImapSyntaxError, tokenize } from "../../core/imap/wire.ts";
import { SexpError, parseSexp } from "../../core/imap/sexp.ts";
import { readArchive, sniffArchive } from "../../core/scan/archive/index.ts";
import { BuiltinEngine } from "../../core/scan/engines/builtin.ts";
import type { Engine } from "../../core/scan/engine.ts";
import { scanMessage } from "../../core/scan/pipeline.ts";
import { gzip, makeTar, makeZip } from "../helpers/archives.ts";
import { cleanCorpus, infectedMessage } from "../helpers/clients.ts";
import { eicar } from "../helpers/eicar.ts";
import { evasionCorpus } from "../helpers/evasion.ts";
import { mixedMessages } from "../bench/mailbox.ts";
import { cutAt, feed } from "../helpers/splits.ts";
import { inputRng, mutate, splits } from "./mutate.ts";

/** bytes cut into pieces of the given sizes. */
function pieces(bytes: Uint8Array, sizes: number[]): Uint8Array[] {
  const cuts: number[] = [];
  let at = 0;
  for (const n of sizes.slice(0, -1)) cuts.push((at += n));
  return cutAt(bytes, cuts);
}

/** What a run found: failures fail it; the counters are reported (the oracle's figures). */
export interface Tally {
  inputs: number;
  /** Each replays as input `index` of `target` under the run's seed. */
  failures: { target: string; index: number; error: string }[];
  /** Inputs where postal-mime extracted the payload (each was then checked against our verdict). */
  oracleInfected: number;
  /** postal-mime attachments (16 bytes and up) whose bytes no object our scanner saw contains. */
  oracleUncovered: number;
  oracleAttachments: number;
  /** Payload extracted by postal-mime while our verdict was unscanned (delivered or held by onUnscanned). */
  oracleUnscanned: number;
}

export function newTally(): Tally {
  return { inputs: 0, failures: [], oracleInfected: 0, oracleUncovered: 0, oracleAttachments: 0, oracleUnscanned: 0 };
}

export interface Seeds {
  messages: Uint8Array[];
  archives: Uint8Array[];
}

export async function seeds(): Promise<Seeds> {
  const e = eicar();
  const zipped = await makeZip([{ name: "eicar.com", data: e }, { name: "readme.txt", data: "hello ".repeat(200) }]);
  const nested = await makeZip([{ name: "inner.zip", data: zipped }]);
  const messages = [
    ...cleanCorpus().map((c) => c.bytes),
    infectedMessage(e),
    ...(await evasionCorpus()).map((c) => c.raw),
    ...mixedMessages(12, 7),
  ];
  return { messages, archives: [zipped, nested, gzip(e), makeTar([{ name: "e.com", data: e }, { name: "b.txt", data: "x".repeat(3000) }])] };
}

export type Target = (s: Seeds, index: number, seed: number, tally: Tally) => Promise<void>;

/** An engine that remembers what it was handed (for the oracle's coverage check). */
function recording(): { engine: Engine; seen: Uint8Array[] } {
  const inner = BuiltinEngine.eicarOnly();
  const seen: Uint8Array[] = [];
  let kept = 0;
  const engine: Engine = {
    name: inner.name,
    identity: inner.identity,
    scan(data) {
      if (kept < 64 * 1024 * 1024) { seen.push(new Uint8Array(data)); kept += data.length; }
      return inner.scan(data);
    },
  } as Engine;
  return { engine, seen };
}

const limits = { ...DEFAULT_LIMITS, maxScanTime: 5_000 };
const has = (hay: Uint8Array, needle: Uint8Array) => Buffer.from(hay.buffer, hay.byteOffset, hay.length).includes(Buffer.from(needle.buffer, needle.byteOffset, needle.length));

const lf = (b: Uint8Array) => Buffer.from(Buffer.from(b.buffer, b.byteOffset, b.length).toString("latin1").replace(/\r\n?/g, "\n"), "latin1");

/**
 * Whether some object our scanner saw holds these bytes: as they are, or with line ends made LF
 * (postal-mime hands out unencoded bodies so, a line end added; the raw message we scan has them as sent).
 */
function covered(seen: Uint8Array[], a: Uint8Array): boolean {
  if (seen.some((o) => has(o, a))) return true;
  let want = lf(a);
  if (want.at(-1) === 0x0a) want = want.subarray(0, -1); // postal-mime ends an unencoded body with a line end
  return seen.some((o) => lf(o).includes(want));
}

function check(cond: boolean, what: string): void {
  if (!cond) throw new Error(what);
}

/** Objects postal-mime hands an application: attachments, text, HTML and its data: URIs. */
async function postalObjects(raw: Uint8Array): Promise<{ attachments: Uint8Array[]; texts: Uint8Array[] } | null> {
  let email;
  try {
    email = await PostalMime.parse(raw);
  } catch {
    return null; // postal-mime gave up: nothing it would hand out
  }
  const texts: Uint8Array[] = [];
  for (const s of [email.text ?? "", email.html ?? ""]) {
    texts.push(Buffer.from(s, "utf8"));
    for (const m of s.matchAll(/data:[^,"']*;base64,([^"')>]+)/g)) texts.push(Buffer.from(m[1]!.replace(/\s+/g, ""), "base64"));
  }
  const attachments = email.attachments.map((a) => (typeof a.content === "string" ? Buffer.from(a.content) : new Uint8Array(a.content)));
  return { attachments, texts };
}

export const TARGETS: Record<string, Target> = {
  /** The MIME tree under every reading, every leaf decoded, every embedded-object finder. */
  async mime(s, i, seed) {
    const r = inputRng(seed, i);
    const { bytes } = mutate(s.messages[Math.floor(r() * s.messages.length)]!, r);
    const t0 = performance.now();
    const root = parseMessage(bytes);
    for (const reading of [{}, ...otherReadings(root)]) {
      const tree = parseMessage(bytes, { reading });
      for (const part of walkParts(tree)) {
        check(part.start <= part.headerEnd && part.headerEnd <= part.bodyEnd && part.bodyEnd <= bytes.length, `part ${part.id} offsets out of order`);
        if (part.children.length || part.message) continue;
        const body = decodePartBody(bytes, part);
        findUuencoded(body);
        decodeBase64Runs(body);
        findDataUris(body);
        guessBoundary(body, part.params.boundary ?? "");
      }
    }
    check(performance.now() - t0 < 5_000, "parsing took over 5 s");
  },

  /** The whole scan, and the differential oracle against postal-mime. */
  async scan(s, i, seed, tally) {
    const r = inputRng(seed, i);
    const { bytes } = mutate(s.messages[Math.floor(r() * s.messages.length)]!, r);
    const { engine, seen } = recording();
    const t0 = performance.now();
    const { result } = await scanMessage(bytes, { engine, limits });
    check(performance.now() - t0 < limits.maxScanTime + 2_000, "scan ran past maxScanTime");
    check(["clean", "infected", "unscanned", "error"].includes(result.verdict.kind), `verdict ${JSON.stringify(result.verdict)}`);
    check(result.verdict.kind !== "error", `scan error: ${JSON.stringify(result.verdict)}`);
    const postal = await postalObjects(bytes);
    if (!postal) return;
    // The same engine over what postal-mime hands out: a detection there is a payload a client gets.
    const judge = BuiltinEngine.eicarOnly();
    if ([...postal.attachments, ...postal.texts].some((o) => judge.scan(o) !== null)) {
      tally.oracleInfected++;
      if (result.verdict.kind === "unscanned") tally.oracleUnscanned++;
      check(result.verdict.kind !== "clean", "postal-mime extracts the payload from a message we call clean");
    }
    for (const a of postal.attachments) {
      if (a.length < 16) continue;
      tally.oracleAttachments++;
      if (result.verdict.kind === "clean" && !covered(seen, a)) tally.oracleUncovered++;
    }
  },

  /** Archive readers on mutated zips, gzips and tars: members or a reason, never an exception. */
  async archive(s, i, seed) {
    const r = inputRng(seed, i);
    const { bytes } = mutate(s.archives[Math.floor(r() * s.archives.length)]!, r);
    const kind = sniffArchive(bytes);
    if (!kind) return;
    const t0 = performance.now();
    let n = 0;
    for await (const m of readArchive(kind, bytes, "fuzz.bin", { maxFileSize: 10 * 1024 * 1024 })) {
      if ("data" in m) check(m.data.length <= 10 * 1024 * 1024, "a member past maxFileSize came out");
      if (++n > 100_000) throw new Error("endless members");
    }
    check(performance.now() - t0 < 5_000, "archive took over 5 s");
  },

  /** POP3 dot-unstuffing: the same body, end and rest however the stuffed stream is split. */
  async pop3Dot(s, i, seed) {
    const r = inputRng(seed, i);
    const body = mutate(s.messages[Math.floor(r() * s.messages.length)]!, r).bytes.subarray(0, 256 * 1024);
    // The stuffed stream itself is mutated half the time: a server's stream need not be well formed.
    const wellFormed = r() < 0.5;
    const stream = wellFormed ? stuffBody(body) : mutate(stuffBody(body), r).bytes;
    const run = (sizes: number[]) => {
      const d = new DotDecoder();
      const out: Uint8Array[] = [];
      let at = 0;
      let rest: Uint8Array | null = null;
      for (const n of sizes) {
        const step = d.push(stream.subarray(at, at + n));
        at += n;
        for (const c of step.chunks) out.push(new Uint8Array(c));
        if (step.done) { rest = concatBytes([step.rest, stream.subarray(at)]); break; }
      }
      return { body: concatBytes(out), done: rest !== null, rest: rest ?? new Uint8Array() };
    };
    const whole = run([stream.length]);
    const split = run(splits(stream.length, r));
    check(Buffer.from(whole.body).equals(Buffer.from(split.body)), "unstuffed body depends on the split");
    check(whole.done === split.done && Buffer.from(whole.rest).equals(Buffer.from(split.rest)), "terminator depends on the split");
    if (!wellFormed) return;
    // A well-formed stream gives back exactly the body (the stuffer adds a final CRLF when it lacks one).
    const got = Buffer.from(whole.body);
    check(whole.done && (got.equals(Buffer.from(body)) || got.equals(Buffer.concat([body, Buffer.from("\r\n")]))), "a well-formed stream did not give back its body");
  },

  /** Line reading (POP3 and IMAP alike): the same lines and the same errors however the bytes arrive. */
  async lines(s, i, seed) {
    const r = inputRng(seed, i);
    const bytes = mutate(s.messages[Math.floor(r() * s.messages.length)]!, r).bytes.subarray(0, 32 * 1024); // fed a turn per piece
    const max = r() < 0.3 ? 64 : 8192;
    const read = (sizes: number[]) => feed(pieces(bytes, sizes), "trickled", async (reader) => {
      const lines: string[] = [];
      for (;;) {
        try {
          lines.push(Buffer.from(await reader.readLine(max)).toString("latin1"));
        } catch (e) {
          check(e instanceof ReadError, `readLine threw ${(e as Error).name}`);
          lines.push(`<${(e as ReadError).code}>`);
          return lines.join("\n");
        }
      }
    });
    check((await read([bytes.length])) === (await read(splits(bytes.length, r))), "lines depend on the split");
  },

  /** IMAP: response segments with their literals, client command tokens, BODYSTRUCTURE s-expressions. */
  async imapWire(s, i, seed) {
    const r = inputRng(seed, i);
    const msg = s.messages[Math.floor(r() * s.messages.length)]!.subarray(0, 16 * 1024); // fed a turn per piece
    const stream = mutate(Buffer.concat([
      Buffer.from(`* 1 FETCH (UID 7 RFC822.SIZE ${msg.length} BODY[] {${msg.length}}\r\n`), msg,
      Buffer.from(` FLAGS (\\Seen))\r\n* OK [UIDVALIDITY 3] x\r\na1 OK done\r\n`),
    ]), r).bytes.subarray(0, 48 * 1024);
    const read = (sizes: number[]) => feed(pieces(stream, sizes), "trickled", async (reader) => {
      const out: string[] = [];
      try {
        for (;;) {
          const seg = await reader.readSegment(1024 * 1024);
          out.push(Buffer.from(seg.text).toString("latin1"));
          if (seg.literal) out.push(`{${Buffer.from(await reader.readBytes(Math.min(seg.literal.size, 1 << 20))).toString("latin1")}}`);
        }
      } catch (e) {
        check(e instanceof ReadError, `readSegment threw ${(e as Error).name}`);
        out.push(`<${(e as ReadError).code}>`);
      }
      return out.join("\n");
    });
    check((await read([stream.length])) === (await read(splits(stream.length, r))), "segments depend on the split");
    const command = Buffer.from(mutate(Buffer.from(`a1 UID FETCH 1:* (UID BODY.PEEK[1.2.MIME]<0.100> FLAGS) (CHANGEDSINCE 5)`), r).bytes).toString("latin1");
    try { tokenize([command]); } catch (e) { check(e instanceof ImapSyntaxError, `tokenize threw ${(e as Error).name}`); }
    const structure = Buffer.from(mutate(Buffer.from(`(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 12 1 NIL NIL NIL NIL)("application" "zip" ("name" {5}\r\na.zip) NIL NIL "base64" 400 NIL ("attachment" ("filename" "a.zip")) NIL NIL) "mixed" ("boundary" "b") NIL NIL NIL)`), r).bytes).toString("latin1");
    try { parseSexp(structure); } catch (e) { check(e instanceof SexpError, `parseSexp threw ${(e as Error).name}`); }
  },
};

/** Runs inputs [from, to) of target; a failing input is recorded with what reproduces it. */
export async function runTarget(name: string, s: Seeds, seed: number, from: number, to: number, tally: Tally, deadline = Infinity): Promise<number> {
  const target = TARGETS[name]!;
  let i = from;
  for (; i < to && performance.now() < deadline; i++) {
    tally.inputs++;
    try {
      await target(s, i, seed, tally);
    } catch (e) {
      tally.failures.push({ target: name, index: i, error: (e as Error).stack ?? String(e) });
    }
  }
  return i;
}
