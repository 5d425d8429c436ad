// Chunks the proxy answers from its scanned copy, against a real Dovecot: every response line is the one
// Dovecot itself sends for the same command (item order, the echoed origin, `{0}` past the end), and
// when another session expunges a message mid-download the sequence numbers move with the server's.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startDovecot, type Dovecot } from "../helpers/dovecot.ts";
import { startProxy, TestClient, type StartedProxy } from "../helpers/proxy.ts";
import { have } from "../helpers/imap-clients.ts";
import { base64Lines, leaf, message, multipart, pseudoRandom } from "../helpers/messages.ts";

const CHUNK = 65536;
const enc = new TextEncoder();
const small = enc.encode("From: a@example.test\r\nSubject: small\r\n\r\nshort body\r\n");
const big = (seed: number) => enc.encode(message(multipart(`c${seed}`, [
  leaf({ headers: ["Content-Type: text/plain"], body: "a clean message\r\n".repeat(200) }),
  leaf({ headers: ["Content-Type: application/pdf", "Content-Transfer-Encoding: base64"], body: base64Lines(pseudoRandom(200_000, seed)) }),
]), "\r\n", `big ${seed}`));

/** Sends one command; every line up to its completion, literals replaced by their length. */
async function exchange(c: TestClient, tag: string, command: string): Promise<{ lines: string[]; literals: Buffer[] }> {
  c.send(`${tag} ${command}`);
  const lines: string[] = [];
  const literals: Buffer[] = [];
  for (;;) {
    const l = await c.line();
    lines.push(l);
    if (l.startsWith(`${tag} `)) return { lines, literals };
    const m = /\{(\d+)\}$/.exec(l);
    if (m) literals.push(await c.bytes(Number(m[1])));
  }
}

async function login(c: TestClient, user: string): Promise<void> {
  expect(await c.line()).toStartWith("* OK");
  expect((await exchange(c, "a", `LOGIN "${user}" "alice-secret"`)).lines.at(-1)).toStartWith("a OK");
  expect((await exchange(c, "b", "SELECT INBOX")).lines.at(-1)).toStartWith("b OK");
}

/** Dovecot's completion text carries its timing ("(0.001 + 0.000 secs)"): compared without it. */
const untimed = (lines: string[]) => lines.map((l) => l.replace(/ \([0-9.+ ]+ secs\)\.$/, "."));

describe.skipIf(!have("dovecot"))("chunks from the proxy's copy, against Dovecot", () => {
  let dc: Dovecot;
  let proxy: StartedProxy;
  beforeAll(async () => {
    dc = await startDovecot();
    await dc.seed("alice", [small, big(1), big(2)]);
    proxy = await startProxy({ allowedUpstreamPorts: [dc.ports.imap], upstreamTls: "off" });
  });
  afterAll(async () => {
    await proxy?.stop();
    await dc?.stop();
  });

  test("every line of a chunked download is the line Dovecot sends, past the end too", async () => {
    await using direct = await TestClient.connect(dc.ports.imap);
    await using proxied = await TestClient.connect(proxy.ports.imap);
    await login(direct, "alice");
    await login(proxied, `alice/127.0.0.1:${dc.ports.imap}`);
    const shapes = [
      (o: number) => `UID FETCH 2 (UID RFC822.SIZE BODY.PEEK[]<${o}.${CHUNK}>)`,
      (o: number) => `UID FETCH 2 (BODY.PEEK[]<${o}.${CHUNK}> RFC822.SIZE)`,
      (o: number) => `UID FETCH 2 BODY.PEEK[]<${o}.${CHUNK}>`,
    ];
    const original = Buffer.from(big(1));
    for (const [k, shape] of shapes.entries()) {
      const joined: Buffer[] = [];
      for (let origin = 0; origin <= original.length + CHUNK; origin += CHUNK) {
        const d = await exchange(direct, `d${k}`, shape(origin));
        const p = await exchange(proxied, `p${k}`, shape(origin));
        expect(untimed(p.lines).map((l) => l.replace(/^p/, "d"))).toEqual(untimed(d.lines));
        expect(Buffer.concat(p.literals).equals(Buffer.concat(d.literals))).toBe(true);
        joined.push(...p.literals);
      }
      expect(Buffer.concat(joined).equals(original)).toBe(true);
    }
    // Odd ranges of a message not fetched yet, answered from the copy made for the first of them (kept
    // until a range reaches the end): two at once (in the order asked), the same one twice, an empty
    // one, past the end.
    const size = big(2).length;
    for (const items of [`(UID RFC822.SIZE BODY.PEEK[]<70000.5> BODY.PEEK[]<0.3>)`, `(BODY.PEEK[]<5.5> BODY.PEEK[]<5.5>)`,
      `(UID BODY.PEEK[]<0.0>)`, `(UID BODY.PEEK[]<${size}.10>)`]) {
      const d = await exchange(direct, "o", `UID FETCH 3 ${items}`);
      const p = await exchange(proxied, "o", `UID FETCH 3 ${items}`);
      expect({ items, lines: untimed(p.lines) }).toEqual({ items, lines: untimed(d.lines) });
      expect(Buffer.concat(p.literals).equals(Buffer.concat(d.literals))).toBe(true);
    }
  });

  test("with CONDSTORE enabled (Thunderbird enables it) the chunks are still Dovecot's own lines", async () => {
    await using direct = await TestClient.connect(dc.ports.imap);
    await using proxied = await TestClient.connect(proxy.ports.imap);
    await login(direct, "alice");
    await login(proxied, `alice/127.0.0.1:${dc.ports.imap}`);
    expect((await exchange(direct, "e", "ENABLE CONDSTORE")).lines.at(-1)).toStartWith("e OK");
    expect((await exchange(proxied, "e", "ENABLE CONDSTORE")).lines.at(-1)).toStartWith("e OK");
    const size = big(1).length;
    for (let origin = 0; origin < size; origin += CHUNK) {
      const command = `UID FETCH 2 (UID RFC822.SIZE BODY.PEEK[]<${origin}.${CHUNK}>)`;
      const d = await exchange(direct, "d", command);
      const p = await exchange(proxied, "d", command);
      expect(untimed(p.lines)).toEqual(untimed(d.lines));
    }
  });

  test("display chunks (not PEEK) set \\Seen again after the flag was taken off, by UID or by sequence number", async () => {
    await using a = await TestClient.connect(proxy.ports.imap);
    await login(a, `alice/127.0.0.1:${dc.ports.imap}`);
    const chunk = (tag: string, origin: number) => exchange(a, tag, `UID FETCH 2 (UID RFC822.SIZE BODY[]<${origin}.${CHUNK}>)`);
    const flagsOf = (r: { lines: string[] }) => /FLAGS \(([^)]*)\)/.exec(r.lines[0]!)?.[1] ?? null;
    expect((await exchange(a, "u", "UID STORE 2 -FLAGS (\\Seen)")).lines.at(-1)).toStartWith("u OK");
    expect(flagsOf(await chunk("c0", 0))).toContain("\\Seen");
    expect(flagsOf(await chunk("c1", CHUNK))).toBeNull(); // already \Seen: nothing to report
    for (const store of ["UID STORE 2 -FLAGS (\\Seen)", "STORE 2 -FLAGS (\\Seen)"]) {
      expect((await exchange(a, "s", store)).lines.at(-1)).toStartWith("s OK");
      // The server is asked again: it sets the flag and says so.
      expect(flagsOf(await chunk("c2", 2 * CHUNK))).toContain("\\Seen");
      expect(flagsOf(await chunk("c3", 3 * CHUNK))).toBeNull();
    }
    await using other = await TestClient.connect(dc.ports.imap);
    await login(other, "alice");
    expect((await exchange(other, "f", "UID FETCH 2 FLAGS")).lines[0]).toContain("\\Seen");
  });

  test("a message expunged by another session mid-download moves the sequence numbers of the chunks that follow", async () => {
    await using a = await TestClient.connect(proxy.ports.imap);
    await login(a, `alice/127.0.0.1:${dc.ports.imap}`);
    const chunk = async (tag: string, origin: number) => exchange(a, tag, `UID FETCH 3 (UID RFC822.SIZE BODY.PEEK[]<${origin}.${CHUNK}>)`);
    const first = await chunk("c0", 0);
    expect(first.lines[0]).toStartWith("* 3 FETCH (UID 3 ");
    const parts = [...first.literals];

    await using other = await TestClient.connect(dc.ports.imap);
    await login(other, "alice");
    expect((await exchange(other, "s", "UID STORE 1 +FLAGS (\\Deleted)")).lines.at(-1)).toStartWith("s OK");
    expect((await exchange(other, "e", "EXPUNGE")).lines.at(-1)).toStartWith("e OK");

    const noop = await exchange(a, "n", "NOOP");
    expect(noop.lines).toContain("* 1 EXPUNGE");
    for (let origin = CHUNK, k = 1; ; origin += CHUNK, k++) {
      const r = await chunk(`c${k}`, origin);
      expect(r.lines.filter((l) => / FETCH /.test(l))[0]).toStartWith("* 2 FETCH (UID 3 ");
      parts.push(...r.literals);
      if (r.literals[0]!.length < CHUNK) break;
    }
    expect(Buffer.concat(parts).equals(Buffer.from(big(2)))).toBe(true);
  });

  test("with QRESYNC the expunge comes as VANISHED, and the chunks that follow move too", async () => {
    // After the test above: UID 2 is message 1, UID 3 message 2, known clean with no copy kept.
    await using a = await TestClient.connect(proxy.ports.imap);
    expect(await a.line()).toStartWith("* OK");
    expect((await exchange(a, "a", `LOGIN "alice/127.0.0.1:${dc.ports.imap}" "alice-secret"`)).lines.at(-1)).toStartWith("a OK");
    expect((await exchange(a, "q", "ENABLE QRESYNC")).lines.at(-1)).toStartWith("q OK");
    expect((await exchange(a, "b", "SELECT INBOX")).lines.at(-1)).toStartWith("b OK");
    const chunk = async (tag: string, origin: number) => exchange(a, tag, `UID FETCH 3 (UID RFC822.SIZE BODY.PEEK[]<${origin}.${CHUNK}>)`);
    const parts: Buffer[] = [];
    // The first chunk from the server; the second fetches the message whole, and the rest are cut from it.
    for (const [k, origin] of [0, CHUNK].entries()) {
      const r = await chunk(`c${k}`, origin);
      expect(r.lines[0]).toStartWith("* 2 FETCH (UID 3 ");
      parts.push(...r.literals);
    }

    await using other = await TestClient.connect(dc.ports.imap);
    await login(other, "alice");
    expect((await exchange(other, "s", "UID STORE 2 +FLAGS (\\Deleted)")).lines.at(-1)).toStartWith("s OK");
    expect((await exchange(other, "e", "EXPUNGE")).lines.at(-1)).toStartWith("e OK");

    expect((await exchange(a, "n", "NOOP")).lines).toContain("* VANISHED 2");
    for (let origin = 2 * CHUNK, k = 2; ; origin += CHUNK, k++) {
      const r = await chunk(`c${k}`, origin);
      expect(r.lines.filter((l) => / FETCH /.test(l))[0]).toStartWith("* 1 FETCH (UID 3 ");
      parts.push(...r.literals);
      if (r.literals[0]!.length < CHUNK) break;
    }
    expect(Buffer.concat(parts).equals(Buffer.from(big(2)))).toBe(true);
  });
});
