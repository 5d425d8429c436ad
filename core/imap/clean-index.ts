// The persistent set of messages scanned clean under one signature identity, so a re-sync after a
// restart does not rescan them. Holds salted hashes only (no user or mailbox names); losing entries
// is always safe (one rescan each), so reading forgives any damage and writing favours cheapness.
//
// File: one text header line "mailsentry-clean-index 1 <identity> <salt>\n", then 16-byte records
// (sha256(salt, key) prefixes), oldest first, appended in batches. It is rewritten (temp file, fsync,
// rename; mode 0600) when opened under another identity or damaged, and compacted when evictions have
// left it twice its live size. Memory: 16 bytes per entry plus an 8-byte-per-entry table.
import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { appendFile, chmod, mkdir, open, readFile, rename, unlink } from "node:fs/promises";
import { dirname } from "node:path";
import { messageKeyString, type MessageKey } from "./cache.ts";

/** A message as the index knows it; RFC822.SIZE guards against a server that reuses UIDs wrongly. */
export interface CleanKey extends MessageKey {
  size: number;
}

export const DEFAULT_CLEAN_INDEX_ENTRIES = 1_000_000;
/** A crash loses at most the entries added in this window (each then costs one rescan). */
export const CLEAN_INDEX_FLUSH_MS = 2_000;
/** Pending entries that trigger a write before the window ends, so a burst costs few large appends. */
const FLUSH_BATCH = 8_192;
const MAGIC = "mailsentry-clean-index";
const VERSION = "1";
const HEADER_MAX = 512;

export interface CleanIndexOptions {
  maxEntries?: number;
  /** How long added entries may wait before they are written (default CLEAN_INDEX_FLUSH_MS). */
  flushMs?: number;
  /** Told of a background write that failed (the entries stay pending for the next flush). */
  onError?: (e: unknown) => void;
}

export class CleanIndex {
  readonly file: string;
  readonly identity: string;
  readonly #salt: string;
  readonly #set: DigestSet;
  /** Records in the file (live or evicted) once pending ones are written: decides compaction. */
  #fileRecords: number;
  #pending: Uint8Array[] = [];
  #timer: ReturnType<typeof setTimeout> | null = null;
  /** Writes run one after another, in order. */
  #writing: Promise<void> = Promise.resolve();
  #closed = false;
  readonly #flushMs: number;
  readonly #onError: (e: unknown) => void;

  private constructor(file: string, identity: string, salt: string, set: DigestSet, opts: CleanIndexOptions) {
    this.file = file;
    this.identity = identity;
    this.#salt = salt;
    this.#set = set;
    this.#fileRecords = set.size;
    this.#flushMs = opts.flushMs ?? CLEAN_INDEX_FLUSH_MS;
    this.#onError = opts.onError ?? (() => {});
  }

  /**
   * Opens (or creates) the index in file for this identity. Entries of another identity, records
   * that cannot be read and a torn tail are dropped, and the file is rewritten. Rejects only when the
   * file cannot be read or written at all (a caller may then run without an index).
   */
  static async open(file: string, identity: string, opts: CleanIndexOptions = {}): Promise<CleanIndex> {
    if (!/^[\x21-\x7e]{1,200}$/.test(identity)) throw new TypeError(`clean index identity must be 1-200 printable characters without spaces, got ${JSON.stringify(identity)}`);
    const maxEntries = opts.maxEntries ?? DEFAULT_CLEAN_INDEX_ENTRIES;
    if (!Number.isInteger(maxEntries) || maxEntries < 1) throw new RangeError(`clean index maxEntries must be an integer >= 1, got ${maxEntries}`);
    const set = new DigestSet(maxEntries);
    await mkdir(dirname(file), { recursive: true, mode: 0o700 });
    const data = await readFile(file).catch((e: NodeJS.ErrnoException) => {
      if (e.code === "ENOENT") return null;
      throw e;
    });
    const parsed = data ? parseFile(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), identity) : null;
    // A new salt with every new file: entries of an earlier file can never match by accident.
    const salt = parsed?.salt ?? randomBytes(16).toString("hex");
    let clean = parsed !== null;
    if (parsed) {
      const recs = parsed.records;
      // A torn tail, zeroed or repeated records, or more than fit: read what can be read, rewrite the rest away.
      if (recs.length % RECORD_BYTES !== 0 || recs.length / RECORD_BYTES > maxEntries) clean = false;
      for (let off = 0; off + RECORD_BYTES <= recs.length; off += RECORD_BYTES) if (!set.add(recs, off)) clean = false;
    }
    const index = new CleanIndex(file, identity, salt, set, opts);
    if (!clean) await index.#rewrite();
    await chmod(file, 0o600); // a file created by an older run or another tool keeps its mode otherwise
    return index;
  }

  /** Entries held (at most maxEntries). */
  get size(): number {
    return this.#set.size;
  }

  has(key: CleanKey): boolean {
    return this.#set.has(this.#digest(key), 0);
  }

  /** Remembers key as clean; written within the flush window, never synchronously. */
  add(key: CleanKey): void {
    if (this.#closed) return;
    const d = this.#digest(key);
    if (!this.#set.add(d, 0)) return;
    this.#pending.push(d);
    if (this.#pending.length >= FLUSH_BATCH) this.#flushInBackground();
    else this.#timer ??= setTimeout(() => this.#flushInBackground(), this.#flushMs).unref();
  }

  /** Writes every entry added so far (appending, or compacting the file when it has grown stale). */
  flush(): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    const batch = this.#pending;
    this.#pending = [];
    const run = this.#writing.then(() => this.#write(batch));
    this.#writing = run.catch(() => {});
    return run;
  }

  /** Stops accepting entries and flushes. Close an index before opening its file again (a reload). */
  close(): Promise<void> {
    this.#closed = true;
    return this.flush();
  }

  #flushInBackground(): void {
    this.flush().catch(this.#onError);
  }

  #digest(key: CleanKey): Uint8Array {
    const text = `${this.#salt}\n${messageKeyString(key)}\n${key.size}`;
    return new Bun.CryptoHasher("sha256").update(text).digest().subarray(0, RECORD_BYTES);
  }

  async #write(batch: Uint8Array[]): Promise<void> {
    if (batch.length === 0) return;
    if (this.#fileRecords + batch.length > 2 * this.#set.size + FLUSH_BATCH) return this.#rewrite();
    try {
      await appendFile(this.file, Buffer.concat(batch), { mode: 0o600 });
      this.#fileRecords += batch.length;
    } catch (e) {
      this.#pending = batch.concat(this.#pending); // kept for the next flush
      throw e;
    }
  }

  /** Replaces the file with the header and every live entry, atomically. If it fails, entries not
   *  yet on disk stay only in memory (a rescan each after a restart); the next flush tries again. */
  async #rewrite(): Promise<void> {
    const data = Buffer.concat([Buffer.from(`${MAGIC} ${VERSION} ${this.identity} ${this.#salt}\n`, "latin1"), this.#set.records()]);
    this.#pending = []; // they are in data: appending them later would write them twice
    const tmp = `${this.file}.tmp-${randomBytes(6).toString("hex")}`;
    try {
      const h = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
      try {
        for (let off = 0; off < data.length; ) off += (await h.write(data, off, data.length - off)).bytesWritten;
        await h.sync();
      } finally {
        await h.close();
      }
      await rename(tmp, this.file);
    } catch (e) {
      await unlink(tmp).catch(() => {});
      throw e;
    }
    this.#fileRecords = this.#set.size;
  }
}

/** The salt and record bytes of a file written for identity; null when it is another identity's or unreadable. */
function parseFile(data: Uint8Array, identity: string): { salt: string; records: Uint8Array } | null {
  const nl = data.subarray(0, HEADER_MAX).indexOf(0x0a);
  if (nl < 0) return null;
  const [magic, version, id, salt, ...rest] = Buffer.from(data.buffer, data.byteOffset, nl).toString("latin1").split(" ");
  if (magic !== MAGIC || version !== VERSION || id !== identity || !/^[0-9a-f]{32}$/.test(salt ?? "") || rest.length) return null;
  return { salt, records: data.subarray(nl + 1) };
}

const RECORD_BYTES = 16;
const WORDS = RECORD_BYTES / 4;

/**
 * Insertion-ordered set of 16-byte digests, bounded: adding to a full set drops the oldest. A ring of
 * records plus an open-addressing table of ring slots (linear probing, backward-shift deletion, load
 * at most one half). A JS Set would take ~140 bytes an entry and slows to ~40 us per oldest-first delete.
 */
class DigestSet {
  size = 0;
  readonly max: number;
  #ring8 = new Uint8Array(0);
  #ring = new Uint32Array(0);
  /** Ring slot of the oldest record. */
  #head = 0;
  /** Ring slot + 1 per cell; 0 is empty. */
  #table = new Int32Array(0);
  #mask = 0;
  readonly #key8 = new Uint8Array(RECORD_BYTES);
  readonly #key = new Uint32Array(this.#key8.buffer);

  constructor(max: number) {
    this.max = max;
    this.#resize(Math.min(max, 1024));
  }

  has(bytes: Uint8Array, off: number): boolean {
    this.#key8.set(bytes.subarray(off, off + RECORD_BYTES));
    return this.#table[this.#probe()] !== 0;
  }

  /** False when already present or all zero (what a damaged file holds, never a digest in practice). */
  add(bytes: Uint8Array, off: number): boolean {
    const k = this.#key;
    this.#key8.set(bytes.subarray(off, off + RECORD_BYTES));
    if ((k[0] | k[1] | k[2] | k[3]) === 0 || this.#table[this.#probe()] !== 0) return false;
    const cap = this.#ring.length / WORDS;
    if (this.size === cap) {
      if (cap < this.max) this.#resize(Math.min(this.max, cap * 2));
      else this.#dropOldest();
    }
    const slot = (this.#head + this.size) % (this.#ring.length / WORDS);
    this.#ring.set(k, slot * WORDS);
    this.#table[this.#probe()] = slot + 1;
    this.size++;
    return true;
  }

  /** Every record, oldest first, as one new buffer. */
  records(): Uint8Array {
    const cap = this.#ring.length / WORDS;
    const first = Math.min(this.size, cap - this.#head);
    const out = new Uint8Array(this.size * RECORD_BYTES);
    out.set(this.#ring8.subarray(this.#head * RECORD_BYTES, (this.#head + first) * RECORD_BYTES));
    out.set(this.#ring8.subarray(0, (this.size - first) * RECORD_BYTES), first * RECORD_BYTES);
    return out;
  }

  /** The cell holding #key, or the empty cell where it would go. */
  #probe(): number {
    const k = this.#key, ring = this.#ring, table = this.#table, mask = this.#mask;
    for (let i = k[0] & mask; ; i = (i + 1) & mask) {
      const s = table[i];
      if (s === 0) return i;
      const o = (s - 1) * WORDS;
      if (ring[o] === k[0] && ring[o + 1] === k[1] && ring[o + 2] === k[2] && ring[o + 3] === k[3]) return i;
    }
  }

  #dropOldest(): void {
    const table = this.#table, mask = this.#mask, ring = this.#ring;
    const want = this.#head + 1;
    let i = ring[this.#head * WORDS] & mask;
    while (table[i] !== want) i = (i + 1) & mask;
    // Backward shift: pull later cells of the probe run into the hole unless their home lies after it.
    for (let j = (i + 1) & mask; table[j] !== 0; j = (j + 1) & mask) {
      const home = ring[(table[j] - 1) * WORDS] & mask;
      const stays = i <= j ? home > i && home <= j : home > i || home <= j;
      if (!stays) {
        table[i] = table[j];
        i = j;
      }
    }
    table[i] = 0;
    this.#head = (this.#head + 1) % (ring.length / WORDS);
    this.size--;
  }

  /** New arrays of cap records, holding the current ones in order from slot 0. */
  #resize(cap: number): void {
    const old = this.size ? this.records() : null;
    this.#ring8 = new Uint8Array(cap * RECORD_BYTES);
    this.#ring = new Uint32Array(this.#ring8.buffer);
    if (old) this.#ring8.set(old);
    this.#head = 0;
    let cells = 2;
    while (cells < cap * 2) cells *= 2;
    this.#table = new Int32Array(cells);
    this.#mask = cells - 1;
    const saved = this.#key.slice();
    for (let slot = 0; slot < this.size; slot++) {
      this.#key.set(this.#ring.subarray(slot * WORDS, slot * WORDS + WORDS));
      this.#table[this.#probe()] = slot + 1;
    }
    this.#key.set(saved);
  }
}
