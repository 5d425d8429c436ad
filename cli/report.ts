// What scan-file and scan-mbox print, and the exit code. One shape for both commands, documented
// in the README: a human line per file/message, or one JSON document with --json.
import pkg from "../package.json" with { type: "json" };
import { formatBytes } from "../core/limits.ts";
import type { Finding, Verdict } from "../core/scan/verdict.ts";

export const VERSION: string = pkg.version;
export const PRODUCT = `mailsentry ${VERSION}`;

/** A mistake on the command line: printed as one line, exit 2, no stack trace. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

export const EXIT_CLEAN = 0;
export const EXIT_INFECTED = 1;
export const EXIT_ERROR = 2;

export type VerdictKind = Verdict["kind"];

/** A finding as printed in JSON: the verdict's fields flattened, plus the MIME part it belongs to. */
export interface FindingJson {
  kind: Exclude<VerdictKind, "clean">;
  name?: string;
  reason?: string;
  path?: string;
  partId: string;
  /** Which engine said it (absent: the pipeline's own limits). */
  engine?: string;
  /** What an unscanned reason rests on (a zip method, an engine's limit). */
  detail?: string;
}

export interface MessageReport {
  index: number;
  messageId: string | null;
  offset: number;
  verdict: VerdictKind;
  /** One-line description of the worst verdict (as in the human output). */
  detail: string;
  findings: FindingJson[];
  /** What --clean-to did with it: "unchanged" | "tagged" | "cleaned" | "replaced" | "copied" (omitted without --clean-to). */
  written?: string;
}

export interface FileReport {
  file: string;
  /** How the input was treated: an .eml message, any other object (archive, raw file), or an mbox. */
  kind: "message" | "object" | "mbox";
  verdict: VerdictKind;
  detail: string;
  findings: FindingJson[];
  messageId?: string | null;
  messages?: MessageReport[];
  error?: string;
  written?: string;
}

export interface Summary {
  files: number;
  /** Items scanned: files for scan-file, messages for scan-mbox. */
  scanned: number;
  clean: number;
  infected: number;
  unscanned: number;
  /** Items with something left unscanned, per reason (one item may count under several). */
  unscannedByReason: Record<string, number>;
  errors: number;
  bytes: number;
  seconds: number;
}

export interface ReportOptions {
  json: boolean;
  quiet: boolean;
  /** --unscanned=fail: an unscanned item makes the exit code 1 and is shown under --quiet. */
  unscannedFails: boolean;
}

export function findingsJson(findings: Finding[]): FindingJson[] {
  return findings.map(({ verdict: v, partId, engine }) => {
    const f: FindingJson = { kind: v.kind, partId };
    if (engine) f.engine = engine;
    if (v.kind === "infected") { f.name = v.name; f.path = v.path; }
    else if (v.kind === "unscanned") { f.reason = v.reason; f.path = v.path; if (v.detail) f.detail = v.detail; }
    else f.reason = v.reason;
    return f;
  });
}

/** Collects results, prints human lines as they come (so a long mbox shows progress), and the end. */
export class Reporter {
  readonly files: FileReport[] = [];
  readonly summary: Summary = { files: 0, scanned: 0, clean: 0, infected: 0, unscanned: 0, unscannedByReason: {}, errors: 0, bytes: 0, seconds: 0 };
  private readonly t0 = performance.now();
  private usageErrors = 0;
  /** Called before each line is printed (scan-mbox erases its progress line there). */
  beforeLine: (() => void) | null = null;
  private readonly out: (line: string) => void;

  constructor(private readonly opts: ReportOptions, out: (line: string) => void = (l) => process.stdout.write(`${l}\n`)) {
    this.out = (line) => {
      this.beforeLine?.();
      out(line);
    };
  }

  private shows(kind: VerdictKind): boolean {
    if (!this.opts.quiet) return true;
    return kind === "infected" || kind === "error" || (kind === "unscanned" && this.opts.unscannedFails);
  }

  private count(kind: VerdictKind, findings: readonly FindingJson[]): void {
    this.summary.scanned++;
    const reasons = new Set(findings.filter((f) => f.kind === "unscanned").map((f) => f.reason!));
    for (const r of reasons) this.summary.unscannedByReason[r] = (this.summary.unscannedByReason[r] ?? 0) + 1;
    if (kind === "clean") this.summary.clean++;
    else if (kind === "infected") this.summary.infected++;
    else if (kind === "unscanned") this.summary.unscanned++;
    else this.summary.errors++;
  }

  /**
   * A file-level result (scan-file), or a file that could not be read at all (either command;
   * unread). An unread file is an error but was not scanned: summary.scanned counts what was.
   */
  file(r: FileReport, bytes = 0, unread = false): void {
    this.summary.files++;
    this.summary.bytes += bytes;
    if (r.kind !== "mbox" && !unread) this.count(r.verdict, r.findings);
    else if (r.error) this.summary.errors++;
    if (!this.opts.json && r.kind !== "mbox" && this.shows(r.verdict)) this.out(`${r.file}: ${r.error ? `error: ${r.error}` : r.detail}${r.written ? ` [${r.written}]` : ""}`);
    if (!this.opts.json && r.kind === "mbox" && r.error && this.shows("error")) this.out(`${r.file}: error: ${r.error}`);
    if (this.opts.json && this.opts.quiet && r.messages) r.messages = r.messages.filter((m) => this.shows(m.verdict));
    if (!(this.opts.json && this.opts.quiet && !this.shows(r.verdict))) this.files.push(r);
  }

  /** One message of an mbox (scan-mbox); printed at once in human mode. */
  message(file: string, m: MessageReport, keep: MessageReport[]): void {
    this.count(m.verdict, m.findings);
    if (this.shows(m.verdict)) {
      if (this.opts.json) keep.push(m);
      else this.out(`${file}#${m.index} @${m.offset}${m.messageId ? ` ${m.messageId}` : ""}: ${m.detail}${m.written ? ` [${m.written}]` : ""}`);
    }
  }

  addBytes(n: number): void {
    this.summary.bytes += n;
  }

  /** A usage problem found while scanning (e.g. --clean-to unusable): counts as an error. */
  usageError(): void {
    this.usageErrors++;
  }

  exitCode(): number {
    const s = this.summary;
    if (s.errors > 0 || this.usageErrors > 0) return EXIT_ERROR;
    if (s.infected > 0 || (this.opts.unscannedFails && s.unscanned > 0)) return EXIT_INFECTED;
    return EXIT_CLEAN;
  }

  /** Prints the summary line (human) or the whole JSON document; returns the exit code. */
  finish(unit: "file" | "message"): number {
    const s = this.summary;
    s.seconds = Math.round(performance.now() - this.t0) / 1000;
    const code = this.exitCode();
    if (this.opts.json) {
      this.out(JSON.stringify({ version: VERSION, files: this.files, summary: s, exitCode: code }, null, 2));
    } else if (!this.opts.quiet) {
      const plural = (n: number, w: string) => `${n} ${w}${n === 1 ? "" : "s"}`;
      const where = unit === "message" ? `${plural(s.scanned, "message")} in ${plural(s.files, "file")}` : plural(s.files, "file");
      this.out(`scanned ${where}: ${s.clean} clean, ${s.infected} infected, ${s.unscanned} unscanned, ${plural(s.errors, "error")} (${formatBytes(s.bytes)} in ${s.seconds.toFixed(2)} s)`);
    }
    return code;
  }
}

export { formatBytes };
