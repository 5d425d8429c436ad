// The quarantine: originals of withheld messages, one <id>.eml plus <id>.json (metadata) each.
// Writes are atomic (temp file in the same directory, fsync, rename) and the .json is written last,
// so an entry exists exactly when its metadata does; a crash leaves only ignorable temp/orphan files.
// Owner-only modes: quarantined mail is still someone's private mail. An id is derived from the
// message's bytes (rewrite/quarantine-id.ts): the same message quarantined twice is one entry.
import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { chmod, link, mkdir, open, readdir, readFile, rename, stat, unlink } from "node:fs/promises";
import { join, resolve } from "node:path";
import { quarantineIdOf } from "../rewrite/quarantine-id.ts";
import type { Finding, Verdict } from "../scan/verdict.ts";

export interface QuarantineEntry {
  /** 20 hex digits of the message's SHA-256 (older entries: "20240101T100000123Z-<16 hex>"). */
  id: string;
  /** ISO 8601. */
  time: string;
  verdict: Verdict;
  /** Where the message came from, e.g. "pop3 alice@mail.example.org #3" or a file path. */
  source: string;
  size: number;
  sha256: string;
  /** From, Subject and Message-ID as the header gives them (unfolded, undecoded); absent when missing. */
  from?: string;
  subject?: string;
  messageId?: string;
  /** What the scan found (for `quarantine show`). */
  findings?: Finding[];
  /** Absolute path of the stored .eml. */
  path: string;
}

export type QuarantineErrorCode = "bad-id" | "not-found" | "exists" | "corrupt";

export class QuarantineError extends Error {
  constructor(readonly code: QuarantineErrorCode, message: string) {
    super(message);
    this.name = "QuarantineError";
  }
}

/** Also the path-traversal guard: an id is used in file names only when it matches this. */
const ID_RE = /^(?:[0-9a-f]{20}|\d{8}T\d{9}Z-[0-9a-f]{16})$/;
const TMP_PREFIX = ".tmp-";

export function isQuarantineId(id: string): boolean {
  return ID_RE.test(id);
}

function sha256(data: Uint8Array): string {
  return new Bun.CryptoHasher("sha256").update(data).digest("hex");
}

/** SHA-256 of the content, read in slices for a file. */
function digestOf(data: Uint8Array | FileBacked): string {
  const hash = new Bun.CryptoHasher("sha256");
  for (const slice of slicesOf(data)) hash.update(slice);
  return hash.digest("hex");
}

const HEAD_BYTES = 64 * 1024;

/** From, Subject and Message-ID of the header (first 64 KiB), unfolded; for listings. */
function headerFields(data: Uint8Array | FileBacked): Pick<QuarantineEntry, "from" | "subject" | "messageId"> {
  let head: Uint8Array;
  if (data instanceof Uint8Array) head = data.subarray(0, HEAD_BYTES);
  else {
    const buf = new Uint8Array(Math.min(HEAD_BYTES, data.size));
    head = buf.subarray(0, data.read(0, buf));
  }
  const text = Buffer.from(head.buffer, head.byteOffset, head.length).toString("latin1");
  const end = text.search(/\r?\n\r?\n/);
  const header = (end >= 0 ? text.slice(0, end) : text).replace(/\r?\n[ \t]+/g, " ");
  const field = (name: string) => new RegExp(`^${name}:[ \t]*(.*)$`, "im").exec(header)?.[1]?.trim().slice(0, 500);
  const out: Pick<QuarantineEntry, "from" | "subject" | "messageId"> = {};
  const from = field("From"), subject = field("Subject"), messageId = field("Message-ID");
  if (from) out.from = from;
  if (subject) out.subject = subject;
  if (messageId) out.messageId = messageId;
  return out;
}

/** A message kept in a file rather than in memory (a spooled one): read in slices, never whole. */
export interface FileBacked {
  readonly size: number;
  read(at: number, into: Uint8Array): number;
}

const SLICE = 1024 * 1024;

/** The content in slices: one view for bytes in memory, SLICE-sized reads (one buffer reused) for a file. */
function* slicesOf(data: Uint8Array | FileBacked): Generator<Uint8Array> {
  if (data instanceof Uint8Array) { yield data; return; }
  const buf = new Uint8Array(Math.min(SLICE, Math.max(1, data.size)));
  for (let at = 0; at < data.size;) {
    const n = data.read(at, buf);
    if (n === 0) throw new Error(`spooled message ended at ${at} of ${data.size} bytes`);
    yield buf.subarray(0, n);
    at += n;
  }
}

export class QuarantineStore {
  readonly dir: string;
  #ready: Promise<void> | null = null;

  constructor(dir: string) {
    this.dir = resolve(dir);
  }

  /**
   * Stores the original; resolves once both files are durable and the entry is listed. The same
   * message again is the entry already there (its time is when it was first kept).
   */
  async put(raw: Uint8Array | FileBacked, meta: { verdict: Verdict; source: string; findings?: Finding[] }): Promise<QuarantineEntry> {
    await this.#ensureDir();
    const now = new Date();
    const sha = digestOf(raw);
    const id = quarantineIdOf(sha);
    const existing = await this.#readEntry(id);
    if (existing && existing.sha256 === sha) return existing;
    const path = join(this.dir, `${id}.eml`);
    const size = raw instanceof Uint8Array ? raw.length : raw.size;
    const digest = await this.#writeAtomic(path, raw);
    const entry: QuarantineEntry = { id, time: now.toISOString(), verdict: meta.verdict, source: meta.source, size, sha256: digest, ...headerFields(raw), ...(meta.findings ? { findings: meta.findings } : {}), path };
    const { path: _omit, ...stored } = entry; // the path is derived on read, so a moved directory still works
    await this.#writeAtomic(join(this.dir, `${id}.json`), new TextEncoder().encode(`${JSON.stringify(stored, null, 2)}\n`));
    await this.#syncDir();
    return entry;
  }

  /** Every complete entry, oldest first. Temp files, orphan .eml files and unreadable metadata are skipped. */
  async list(): Promise<QuarantineEntry[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw e;
    }
    const ids = names.filter((n) => n.endsWith(".json") && isQuarantineId(n.slice(0, -5))).map((n) => n.slice(0, -5)).sort();
    const entries = await Promise.all(ids.map((id) => this.#readEntry(id)));
    return entries.filter((e): e is QuarantineEntry => e !== null).sort((a, b) => a.time.localeCompare(b.time) || a.id.localeCompare(b.id));
  }

  /** Removes an entry (metadata first, so a half-removed one is no entry); false when there is none. */
  async delete(id: string): Promise<boolean> {
    if (!isQuarantineId(id)) throw new QuarantineError("bad-id", `not a quarantine id: ${JSON.stringify(id)}`);
    try {
      await unlink(join(this.dir, `${id}.json`));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return false;
      throw e;
    }
    await unlink(join(this.dir, `${id}.eml`)).catch(() => {});
    await this.#syncDir();
    return true;
  }

  /**
   * Applies the limits, oldest first: entries older than maxAgeDays go, then the oldest until the
   * rest fit in maxSize bytes (0: no limit). Returns what was removed.
   */
  async enforce(limits: { maxAgeDays: number; maxSize: number }, now = Date.now()): Promise<QuarantineEntry[]> {
    const entries = await this.list();
    const removed: QuarantineEntry[] = [];
    let total = entries.reduce((n, e) => n + e.size, 0);
    for (const e of entries) {
      const old = limits.maxAgeDays > 0 && now - Date.parse(e.time) > limits.maxAgeDays * 86_400_000;
      const over = limits.maxSize > 0 && total > limits.maxSize;
      if (!old && !over) continue;
      if (await this.delete(e.id)) {
        removed.push(e);
        total -= e.size;
      }
    }
    return removed;
  }

  async get(id: string): Promise<{ entry: QuarantineEntry; bytes: Uint8Array } | null> {
    if (!isQuarantineId(id)) return null;
    const entry = await this.#readEntry(id);
    if (!entry) return null;
    try {
      return { entry, bytes: new Uint8Array(await readFile(entry.path)) };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw e;
    }
  }

  /**
   * Writes the original message to dest: a directory (then as <id>.eml inside it) or a file path.
   * Never overwrites: an existing file is a QuarantineError "exists". The content is checked against
   * the recorded sha256 first ("corrupt" otherwise). Returns the path written.
   */
  async restore(id: string, dest: string): Promise<string> {
    if (!isQuarantineId(id)) throw new QuarantineError("bad-id", `not a quarantine id: ${JSON.stringify(id)}`);
    const got = await this.get(id);
    if (!got) throw new QuarantineError("not-found", `no quarantine entry ${id}`);
    if (sha256(got.bytes) !== got.entry.sha256) throw new QuarantineError("corrupt", `quarantine entry ${id} does not match its checksum`);
    let target = resolve(dest);
    const st = await stat(target).catch(() => null);
    if (st?.isDirectory()) target = join(target, `${id}.eml`);
    // Write beside the target, then link(2): it fails with EEXIST instead of replacing, so a file
    // created meanwhile is never clobbered and a reader never sees half a message.
    const tmp = join(resolve(target, ".."), `${TMP_PREFIX}${randomBytes(8).toString("hex")}`);
    await writeDurable(tmp, got.bytes);
    try {
      await link(tmp, target);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "EEXIST") throw new QuarantineError("exists", `${target} already exists`);
      if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EOPNOTSUPP") throw e;
      // No hard links here (vfat, some FUSE mounts): exclusive create still never overwrites.
      await writeDurable(target, got.bytes).catch((e2) => {
        if ((e2 as NodeJS.ErrnoException).code === "EEXIST") throw new QuarantineError("exists", `${target} already exists`);
        throw e2;
      });
    } finally {
      await unlink(tmp).catch(() => {});
    }
    return target;
  }

  async #readEntry(id: string): Promise<QuarantineEntry | null> {
    try {
      const m = JSON.parse(await readFile(join(this.dir, `${id}.json`), "utf8")) as Omit<QuarantineEntry, "path">;
      if (m.id !== id || typeof m.sha256 !== "string" || typeof m.size !== "number") return null;
      return { ...m, id, path: join(this.dir, `${id}.eml`) };
    } catch {
      return null; // missing or half-written by something other than us: not an entry
    }
  }

  #ensureDir(): Promise<void> {
    this.#ready ??= (async () => {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      await chmod(this.dir, 0o700); // mkdir's mode is masked by umask and ignored for an existing dir
    })().catch((e) => {
      this.#ready = null;
      throw e;
    });
    return this.#ready;
  }

  /** Writes beside path, then renames; resolves with the content's sha256. */
  async #writeAtomic(path: string, data: Uint8Array | FileBacked): Promise<string> {
    const tmp = join(this.dir, `${TMP_PREFIX}${randomBytes(8).toString("hex")}`);
    try {
      const digest = await writeDurable(tmp, data);
      await rename(tmp, path);
      return digest;
    } catch (e) {
      await unlink(tmp).catch(() => {});
      throw e;
    }
  }

  async #syncDir(): Promise<void> {
    const h = await open(this.dir, constants.O_RDONLY).catch(() => null);
    if (!h) return;
    await h.sync().catch(() => {}); // not every filesystem can fsync a directory; the data files are synced
    await h.close();
  }
}

/** Creates path exclusively with mode 0600, writes all of data and fsyncs it; resolves with its sha256. */
async function writeDurable(path: string, data: Uint8Array | FileBacked): Promise<string> {
  const h = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  const hash = new Bun.CryptoHasher("sha256");
  try {
    for (const slice of slicesOf(data)) {
      hash.update(slice);
      let off = 0;
      while (off < slice.length) off += (await h.write(slice, off, slice.length - off)).bytesWritten;
    }
    await h.sync();
  } finally {
    await h.close();
  }
  return hash.digest("hex");
}
