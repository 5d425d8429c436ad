// The real-Dovecot environment the proxy's e2e tests stand on: it starts, serves seeded mail over
// POP3, STLS and POP3S to real clients (python3 poplib, curl), and the bytes are the seeded ones.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { have } from "../helpers/clients.ts";
import { startDovecot, type Dovecot } from "../helpers/dovecot.ts";

const enc = new TextEncoder();

const messages = [
  enc.encode("From: a@example.test\r\nTo: alice@example.test\r\nSubject: one\r\n\r\nfirst body\r\n"),
  // A line starting with "." must survive dot-stuffing both ways.
  enc.encode("From: b@example.test\r\nSubject: two\r\n\r\n.leading dot\r\n..two dots\r\nlast\r\n"),
];

const POPLIB = `
import base64, json, poplib, ssl, sys
mode, port, user, pw, cafile = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
ctx = ssl.create_default_context(cafile=cafile)
p = poplib.POP3_SSL("127.0.0.1", port, context=ctx) if mode == "pop3s" else poplib.POP3("127.0.0.1", port)
if mode == "stls":
    p.stls(ctx)
p.user(user); p.pass_(pw)
n = p.stat()[0]
out = [base64.b64encode(b"\\r\\n".join(p.retr(i)[1]) + b"\\r\\n").decode() for i in range(1, n + 1)]
p.quit()
print(json.dumps(out))
`;

async function run(cmd: string[]): Promise<{ code: number; out: Uint8Array; err: string }> {
  const proc = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).bytes(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { code, out, err };
}

describe.skipIf(!have("dovecot"))("private Dovecot", () => {
  let dc: Dovecot;
  let startMs = 0;

  beforeAll(async () => {
    const t = performance.now();
    dc = await startDovecot({ users: [{ name: "alice", password: "alice-secret" }] });
    startMs = performance.now() - t;
    console.log(`dovecot start: ${startMs.toFixed(0)} ms, ports ${JSON.stringify(dc.ports)}`);
    await dc.seed("alice", messages);
  });
  afterAll(async () => {
    await dc?.stop();
  });

  test("starts within the readiness budget", () => {
    expect(startMs).toBeLessThan(10_000);
  });

  for (const mode of ["plain", "stls", "pop3s"] as const) {
    test.skipIf(!have("python3"))(`python3 poplib over ${mode} gets the seeded bytes`, async () => {
      const port = mode === "pop3s" ? dc.ports.pop3s : dc.ports.pop3;
      const r = await run(["python3", "-c", POPLIB, mode, String(port), "alice", "alice-secret", dc.caFile]);
      if (r.code !== 0) console.error(r.err, await dc.logTail());
      expect(r.code).toBe(0);
      const got = (JSON.parse(new TextDecoder().decode(r.out)) as string[]).map((b) => new Uint8Array(Buffer.from(b, "base64")));
      expect(got).toEqual(messages);
    });
  }

  const curlCases = [
    { name: "pop3://", url: (d: Dovecot) => `pop3://127.0.0.1:${d.ports.pop3}`, extra: [] as string[] },
    { name: "pop3:// with STLS", url: (d: Dovecot) => `pop3://127.0.0.1:${d.ports.pop3}`, extra: ["--ssl-reqd"] },
    { name: "pop3s://", url: (d: Dovecot) => `pop3s://127.0.0.1:${d.ports.pop3s}`, extra: [] },
  ];
  for (const c of curlCases) {
    test.skipIf(!have("curl"))(`curl ${c.name} gets the seeded bytes`, async () => {
      for (let i = 0; i < messages.length; i++) {
        const r = await run(["curl", "-sS", "--cacert", dc.caFile, ...c.extra, "-u", "alice:alice-secret", `${c.url(dc)}/${i + 1}`]);
        if (r.code !== 0) console.error(r.err, await dc.logTail());
        expect(r.code).toBe(0);
        expect(r.out).toEqual(messages[i]);
      }
    });
  }

  test.skipIf(!have("fetchmail"))("fetchmail with STLS and the test CA delivers the messages, keeping them", async () => {
    // fetchmail verifies DNS names only (no IP SANs): poll "localhost", which it resolves to 127.0.0.1.
    const rc = `${dc.dir}/fetchmailrc`;
    const out = `${dc.dir}/fetched`;
    await Bun.write(rc, `poll localhost service ${dc.ports.pop3} protocol pop3 user "alice" password "alice-secret" ` +
      `sslproto tls1.2+ sslcertck sslcertfile "${dc.caFile}" keep fetchall mda "cat >> ${out}"\n`);
    await import("node:fs/promises").then((fs) => fs.chmod(rc, 0o600)); // fetchmail refuses a readable rc file
    const p = Bun.spawn(["fetchmail", "-f", rc, "--nosyslog", "--pidfile", `${dc.dir}/fetchmail.pid`],
      { stdout: "pipe", stderr: "pipe", env: { ...process.env, HOME: dc.dir } });
    const [err, code] = await Promise.all([new Response(p.stderr).text(), p.exited]);
    if (code !== 0) console.error(err, await dc.logTail());
    expect(code).toBe(0);
    const got = await Bun.file(out).text();
    // fetchmail adds a Received: line and hands the MDA LF line ends.
    for (const m of messages) {
      const body = new TextDecoder().decode(m).replace(/\r\n/g, "\n");
      expect(got).toContain(body);
    }
  });

  test.skipIf(!have("curl"))("a client trusting another CA is refused on POP3S", async () => {
    const r = await run(["curl", "-sS", "-u", "alice:alice-secret", `pop3s://127.0.0.1:${dc.ports.pop3s}/1`]);
    expect(r.code).not.toBe(0);
  });

  test("IMAP listeners greet", async () => {
    for (const [port, tls] of [[dc.ports.imap, false], [dc.ports.imaps, true]] as const) {
      const { promise, resolve, reject } = Promise.withResolvers<string>();
      const sock = await Bun.connect({
        hostname: "127.0.0.1",
        port,
        tls: tls ? { ca: dc.caPem, serverName: "localhost" } : undefined,
        socket: { data: (s, d) => { resolve(d.toString()); s.end(); }, error: (_s, e) => reject(e) },
      });
      expect(await promise).toStartWith("* OK");
      sock.end();
    }
  });

  test("reading mail over POP3 leaves the maildir messages in place and unchanged", async () => {
    expect(await dc.maildirMessages("alice")).toEqual(messages);
  });

  test.skipIf(!have("curl"))("wrong password is refused quickly", async () => {
    const t = performance.now();
    const r = await run(["curl", "-sS", "-u", "alice:wrong", `pop3://127.0.0.1:${dc.ports.pop3}/1`]);
    expect(r.code).not.toBe(0);
    expect(performance.now() - t).toBeLessThan(3000);
  });
});
