// How many sessions the process can hold before it runs out of file descriptors. At the limit, an
// accept that fails with EMFILE leaves the connection in the kernel's queue and the listener ready,
// so the event loop spins at 100% CPU until a descriptor frees. The proxy stays below it instead:
// past the cap a new connection is answered with a temporary failure and closed at once.

/** Descriptors kept for everything but sessions: workers, signature and quarantine files, logs, DNS. */
export const RESERVED_FDS = 100;
/** Each session holds the client's socket and the server's. */
export const FDS_PER_SESSION = 2;

/** The soft RLIMIT_NOFILE of this process (Linux: /proc/self/limits); Infinity where unknown. */
export async function openFileLimit(): Promise<number> {
  try {
    const text = await Bun.file("/proc/self/limits").text();
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(text);
    if (!m || m[1] === "unlimited") return Infinity;
    return Number(m[1]);
  } catch {
    return Infinity;
  }
}

/** Sessions that fit under a descriptor limit (at least a few, so a tiny limit still serves someone). */
export function sessionCap(fdLimit: number): number {
  if (!Number.isFinite(fdLimit)) return Infinity;
  return Math.max(8, Math.floor((fdLimit - RESERVED_FDS) / FDS_PER_SESSION));
}
