// The control socket obeys only the user running the proxy: the state directory 0700 and the socket
// 0600 even under umask 000 in a directory that was 0755, and a command without the owner's token is
// refused (the proxy keeps running). `unload` and status, which read the token, work as before.
import { expect, test } from "bun:test";
import { mkdir, mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Control, controlPaths, sendControl } from "../../core/control.ts";

async function raw(socket: string, line: string): Promise<string> {
  const { promise, resolve, reject } = Promise.withResolvers<string>();
  let buf = "";
  await Bun.connect({
    unix: socket,
    socket: {
      open(s) { s.write(line); },
      data(_s, c) { buf += Buffer.from(c).toString(); },
      close() { resolve(buf.trim()); },
      error(_s, e) { reject(e); },
    },
  });
  return promise;
}

test("owner-only socket and directory whatever the umask; no token, no obedience", async () => {
  const root = await mkdtemp(join(tmpdir(), "mailsentry-control-"));
  const state = join(root, "state");
  await mkdir(state, { mode: 0o755 });
  const old = process.umask(0);
  let stops = 0;
  const refused: string[] = [];
  let control: Control | null = null;
  try {
    control = await Control.start(state, { stop: () => { stops++; }, reload: async () => {}, status: () => "fine", listeners: () => "[]" }, (why) => refused.push(why));
  } finally {
    process.umask(old);
  }
  try {
    const paths = controlPaths(state);
    expect((await stat(state)).mode & 0o777).toBe(0o700);
    expect((await stat(paths.socket)).mode & 0o777).toBe(0o600);
    expect((await stat(paths.token)).mode & 0o777).toBe(0o600);
    expect(await raw(paths.socket, "stop\n")).toBe("error not authorized");
    expect(await raw(paths.socket, "0000 stop\n")).toBe("error not authorized");
    expect(stops).toBe(0);
    expect(refused.length).toBe(2);
    expect(await sendControl(state, "status")).toBe("ok fine");
    expect(await sendControl(state, "stop")).toBe("ok stopping");
    expect(stops).toBe(1);
  } finally {
    await control?.close();
    await rm(root, { recursive: true, force: true });
  }
});
