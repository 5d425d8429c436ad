// The allocator setting of the long-running commands. Bun allocates with mimalloc, which by default
// hands freed pages back to the kernel (madvise) soon after a collection; the next socket chunk or
// decode buffer then faults fresh pages in, one fault per 4 KiB. A relay frees and reallocates its
// whole throughput, so on the machines we measured that page-fault time was half the proxy's CPU per
// byte (pass-through 0.56 → 0.27 s per 100 MB, scanning 1.2 → 0.35–0.7). mimalloc reads
// MIMALLOC_PURGE_DELAY only when the process starts and Bun exposes no way to change it later, so the
// process replaces itself (execve: same PID, same arguments, stdio and signals untouched) with the
// variable set to -1 — keep freed pages for reuse. The cost: resident memory stays near its peak
// instead of shrinking after a burst; the peak itself does not grow. A value the user set wins, and
// where execve is not available the command simply runs as it is.
import { dlopen, FFIType, ptr } from "bun:ffi";

const VARIABLE = "MIMALLOC_PURGE_DELAY";

/** Re-executes this process with freed memory kept for reuse, unless the variable is already set. */
export function keepFreedMemory(): void {
  if (process.env[VARIABLE] !== undefined || process.platform !== "linux") return;
  let libc: ReturnType<typeof openLibc>;
  try {
    libc = openLibc();
  } catch {
    return; // no glibc (musl, a sandbox without FFI): run with the default
  }
  // A compiled binary's argv[1] is its embedded entry point, not an argument to pass again.
  const compiled = process.argv[1]?.startsWith("/$bunfs/") ?? false;
  const argv = compiled ? [process.execPath, ...process.argv.slice(2)] : [process.execPath, ...process.execArgv, ...process.argv.slice(1)];
  const env = Object.entries({ ...process.env, [VARIABLE]: "-1" }).map(([k, v]) => `${k}=${v}`);
  const held: Buffer[] = []; // the C strings must outlive the call
  const cString = (s: string) => { const b = Buffer.from(`${s}\0`); held.push(b); return b; };
  const vector = (items: string[]) => {
    const v = new BigUint64Array(items.length + 1); // NULL-terminated array of char*
    items.forEach((s, i) => { v[i] = BigInt(ptr(cString(s))); });
    return v;
  };
  const argvVector = vector(argv);
  const envVector = vector(env);
  libc.symbols.execve(ptr(cString(process.execPath)), ptr(argvVector), ptr(envVector));
  // Only reached when execve failed: nothing changed, carry on with the default.
}

function openLibc() {
  return dlopen("libc.so.6", { execve: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 } });
}
