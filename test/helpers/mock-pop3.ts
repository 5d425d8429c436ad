// A scripted POP3 server for tests: a small mailbox, USER/PASS and AUTH PLAIN, STLS or implicit TLS,
// and faults a real server will not produce on demand (cut mid-message, stall, huge lines, garbage).
// Its dot-stuffing is written independently of core/pop3/dot.ts so the two check each other.
import type { Socket, TCPSocketListener } from "bun";

export interface MockFaults {
  /** RETR of this message number sends only the first cutAfter bytes of its body, then closes. */
  cutRetr?: { msg: number; cutAfter: number };
  /** LIST or UIDL without argument sends this many bytes of its listing (status line included), then closes. */
  cutListing?: number;
  /** RETR of this message number sends its status line and then nothing more. */
  stallRetr?: number;
  /** Every reply line is replaced by this (garbage). */
  garbageAfterLogin?: string;
  /** The greeting (default "+OK mock ready <1.2@mock>"); null: accept and say nothing. */
  greeting?: string | null;
  /** Answer nothing to USER/PASS/AUTH, one byte of a reply every this many ms (a server stalling the login). */
  stallLogin?: number;
  /** After answering NOOP, this text follows: in the same write ("now") or 100 ms later ("later"), answering nothing. */
  unsolicited?: { text: string; when: "now" | "later" };
  /** A failed login is answered with the password (and the SASL response) echoed in the -ERR text. */
  echoPassword?: boolean;
  /** A status line of this many bytes for STAT. */
  hugeStatLine?: number;
}

export interface MockOptions {
  messages?: (string | Uint8Array)[];
  users?: Record<string, string>;
  /** CAPA lines (default USER, TOP, UIDL, PIPELINING, SASL PLAIN; STLS added when tls is set). */
  capa?: string[];
  tls?: { cert: string; key: string };
  /** Implicit TLS from the first byte (POP3S). */
  implicitTls?: boolean;
  faults?: MockFaults;
}

export interface MockPop3 {
  host: string;
  port: number;
  /** Every command line received, in order, per connection ("PASS secret" included: it is a mock). */
  commands: string[][];
  /** Messages deleted and committed by QUIT. */
  deleted: number[];
  /** Bytes written but not yet taken by the kernel (a reader that stopped reading makes this grow). */
  backlog(): number;
  stop(): void;
  [Symbol.asyncDispose](): Promise<void>;
}

const enc = new TextEncoder();

/** Independent stuffing: "." doubled at each line start, CRLF ensured, terminator appended. */
export function mockStuff(body: Uint8Array): Uint8Array {
  const text = Buffer.from(body).toString("latin1");
  const withEnd = text.endsWith("\r\n") ? text : text + "\r\n";
  const lines = withEnd.slice(0, -2).split("\r\n").map((l) => (l.startsWith(".") ? "." + l : l));
  return Buffer.from(lines.join("\r\n") + "\r\n.\r\n", "latin1");
}

interface Conn {
  buf: string;
  state: "auth" | "tx";
  user: string | null;
  index: number;
  deleted: Set<number>;
  upgraded: boolean;
  sasl: boolean;
}

export async function startMockPop3(o: MockOptions = {}): Promise<MockPop3> {
  const messages = (o.messages ?? []).map((m) => (typeof m === "string" ? enc.encode(m) : m));
  const users = o.users ?? { alice: "secret" };
  const capa = o.capa ?? ["USER", "TOP", "UIDL", "PIPELINING", "SASL PLAIN"];
  const faults = o.faults ?? {};
  const commands: string[][] = [];
  const deleted: number[] = [];
  let nextIndex = 0;

  // Per-socket queue of bytes the kernel did not take yet; drain sends more. Later writes queue
  // behind earlier ones, so replies never overtake a large message still on its way out.
  const pendingWrites = new Map<Socket<Conn>, Uint8Array[]>();
  const write = (s: Socket<Conn>, data: string | Uint8Array) => {
    const bytes = typeof data === "string" ? Buffer.from(data, "latin1") : data;
    const q = pendingWrites.get(s);
    if (q && q.length) { q.push(bytes); return; }
    const n = Math.max(s.write(bytes), 0);
    if (n < bytes.length) pendingWrites.set(s, [bytes.subarray(n)]);
  };
  const flush = (s: Socket<Conn>) => {
    const q = pendingWrites.get(s);
    while (q && q.length) {
      const head = q[0]!;
      const n = s.write(head);
      if (n < head.length) { q[0] = head.subarray(Math.max(n, 0)); return; }
      q.shift();
    }
  };
  const backlog = () => {
    let n = 0;
    for (const q of pendingWrites.values()) for (const b of q) n += b.length;
    return n;
  };

  const reply = (s: Socket<Conn>, line: string) => {
    if (s.data.state === "tx" && faults.garbageAfterLogin) return write(s, faults.garbageAfterLogin + "\r\n");
    write(s, line + "\r\n");
  };

  /** Sends a reply one byte per interval, never its line end: each byte resets a reader's idle timer. */
  const trickle = (s: Socket<Conn>, text: string, every: number) => {
    let i = 0;
    const t = setInterval(() => {
      write(s, text[i++ % text.length]!);
    }, every);
    trickles.add(t);
  };
  const trickles = new Set<ReturnType<typeof setInterval>>();

  const live = (c: Conn) => messages.map((m, i) => ({ n: i + 1, m })).filter(({ n }) => !c.deleted.has(n));

  const handleLine = (s: Socket<Conn>, line: string) => {
    const c = s.data;
    commands[c.index]!.push(line);
    if (c.sasl) {
      c.sasl = false;
      return authPlain(s, line);
    }
    const [verbRaw = "", ...rest] = line.split(" ");
    const verb = verbRaw.toUpperCase();
    const arg = rest.join(" ");
    switch (verb) {
      case "CAPA": {
        const lines = [...capa, ...(o.tls && !c.upgraded && !o.implicitTls ? ["STLS"] : [])];
        return write(s, `+OK\r\n${lines.map((l) => l + "\r\n").join("")}.\r\n`);
      }
      case "STLS": {
        if (!o.tls || c.upgraded) return reply(s, "-ERR no");
        write(s, "+OK begin TLS\r\n");
        c.upgraded = true;
        c.buf = "";
        const [, tls] = s.upgradeTLS<Conn>({ data: c, tls: o.tls, socket: handlers });
        tlsSockets.add(tls);
        return;
      }
      case "USER":
        if (faults.stallLogin) return trickle(s, "+OK", faults.stallLogin);
        c.user = arg;
        return reply(s, "+OK");
      case "PASS":
        if (c.user !== null && users[c.user] === arg) { c.state = "tx"; return reply(s, `+OK Logged in as ${c.user}.`); }
        return reply(s, faults.echoPassword ? `-ERR [AUTH] wrong password: ${arg}` : "-ERR [AUTH] Authentication failed.");
      case "AUTH":
        if (faults.stallLogin) return trickle(s, "+OK", faults.stallLogin);
        if (rest[0]?.toUpperCase() !== "PLAIN") return reply(s, "-ERR unsupported");
        if (rest[1]) return authPlain(s, rest[1]);
        c.sasl = true;
        return write(s, "+ \r\n");
      case "QUIT":
        if (c.state === "tx") deleted.push(...c.deleted);
        write(s, "+OK Bye\r\n");
        flush(s);
        s.end();
        return;
    }
    if (c.state !== "tx") return reply(s, "-ERR not logged in");
    const n = Number(rest[0]);
    const msg = Number.isInteger(n) && n >= 1 && n <= messages.length && !c.deleted.has(n) ? messages[n - 1]! : null;
    switch (verb) {
      case "STAT": {
        if (faults.hugeStatLine) return write(s, "+OK " + "9".repeat(faults.hugeStatLine) + "\r\n");
        const l = live(c);
        return reply(s, `+OK ${l.length} ${l.reduce((a, { m }) => a + m.length, 0)}`);
      }
      case "LIST":
      case "UIDL":
        if (arg) return msg ? reply(s, `+OK ${n} ${verb === "LIST" ? msg.length : "uid" + n}`) : reply(s, "-ERR no such message");
        if (faults.garbageAfterLogin) return reply(s, "");
        {
          const listing = `+OK\r\n${live(c).map(({ n, m }) => `${n} ${verb === "LIST" ? m.length : "uid" + n}\r\n`).join("")}.\r\n`;
          if (faults.cutListing === undefined) return write(s, listing);
          write(s, listing.slice(0, faults.cutListing));
          return void setTimeout(() => s.end(), 20);
        }
      case "RETR": {
        if (!msg) return reply(s, "-ERR no such message");
        if (faults.garbageAfterLogin) return reply(s, "");
        if (faults.stallRetr === n) return write(s, `+OK ${msg.length} octets\r\n`);
        const body = mockStuff(msg);
        if (faults.cutRetr?.msg === n) {
          write(s, Buffer.concat([Buffer.from(`+OK ${msg.length} octets\r\n`), body.subarray(0, faults.cutRetr.cutAfter)]));
          flush(s);
          s.end();
          return;
        }
        return write(s, Buffer.concat([Buffer.from(`+OK ${msg.length} octets\r\n`), body]));
      }
      case "TOP": {
        if (!msg) return reply(s, "-ERR no such message");
        const lines = Number(rest[1] ?? 0);
        const text = Buffer.from(msg).toString("latin1");
        const split = text.indexOf("\r\n\r\n");
        const head = split < 0 ? text : text.slice(0, split + 4);
        const bodyLines = split < 0 ? [] : text.slice(split + 4).split("\r\n").slice(0, lines);
        const out = head + (bodyLines.length ? bodyLines.join("\r\n") + "\r\n" : "");
        return write(s, Buffer.concat([Buffer.from("+OK\r\n"), mockStuff(Buffer.from(out, "latin1"))]));
      }
      case "DELE":
        if (!msg) return reply(s, "-ERR no such message");
        c.deleted.add(n);
        return reply(s, `+OK message ${n} deleted`);
      case "NOOP":
        if (faults.unsolicited?.when === "now") return write(s, "+OK\r\n" + faults.unsolicited.text);
        if (faults.unsolicited) setTimeout(() => write(s, faults.unsolicited!.text), 100);
        return reply(s, "+OK");
      case "RSET":
        c.deleted.clear();
        return reply(s, "+OK");
      default:
        return reply(s, "-ERR unknown command");
    }
  };

  const authPlain = (s: Socket<Conn>, b64: string) => {
    const [, user = "", pass = ""] = Buffer.from(b64, "base64").toString("latin1").split("\0");
    if (users[user] === pass) {
      s.data.user = user;
      s.data.state = "tx";
      return reply(s, `+OK Logged in as ${user}.`);
    }
    return reply(s, faults.echoPassword ? `-ERR [AUTH] no such login ${b64} (${user}:${pass})` : "-ERR [AUTH] Authentication failed.");
  };

  const handlers = {
    data(s: Socket<Conn>, chunk: Uint8Array) {
      const c = s.data;
      // After STLS the plain socket's handler sees ciphertext: only the TLS socket counts.
      if (c.upgraded && !o.implicitTls && !tlsSockets.has(s)) return;
      c.buf += Buffer.from(chunk).toString("latin1");
      let nl: number;
      while ((nl = c.buf.indexOf("\r\n")) >= 0) {
        const line = c.buf.slice(0, nl);
        c.buf = c.buf.slice(nl + 2);
        handleLine(s, line);
        if (c.upgraded && !tlsSockets.has(s) && !o.implicitTls) return; // bytes after STLS are dropped
      }
    },
    open(s: Socket<Conn>) {
      if (s.data && s.data.upgraded) return;
      const c: Conn = { buf: "", state: "auth", user: null, index: nextIndex++, deleted: new Set(), upgraded: false, sasl: false };
      s.data = c;
      commands[c.index] = [];
      if (faults.greeting !== null) write(s, (faults.greeting ?? "+OK mock ready <1.2@mock>") + "\r\n");
    },
    drain(s: Socket<Conn>) { flush(s); },
    close() {},
    error() {},
  };
  const tlsSockets = new WeakSet<Socket<Conn>>();

  const server: TCPSocketListener<Conn> = Bun.listen<Conn>({
    hostname: "127.0.0.1",
    port: 0,
    tls: o.implicitTls ? o.tls : undefined,
    socket: handlers,
  });
  return {
    host: "127.0.0.1",
    port: server.port,
    commands,
    deleted,
    backlog,
    stop: () => { for (const t of trickles) clearInterval(t); server.stop(true); },
    [Symbol.asyncDispose]: async () => { for (const t of trickles) clearInterval(t); server.stop(true); },
  };
}

/**
 * A listener that never accepts (Python: Bun accepts every connection itself), its one-slot accept
 * backlog filled, so a further connect to it gets no answer at all: the connect-timeout case.
 */
export async function startUnresponsive(): Promise<{ host: string; port: number; [Symbol.asyncDispose](): Promise<void> }> {
  const py = Bun.which("python3");
  if (!py) throw new Error("python3 is needed for the unresponsive listener");
  const proc = Bun.spawn([py, "-c", "import socket,sys\ns=socket.socket()\ns.bind(('127.0.0.1',0))\ns.listen(0)\nprint(s.getsockname()[1],flush=True)\nsys.stdin.read()"], { stdin: "pipe", stdout: "pipe" });
  const { value } = await (proc.stdout as ReadableStream<Uint8Array>).getReader().read();
  const port = Number(new TextDecoder().decode(value).trim());
  // listen(0) queues one connection; this one takes the slot, so the next SYN is dropped.
  const filler = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } });
  return {
    host: "127.0.0.1",
    port,
    async [Symbol.asyncDispose]() {
      filler.terminate();
      proc.kill();
      await proc.exited;
    },
  };
}
