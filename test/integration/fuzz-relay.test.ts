// The relay's invariant under a fuzzing upstream: a client never receives a complete-looking
// message (a reply ending in the terminating dot) that the server did not complete. The scripted
// server answers each RETR by plan: the whole message, a cut-off prefix, a prefix with junk after it,
// or a mutated body, then goes on or hangs up. Whether the server completed a reply is judged from
// its own bytes with a regex, independently of the proxy's dot scanner.
import { describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import { mockStuff } from "../helpers/mock-pop3.ts";
import { startProxy, TestClient } from "../helpers/proxy.ts";
import { inputRng, mutate } from "../fuzz/mutate.ts";
import { seeds } from "../fuzz/targets.ts";

const SESSIONS = 60;
const RETRS = 3;
const s = await seeds();
const messages = s.messages.filter((m) => m.length < 200_000);

/** True when a POP3 multi-line reply (after its status line) holds its terminating line. */
const completes = (body: string) => /(^|\n)\.\r?\n/.test(body);

interface Sent { completed: boolean }

async function fuzzingServer(seed: number) {
  const sent = new Map<string, Sent>(); // "session:retr" → what the server sent
  let sessions = 0;
  const server = Bun.listen<{ id: number; buf: string; retrs: number }>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(sock) {
        sock.data = { id: sessions++, buf: "", retrs: 0 };
        sock.write("+OK fuzz ready\r\n");
      },
      data(sock, chunk) {
        sock.data.buf += Buffer.from(chunk).toString("latin1");
        for (let nl = sock.data.buf.indexOf("\r\n"); nl >= 0; nl = sock.data.buf.indexOf("\r\n")) {
          const line = sock.data.buf.slice(0, nl);
          sock.data.buf = sock.data.buf.slice(nl + 2);
          answer(sock, line);
        }
      },
    },
  });
  const answer = (sock: Socket<{ id: number; buf: string; retrs: number }>, line: string) => {
    const verb = line.split(" ")[0]!.toUpperCase();
    if (verb === "CAPA") return void sock.write("+OK\r\nUSER\r\n.\r\n");
    if (verb === "USER" || verb === "PASS" || verb === "NOOP") return void sock.write("+OK\r\n");
    if (verb === "QUIT") { sock.write("+OK bye\r\n"); return void sock.end(); }
    if (verb !== "RETR") return void sock.write("-ERR no\r\n");
    const k = sock.data.retrs++;
    const r = inputRng(seed, sock.data.id * 16 + k);
    const msg = messages[Math.floor(r() * messages.length)]!;
    const stuffed = Buffer.from(mockStuff(msg)); // body + ".\r\n"
    const plan = Math.floor(r() * 4);
    let body: Buffer;
    let hangUp = false;
    if (plan === 0) body = stuffed;
    else if (plan === 1) { body = stuffed.subarray(0, Math.floor(r() * stuffed.length)); hangUp = true; }
    else if (plan === 2) { body = Buffer.concat([stuffed.subarray(0, Math.floor(r() * stuffed.length)), Buffer.from(mutate(Buffer.from("junk .\r\n. \r\n..\r\n"), r).bytes)]); hangUp = true; }
    else body = Buffer.concat([Buffer.from(mutate(msg, r).bytes), Buffer.from("\r\n.\r\n")]);
    sent.set(`${sock.data.id}:${k}`, { completed: completes(body.toString("latin1")) });
    sock.write(Buffer.concat([Buffer.from(`+OK ${msg.length} octets\r\n`), body]));
    if (hangUp) setTimeout(() => sock.end(), 10);
  };
  return { port: server.port, sent, stop: () => server.stop(true) };
}

describe("relay invariant under a fuzzing upstream", () => {
  test(`${SESSIONS} sessions of ${RETRS} RETRs: no complete-looking message the server did not complete`, async () => {
    const upstream = await fuzzingServer(99);
    await using proxy = await startProxy({ allowedUpstreamPorts: [upstream.port], upstreamTls: "off", limits: { upstreamReadTimeout: 2_000 } });
    const violations: string[] = [];
    let complete = 0;
    let cut = 0;
    try {
      for (let id = 0; id < SESSIONS; id++) {
        const c = await TestClient.connect(proxy.ports.pop3);
        try {
          await c.line();
          c.send(`USER fuzz/127.0.0.1:${upstream.port}`);
          await c.line();
          c.send("PASS x");
          if (!(await c.line()).startsWith("+OK")) continue;
          for (let k = 0; k < RETRS; k++) {
            c.send(`RETR ${k + 1}`);
            let status: string;
            try { status = await c.line(); } catch { cut++; break; }
            if (!status.startsWith("+OK")) continue; // refused (tempfail, too large): nothing delivered
            let got = false;
            try {
              for (;;) if ((await c.line()) === ".") { got = true; break; }
            } catch { /* closed before the dot */ }
            if (!got) { cut++; break; }
            complete++;
            if (!upstream.sent.get(`${id}:${k}`)?.completed) violations.push(`session ${id} RETR ${k + 1}: complete at the client, not at the server`);
          }
        } finally {
          await c[Symbol.asyncDispose]();
        }
      }
    } finally {
      upstream.stop();
    }
    expect(violations).toEqual([]);
    // The plans mix both outcomes: the run checked something either way.
    expect(complete).toBeGreaterThan(10);
    expect(cut).toBeGreaterThan(10);
  }, 120_000);
});
