// A minimal POP3 client for benchmarks: login, then RETR every message one after the other,
// recording per-message latency (RETR sent → terminating dot received). Plain TCP only.
// Chunks are kept in a list and only the seam between chunks is re-searched, so a 25 MB message
// costs the client one pass, not a quadratic series of concatenations.

export interface DownloadStats { messages: number; bytes: number; latenciesMs: number[] }

const TERMINATOR = Buffer.from("\r\n.\r\n");

interface Reply { length: number; head: string }

class ReplyReader {
  private chunks: Buffer[] = [];
  private size = 0;
  private waiter: { multi: boolean; resolve: (r: Reply) => void; reject: (e: Error) => void } | null = null;
  private closed = false;

  push(chunk: Uint8Array) { this.chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)); this.size += chunk.byteLength; this.pump(); }
  close() { this.closed = true; this.waiter?.reject(new Error("connection closed")); this.waiter = null; }

  /** The next reply (single line, or multi-line through the dot): its length and first bytes. */
  next(multi: boolean): Promise<Reply> {
    return new Promise((resolve, reject) => {
      if (this.closed) return reject(new Error("connection closed"));
      this.waiter = { multi, resolve, reject };
      this.pump();
    });
  }

  private pump() {
    const w = this.waiter;
    if (!w || this.size === 0) return;
    const first = this.chunks[0]!;
    const isErr = first[0] === 0x2d;
    const needle = !w.multi || isErr ? Buffer.from("\r\n") : TERMINATOR;
    // Only the newest chunk and the few bytes before it can hold a terminator not seen before:
    // earlier chunks were searched when they arrived (a waiter is always set before data comes).
    const tail: Buffer[] = [];
    let covered = 0;
    for (let i = this.chunks.length - 1; i >= 0 && covered < this.chunks[this.chunks.length - 1]!.length + needle.length; i--) {
      tail.unshift(this.chunks[i]!); covered += this.chunks[i]!.length;
    }
    const joined = tail.length === 1 ? tail[0]! : Buffer.concat(tail);
    const found = joined.indexOf(needle);
    if (found < 0) return;
    const end = this.size - covered + found + needle.length;
    const all = this.chunks.length === 1 ? first : Buffer.concat(this.chunks);
    const head = all.subarray(0, Math.min(end, 200)).toString("latin1");
    const rest = all.subarray(end);
    this.chunks = rest.length ? [rest] : [];
    this.size = rest.length;
    this.waiter = null;
    if (isErr) w.reject(new Error(head.trim())); else w.resolve({ length: end, head });
  }
}

export async function downloadAll(host: string, port: number, user: string, pass: string): Promise<DownloadStats> {
  const reader = new ReplyReader();
  const { promise: closed, resolve: onClose } = Promise.withResolvers<void>();
  const socket = await Bun.connect({
    hostname: host, port,
    socket: {
      data(_s, chunk) { reader.push(chunk); },
      close() { reader.close(); onClose(); },
      error() { reader.close(); },
    },
  });
  socket.setNoDelay(true);
  const cmd = (line: string, multi = false) => { socket.write(line + "\r\n"); return reader.next(multi); };

  await reader.next(false);
  await cmd(`USER ${user}`);
  await cmd(`PASS ${pass}`);
  const stat = /^\+OK (\d+)/.exec((await cmd("STAT")).head);
  if (!stat) throw new Error("unexpected STAT reply");
  const count = Number(stat[1]);
  const stats: DownloadStats = { messages: 0, bytes: 0, latenciesMs: [] };
  for (let i = 1; i <= count; i++) {
    const t0 = performance.now();
    stats.bytes += (await cmd(`RETR ${i}`, true)).length;
    stats.latenciesMs.push(performance.now() - t0);
    stats.messages++;
  }
  await cmd("QUIT");
  socket.end();
  await closed;
  return stats;
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}
