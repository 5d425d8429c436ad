// Streaming mbox splitter: bytes in any chunking → messages with their number, From_ line and byte
// offset. A message that fits in one chunk is a zero-copy view; only messages spanning chunks are
// joined. One bigger than the cap goes to a spill (a file the caller provides) when there is one and
// it fits there, else it is counted but not kept (reported too-large); memory stays bounded.

/** mboxrd: strip one '>' from lines matching ^>+From  (reversible). mboxo: only ^>From . none: keep bytes. */
export type MboxQuoting = "mboxrd" | "mboxo" | "none";

export interface MboxMessage {
  /** 1-based number in the file. 0 is content before the first From_ line (scanned, never skipped). */
  index: number;
  /** Byte offset of the From_ line (0 for leading content without one). */
  offset: number;
  /** The From_ line without its line ending; null for leading content. */
  fromLine: string | null;
  /** The message (From_ line removed, unquoted, mbox's separating blank line removed); null when too large. */
  bytes: Uint8Array | null;
  /** Bytes the message occupies in the file, From_ line included. */
  size: number;
  /** Over the cap: bytes is null; head holds its first bytes (for Message-ID and the like). */
  tooLarge: boolean;
  /** The first bytes of the message itself (at most HEAD_BYTES), always available. */
  head: Uint8Array;
  /** Line ending the message uses ("\r\n" or "\n"), judged from its From_ line. */
  eol: "\n" | "\r\n";
  /**
   * Over the cap but spilled: its bytes as in the file (From_ line and quoting included) went to
   * this spill; the message proper starts bodyStart bytes in (bytes is null, tooLarge false).
   */
  spilled: { to: MboxSpill; bodyStart: number } | null;
}

/** Where a message too big to keep in memory goes, as it arrives. */
export interface MboxSpill {
  write(chunk: Uint8Array): void;
  /** Takes back the last n bytes written (the start of the next From_ line, recognised late). */
  dropTail(n: number): void;
  /** The message went past maxSpilledSize too: what was written is not wanted. */
  discard(): void;
}

export interface MboxReaderOptions {
  /** Largest message kept for scanning (file bytes); bigger ones are reported tooLarge. Infinity: no cap. */
  maxMessageSize?: number;
  quoting?: MboxQuoting;
  /** Opens a spill for a message over maxMessageSize; absent: such messages are not kept. */
  spill?: () => MboxSpill;
  /** Largest message spilled (file bytes); bigger ones are reported tooLarge. */
  maxSpilledSize?: number;
}

export const HEAD_BYTES = 64 * 1024;
const PATTERN = Buffer.from("\nFrom ");
const FROM = Buffer.from("From ");
const LF = 0x0a;
const CR = 0x0d;

export class MboxSplitter {
  private readonly cap: number;
  private readonly quoting: MboxQuoting;
  /** Absolute offset of the next byte pushed. */
  private pos = 0;
  /** Length of the longest suffix of the data so far that is a prefix of "\nFrom " (a virtual "\n" precedes the file). */
  private k = 1;
  private index = 0;
  private start = 0;
  private size = 0;
  /** Pieces of the current message (views into the pushed chunks); null once it went over the cap. */
  private parts: Uint8Array[] | null = [];
  private head: Uint8Array | null = null;
  private hasFromLine = false;
  private started = false;
  private readonly openSpill: (() => MboxSpill) | null;
  private readonly spillCap: number;
  /** The current message's spill, once it went over the cap. */
  private sink: MboxSpill | null = null;

  constructor(opts: MboxReaderOptions = {}) {
    this.cap = opts.maxMessageSize ?? Infinity;
    this.quoting = opts.quoting ?? "mboxrd";
    this.openSpill = opts.spill ?? null;
    this.spillCap = opts.maxSpilledSize ?? Infinity;
  }

  /** Feeds the next chunk (kept by reference: do not reuse its memory); returns messages completed by it. */
  push(chunk: Uint8Array): MboxMessage[] {
    const out: MboxMessage[] = [];
    const buf = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    let from = 0; // bytes of chunk before `from` are already appended
    let search = 0;
    if (this.k > 0) {
      const need = PATTERN.length - this.k;
      const n = Math.min(need, buf.length);
      if (buf.compare(PATTERN, this.k, this.k + n, 0, n) === 0) {
        if (n < need) {
          this.append(buf, 0, buf.length);
          this.k += n;
          this.pos += buf.length;
          return out;
        }
        // "From " began k-1 bytes before this chunk: those bytes move to the new message.
        const carried = this.k - 1;
        this.boundary(this.pos - carried, carried, out);
        search = need;
      }
    }
    for (;;) {
      const i = buf.indexOf(PATTERN, search);
      if (i < 0) break;
      this.append(buf, from, i + 1);
      this.boundary(this.pos + i + 1, 0, out);
      from = i + 1;
      search = i + 1;
    }
    this.append(buf, from, buf.length);
    this.k = trailingMatch(buf);
    this.pos += buf.length;
    return out;
  }

  /** Ends the input; returns the last message, if any. */
  end(): MboxMessage[] {
    const out: MboxMessage[] = [];
    if (this.started && this.size > 0) out.push(this.finish());
    this.started = false;
    return out;
  }

  private append(buf: Buffer, a: number, b: number): void {
    if (b <= a) return;
    if (!this.started) {
      this.started = true;
      this.start = this.pos + a;
      this.hasFromLine = false;
    }
    this.size += b - a;
    if (this.sink) {
      if (this.size <= this.spillCap) this.sink.write(buf.subarray(a, b));
      else {
        this.sink.discard();
        this.sink = null;
      }
      return;
    }
    if (this.parts === null) return;
    this.parts.push(buf.subarray(a, b));
    if (this.size > this.cap) this.overflow();
  }

  /** Keeps the first HEAD_BYTES and drops the rest: the message will be reported, not scanned. */
  private overflow(): void {
    const first: Uint8Array[] = [];
    let n = 0;
    for (const p of this.parts!) {
      if (n >= HEAD_BYTES + 1024) break;
      first.push(p);
      n += p.length;
    }
    // An own copy (concat always copies), so the chunks behind the dropped pieces can be freed.
    this.head = Buffer.concat(first).subarray(0, HEAD_BYTES + 1024);
    if (this.openSpill && this.size <= this.spillCap) {
      this.sink = this.openSpill();
      for (const p of this.parts!) this.sink.write(p);
    }
    this.parts = null;
  }

  /** A From_ line starts at absolute offset at; `carried` of its bytes were already appended to the current message. */
  private boundary(at: number, carried: number, out: MboxMessage[]): void {
    if (this.started) {
      if (carried) this.dropTail(carried);
      if (this.size > 0) out.push(this.finish());
    }
    this.started = true;
    this.start = at;
    this.hasFromLine = true;
    this.size = 0;
    this.parts = [];
    this.head = null;
    this.sink = null;
    if (carried) {
      this.size = carried;
      this.parts.push(FROM.subarray(0, carried));
    }
  }

  private dropTail(n: number): void {
    this.size -= n;
    if (this.sink) { this.sink.dropTail(n); return; }
    if (this.parts === null) return;
    const parts = this.parts;
    while (n > 0 && parts.length) {
      const last = parts[parts.length - 1]!;
      if (last.length <= n) { parts.pop(); n -= last.length; }
      else { parts[parts.length - 1] = last.subarray(0, last.length - n); n = 0; }
    }
  }

  private finish(): MboxMessage {
    const sink = this.sink;
    const tooLarge = this.parts === null && sink === null;
    const parts = this.parts;
    const whole = parts === null ? this.head! : parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    let bodyStart = 0;
    let fromLine: string | null = null;
    let eol: "\n" | "\r\n" = "\n";
    if (this.hasFromLine) {
      let nl = whole.indexOf(LF);
      if (nl < 0) nl = whole.length;
      let lineEnd = nl;
      if (lineEnd > 0 && whole[lineEnd - 1] === CR) { lineEnd--; eol = "\r\n"; }
      fromLine = Buffer.from(whole.buffer, whole.byteOffset, Math.min(lineEnd, 1000)).toString("latin1");
      bodyStart = Math.min(nl + 1, whole.length);
    } else {
      const nl = whole.indexOf(LF);
      if (nl > 0 && whole[nl - 1] === CR) eol = "\r\n";
    }
    let body = whole.subarray(bodyStart);
    let bytes: Uint8Array | null = null;
    if (this.parts !== null) {
      body = stripSeparator(body);
      bytes = this.quoting === "none" ? body : unquote(body, this.quoting);
    }
    const msg: MboxMessage = {
      index: this.hasFromLine ? ++this.index : 0,
      offset: this.start,
      fromLine,
      bytes,
      size: this.size,
      tooLarge,
      head: (bytes ?? body).subarray(0, HEAD_BYTES),
      eol,
      spilled: sink ? { to: sink, bodyStart } : null,
    };
    this.parts = [];
    this.size = 0;
    this.head = null;
    this.sink = null;
    this.started = false;
    return msg;
  }
}

/** Longest suffix of buf that is a proper prefix of "\nFrom " (0..5). */
function trailingMatch(buf: Uint8Array): number {
  for (let len = Math.min(PATTERN.length - 1, buf.length); len > 0; len--) {
    let ok = true;
    for (let j = 0; j < len; j++) if (buf[buf.length - len + j] !== PATTERN[j]) { ok = false; break; }
    if (ok) return len;
  }
  return 0;
}

/** The blank line mbox puts between messages is not part of the message. */
export function stripSeparator(b: Uint8Array): Uint8Array {
  const n = b.length;
  if (n >= 4 && b[n - 1] === LF && b[n - 2] === CR && b[n - 3] === LF && b[n - 4] === CR) return b.subarray(0, n - 2);
  if (n >= 2 && b[n - 1] === LF && b[n - 2] === LF) return b.subarray(0, n - 1);
  return b;
}

/** Removes one '>' from quoted From lines; copies only when such a line exists. */
export function unquote(b: Uint8Array, quoting: "mboxrd" | "mboxo"): Uint8Array {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  const drops: number[] = [];
  let i = buf[0] === 0x3e ? 0 : buf.indexOf("\n>");
  while (i >= 0 && i < buf.length) {
    const gt = buf[i] === 0x3e ? i : i + 1; // position of the first '>'
    let j = gt;
    if (quoting === "mboxrd") while (buf[j] === 0x3e) j++;
    else j = gt + 1;
    if (j + 5 <= buf.length && buf.compare(FROM, 0, 5, j, j + 5) === 0) drops.push(gt);
    i = buf.indexOf("\n>", gt + 1);
  }
  if (drops.length === 0) return b;
  const out = Buffer.allocUnsafe(buf.length - drops.length);
  let w = 0;
  let r = 0;
  for (const d of drops) { w += buf.copy(out, w, r, d); r = d + 1; }
  buf.copy(out, w, r);
  return out;
}

/** Reads messages from a byte stream (e.g. Bun.file(p).stream()), one at a time, never the whole file. */
export async function* readMbox(source: AsyncIterable<Uint8Array>, opts: MboxReaderOptions = {}): AsyncGenerator<MboxMessage> {
  const s = new MboxSplitter(opts);
  for await (const chunk of source) yield* s.push(chunk);
  yield* s.end();
}

/** Reads a file in fixed 1 MB chunks (fresh buffers: messages keep views into them). */
export async function* fileChunks(path: string, chunkSize = 1 << 20): AsyncGenerator<Uint8Array> {
  const { open } = await import("node:fs/promises");
  const fh = await open(path, "r");
  try {
    for (;;) {
      const buf = Buffer.allocUnsafe(chunkSize);
      const { bytesRead } = await fh.read(buf, 0, chunkSize, null);
      if (bytesRead === 0) break;
      yield buf.subarray(0, bytesRead);
    }
  } finally {
    await fh.close();
  }
}
