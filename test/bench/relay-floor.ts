// The floor of any proxy on this machine: a relay that only moves bytes between the client and the
// server, zero-copy (splice through a pipe, one thread per direction), with no parsing, no scanning
// and no TLS of its own. Its ratio to direct shows what the extra hop alone costs when the client,
// the server and a third process share the cores; the proxy's ratio is read against it.
import type { Subprocess } from "bun";

const RELAY = String.raw`
import fcntl, os, socket, sys, threading
up = (sys.argv[1], int(sys.argv[2]))
PIPE = 1 << 20
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(128)
print(ls.getsockname()[1], flush=True)
def pump(src, dst):
    r, w = os.pipe()
    try:
        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, PIPE)
    except OSError:
        pass
    try:
        while True:
            n = os.splice(src.fileno(), w, PIPE)
            if n == 0:
                break
            while n:
                n -= os.splice(r, dst.fileno(), n)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        os.close(r)
        os.close(w)
def serve(c):
    try:
        u = socket.create_connection(up)
    except OSError:
        c.close()
        return
    for s in (c, u):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    back = threading.Thread(target=pump, args=(u, c), daemon=True)
    back.start()
    pump(c, u)
    back.join()
    c.close()
    u.close()
while True:
    c, _ = ls.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
`;

export interface Relay {
  port: number;
  stop(): Promise<void>;
}

/** A splice relay on a loopback port the system picks, to host:port. */
export async function startRelay(host: string, port: number): Promise<Relay> {
  const proc: Subprocess<"ignore", "pipe", "pipe"> = Bun.spawn(["python3", "-c", RELAY, host, String(port)], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const reader = proc.stdout.getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`relay exited before listening: ${await new Response(proc.stderr).text()}`);
    text += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  return {
    port: Number(text.trim()),
    async stop() {
      proc.kill();
      await proc.exited;
    },
  };
}
