// `mailsentry scan-file FILE…`: each file is scanned as a message when it looks like one, else as an
// object (archive or raw file); `-` is stdin. The input is only ever read; --clean-to writes copies.
import { defineCommand } from "citty";
import { createReadStream } from "node:fs";
import { mkdir, open, rename, stat, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { loadConfig, signaturesOrigin, signaturesProblem, type Config } from "../../core/config/index.ts";
import { stateDir } from "../../core/config/paths.ts";
import { spooledLimits } from "../../core/filter/scan-job.ts";
import { Spool, spoolDir } from "../../core/filter/spool.ts";
import { overLimit, type Limits } from "../../core/limits.ts";
import { messageId } from "../../core/mime/parse.ts";
import { applyPolicyChunks, policyFromConfig, type ActionPolicy, type RewriteDraft, type RewriteOutcome } from "../../core/rewrite/index.ts";
import type { Engine } from "../../core/scan/engine.ts";
import { describeChain, mergeFindings, scanMessageWithChain, scanWithEngines, type Chain } from "../../core/scan/chain.ts";
import { chainFromConfig } from "../../core/net/engines/index.ts";
import { looksLikeMessage, NO_ENGINE, scanObject } from "../../core/scan/pipeline.ts";
import { describeVerdict, type ScanResult } from "../../core/scan/verdict.ts";
import { findingsJson, PRODUCT, Reporter, UsageError, type FileReport } from "../report.ts";

const ACTIONS = ["ignore", "clean", "delete", "rename", "quarantine", "auto-clean"];

/** Flags shared by scan-file and scan-mbox. */
export const scanArgs = {
  json: { type: "boolean", description: "Print one JSON document (files, messages, findings, summary)" },
  quiet: { type: "boolean", alias: "q", description: "Print only infected and error lines (and unscanned with --unscanned=fail)" },
  sigs: { type: "string", description: "Signature directory (overrides the config's `signatures`)", valueHint: "dir" },
  action: { type: "string", description: `Action for --clean-to copies: ${ACTIONS.join(", ")} (default: config)`, valueHint: "action" },
  "clean-to": { type: "string", description: "Write cleaned copies there (the input is never modified)", valueHint: "path" },
  unscanned: { type: "string", description: "ok: report unscanned items, exit 0; fail: they make the exit code 1", default: "ok", valueHint: "ok|fail" },
  config: { type: "string", description: "Config file (default $XDG_CONFIG_HOME/mailsentry/config.json)", valueHint: "file" },
  clamd: { type: "string", description: "Add clamd to the engines: unix:/path or tcp:host:port (comma-separated for several)", valueHint: "addr" },
} as const;

/** --clamd ADDR[,ADDR…]: one more engine after the configured ones. */
export function withClamdFlag(config: Config, flag: string | undefined): void {
  if (flag === undefined) return;
  const addresses = flag.split(",").map((a) => a.trim()).filter(Boolean);
  if (addresses.length === 0) throw new UsageError("--clamd needs an address (unix:/path or tcp:host:port)");
  try {
    config.engines = [...config.engines, { clamd: addresses }];
    chainFromConfig(config); // the addresses are checked here
  } catch (e) {
    throw new UsageError(`--clamd: ${(e as Error).message}`);
  }
}

export interface ScanSetup {
  config: Config;
  engine: Engine;
  chain: Chain;
  limits: Limits;
  policy: ActionPolicy;
  reporter: Reporter;
  cleanTo: string | null;
  quiet: boolean;
}

type ScanFlags = { json?: boolean; quiet?: boolean; sigs?: string; action?: string; "clean-to"?: string; unscanned?: string; config?: string; clamd?: string };

/** Validates flags, loads config and signatures; everything both scan commands need. */
export async function prepareScan(args: ScanFlags, inputs: string[]): Promise<ScanSetup> {
  if (inputs.length === 0) throw new UsageError("no input given (use - for stdin)");
  if (args.unscanned !== "ok" && args.unscanned !== "fail") throw new UsageError(`--unscanned must be ok or fail (got ${JSON.stringify(args.unscanned)})`);
  if (args.action !== undefined && !ACTIONS.includes(args.action)) throw new UsageError(`--action must be one of ${ACTIONS.join(", ")} (got ${JSON.stringify(args.action)})`);
  if (args["clean-to"] === "") throw new UsageError("--clean-to needs a path");
  const loaded = await loadConfig({ file: args.config });
  const quiet = Boolean(args.quiet);
  for (const w of loaded.warnings) process.stderr.write(`mailsentry: ${w}\n`);
  const config = loaded.config;
  if (args.action) config.action = args.action as Config["action"];
  withClamdFlag(config, args.clamd);
  const chain = chainFromConfig(config);
  for (const e of chain.engines) {
    for (const c of await e.check()) {
      if (!quiet) process.stderr.write(c.ok ? `engine ${c.engine} at ${c.address}: ${c.version}${c.database ? `, database ${c.database}` : ""}\n` : `mailsentry: engine ${c.engine} at ${c.address} is not answering: ${c.error}\n`);
    }
  }
  const sigDir = args.sigs ?? config.signatures;
  const sigProblem = chain.builtin ? await signaturesProblem(sigDir, signaturesOrigin(loaded, args.sigs)) : null;
  if (sigProblem) throw new UsageError(sigProblem);
  const { BuiltinEngine } = await import("../../core/scan/engines/builtin.ts");
  const { formatLoadReport } = await import("../../core/scan/signatures/load.ts");
  // Without "builtin" in the chain the pipeline still decodes (for the other engines' sake and its limits).
  const { engine, report } = chain.builtin ? await BuiltinEngine.load(sigDir) : { engine: NO_ENGINE, report: { files: [], unsupported: [], total: 0 } };
  // Nothing configured: no line about loading nothing (noise on every scan).
  if (!quiet && sigDir !== null) for (const line of formatLoadReport(report)) process.stderr.write(`${line}\n`);
  const reporter = new Reporter({ json: Boolean(args.json), quiet, unscannedFails: args.unscanned === "fail" });
  const product = `${PRODUCT} (${describeChain(chain)})`;
  return { config, engine, chain, limits: config.limits, policy: policyFromConfig(config, product, { originalKept: "source" }), reporter, cleanTo: args["clean-to"] ?? null, quiet };
}

/** "a.eml", "a-2.eml", … so several inputs with one name do not overwrite each other. */
export function uniqueName(used: Set<string>, name: string): string {
  const dot = name.lastIndexOf(".");
  const [stem, ext] = dot > 0 ? [name.slice(0, dot), name.slice(dot)] : [name, ""];
  let candidate = name;
  for (let i = 2; used.has(candidate); i++) candidate = `${stem}-${i}${ext}`;
  used.add(candidate);
  return candidate;
}

/** How --clean-to describes what it wrote. */
export function writtenLabel(o: Pick<RewriteOutcome, "disposition" | "applied">): string {
  if (o.disposition === "tempfail") return "copied unchanged";
  return { none: "unchanged", tag: "tagged", clean: "cleaned", replace: "replaced" }[o.applied];
}

interface Input {
  data: Uint8Array;
  /** Set when the input was bigger than maxMessageSize: data is a map of this private copy. */
  spool: Spool | null;
  /** Set when reading stopped at a limit: which one (the verdict's detail). */
  overLimit: string | null;
  /** Bytes read (for an input over its limit: as far as it was read). */
  size: number;
}

/** Bytes enough to tell a message from other data (looksLikeMessage reads this much). */
const SNIFF_BYTES = 8192;

/**
 * Reads one input as a stream, whatever it is (file, FIFO, device, stdin), and stops at its limit:
 * a message up to maxSpooledMessageSize (into memory up to maxMessageSize, beyond it into a private
 * spool file that is then mapped, the proxy's rule, so a padded message is scanned here too); any
 * other object up to maxFileSize, past which the scan could only say "too large" anyway. So
 * `scan-file /dev/zero` ends after 30 MB instead of never.
 */
async function readInput(file: string, limits: Limits): Promise<Input> {
  const named = /\.eml$/i.test(file); // a file named .eml is a message, whatever its first bytes
  if (file !== "-") {
    const st = await stat(file);
    if (st.isDirectory()) throw Object.assign(new Error("is a directory"), { code: "EISDIR" });
    if (st.isFile() && st.size <= Math.min(limits.maxMessageSize, limits.maxFileSize)) {
      const fh = await open(file, "r");
      try {
        return { data: await fh.readFile(), spool: null, overLimit: null, size: st.size };
      } finally {
        await fh.close();
      }
    }
  }
  // Bun.file refuses character devices; a node stream reads files, FIFOs and devices alike.
  const chunks: AsyncIterable<Uint8Array> = file === "-" ? Bun.stdin.stream() : createReadStream(file);
  const parts: Uint8Array[] = [];
  let size = 0;
  let spool: Spool | null = null;
  let cap: { key: "maxSpooledMessageSize" | "maxFileSize"; value: number } | null = null;
  const decide = (head: Uint8Array) =>
    named || looksLikeMessage(head)
      ? { key: "maxSpooledMessageSize" as const, value: limits.maxSpooledMessageSize }
      : { key: "maxFileSize" as const, value: limits.maxFileSize };
  try {
    for await (const chunk of chunks) {
      size += chunk.length;
      // Not yet spooled here: until the first SNIFF_BYTES are in, every byte is in parts.
      if (!cap && size >= SNIFF_BYTES) cap = decide(parts.length === 0 ? chunk : Buffer.concat([...parts, chunk]));
      // Leaving the loop closes the stream: nothing past the limit is read.
      if (cap && size > cap.value) {
        spool?.remove();
        return { data: new Uint8Array(0), spool: null, overLimit: overLimit(cap.key, cap.value), size };
      }
      if (spool) spool.write(chunk);
      else if (size <= limits.maxMessageSize) parts.push(chunk);
      else {
        spool = Spool.create(spoolDir(stateDir()));
        for (const p of parts.splice(0)) spool.write(p);
        spool.write(chunk);
      }
    }
  } catch (e) {
    spool?.remove();
    throw e;
  }
  if (spool) return { data: spool.map(), spool, overLimit: null, size };
  return { data: Buffer.concat(parts), spool: null, overLimit: null, size };
}

export function errorText(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  const known: Record<string, string> = { ENOENT: "no such file", EACCES: "permission denied", EISDIR: "is a directory", EPERM: "operation not permitted" };
  return (err?.code && known[err.code]) || err?.message || String(e);
}

function fileReport(file: string, kind: FileReport["kind"], result: ScanResult): FileReport {
  return { file, kind, verdict: result.verdict.kind, detail: describeVerdict(result.verdict), findings: findingsJson(result.findings) };
}

async function scanOne(file: string, s: ScanSetup, used: Set<string>): Promise<void> {
  const label = file === "-" ? "(stdin)" : file;
  let input: Input;
  try {
    input = await readInput(file, s.limits);
  } catch (e) {
    s.reporter.file({ file: label, kind: "object", verdict: "error", detail: `error: ${errorText(e)}`, findings: [], error: errorText(e) }, 0, true);
    return;
  }
  if (input.overLimit) {
    const v = { kind: "unscanned", reason: "too-large", path: "", detail: input.overLimit } as const;
    s.reporter.file({ file: label, kind: "object", verdict: "unscanned", detail: describeVerdict(v), findings: findingsJson([{ verdict: v, partId: "" }]) }, input.size);
    return;
  }
  // A spooled input's budget is at least its size, as in the proxy: every part of it is read.
  const ctx = { engine: s.engine, limits: input.spool ? spooledLimits(s.limits, input.size) : s.limits };
  let report: FileReport;
  try {
    // A file named .eml is opened as a message by every mail client, whatever its header holds.
    if (/\.eml$/i.test(file) || looksLikeMessage(input.data)) {
      const { result, tree } = await scanMessageWithChain(input.data, ctx, s.chain);
      report = { ...fileReport(label, "message", result), messageId: messageId(tree) };
      if (s.cleanTo) {
        // The copy as pieces (views of the input and new bytes): a spooled input is never joined in memory.
        const outcome: RewriteDraft = applyPolicyChunks(input.data, tree, result, s.policy);
        const name = uniqueName(used, file === "-" ? "stdin.eml" : basename(file).replace(/(\.eml)?$/i, ".eml"));
        await writeAtomic(join(s.cleanTo, name), outcome.disposition === "tempfail" || outcome.chunks === null ? input.data : outcome.chunks, file);
        report.written = `${writtenLabel(outcome)}: ${join(s.cleanTo, name)}`;
      }
    } else {
      // clamd opens archives and files the built-in pipeline does not: it gets the object as it is.
      const [own, extra] = await Promise.all([scanObject(input.data, file === "-" ? "stdin" : basename(file), ctx), scanWithEngines(s.chain, input.data, () => false, "")]);
      const result = mergeFindings(own, extra);
      report = fileReport(label, "object", result);
      if (s.cleanTo) {
        // An archive or raw file cannot be cleaned part by part: clean ones are copied, others are not written.
        if (result.verdict.kind === "clean") {
          const name = uniqueName(used, file === "-" ? "stdin" : basename(file));
          await writeAtomic(join(s.cleanTo, name), input.data, file);
          report.written = `copied: ${join(s.cleanTo, name)}`;
        } else report.written = "not written";
      }
    }
  } catch (e) {
    report = { file: label, kind: "object", verdict: "error", detail: `error: ${errorText(e)}`, findings: [], error: errorText(e) };
  }
  input.spool?.remove();
  s.reporter.file(report, input.size);
}

/** Writes data (or its chunks, in order) beside path, then renames it into place. */
export async function writeAtomic(path: string, data: Uint8Array | readonly Uint8Array[], input?: string): Promise<void> {
  if (input && input !== "-") {
    const [a, b] = await Promise.all([stat(path).catch(() => null), stat(input).catch(() => null)]);
    if (a && b && a.ino === b.ino && a.dev === b.dev) throw new Error(`${path} is the input itself; not overwritten`);
  }
  const tmp = `${path}.${process.pid}.tmp`;
  // Owner-only, as the cleaned mbox: a copy of someone's mail is as private as the original.
  if (data instanceof Uint8Array) await writeFile(tmp, data, { mode: 0o600 });
  else {
    const fh = await open(tmp, "w", 0o600);
    try {
      for (const c of data) for (let at = 0; at < c.length;) at += (await fh.write(c, at, c.length - at)).bytesWritten;
    } finally {
      await fh.close();
    }
  }
  await rename(tmp, path);
}

export default defineCommand({
  meta: { name: "scan-file", description: "Scan .eml files or any file (zip, gz, tar, raw); - reads stdin" },
  args: { files: { type: "positional", description: "Files to scan: .eml, zip, gz, tar or raw; - reads stdin; several may be given", required: false }, ...scanArgs },
  async run({ args }) {
    const inputs = args._.map(String);
    const s = await prepareScan(args as ScanFlags, inputs);
    if (s.cleanTo) {
      const st = await stat(s.cleanTo).catch(() => null);
      if (st && !st.isDirectory()) throw new UsageError(`--clean-to ${s.cleanTo}: exists and is not a directory (scan-file writes one cleaned copy per input into a directory)`);
      try {
        await mkdir(s.cleanTo, { recursive: true });
      } catch (e) {
        throw new UsageError(`--clean-to ${s.cleanTo}: ${errorText(e)}`);
      }
    }
    const used = new Set<string>();
    for (const f of inputs) await scanOne(f, s, used);
    process.exitCode = s.reporter.finish("file");
  },
});
