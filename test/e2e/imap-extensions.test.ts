// Extensions the proxy relays without understanding them, judged against Dovecot itself: the same
// command script runs directly and through the proxy on two mailboxes that start alike, and every
// answer must match (timings and UIDVALIDITY aside). ENABLE (UTF8=ACCEPT, CONDSTORE), CONDSTORE's
// CHANGEDSINCE and MODSEQ, and every APPEND form: synchronizing and LITERAL+ literals, flags and
// date, MULTIAPPEND, and UTF8 (~{n+}) — which Dovecot 2.3 does not know, so the proxy must relay its
// answers and stay in step. A body fetched with a CHANGEDSINCE modifier is still scanned.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startDovecot, type Dovecot } from "../helpers/dovecot.ts";
import { EICAR_TEXT } from "../helpers/eicar.ts";
import { have } from "../helpers/imap-clients.ts";
import { attachment, leaf, message, multipart } from "../helpers/messages.ts";
import { startProxy, TestClient, type StartedProxy } from "../helpers/proxy.ts";

const PW = "ext-pw";
const enc = new TextEncoder();
const clean = "From: a@example.test\r\nSubject: clean\r\n\r\nclean body\r\n";
const infected = message(multipart("X", [
  leaf({ headers: ["Content-Type: text/plain"], body: "see attached\r\n" }),
  attachment("eicar.com", EICAR_TEXT),
]), "\r\n", "infected");
const appended = "From: me@example.test\r\nSubject: sent {5}\r\n\r\nline {5}\r\nz LOGOUT\r\n";
const utf8Message = "Subject: gr\u00fc\u00dfe\r\nFrom: j\u00f6rg@example.test\r\n\r\nhallo\r\n";

/** One command: its pieces, each sent after the server's "+" to the piece before (a synchronizing literal). */
interface Step { tag: string; pieces: (string | Uint8Array)[] }
const step = (tag: string, ...pieces: (string | Uint8Array)[]): Step => ({ tag, pieces });
const octets = (s: string) => enc.encode(s).length;

/** Runs the steps in order; returns each step's lines, continuation requests included. */
async function runScript(c: TestClient, steps: Step[]): Promise<string[][]> {
  const out: string[][] = [];
  for (const s of steps) {
    const lines: string[] = [];
    let next = 0;
    c.sendRaw(typeof s.pieces[next] === "string" ? enc.encode(s.pieces[next] as string) : (s.pieces[next] as Uint8Array));
    next++;
    for (;;) {
      const l = await c.line();
      lines.push(l);
      if (l.startsWith(`${s.tag} `)) break;
      if (l.startsWith("+") && next < s.pieces.length) {
        const p = s.pieces[next++]!;
        c.sendRaw(typeof p === "string" ? enc.encode(p) : p);
      }
    }
    out.push(lines);
  }
  return out;
}

/** What may differ between two equal mailboxes of one server: command timings and UIDVALIDITY. */
const normalize = (lines: string[][]) => lines.map((ls) => ls.map((l) => l
  .replace(/ \(\d+\.\d+( \+ \d+\.\d+)+ secs\)/, "")
  .replace(/UIDVALIDITY \d+/, "UIDVALIDITY n")
  .replace(/APPENDUID \d+/, "APPENDUID n")));

async function login(port: number, user: string): Promise<TestClient> {
  const c = await TestClient.connect(port);
  expect(await c.line()).toStartWith("* OK");
  c.send(`l LOGIN "${user}" "${PW}"`);
  for (;;) {
    const l = await c.line();
    if (l.startsWith("l ")) { expect(l).toStartWith("l OK"); return c; }
  }
}

describe.skipIf(!have("dovecot"))("IMAP extensions through the proxy, answered as Dovecot answers them", () => {
  let dc: Dovecot;
  let proxy: StartedProxy;
  const viaProxy = (user: string) => login(proxy.ports.imap, `${user}/127.0.0.1:${dc.ports.imap}`);
  const direct = (user: string) => login(dc.ports.imap, user);
  /** The same script against a fresh pair of alike mailboxes, directly and through the proxy. */
  let pair = 0;
  async function both(steps: Step[], then?: (first: string[][]) => Step[]): Promise<{ direct: string[][]; proxied: string[][] }> {
    pair++;
    const [d, p] = [`d${pair}`, `p${pair}`];
    await dc.seed(d, [enc.encode(clean), enc.encode(infected)]);
    await dc.seed(p, [enc.encode(clean), enc.encode(infected)]);
    await using dClient = await direct(d);
    await using pClient = await viaProxy(p);
    const run = async (c: TestClient) => {
      const first = await runScript(c, steps);
      return then ? [...first, ...(await runScript(c, then(first)))] : first;
    };
    return { direct: await run(dClient), proxied: await run(pClient) };
  }

  beforeAll(async () => {
    const users = Array.from({ length: 8 }, (_, i) => [{ name: `d${i + 1}`, password: PW }, { name: `p${i + 1}`, password: PW }]).flat();
    dc = await startDovecot({ users, compress: false });
    proxy = await startProxy({ allowedUpstreamPorts: [dc.ports.imap], upstreamTls: "off" }, { env: {} });
  }, 30_000);
  afterAll(async () => {
    await proxy?.stop();
    await dc?.stop();
  });

  test("ENABLE UTF8=ACCEPT CONDSTORE, SELECT (CONDSTORE), STORE and UID FETCH … (CHANGEDSINCE n): every answer as Dovecot's", async () => {
    const highest = (lines: string[]) => Number(/\[HIGHESTMODSEQ (\d+)\]/.exec(lines.join("\n"))?.[1]);
    // The modifier names the mailbox's HIGHESTMODSEQ before the STORE, as a resyncing client does.
    const r = await both([
      step("a", "a ENABLE UTF8=ACCEPT CONDSTORE\r\n"),
      step("b", "b SELECT INBOX (CONDSTORE)\r\n"),
      step("c", "c UID STORE 2 +FLAGS.SILENT (\\Flagged)\r\n"),
    ], (first) => [
      step("d", `d UID FETCH 1:* (UID FLAGS) (CHANGEDSINCE ${highest(first[1]!)})\r\n`),
      step("e", "e UID FETCH 1:* (UID MODSEQ)\r\n"),
      step("f", "f STATUS INBOX (MESSAGES HIGHESTMODSEQ)\r\n"),
      step("g", `g UID SEARCH MODSEQ ${highest(first[1]!) + 1}\r\n`),
    ]);
    expect(normalize(r.proxied)).toEqual(normalize(r.direct));
    // What a CONDSTORE client relies on, spelled out: only the changed message, with its MODSEQ.
    expect(r.proxied[0]!).toContain("* ENABLED CONDSTORE");
    expect(r.proxied[3]!.filter((l) => l.startsWith("* "))).toEqual([expect.stringMatching(/^\* 2 FETCH \(UID 2 FLAGS \(\\Flagged \\Recent\) MODSEQ \(\d+\)\)$/)]);
    expect(r.proxied[6]!.some((l) => /^\* SEARCH 2 \(MODSEQ \d+\)$/.test(l))).toBe(true);
  });

  test("APPEND with a synchronizing literal, flags and date; with LITERAL+; MULTIAPPEND; then the mailbox reads as Dovecot's", async () => {
    const second = "Subject: two\r\n\r\n2\r\n";
    const r = await both([
      step("a", `a APPEND INBOX (\\Seen $Forwarded) "07-Feb-1994 22:43:04 -0800" {${octets(appended)}}\r\n`, `${appended}\r\n`),
      step("b", `b APPEND Drafts {${octets(second)}+}\r\n${second}\r\n`),
      step("c", "c CREATE Sent\r\n"),
      step("d", `d APPEND Sent (\\Seen) {${octets(clean)}}\r\n`, `${clean} (\\Draft) {${octets(infected)}+}\r\n${infected}\r\n`),
      step("e", "e SELECT Sent\r\n"),
      step("f", "f UID FETCH 1:* (UID FLAGS RFC822.SIZE)\r\n"),
      step("g", "g SELECT INBOX\r\n"),
      step("h", "h UID FETCH 3 (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])\r\n"),
    ]);
    expect(normalize(r.proxied)).toEqual(normalize(r.direct));
    expect(r.proxied[0]!.at(-1)).toMatch(/^a OK \[APPENDUID \d+ 3\]/);
    expect(r.proxied[3]!.at(-1)).toMatch(/^d OK \[APPENDUID \d+ 1:2\]/);
    expect(r.proxied[5]!.filter((l) => l.includes("FETCH"))).toEqual([
      `* 1 FETCH (UID 1 FLAGS (\\Seen \\Recent) RFC822.SIZE ${octets(clean)})`,
      `* 2 FETCH (UID 2 FLAGS (\\Draft \\Recent) RFC822.SIZE ${octets(infected)})`,
    ]);
    // The braces inside the appended text stayed text: the message is whole, "z LOGOUT" never ran.
    expect(r.proxied[7]!.join("\r\n")).toContain(`INTERNALDATE "08-Feb-1994 06:43:04 +0000" RFC822.SIZE ${octets(appended)} BODY[] {${octets(appended)}}`);
    expect(r.proxied[7]!).toContain("z LOGOUT");
  });

  // Dovecot 2.3 reads "~{n+}" as an atom and then the literal's lines as commands; the proxy must
  // relay the literal as one and stay in step exactly as a direct session does. (A synchronizing
  // "~{n}" would wait for a "+" that Dovecot 2.3 never sends, directly or not: the scripted server
  // in test/integration/imap-append.test.ts, which offers UTF8=ACCEPT, covers both forms.)
  test("APPEND UTF8 (~{n+}), which Dovecot 2.3 does not know: the same answers, and the session stays in step", async () => {
    const r = await both([
      step("a", `a APPEND INBOX UTF8 (~{${octets(utf8Message)}+}\r\n${utf8Message})\r\n`),
      step("b", "b NOOP\r\n"),
      step("c", "c STATUS INBOX (MESSAGES)\r\n"),
    ]);
    expect(normalize(r.proxied)).toEqual(normalize(r.direct));
    expect(r.proxied[0]!.at(-1)).toMatch(/^a BAD /);
    expect(r.proxied.at(-1)!.at(-1)).toMatch(/^c OK/);
    expect(r.proxied.at(-1)!).toContain("* STATUS INBOX (MESSAGES 2)");
  });

  test("a body fetched with a CHANGEDSINCE modifier is scanned: the infected message comes cleaned, of its own size", async () => {
    pair++;
    await dc.seed(`p${pair}`, [enc.encode(clean), enc.encode(infected)]);
    await using c = await viaProxy(`p${pair}`);
    const [, selected] = await runScript(c, [step("a", "a ENABLE CONDSTORE\r\n"), step("b", "b SELECT INBOX\r\n")]);
    const highest = Number(/\[HIGHESTMODSEQ (\d+)\]/.exec(selected!.join("\n"))?.[1]);
    const [, fetched] = await runScript(c, [
      step("c", "c UID STORE 2 +FLAGS.SILENT (\\Flagged)\r\n"),
      step("d", `d UID FETCH 1:* (UID BODY.PEEK[]) (CHANGEDSINCE ${highest})\r\n`),
    ]);
    const text = fetched!.join("\r\n");
    expect(fetched!.at(-1)).toStartWith("d OK");
    expect(text).toMatch(new RegExp(`^\\* 2 FETCH \\(UID 2 MODSEQ \\(\\d+\\) BODY\\[\\] \\{${octets(infected)}\\}$`, "m"));
    expect(text).not.toContain(EICAR_TEXT);
    expect(text).not.toContain("* 1 FETCH");
    expect(text).toContain("see attached");
  });
});
