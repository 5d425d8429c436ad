// Messages too big to hold in memory (over maxMessageSize): written to a private file as they
// arrive, scanned from a memory map on a scan worker, and read back in slices to be delivered. The
// map's pages are the file's, which the kernel can drop and reread at will, so a 1 GB message costs
// page cache, not heap. Files live in a 0700 directory, each 0600 and created exclusively; one is
// removed once its message is done. Each process has a directory of its own, so what a process
// that died mid-message left behind is told apart and removed when the proxy starts.
import { chmodSync, closeSync, fstatSync, ftruncateSync, mkdirSync, openSync, readdirSync, readSync, rmSync, unlinkSync, writeSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { join } from "node:path";

const PREFIX = "msg-";

/** This process's spool directory: <state>/spool/<pid>. */
export function spoolDir(stateDir: string): string {
  return join(stateDir, "spool", String(process.pid));
}

/** Made private at every level (mkdir's mode is masked by the umask and ignored for existing ones). */
function ensureDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(join(dir, ".."), 0o700);
  chmodSync(dir, 0o700);
}

/** Removes the spool directories of processes that are gone (they stopped mid-message); returns how many. */
export function clearStaleSpools(stateDir: string): number {
  const root = join(stateDir, "spool");
  let names: string[];
  try {
    names = readdirSync(root);
  } catch {
    return 0;
  }
  let n = 0;
  for (const name of names) {
    if (!/^\d+$/.test(name) || alive(Number(name))) continue;
    rmSync(join(root, name), { recursive: true, force: true });
    n++;
  }
  return n;
}

function alive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"; // someone else's process: not ours to judge
  }
}

/** One spooled message: written once from start to end, then read (mapped, or in slices) any number of times. */
export class Spool {
  private fd: number | null;
  private removed = false;

  private constructor(readonly path: string, fd: number, public size: number) {
    this.fd = fd;
  }

  /** A new empty spool file in dir. */
  static create(dir: string): Spool {
    ensureDir(dir);
    const path = join(dir, `${PREFIX}${randomBytes(9).toString("hex")}`);
    return new Spool(path, openSync(path, "wx+", 0o600), 0);
  }

  /** A complete file another thread wrote (a scan worker's cleaned copy), now owned by the caller. */
  static adopt(path: string): Spool {
    const fd = openSync(path, "r");
    return new Spool(path, fd, fstatSync(fd).size);
  }

  /** The output file beside this one (a worker writes a changed copy there). */
  get outPath(): string {
    return `${this.path}.out`;
  }

  /** Appends; throws on a full disk (ENOSPC): the caller answers a temporary failure. */
  write(chunk: Uint8Array): void {
    let at = 0;
    while (at < chunk.length) at += writeSync(this.fd!, chunk, at, chunk.length - at, this.size + at);
    this.size += chunk.length;
  }

  /** Cuts the file to size bytes (before it is mapped: a map of a shrunk file faults). */
  truncate(size: number): void {
    ftruncateSync(this.fd!, size);
    this.size = size;
  }

  /** Fills into from offset at; returns the bytes read (less only at the end of the file). */
  read(at: number, into: Uint8Array): number {
    let n = 0;
    while (n < into.length) {
      const got = readSync(this.fd!, into, n, into.length - n, at + n);
      if (got === 0) break;
      n += got;
    }
    return n;
  }

  /** The whole file as a memory map (read only in practice: nobody writes a finished spool). */
  map(): Uint8Array {
    return this.size === 0 ? new Uint8Array(0) : Bun.mmap(this.path, { shared: false });
  }

  /** Closes and deletes the file (a live map keeps its pages until it is collected); harmless twice. */
  remove(): void {
    if (this.removed) return;
    this.removed = true;
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
    try {
      unlinkSync(this.path);
    } catch { /* already gone */ }
  }
}
