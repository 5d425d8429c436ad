// Thunderbird-style chunked downloads (`UID FETCH n (UID RFC822.SIZE BODY.PEEK[]<start.65536>)` until a
// short chunk) through the IMAP proxy against the scripted upstream: the chunks join to the message a
// whole fetch gives (the original when clean, the one cleaned copy when infected), every chunk but the
// last is full, and the server sends each message once — the chunks are cut from the copy the proxy
// scanned, answered by the proxy alone while the server was heard from within a second, else with the
// server asked for one byte of each — with the clean original let go after the last chunk.
import { describe, expect, test } from "bun:test";
import { keptMessageBytes } from "../../core/filter/buffers.ts";
import { EICAR_TEXT } from "../helpers/eicar.ts";
import { attachment, base64Lines, leaf, message, multipart, pseudoRandom } from "../helpers/messages.ts";
import { startMockImap } from "../helpers/mock-imap.ts";
import { startProxy, TestClient } from "../helpers/proxy.ts";
import { NEWS_INTERVAL_MS } from "../../core/imap/relay.ts";

const CHUNK = 65536;
const clean = Buffer.from(message(multipart("C", [
  leaf({ headers: ["Content-Type: text/plain"], body: "a clean message\r\n".repeat(2000) }),
  leaf({ headers: ["Content-Type: application/pdf", "Content-Transfer-Encoding: base64"], body: base64Lines(pseudoRandom(150_000, 5)) }),
]), "\r\n", "clean"), "latin1");
const infected = Buffer.from(message(multipart("I", [
  leaf({ headers: ["Content-Type: text/plain"], body: "filler line\r\n".repeat(6000) }),
  attachment("eicar.com", EICAR_TEXT),
  leaf({ headers: ["Content-Type: text/plain"], body: "after\r\n".repeat(8000) }),
]), "\r\n", "infected"), "latin1");

async function login(c: TestClient, upstreamPort: number): Promise<void> {
  expect(await c.line()).toStartWith("* OK");
  c.send(`a LOGIN "alice/127.0.0.1:${upstreamPort}" "secret"`);
  expect((await c.untilTagged("a")).at(-1)).toStartWith("a OK");
  c.send("b SELECT INBOX");
  expect((await c.untilTagged("b")).at(-1)).toStartWith("b OK");
}

/** One FETCH command whose single response carries one literal: the literal, RFC822.SIZE and the tagged reply. */
async function fetchOne(c: TestClient, tag: string, command: string): Promise<{ literal: Buffer; size: number; head: string }> {
  c.send(`${tag} ${command}`);
  let literal: Buffer | null = null;
  let size = -1;
  let head = "";
  for (;;) {
    const l = await c.line();
    if (l.startsWith(`${tag} `)) {
      expect(l).toStartWith(`${tag} OK`);
      break;
    }
    const m = /\{(\d+)\}$/.exec(l);
    if (l.startsWith("* ") && / FETCH \(/.test(l) && m) {
      head = l;
      size = Number(/RFC822\.SIZE (\d+)/.exec(l)?.[1] ?? -1);
      literal = await c.bytes(Number(m[1]));
    }
  }
  if (!literal) throw new Error(`no literal in the response to ${command}`);
  return { literal, size, head };
}

/** Thunderbird's loop: chunks of CHUNK from 0 until one comes back short. */
async function chunked(c: TestClient, uid: number): Promise<{ joined: Buffer; chunks: number[]; size: number; heads: string[] }> {
  const parts: Buffer[] = [];
  const heads: string[] = [];
  let size = -1;
  for (let origin = 0, k = 0; ; origin += CHUNK, k++) {
    const r = await fetchOne(c, `c${k}`, `UID FETCH ${uid} (UID RFC822.SIZE BODY.PEEK[]<${origin}.${CHUNK}>)`);
    parts.push(r.literal);
    heads.push(r.head);
    size = r.size;
    if (r.literal.length < CHUNK) break;
  }
  return { joined: Buffer.concat(parts), chunks: parts.map((p) => p.length), size, heads };
}

/**
 * A new session downloads message 1 (the clean one, four chunks or more) in chunks; what it got
 * is checked, and the upstream body commands it caused are returned with the session.
 */
async function resyncClean(port: number, mock: { port: number; commands: string[][] }) {
  const before = mock.commands.flat().length;
  const c = await TestClient.connect(port);
  await login(c, mock.port);
  const again = await chunked(c, 1);
  expect(again.joined.equals(clean)).toBe(true);
  expect(again.chunks.length).toBeGreaterThanOrEqual(4);
  return { c, before, sent: bodyCommands(mock.commands.flat().slice(before)), [Symbol.asyncDispose]: () => c[Symbol.asyncDispose]() };
}

/** The upstream commands that carry a whole-message body item, per kind. */
function bodyCommands(lines: string[]): { whole: string[]; ranges: string[] } {
  const fetches = lines.filter((l) => / FETCH /i.test(l));
  return {
    whole: fetches.filter((l) => /BODY\.PEEK\[\](?!<)/i.test(l)),
    ranges: fetches.filter((l) => /BODY\.PEEK\[\]</i.test(l)),
  };
}

describe("chunked downloads through the IMAP proxy", () => {
  test("chunks join to the original or the one cleaned copy; the server sends each message once; the clean original is let go after its last chunk", async () => {
    await using mock = await startMockImap({ messages: [clean, infected] });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port], upstreamTls: "off" });
    await using c = await TestClient.connect(proxy.ports.imap);
    await login(c, mock.port);

    const a = await chunked(c, 1);
    expect(a.joined.equals(clean)).toBe(true);
    expect(a.size).toBe(clean.length);
    expect(a.chunks.slice(0, -1).every((n) => n === CHUNK)).toBe(true);
    expect(a.heads[1]).toMatch(/^\* 1 FETCH \(UID 1 RFC822\.SIZE \d+ BODY\[\]<65536> \{65536\}$/);

    const b = await chunked(c, 2);
    expect(b.joined.length).toBe(infected.length);
    expect(b.size).toBe(infected.length);
    expect(b.joined.toString("latin1")).not.toContain(EICAR_TEXT);
    expect(b.joined.toString("latin1")).toContain("X-Virus-Status: Cleaned");
    // The same copy a whole fetch gets.
    const whole = await fetchOne(c, "w", "UID FETCH 2 BODY.PEEK[]");
    expect(whole.literal.equals(b.joined)).toBe(true);

    const sent = bodyCommands(mock.commands.flat());
    // One whole fetch of each message for the scan, and the client's own whole fetch relayed (its body
    // item answered from the copy).
    expect(sent.whole.length).toBe(3);
    // Every chunk came from the copy scanned for the first one, with no command upstream: the server
    // had just answered (NEWS_INTERVAL_MS), and the copy said everything the chunk needs.
    expect(sent.ranges.length).toBe(0);
    // The clean original is no longer held; the cleaned copy is.
    const cache = proxy.service.messageCache!;
    expect(cache.bytes).toBeGreaterThanOrEqual(infected.length);
    expect(cache.bytes).toBeLessThan(infected.length + clean.length);
  });

  test("after a pause the next chunk goes to the server as one byte, so what the server has to say arrives with it", async () => {
    // The scripted server adds an unsolicited FLAGS FETCH of another message to every FETCH it answers.
    await using mock = await startMockImap({ messages: [clean, infected], faults: { unsolicitedFetchDuring: "FETCH" } });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port], upstreamTls: "off" });
    await using c = await TestClient.connect(proxy.ports.imap);
    await login(c, mock.port);
    const command = (origin: number) => `UID FETCH 1 (UID RFC822.SIZE BODY.PEEK[]<${origin}.${CHUNK}>)`;
    const lines = async (tag: string, cmd: string) => {
      c.send(`${tag} ${cmd}`);
      const got: string[] = [];
      for (;;) {
        const l = await c.line();
        got.push(l);
        if (l.startsWith(`${tag} `)) return got;
        const m = /\{(\d+)\}$/.exec(l);
        if (m) await c.bytes(Number(m[1]));
      }
    };
    await lines("c0", command(0));
    const quick = await lines("c1", command(CHUNK));
    expect(quick.filter((l) => /FLAGS/.test(l))).toEqual([]);
    expect(bodyCommands(mock.commands.flat()).ranges.length).toBe(0);
    await Bun.sleep(NEWS_INTERVAL_MS + 100);
    const late = await lines("c2", command(2 * CHUNK));
    // The server was asked (one byte at that origin) and its news came through, beside the chunk from the copy.
    const ranges = bodyCommands(mock.commands.flat()).ranges;
    expect(ranges.length).toBe(1);
    expect(ranges[0]).toMatch(new RegExp(`BODY\\.PEEK\\[\\]<${2 * CHUNK}\\.1>`));
    expect(late.some((l) => /^\* 2 FETCH \(UID 2 FLAGS \(.*\\Flagged/.test(l))).toBe(true);
    expect(late.find((l) => l.startsWith("* 1 FETCH"))).toMatch(new RegExp(`^\\* 1 FETCH \\(UID 1 RFC822\\.SIZE ${clean.length} BODY\\[\\]<${2 * CHUNK}> \\{\\d+\\}$`));
    // The chunk after it is answered from the copy again, with the server's words for the completion.
    const next = await lines("c3", command(3 * CHUNK));
    expect(bodyCommands(mock.commands.flat()).ranges.length).toBe(1);
    expect(next.at(-1)).toBe("c3 OK Fetch completed.");
  });

  test("a chunk asked while the server's unsolicited response is half relayed waits for its end, never lands inside it", async () => {
    // After NOOP the server writes `* LIST … {10}` and half of its literal, the rest 400 ms later.
    const split = { first: '* LIST () "/" {10}\r\nINBOX', rest: ".Sent\r\n", gapMs: 400 };
    await using mock = await startMockImap({ messages: [clean], faults: { splitAfterNoop: split } });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port], upstreamTls: "off" });
    await using c = await TestClient.connect(proxy.ports.imap);
    await login(c, mock.port);
    const first = await fetchOne(c, "c0", `UID FETCH 1 (UID RFC822.SIZE BODY.PEEK[]<0.${CHUNK}>)`);
    c.send("n NOOP");
    expect((await c.untilTagged("n")).at(-1)).toStartWith("n OK");
    await Bun.sleep(150); // the first half has reached the proxy and gone on to the client
    c.send(`c1 UID FETCH 1 (UID RFC822.SIZE BODY.PEEK[]<${CHUNK}.${CHUNK}>)`);
    // The LIST comes whole, then the chunk: what the client reads parses as the two responses.
    expect(await c.line()).toBe('* LIST () "/" {10}');
    expect((await c.bytes(10)).toString("latin1")).toBe("INBOX.Sent");
    expect(await c.line()).toBe("");
    const head = await c.line();
    expect(head).toBe(`* 1 FETCH (UID 1 RFC822.SIZE ${clean.length} BODY[]<${CHUNK}> {${CHUNK}}`);
    const second = await c.bytes(CHUNK);
    expect(await c.line()).toBe(")");
    expect((await c.line())).toStartWith("c1 OK");
    expect(Buffer.concat([first.literal, second]).equals(clean.subarray(0, 2 * CHUNK))).toBe(true);
    // Not answered from the copy meanwhile: it went to the server (for one byte) behind the response.
    expect(bodyCommands(mock.commands.flat()).ranges.some((l) => l.includes(`<${CHUNK}.1>`))).toBe(true);
  });

  test("a re-sync of a message known clean: the first chunk from the server, then the message once, the rest from it", async () => {
    // Three chunks: at its second, no more than two are left, not worth fetching it whole.
    const short = Buffer.from(message(multipart("S", [
      leaf({ headers: ["Content-Type: application/pdf", "Content-Transfer-Encoding: base64"], body: base64Lines(pseudoRandom(105_000, 9)) }),
    ]), "\r\n", "short"), "latin1");
    expect(short.length).toBeGreaterThan(2 * CHUNK);
    expect(short.length).toBeLessThan(3 * CHUNK);
    await using mock = await startMockImap({ messages: [clean, infected, short] });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port], upstreamTls: "off" });
    {
      await using first = await TestClient.connect(proxy.ports.imap);
      await login(first, mock.port);
      expect((await chunked(first, 1)).joined.equals(clean)).toBe(true);
      expect((await chunked(first, 3)).joined.equals(short)).toBe(true);
    }
    // The original was let go after its last chunk: only the verdict is left.
    expect(proxy.service.messageCache!.bytes).toBeLessThan(short.length);
    await using resync = await resyncClean(proxy.ports.imap, mock);
    const { c, before, sent } = resync;
    // The first chunk passes from the server as it is; the second shows a download: the message is
    // fetched whole once (not scanned again) and every later chunk is cut from it.
    expect(sent.ranges).toEqual([expect.stringMatching(new RegExp(`UID FETCH 1 \\(UID RFC822\\.SIZE BODY\\.PEEK\\[\\]<0\\.${CHUNK}>\\)`))]);
    expect(sent.whole).toEqual([expect.stringMatching(/UID FETCH 1 \(UID RFC822\.SIZE BODY\.PEEK\[\]\)/)]);
    // A second re-sync in this session does not fetch it whole again (once per session).
    const third = await chunked(c, 1);
    expect(third.joined.equals(clean)).toBe(true);
    expect(bodyCommands(mock.commands.flat().slice(before)).whole.length).toBe(1);
    // The short one is relayed chunk by chunk, as the server sends it.
    const shortAgain = await chunked(c, 3);
    expect(shortAgain.joined.equals(short)).toBe(true);
    const after = bodyCommands(mock.commands.flat().slice(before));
    expect(after.whole.length).toBe(1);
    expect(after.ranges.filter((l) => / FETCH 3 /.test(l)).length).toBe(3);
  });

  test("a download copy is charged to the hold budget while its download runs: given back after the last chunk, and when the client goes mid-download", async () => {
    await using mock = await startMockImap({ messages: [clean, infected] });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port], upstreamTls: "off", limits: { messageCacheSize: 1000 } });
    const chunk = (uid: number, origin: number) => `UID FETCH ${uid} (UID RFC822.SIZE BODY.PEEK[]<${origin}.${CHUNK}>)`;
    {
      await using c = await TestClient.connect(proxy.ports.imap);
      await login(c, mock.port);
      await fetchOne(c, "a0", chunk(2, 0));
      expect(proxy.service.heldBytes).toBe(infected.length);
      // Another message's download: the first copy is given back, the new one charged.
      await fetchOne(c, "b0", chunk(1, 0));
      expect(proxy.service.heldBytes).toBe(clean.length);
      for (let origin = CHUNK; origin < clean.length; origin += CHUNK) await fetchOne(c, `b${origin}`, chunk(1, origin));
      expect(proxy.service.heldBytes).toBe(0);
      await fetchOne(c, "d0", chunk(2, 0));
      expect(proxy.service.heldBytes).toBe(infected.length);
      // The client goes with the download half done.
    }
    for (let i = 0; i < 100 && proxy.service.heldBytes > 0; i++) await Bun.sleep(20);
    expect(proxy.service.heldBytes).toBe(0);
  });

  test("a re-sync with a cache too small for the message: fetched whole once all the same, kept by the session for the rest", async () => {
    await using mock = await startMockImap({ messages: [clean] });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port], upstreamTls: "off", limits: { messageCacheSize: 1000 } });
    {
      await using first = await TestClient.connect(proxy.ports.imap);
      await login(first, mock.port);
      expect((await chunked(first, 1)).joined.equals(clean)).toBe(true);
    }
    await using resync = await resyncClean(proxy.ports.imap, mock);
    // As with room in the cache: the first chunk from the server, the message whole once, the rest
    // cut from it (before, each chunk was a round trip to the server).
    const { sent } = resync;
    expect(sent.ranges.length).toBe(1);
    expect(sent.whole.length).toBe(1);
  });

  test("Thunderbird's display chunks (not PEEK): the first sets \\Seen at the server, the rest come from the copy", async () => {
    await using mock = await startMockImap({ messages: [clean] });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port], upstreamTls: "off" });
    await using c = await TestClient.connect(proxy.ports.imap);
    await login(c, mock.port);
    const parts: Buffer[] = [];
    const heads: string[] = [];
    for (let origin = 0, k = 0; ; origin += CHUNK, k++) {
      const r = await fetchOne(c, `t${k}`, `UID FETCH 1 (UID RFC822.SIZE BODY[]<${origin}.${CHUNK}>)`);
      parts.push(r.literal);
      heads.push(r.head);
      if (r.literal.length < CHUNK) break;
    }
    expect(Buffer.concat(parts).equals(clean)).toBe(true);
    // The server's own answer to the first: the flag it set, as it reports a change.
    expect(heads[0]).toMatch(/^\* 1 FETCH \(UID 1 RFC822\.SIZE \d+ FLAGS \(\\Seen\) BODY\[\]<0> \{65536\}$/);
    expect(heads.slice(1).every((h) => !/FLAGS/.test(h))).toBe(true);
    const ranges = mock.commands.flat().filter((l) => / FETCH .*BODY(\.PEEK)?\[\]</i.test(l));
    expect(ranges).toEqual([expect.stringMatching(/UID FETCH 1 \(UID RFC822\.SIZE BODY\[\]<0\.1>\)/)]);
  });

  test("a server that adds MODSEQ to body responses has every chunk answered upstream, its MODSEQ kept", async () => {
    await using mock = await startMockImap({ messages: [clean], faults: { modseqInFetch: true } });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port], upstreamTls: "off" });
    await using c = await TestClient.connect(proxy.ports.imap);
    await login(c, mock.port);
    const a = await chunked(c, 1);
    expect(a.joined.equals(clean)).toBe(true);
    expect(a.heads.every((h) => /^\* 1 FETCH \(UID 1 MODSEQ \(1001\) RFC822\.SIZE /.test(h))).toBe(true);
    expect(bodyCommands(mock.commands.flat()).ranges.length).toBe(a.chunks.length);
  });

  test("with no room in the cache for a copy, the session keeps the one it scanned for the download's chunks: fetched and scanned once, given up after the last", async () => {
    await using mock = await startMockImap({ messages: [clean, infected] });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port], upstreamTls: "off", limits: { messageCacheSize: 1000 } });
    await using c = await TestClient.connect(proxy.ports.imap);
    await login(c, mock.port);
    const wholeOf = (uid: number) => bodyCommands(mock.commands.flat()).whole.filter((l) => l.includes(` FETCH ${uid} `)).length;
    const a = await chunked(c, 1);
    expect(a.joined.equals(clean)).toBe(true);
    expect(wholeOf(1)).toBe(1);
    const b = await chunked(c, 2);
    expect(wholeOf(2)).toBe(1);
    // After the last chunk the copy is given up: downloading it again fetches and scans it again, into
    // the same bytes.
    const again = await chunked(c, 2);
    expect(again.joined.equals(b.joined)).toBe(true);
    expect(wholeOf(2)).toBe(2);
    const whole = await fetchOne(c, "w", "UID FETCH 2 (UID RFC822.SIZE BODY.PEEK[])");
    // The chunks join to the cleaned copy a whole fetch gives, of the original's size; the part that
    // held the payload (base64 in the second chunk) never came from the server as it is.
    expect(b.joined.length).toBe(infected.length);
    expect(b.joined.equals(whole.literal)).toBe(true);
    expect(b.joined.toString("latin1")).not.toContain(base64Lines(EICAR_TEXT).slice(0, 40));
    expect(b.joined.toString("latin1")).toContain("filler line");
    // Every chunk of either message was cut from the session's copy: upstream saw one-byte ranges at most.
    const { ranges } = bodyCommands(mock.commands.flat());
    expect(ranges.every((l) => /<\d+\.1>/.test(l))).toBe(true);
  });
});

describe("bodies held in reused buffers", () => {
  // Over 256 KiB, spanning socket chunks: each is gathered into a shared buffer that is given back
  // once its response is written and then holds the next message.
  const big = (i: number, payload = "", bytes = 300_000 + i * 70_000) => Buffer.from(message(multipart(`B${i}`, [
    leaf({ headers: ["Content-Type: application/pdf", "Content-Transfer-Encoding: base64"], body: base64Lines(pseudoRandom(bytes, 40 + i)) }),
    ...(payload ? [attachment("eicar.com", payload)] : []),
  ]), "\r\n", `big ${i}`), "latin1");
  /** Padded to exactly size octets: a buffer of its size class holds it with no room to spare. */
  const exactly = (m: Buffer, size: number) => {
    const cut = m.indexOf("\r\n\r\n");
    const pad = size - m.length - "X-Pad: \r\n".length;
    return Buffer.concat([m.subarray(0, cut + 2), Buffer.from(`X-Pad: ${"p".repeat(pad)}\r\n`), m.subarray(cut + 2)]);
  };
  const messages = [exactly(big(1), 512 * 1024), big(2, EICAR_TEXT), exactly(big(3, "", 350_000), 512 * 1024), big(4)];

  test("every message comes out as itself (or its one cleaned copy) in bulk, in chunks and whole, again and again", async () => {
    await using mock = await startMockImap({ messages });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port], upstreamTls: "off" });
    await using c = await TestClient.connect(proxy.ports.imap);
    await login(c, mock.port);
    expect(messages[0]!.length).toBe(512 * 1024);
    expect(messages[2]!.length).toBe(512 * 1024);
    // A first chunk: the proxy fetches the whole message, scans it and keeps the original to cut the
    // later chunks from, while the buffer it was read into goes on to the next message of its size.
    const head = await fetchOne(c, "h", `UID FETCH 3 (UID RFC822.SIZE BODY.PEEK[]<0.${CHUNK}>)`);
    expect((await fetchOne(c, "o", "UID FETCH 1 BODY.PEEK[]")).literal.equals(messages[0]!)).toBe(true);
    const rest: Buffer[] = [head.literal];
    for (let origin = CHUNK; origin < messages[2]!.length; origin += CHUNK) {
      rest.push((await fetchOne(c, `r${origin}`, `UID FETCH 3 (UID RFC822.SIZE BODY.PEEK[]<${origin}.${CHUNK}>)`)).literal);
    }
    expect(Buffer.concat(rest).equals(messages[2]!)).toBe(true);
    const bulk = async (tag: string) => {
      c.send(`${tag} UID FETCH 1:* (UID BODY.PEEK[])`);
      const got: Buffer[] = [];
      for (;;) {
        const l = await c.line();
        if (l.startsWith(`${tag} `)) { expect(l).toStartWith(`${tag} OK`); return got; }
        const m = /\{(\d+)\}$/.exec(l);
        if (m) got.push(await c.bytes(Number(m[1])));
      }
    };
    const first = await bulk("x");
    expect(first.length).toBe(4);
    const cleaned = first[1]!;
    expect(cleaned.length).toBe(messages[1]!.length);
    expect(cleaned.toString("latin1")).toContain("X-Virus-Status: Cleaned");
    expect(cleaned.toString("latin1")).not.toContain(EICAR_TEXT);
    const expected = [messages[0]!, cleaned, messages[2]!, messages[3]!];
    for (let i = 0; i < 4; i++) expect(first[i]!.equals(expected[i]!)).toBe(true);
    for (let uid = 4; uid >= 1; uid--) expect((await chunked(c, uid)).joined.equals(expected[uid - 1]!)).toBe(true);
    for (let uid = 1; uid <= 4; uid++) expect((await fetchOne(c, `w${uid}`, `UID FETCH ${uid} BODY.PEEK[]`)).literal.equals(expected[uid - 1]!)).toBe(true);
    const again = await bulk("y");
    for (let i = 0; i < 4; i++) expect(again[i]!.equals(expected[i]!)).toBe(true);
    // The buffers were given back, so a later big message reuses one instead of fresh memory.
    expect(keptMessageBytes()).toBeGreaterThan(0);
  });
});
