// A one-line progress display on stderr for long scans: only on a TTY, redrawn with \r at most
// ten times a second, erased when done so it never mixes with the report on stdout.
import { formatBytes } from "./report.ts";

export class Progress {
  private last = -Infinity;
  private readonly t0 = performance.now();
  private shown = false;

  constructor(
    private readonly total: number | null,
    private readonly stream: { isTTY?: boolean; write(s: string): unknown } = process.stderr,
    readonly enabled: boolean = Boolean(stream.isTTY),
    private readonly intervalMs = 100,
  ) {}

  /** Cheap to call per message: draws only when the interval has passed. */
  update(bytes: number, messages: number): void {
    if (!this.enabled) return;
    const now = performance.now();
    if (now - this.last < this.intervalMs) return;
    this.last = now;
    const secs = Math.max((now - this.t0) / 1000, 0.001);
    const pct = this.total ? ` ${((bytes / this.total) * 100).toFixed(0).padStart(3)}%` : "";
    const of = this.total ? ` of ${formatBytes(this.total)}` : "";
    this.stream.write(`\r\x1b[K${formatBytes(bytes)}${of}${pct}, ${messages} messages, ${formatBytes(Math.round(bytes / secs))}/s`);
    this.shown = true;
  }

  done(): void {
    this.clear();
  }

  /** Erases the line (before a result line is printed on the same terminal); the next update redraws it. */
  clear(): void {
    if (this.shown) this.stream.write("\r\x1b[K");
    this.shown = false;
    this.last = -Infinity;
  }
}
