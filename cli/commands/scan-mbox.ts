// `mailsentry scan-mbox MBOX…`: streams each mbox through the splitter (never loaded whole) and
// scans message by message; --clean-to writes a cleaned mboxrd copy. The input is only ever read.
import { defineCommand } from "citty";
import { mkdir, open, stat } from "node:fs/promises";
import { basename, join } from "node:path";
import { stateDir } from "../../core/config/paths.ts";
import { spooledLimits } from "../../core/filter/scan-job.ts";
import { Spool, spoolDir } from "../../core/filter/spool.ts";
import { fileChunks, MboxSplitter, stripSeparator, unquote, type MboxMessage, type MboxQuoting, type MboxSpill } from "../../core/mbox/reader.ts";
import { MboxWriter } from "../../core/mbox/writer.ts";
import { messageId, parseMessage } from "../../core/mime/parse.ts";
import type { MimePart } from "../../core/mime/types.ts";
import { applyPolicyChunks } from "../../core/rewrite/index.ts";
import { concat } from "../../core/rewrite/splice.ts";
import { scanMessageWithChain } from "../../core/scan/chain.ts";
import { looksLikeMessage } from "../../core/scan/pipeline.ts";
import { describeVerdict, worse, type Verdict } from "../../core/scan/verdict.ts";
import { Progress } from "../progress.ts";
import { findingsJson, UsageError, type MessageReport } from "../report.ts";
import { errorText, prepareScan, scanArgs, uniqueName, writtenLabel, type ScanSetup } from "./scan-file.ts";

async function* stdinChunks(): AsyncGenerator<Uint8Array> {
  for await (const c of Bun.stdin.stream()) yield c;
}

/**
 * A message over maxMessageSize, written to a private spool file as the splitter finds it. A write
 * that fails (no room) is remembered and reported for that message; the mbox goes on.
 */
class SpoolSpill implements MboxSpill {
  spool: Spool | null = null;
  error: unknown = null;

  write(chunk: Uint8Array): void {
    if (this.error) return;
    try {
      this.spool ??= Spool.create(spoolDir(stateDir()));
      this.spool.write(chunk);
    } catch (e) {
      this.error = e;
      this.discard();
    }
  }

  dropTail(n: number): void {
    if (!this.error) this.spool?.truncate(this.spool.size - n);
  }

  discard(): void {
    this.spool?.remove();
    this.spool = null;
  }
}

/** Copies a byte range of the input verbatim (a message too large to keep in memory). */
async function copyRange(file: string, offset: number, size: number, w: MboxWriter): Promise<void> {
  const fh = await open(file, "r");
  try {
    let done = 0;
    let lastByte = -1;
    while (done < size) {
      const buf = Buffer.allocUnsafe(Math.min(1 << 20, size - done));
      const { bytesRead } = await fh.read(buf, 0, buf.length, offset + done);
      if (bytesRead === 0) break;
      await w.raw(buf.subarray(0, bytesRead));
      lastByte = buf[bytesRead - 1]!;
      done += bytesRead;
    }
    if (lastByte !== 0x0a) await w.raw(Buffer.from("\n\n"));
  } finally {
    await fh.close();
  }
}

async function scanOneMbox(file: string, s: ScanSetup, quoting: MboxQuoting, dest: string | null): Promise<void> {
  const label = file === "-" ? "(stdin)" : file;
  let total: number | null = null;
  let chunks: AsyncIterable<Uint8Array>;
  try {
    if (file === "-") chunks = stdinChunks();
    else {
      const st = await stat(file);
      if (st.isDirectory()) throw Object.assign(new Error("is a directory"), { code: "EISDIR" });
      total = st.size;
      chunks = fileChunks(file);
    }
  } catch (e) {
    s.reporter.file({ file: label, kind: "mbox", verdict: "error", detail: `error: ${errorText(e)}`, findings: [], error: errorText(e) });
    return;
  }
  const writer = dest ? await MboxWriter.create(dest) : null;
  const progress = new Progress(total);
  s.reporter.beforeLine = () => progress.clear();
  const kept: MessageReport[] = [];
  // Past maxMessageSize a message is spooled and scanned from a map, as in the proxy.
  const splitter = new MboxSplitter({ maxMessageSize: s.limits.maxMessageSize, quoting, spill: () => new SpoolSpill(), maxSpilledSize: s.limits.maxSpooledMessageSize });
  let worst: Verdict = { kind: "clean" };
  let bytes = 0;
  let count = 0;
  let failure: string | null = null;

  const handle = async (m: MboxMessage) => {
    count++;
    const rep: MessageReport = { index: m.index, messageId: null, offset: m.offset, verdict: "clean", detail: "clean", findings: [] };
    let v: Verdict;
    // The scan's own tree names the Message-ID; a message that was not parsed gets its head parsed (bounded).
    let tree: MimePart | null = null;
    const spill = m.spilled ? (m.spilled.to as SpoolSpill) : null;
    // The map's view of the message as it stands in the file (From_ line, quoting), for a verbatim copy.
    const spooled = spill?.spool ? spill.spool.map() : null;
    let bytes = m.bytes;
    if (spooled) {
      const body = stripSeparator(spooled.subarray(m.spilled!.bodyStart));
      // Unquoting copies only when the message has quoted From lines.
      bytes = quoting === "none" ? body : unquote(body, quoting);
    }
    if (spill?.error) {
      v = { kind: "error", reason: `could not be spooled for scanning: ${errorText(spill.error)}` };
      if (writer) {
        if (file === "-") rep.written = "not written (too large to keep from stdin)";
        else { await copyRange(file, m.offset, m.size, writer); rep.written = "copied unchanged"; }
      }
    } else if (bytes === null) {
      v = { kind: "unscanned", reason: "too-large", path: "" };
      rep.findings = findingsJson([{ verdict: v, partId: "" }]);
      if (writer) {
        if (file === "-") rep.written = "not written (too large to keep from stdin)";
        else { await copyRange(file, m.offset, m.size, writer); rep.written = "copied unchanged"; }
      }
    } else {
      const limits = spooled ? spooledLimits(s.limits, bytes.length) : s.limits;
      try {
        const scanned = await scanMessageWithChain(bytes, { engine: s.engine, limits }, s.chain);
        const result = scanned.result;
        tree = scanned.tree;
        v = result.verdict;
        rep.findings = findingsJson(result.findings);
        if (writer) {
          const outcome = applyPolicyChunks(bytes, tree, result, s.policy);
          if (outcome.disposition === "tempfail" || outcome.chunks === null) await writeUnchanged(writer, m, bytes, spooled);
          else await writeChanged(writer, m, outcome.chunks, spooled !== null);
          rep.written = writtenLabel(outcome);
        }
      } catch (e) {
        v = { kind: "error", reason: errorText(e) };
        if (writer) { await writeUnchanged(writer, m, bytes, spooled); rep.written = "copied unchanged"; }
      }
    }
    spill?.discard();
    rep.messageId = messageId(tree ?? parseMessage(m.head, { maxDepth: 0 }));
    rep.verdict = v.kind;
    rep.detail = describeVerdict(v);
    worst = worse(worst, v);
    s.reporter.message(label, rep, kept);
    progress.update(m.offset + m.size, count);
  };

  // Content before the first From_ line waits until it is known whether any From_ line follows: a
  // file with none is not an mbox (one message, said so, or an error), never "#0: clean".
  let leading: MboxMessage | null = null;
  let fromLines = 0;
  const take = async (m: MboxMessage) => {
    if (m.index === 0) { leading = m; return; }
    if (leading) { const l = leading; leading = null; await handle(l); }
    fromLines++;
    await handle(m);
  };
  try {
    for await (const chunk of chunks) {
      bytes += chunk.length;
      for (const m of splitter.push(chunk)) await take(m);
    }
    for (const m of splitter.end()) await take(m);
    const alone = leading as MboxMessage | null;
    if (alone && fromLines === 0) {
      const head = alone.bytes ?? alone.head;
      if (!looksLikeMessage(head)) throw new Error("not an mbox: no line starts with \"From \" and it does not look like a message");
      process.stderr.write(`mailsentry: ${label} is not an mbox (no "From " line): scanned as one message\n`);
      await handle({ ...alone, index: 1 });
    } else if (alone) await handle(alone);
  } catch (e) {
    failure = errorText(e);
  } finally {
    progress.done();
    s.reporter.beforeLine = null;
  }
  if (writer) {
    if (failure) await writer.abort();
    else await writer.close();
  }
  const verdict = failure ? "error" : worst.kind;
  s.reporter.file({
    file: label,
    kind: "mbox",
    verdict,
    detail: failure ? `error: ${failure}` : `${count} messages, worst: ${describeVerdict(worst)}`,
    findings: [],
    messages: kept,
    ...(failure ? { error: failure } : {}),
    ...(writer && !failure ? { written: dest! } : {}),
  }, bytes);
}

export default defineCommand({
  meta: { name: "scan-mbox", description: "Scan mbox files message by message (streamed); - reads stdin" },
  args: {
    mboxes: { type: "positional", description: "mbox files to scan; - reads stdin; several may be given", required: false },
    ...scanArgs,
    format: { type: "string", description: "mboxrd: unquote ^>+From ; mboxo: only ^>From ; none: keep lines as they are", default: "mboxrd", valueHint: "mboxrd|mboxo|none" },
  },
  async run({ args }) {
    const inputs = args._.map(String);
    const format = args.format as string;
    if (!["mboxrd", "mboxo", "none"].includes(format)) throw new UsageError(`--format must be mboxrd, mboxo or none (got ${JSON.stringify(format)})`);
    const s = await prepareScan(args, inputs);
    // One input: --clean-to is the output mbox. Several: a directory holding one mbox per input.
    let dests: (string | null)[] = inputs.map(() => null);
    if (s.cleanTo) {
      const cleanTo = s.cleanTo;
      try {
        if (inputs.length === 1) {
          const st = await stat(cleanTo).catch(() => null);
          if (st?.isDirectory()) dests = [join(cleanTo, inputs[0] === "-" ? "stdin.mbox" : basename(inputs[0]!))];
          else dests = [cleanTo];
        } else {
          await mkdir(cleanTo, { recursive: true });
          const used = new Set<string>();
          dests = inputs.map((f) => join(cleanTo, uniqueName(used, f === "-" ? "stdin.mbox" : basename(f))));
        }
      } catch (e) {
        throw new UsageError(`--clean-to ${cleanTo}: ${errorText(e)}`);
      }
      for (const [i, d] of dests.entries()) {
        if (d && inputs[i] !== "-" && (await sameFile(d, inputs[i]!))) throw new UsageError(`--clean-to ${d}: is the input itself`);
      }
    }
    for (const [i, f] of inputs.entries()) await scanOneMbox(f, s, format as MboxQuoting, dests[i] ?? null);
    process.exitCode = s.reporter.finish("message");
  },
});

async function sameFile(a: string, b: string): Promise<boolean> {
  const [x, y] = await Promise.all([stat(a).catch(() => null), stat(b).catch(() => null)]);
  return Boolean(x && y && x.ino === y.ino && x.dev === y.dev);
}

/** An unchanged message: a spooled one verbatim from its map (its quoting kept), else re-quoted. */
async function writeUnchanged(w: MboxWriter, m: MboxMessage, bytes: Uint8Array, spooled: Uint8Array | null): Promise<void> {
  if (!spooled) return w.add(m.fromLine, bytes, m.eol);
  await w.raw(spooled);
  if (spooled[spooled.length - 1] !== 0x0a) await w.raw(Buffer.from("\n\n"));
}

/**
 * A changed copy. For a spooled message it goes through a spool file of its own (its untouched
 * ranges are views of the map; joining them would put the whole message on the heap).
 */
async function writeChanged(w: MboxWriter, m: MboxMessage, chunks: Uint8Array[], big: boolean): Promise<void> {
  if (!big) return w.add(m.fromLine, concat(chunks), m.eol);
  const copy = Spool.create(spoolDir(stateDir()));
  try {
    for (const c of chunks) copy.write(c);
    await w.add(m.fromLine, copy.map(), m.eol);
  } finally {
    copy.remove();
  }
}
