// The running proxy's handles in the state directory: a pidfile and a unix control socket that
// answers "stop" and "reload" (and "status"). A pidfile whose process is gone is stale and replaced;
// a live one means another proxy runs, and a second one refuses to start.
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { UnixSocketListener } from "bun";

export interface ControlPaths {
  pidFile: string;
  socket: string;
}

export function controlPaths(stateDir: string): ControlPaths {
  return { pidFile: join(stateDir, "mailsentry.pid"), socket: join(stateDir, "control.sock") };
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
  static async start(stateDir: string, h: ControlHandlers): Promise<Control> {
    await mkdir(stateDir, { recursive: true, mode: 0o700 });
    const paths = controlPaths(stateDir);
    const existing = await readPid(stateDir);
    if (existing?.alive && existing.pid !== process.pid) throw new AlreadyRunning(existing.pid);
    // Stale (or ours): clear both so the socket path can be bound again.
    await rm(paths.socket, { force: true });
    await writeFile(paths.pidFile, `${process.pid}\n`, { mode: 0o644 });
    const server = Bun.listen<{ buf: string }>({
      unix: paths.socket,
      data: { buf: "" },
      socket: {
        open(s) { s.data = { buf: "" }; },
        data(s, chunk) {
          s.data.buf += Buffer.from(chunk).toString("utf8");
          const nl = s.data.buf.indexOf("\n");
          if (nl < 0) { if (s.data.buf.length > 1024) s.end(); return; }
          const cmd = s.data.buf.slice(0, nl).trim();
          s.data.buf = "";
          // Handlers are async and may reject: wrap, or a rejection would kill the process.
          void (async () => {
            try {
              if (cmd === "stop") { s.write("ok stopping\n"); s.flush(); s.end(); await h.stop(); }
              else if (cmd === "reload") { await h.reload(); s.write("ok reloaded\n"); s.end(); }
              else if (cmd === "status") { s.write(`ok ${h.status()}\n`); s.end(); }
              else { s.write(`error unknown command ${JSON.stringify(cmd.slice(0, 40))}\n`); s.end(); }
            } catch (e) {
              try { s.write(`error ${(e as Error).message.replace(/\n/g, " ")}\n`); s.end(); } catch { /* gone */ }
            }
          })();
        },
        error() {},
      },
    });
    return new Control(paths, server);
  }

  /** Closes the socket and removes both files (only the pidfile if it still names this process). */
  async close(): Promise<void> {
    this.server.stop(true);
    await rm(this.paths.socket, { force: true });
    const pid = Number((await readFile(this.paths.pidFile, "utf8").catch(() => "")).trim());
    if (pid === process.pid) await rm(this.paths.pidFile, { force: true });
  }
}

/** Sends one command to a running proxy's control socket; resolves with its one-line answer. */
export async function sendControl(stateDir: string, command: "stop" | "reload" | "status", timeoutMs = 10_000): Promise<string> {
  const { promise, resolve, reject } = Promise.withResolvers<string>();
  let buf = "";
  const timer = setTimeout(() => reject(new Error("no answer from the control socket")), timeoutMs);
  try {
    await Bun.connect({
      unix: controlPaths(stateDir).socket,
      socket: {
        open(s) { s.write(`${command}\n`); },
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
