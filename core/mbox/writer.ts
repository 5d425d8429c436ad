// Writes messages as an mboxrd file (for cleaned copies): From_ line kept, every line matching
// ^>*From  gets one more '>', a blank line after each message. Written to a temporary file and
// renamed when done, so a half-written mbox never sits at the destination.
import { open, rename, rm, type FileHandle } from "node:fs/promises";

const LF = 0x0a;

/** Adds one '>' to lines matching ^>*From  (mboxrd); copies only when such a line exists. */
export function quoteMboxrd(b: Uint8Array): Uint8Array {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  const at: number[] = [];
  let lineStart = 0;
  while (lineStart < buf.length) {
    let j = lineStart;
    while (buf[j] === 0x3e) j++;
    if (buf[j] === 0x46 && buf.toString("latin1", j, j + 5) === "From ") at.push(lineStart);
    const nl = buf.indexOf(LF, lineStart);
    if (nl < 0) break;
    lineStart = nl + 1;
  }
  if (at.length === 0) return b;
  const out = Buffer.allocUnsafe(buf.length + at.length);
  let w = 0;
  let r = 0;
  for (const p of at) {
    w += buf.copy(out, w, r, p);
    out[w++] = 0x3e;
    r = p;
  }
  buf.copy(out, w, r);
  return out;
}

/** A From_ line for a message that had none (asctime date, as mbox readers expect). */
export function defaultFromLine(date = new Date()): string {
  const d = date.toUTCString().split(" "); // "Tue, 01 Jan 2030 10:00:00 GMT"
  return `From MAILER-DAEMON ${d[0]!.slice(0, 3)} ${d[2]} ${d[1]!.replace(/^0/, " ")} ${d[4]} ${d[3]}`;
}

export class MboxWriter {
  private constructor(private readonly fh: FileHandle, private readonly tmp: string, private readonly dest: string) {}

  static async create(dest: string): Promise<MboxWriter> {
    const tmp = `${dest}.${process.pid}.tmp`;
    return new MboxWriter(await open(tmp, "w", 0o600), tmp, dest);
  }

  /** Appends one message; eol is the line ending used for the From_ line and the separator. */
  async add(fromLine: string | null, message: Uint8Array, eol: "\n" | "\r\n" = "\n"): Promise<void> {
    const body = quoteMboxrd(message);
    const endsWithEol = body.length > 0 && body[body.length - 1] === LF;
    const parts: Uint8Array[] = [Buffer.from(`${fromLine ?? defaultFromLine()}${eol}`, "latin1"), body];
    parts.push(Buffer.from(endsWithEol ? eol : eol + eol, "latin1"));
    for (const p of parts) await this.fh.write(p);
  }

  /** Appends bytes already in mbox form (a From_ line and a quoted message, copied verbatim). */
  async raw(bytes: Uint8Array): Promise<void> {
    await this.fh.write(bytes);
  }

  /** Finishes the file and moves it into place. */
  async close(): Promise<void> {
    await this.fh.close();
    await rename(this.tmp, this.dest);
  }

  /** Gives up: the destination is left untouched. */
  async abort(): Promise<void> {
    await this.fh.close().catch(() => {});
    await rm(this.tmp, { force: true });
  }
}
