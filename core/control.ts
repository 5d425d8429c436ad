// The running proxy's handles in the state directory: a pidfile and a unix control socket that
// answers "stop" and "reload" (and "status"). A pidfile whose process is gone is stale and replaced;
// a live one means another proxy runs, and a second one refuses to start.
//
// Only the user who runs the proxy may command it. The state directory is 0700 and the socket 0600
// whatever the umask; and since Bun cannot read a unix socket peer's uid (SO_PEERCRED), every
// command carries a token from an owner-only file, which only that user (or root) can read: the
// same proof of identity, and it holds even where a socket's mode is not enforced.
import { randomBytes, timingSafeEqual } from "node:crypto";
import { chmod, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { UnixSocketListener } from "bun";

export interface ControlPaths {
  pidFile: string;
  socket: string;
  /** The secret a command must start with (0600). */
  token: string;
}

export function controlPaths(stateDir: string): ControlPaths {
  return { pidFile: join(stateDir, "mailsentry.pid"), socket: join(stateDir, "control.sock"), token: join(stateDir, "control.token") };
}

function sameToken(given: string, expected: string): boolean {
  const a = Buffer.from(given), b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** The pid in the pidfile, whether it runs, or null when there is no pidfile. */
export async function readPid(stateDir: string): Promise<{ pid: number; alive: boolean } | null> {
  let text: string;
  try {
    text = await readFile(controlPaths(stateDir).pidFile, "utf8");
  } catch {
    return null;
  }
  const pid = Number(text.trim());
  if (!Number.isInteger(pid) || pid <= 0) return { pid: 0, alive: false };
  return { pid, alive: processAlive(pid) };
}

export interface ControlHandlers {
  stop(): Promise<void> | void;
  reload(): Promise<void>;
  status(): string;
  /** The bound listeners as one line of JSON (`mailsentry clients` points clients at them). */
  listeners(): string;
}

export class AlreadyRunning extends Error {
  constructor(readonly pid: number) {
    super(`another mailsentry proxy is running (pid ${pid})`);
    this.name = "AlreadyRunning";
  }
}

export class Control {
  private constructor(private readonly paths: ControlPaths, private readonly server: UnixSocketListener<{ buf: string }>) {}

  /** Writes the pidfile and opens the control socket; throws AlreadyRunning when a live proxy owns them. */
  static async start(stateDir: string, h: ControlHandlers, onRefused: (why: string) => void = () => {}): Promise<Control> {
    await mkdir(stateDir, { recursive: true, mode: 0o700 });
    await chmod(stateDir, 0o700); // mkdir's mode is masked by umask and ignored for an existing directory
    const paths = controlPaths(stateDir);
    const existing = await readPid(stateDir);
    if (existing?.alive && existing.pid !== process.pid) throw new AlreadyRunning(existing.pid);
    // Stale (or ours): clear both so the socket path can be bound again.
    await rm(paths.socket, { force: true });
    await writeFile(paths.pidFile, `${process.pid}\n`, { mode: 0o644 });
    const token = randomBytes(24).toString("hex");
    await rm(paths.token, { force: true });
    await writeFile(paths.token, token + "\n", { mode: 0o600 });
    await chmod(paths.token, 0o600);
    // The socket is created with the process umask: narrow it for the bind, so it is never reachable wider.
    const umask = process.umask(0o077);
    let server: UnixSocketListener<{ buf: string }>;
    try {
      server = Control.listen(paths.socket, token, h, onRefused);
    } finally {
      process.umask(umask);
    }
    await chmod(paths.socket, 0o600);
    return new Control(paths, server);
  }

  private static listen(socketPath: string, token: string, h: ControlHandlers, onRefused: (why: string) => void): UnixSocketListener<{ buf: string }> {
    return Bun.listen<{ buf: string }>({
      unix: socketPath,
      data: { buf: "" },
      socket: {
        open(s) { s.data = { buf: "" }; },
        data(s, chunk) {
          s.data.buf += Buffer.from(chunk).toString("utf8");
          const nl = s.data.buf.indexOf("\n");
          if (nl < 0) { if (s.data.buf.length > 1024) s.end(); return; }
          const [given = "", cmd = ""] = s.data.buf.slice(0, nl).trim().split(/\s+/);
          s.data.buf = "";
          if (!sameToken(given, token)) {
            onRefused("control command without the owner's token");
            s.write("error not authorized\n");
            s.end();
            return;
          }
          // Handlers are async and may reject: wrap, or a rejection would kill the process.
          void (async () => {
            try {
              if (cmd === "stop") { s.write("ok stopping\n"); s.flush(); s.end(); await h.stop(); }
              else if (cmd === "reload") { await h.reload(); s.write("ok reloaded\n"); s.end(); }
              else if (cmd === "status") { s.write(`ok ${h.status()}\n`); s.end(); }
              else if (cmd === "listeners") { s.write(`ok ${h.listeners()}\n`); s.end(); }
              else { s.write(`error unknown command ${JSON.stringify(cmd.slice(0, 40))}\n`); s.end(); }
            } catch (e) {
              try { s.write(`error ${(e as Error).message.replace(/\n/g, " ")}\n`); s.end(); } catch { /* gone */ }
            }
          })();
        },
        error() {},
      },
    });
  }

  /** Closes the socket and removes both files (only the pidfile if it still names this process). */
  async close(): Promise<void> {
    this.server.stop(true);
    await rm(this.paths.socket, { force: true });
    await rm(this.paths.token, { force: true });
    const pid = Number((await readFile(this.paths.pidFile, "utf8").catch(() => "")).trim());
    if (pid === process.pid) await rm(this.paths.pidFile, { force: true });
  }
}

/** Sends one command to a running proxy's control socket; resolves with its one-line answer. */
export async function sendControl(stateDir: string, command: "stop" | "reload" | "status" | "listeners", timeoutMs = 10_000): Promise<string> {
  let token: string;
  try {
    token = (await readFile(controlPaths(stateDir).token, "utf8")).trim();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(code === "EACCES" ? "the running proxy belongs to another user" : `no control token (${code ?? "unreadable"}): is the proxy running?`);
  }
  const { promise, resolve, reject } = Promise.withResolvers<string>();
  let buf = "";
  const timer = setTimeout(() => reject(new Error("no answer from the control socket")), timeoutMs);
  try {
    await Bun.connect({
      unix: controlPaths(stateDir).socket,
      socket: {
        open(s) { s.write(`${token} ${command}\n`); },
        data(_s, chunk) { buf += Buffer.from(chunk).toString("utf8"); },
        close() { resolve(buf.trim()); },
        end() { resolve(buf.trim()); },
        error(_s, e) { reject(e); },
        connectError(_s, e) { reject(e); },
      },
    });
    return await promise;
  } finally {
    clearTimeout(timer);
  }
}
