// The IMAP wire reader (ImapReader over ByteReader) under every way TCP can cut a stream: the same
// client or server bytes fed whole, one byte per chunk and in 200 seeded random splits give the same
// segments and literal bytes, pass through byte-identical, and an over-long line fails the same way
// (a clear error, with no more than the limit buffered) wherever the cuts fall.
import { describe, expect, test } from "bun:test";
import { cutAt, everySplit as everySplitOf, feed, MODES, type Mode } from "../../helpers/splits.ts";
import { ImapReader, ReadError, astringText, commandHead, literalAtEnd, segmentText, tokenize, type Literal } from "../../../core/imap/wire.ts";

// ---- splits: the same stream cut every way (test/helpers/splits.ts) ------------------------------

const SEED = 0x1a4b3c2d;
const everySplit = (bytes: Uint8Array, check: (chunks: Uint8Array[], mode: Mode) => Promise<void>, random = 200) => everySplitOf(bytes, SEED, check, random);

// ---- reading a stream the way the session and relay do --------------------------------------------

const CRLF = new Uint8Array([0x0d, 0x0a]);
const latin1 = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("latin1");
const concat = (parts: Uint8Array[]) => new Uint8Array(Buffer.concat(parts));

interface Seen {
  /** The line as latin1 text (byte for byte), announcement included. */
  text: string;
  literal: Literal | null;
  /** The literal's bytes as latin1 text. */
  data?: string;
}

/**
 * Segments until the peer closes: each line, then its literal read with readExact (as the relay
 * streams it). passed is every byte handed out, in order, as a relay would write it on.
 */
async function readAll(reader: ImapReader, maxLine: number): Promise<{ segments: Seen[]; passed: Uint8Array }> {
  const segments: Seen[] = [];
  const out: Uint8Array[] = [];
  for (;;) {
    let seg;
    try {
      seg = await reader.readSegment(maxLine);
    } catch (e) {
      if (e instanceof ReadError && e.code === "eof" && reader.buffered === 0) break;
      throw e;
    }
    out.push(seg.text, CRLF);
    const s: Seen = { text: segmentText(seg), literal: seg.literal };
    if (seg.literal) {
      const parts: Uint8Array[] = [];
      await reader.readExact(seg.literal.size, (c) => { parts.push(c); out.push(c); });
      s.data = latin1(concat(parts));
    }
    segments.push(s);
  }
  return { segments, passed: concat(out) };
}

// ---- building streams with their expected segments ------------------------------------------------

type Announce = "{n}" | "{n+}" | "{n-}" | "~{n}" | "~{n+}";
// What each announcement means, written out here rather than taken from the parser.
const MEANS: Record<Announce, { sync: boolean; binary: boolean }> = {
  "{n}": { sync: true, binary: false },
  "{n+}": { sync: false, binary: false },
  "{n-}": { sync: false, binary: false },
  "~{n}": { sync: true, binary: true },
  "~{n+}": { sync: false, binary: true },
};

class Stream {
  private readonly parts: Uint8Array[] = [];
  readonly expected: Seen[] = [];

  /** A line (UTF-8 text; CRLF added), optionally ending in a literal announcement and followed by its bytes. */
  line(text: string, lit?: { announce: Announce; data: Uint8Array | string }): this {
    const data = lit === undefined ? null : typeof lit.data === "string" ? Buffer.from(lit.data, "utf8") : lit.data;
    const ann = lit && data ? lit.announce.replace("n", String(data.length)) : "";
    const bytes = Buffer.from(text + ann, "utf8");
    this.parts.push(bytes, CRLF);
    const seen: Seen = { text: latin1(bytes), literal: null };
    if (lit && data) {
      this.parts.push(data);
      seen.literal = { size: data.length, ...MEANS[lit.announce] };
      seen.data = latin1(data);
    }
    this.expected.push(seen);
    return this;
  }

  get bytes(): Uint8Array { return concat(this.parts); }
}

/** Groups segments into commands (a command goes on while its segments announce literals). */
function commands(segments: Seen[]): Seen[][] {
  const out: Seen[][] = [];
  let cur: Seen[] = [];
  for (const s of segments) {
    cur.push(s);
    if (!s.literal) { out.push(cur); cur = []; }
  }
  return out;
}

/** LOGIN arguments as the session reads them: tokens of the lines and literals, UTF-8 decoded. */
function logins(segments: Seen[]): [string, string | null, string | null][] {
  const out: [string, string | null, string | null][] = [];
  for (const cmd of commands(segments)) {
    const head = commandHead(cmd[0]!.text);
    if (head?.verb !== "LOGIN") continue;
    const lits = cmd.filter((s) => s.literal).map((s) => Buffer.from(s.data!, "latin1"));
    const tokens = tokenize([head.rest, ...cmd.slice(1).map((s) => s.text)], lits);
    out.push([head.tag, astringText(tokens[0]), astringText(tokens[1])]);
  }
  return out;
}

// ---- the client direction -------------------------------------------------------------------------

const PASSWORD = 'p "w" \\ ü€ x'; // spaces, quotes, a backslash, non-ASCII UTF-8
// A message whose bytes hold CRLF, literal announcements and lines that look like commands.
const APPENDED = "From: a@example.org\r\nSubject: braces {5}\r\n\r\nline {5}\r\na11 LOGOUT\r\n{12}\r\n* OK fake\r\n";
const BINARY = new Uint8Array([0x00, 0x01, 0xff, 0x0d, 0x0a, 0x7b, 0x35, 0x7d, 0x0d, 0x0a, 0x00, 0x80]);

function clientStream(): Stream {
  return new Stream()
    .line("a1 CAPABILITY")
    .line('a2 LOGIN "bob" "pa ss \\"word\\" \\\\ back"')
    .line("a3 LOGIN ", { announce: "{n}", data: "alice" })
    .line(" ", { announce: "{n}", data: PASSWORD })
    .line("")
    .line("a4 LOGIN ", { announce: "{n+}", data: "" })
    .line(" ", { announce: "{n-}", data: "pwd" })
    .line("")
    .line('a5 LOGIN "jörg" "pässwörd"')
    .line("a6 AUTHENTICATE PLAIN")
    .line("AGFsaWNlAHNlY3JldA==")
    .line("a7 AUTHENTICATE PLAIN")
    .line("*")
    .line('a8 SELECT "INBOX"')
    .line("a9 IDLE")
    .line("DONE")
    .line('a10 APPEND Sent (\\Seen $Forwarded) "07-Feb-1994 22:43:04 -0800" ', { announce: "{n}", data: APPENDED })
    .line("")
    .line("a11 APPEND Drafts (\\Draft) ", { announce: "{n+}", data: "Subject: one\r\n\r\n1\r\n" })
    .line(' (\\Seen) "08-Feb-1994 10:00:00 +0000" ', { announce: "{n+}", data: "Subject: two\r\n\r\n{3}\r\n" })
    .line("")
    .line("a12 APPEND INBOX UTF8 (", { announce: "~{n+}", data: "Subject: grüße\r\nFrom: jörg@例え.jp\r\n\r\nhallo\r\n" })
    .line(")")
    .line("a13 APPEND INBOX (\\Seen) ", { announce: "~{n}", data: BINARY })
    .line("")
    .line("a14 UID FETCH 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Subject)])")
    .line("a15 SELECT ", { announce: "{n}", data: 'a"b (c)' })
    .line("")
    .line("a16 NOOP")
    .line("a17 LOGOUT");
}

describe("client direction: segments and literals whatever the cuts", () => {
  test("commands, quoted strings, LOGIN literals, APPEND and MULTIAPPEND, IDLE/DONE, SASL lines", async () => {
    const s = clientStream();
    const bytes = s.bytes;
    const runs = await everySplit(bytes, async (chunks, mode) => {
      const got = await feed(chunks, mode, (r) => readAll(r, 8192));
      expect(got.segments).toEqual(s.expected);
      expect(Buffer.compare(got.passed, bytes)).toBe(0);
    });
    expect(runs).toBe(2 * 202);
  });

  test("LOGIN arguments come out the same from quoted strings, literals and UTF-8", async () => {
    const s = clientStream();
    const want: [string, string | null, string | null][] = [
      ["a2", "bob", 'pa ss "word" \\ back'],
      ["a3", "alice", PASSWORD],
      ["a4", "", "pwd"],
      ["a5", "jörg", "pässwörd"],
    ];
    expect(logins(s.expected)).toEqual(want);
    await everySplit(s.bytes, async (chunks, mode) => {
      const got = await feed(chunks, mode, (r) => readAll(r, 8192));
      expect(logins(got.segments)).toEqual(want);
    }, 50);
  });

  test("a CRLF cut between chunks at every line end", async () => {
    const bytes = clientStream().bytes;
    const crs = [...bytes.keys()].filter((i) => bytes[i] === 0x0d && bytes[i + 1] === 0x0a).map((i) => i + 1);
    const expected = clientStream().expected;
    for (const mode of MODES) {
      const got = await feed(cutAt(bytes, crs), mode, (r) => readAll(r, 8192));
      expect(got.segments).toEqual(expected);
    }
  });
});

// ---- the server direction -------------------------------------------------------------------------

function serverStream(): Stream {
  return new Stream()
    .line("* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN] Dovecot ready.")
    .line("+ ")
    .line("a1 OK [CAPABILITY IMAP4rev1 LITERAL+ CONDSTORE BINARY UTF8=ACCEPT IDLE] Logged in")
    .line("* CAPABILITY IMAP4rev1 LITERAL+ CONDSTORE BINARY UTF8=ACCEPT")
    .line("+ Ready for literal data")
    .line('* LIST (\\HasNoChildren) "/" ', { announce: "{n}", data: 'a"b (c)' })
    .line("")
    .line("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded)")
    .line("* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded \\*)] Flags permitted.")
    .line("* 3 EXISTS")
    .line("* OK [UIDVALIDITY 1700000000] UIDs valid")
    .line("a2 OK [READ-WRITE] Select completed (0.001 + 0.000 secs).")
    .line("* 1 FETCH (UID 7 BODY[] ", { announce: "{n}", data: "Subject: x\r\n\r\na3 OK [ALERT] not a reply {4}\r\n" })
    .line(" FLAGS (\\Seen))")
    .line("* 2 FETCH (BINARY[1] ", { announce: "~{n}", data: BINARY })
    .line(")")
    .line("+ idling")
    .line("* 4 EXISTS")
    .line("a3 OK Idle completed (0.001 + 1.000 secs).")
    .line("* BYE Logging out")
    .line("a4 OK Logout completed (0.001 + 0.000 secs).");
}

describe("server direction: segments and literals whatever the cuts", () => {
  test("greeting, continuations, untagged and tagged responses, literals in responses", async () => {
    const s = serverStream();
    const bytes = s.bytes;
    await everySplit(bytes, async (chunks, mode) => {
      const got = await feed(chunks, mode, (r) => readAll(r, 64 * 1024));
      expect(got.segments).toEqual(s.expected);
      expect(Buffer.compare(got.passed, bytes)).toBe(0);
    });
  });
});

// ---- literal announcements ------------------------------------------------------------------------

describe("literalAtEnd", () => {
  test.each([
    ["a LOGIN {5}", { size: 5, sync: true, binary: false }],
    ["a LOGIN {5+}", { size: 5, sync: false, binary: false }],
    ["a LOGIN {5-}", { size: 5, sync: false, binary: false }],
    ["a APPEND x ~{5}", { size: 5, sync: true, binary: true }],
    ["a APPEND x UTF8 (~{5+}", { size: 5, sync: false, binary: true }],
    ["{0}", { size: 0, sync: true, binary: false }],
    ["a LOGIN {007}", { size: 7, sync: true, binary: false }],
    ["a LOGIN {}", null],
    ["a LOGIN {+}", null],
    ["a LOGIN {5", null],
    ["a LOGIN 5}", null],
    ["a LOGIN {5}x", null],
    ['a LOGIN "{5}"', null],
    ["a LOGIN {5 }", null],
    ["a LOGIN {5++}", null],
  ] as [string, Literal | null][])("%p", (line, want) => {
    expect(literalAtEnd(Buffer.from(line, "latin1"))).toEqual(want);
  });
});

// ---- line limits ----------------------------------------------------------------------------------

const LIMIT = 1000;

/** Reads lines until the peer closes; the error (if any) with how much the reader held at that moment. */
async function readLines(reader: ImapReader, maxLine: number): Promise<{ lines: number[]; error: ReadError | null; heldAtError: number }> {
  const lines: number[] = [];
  for (;;) {
    try {
      lines.push((await reader.readSegment(maxLine)).text.length);
    } catch (e) {
      if (e instanceof ReadError && e.code === "eof" && reader.buffered === 0) return { lines, error: null, heldAtError: 0 };
      if (e instanceof ReadError) return { lines, error: e, heldAtError: reader.buffered };
      throw e;
    }
  }
}

describe("line limits whatever the cuts", () => {
  const line = (n: number) => "a1 NOOP " + "x".repeat(n - 8);

  test("a line of exactly the limit is read, also when its CR and LF arrive apart", async () => {
    const bytes = Buffer.from(`${line(LIMIT)}\r\na2 NOOP\r\n`, "latin1");
    // The worst cut: right between CR and LF, with all of the line before it.
    const crlf = cutAt(bytes, [LIMIT + 1]);
    for (const mode of MODES) expect(await feed(crlf, mode, (r) => readLines(r, LIMIT))).toEqual({ lines: [LIMIT, 7], error: null, heldAtError: 0 });
    await everySplit(bytes, async (chunks, mode) => {
      expect(await feed(chunks, mode, (r) => readLines(r, LIMIT))).toEqual({ lines: [LIMIT, 7], error: null, heldAtError: 0 });
    });
  });

  test("a line of exactly the limit ended by a bare LF is read", async () => {
    const bytes = Buffer.from(`${line(LIMIT)}\na2 NOOP\n`, "latin1");
    await everySplit(bytes, async (chunks, mode) => {
      expect(await feed(chunks, mode, (r) => readLines(r, LIMIT))).toEqual({ lines: [LIMIT, 7], error: null, heldAtError: 0 });
    }, 50);
  });

  for (const eol of ["\r\n", "\n"]) {
    test(`one byte over the limit fails with line-too-long (${JSON.stringify(eol)}), however it is cut`, async () => {
      const bytes = Buffer.from(`${line(LIMIT + 1)}${eol}a2 NOOP${eol}`, "latin1");
      await everySplit(bytes, async (chunks, mode) => {
        const got = await feed(chunks, mode, (r) => readLines(r, LIMIT));
        expect(got.lines).toEqual([]);
        expect(got.error?.code).toBe("line-too-long");
        expect(got.error?.message).toBe(`line longer than ${LIMIT} bytes`);
      }, 50);
    });
  }

  test("a line that never ends fails once the limit is passed, holding no more than the limit", async () => {
    const max = 8192;
    const bytes = Buffer.from("a1 LOGIN " + "y".repeat(20 * 1024), "latin1");
    await everySplit(bytes, async (chunks, mode) => {
      const got = await feed(chunks, mode, (r) => readLines(r, max));
      expect(got.error?.code).toBe("line-too-long");
      if (mode === "trickled") {
        // The reader gives up as soon as the limit is passed: at most the limit, a CR and the chunk that passed it.
        const biggest = Math.max(...chunks.map((c) => c.length));
        expect(got.heldAtError).toBeLessThanOrEqual(max + 1 + biggest);
      }
    }, 50);
  });

  test("a 1 MiB response line arriving 32 bytes at a time is read in linear time", async () => {
    // A BODYSTRUCTURE of a many-part message can be this long (the server side allows 1 MiB).
    const n = 1024 * 1024 - 64;
    const bytes = Buffer.alloc(n + 2, 0x41);
    bytes[n] = 0x0d;
    bytes[n + 1] = 0x0a;
    const chunks = cutAt(bytes, Array.from({ length: Math.floor((n + 1) / 32) }, (_, i) => (i + 1) * 32));
    const reader = new ImapReader({ highWater: 4 * 1024 * 1024 });
    const started = performance.now();
    const got = reader.readSegment(1024 * 1024);
    // Each chunk is looked at while the reader waits, as when it comes off a socket.
    for (const c of chunks) { reader.push(c); await Promise.resolve(); await Promise.resolve(); }
    expect((await got).text.length).toBe(n);
    // Read once: tens of milliseconds. Rescanned on every arrival it takes seconds (8 s measured).
    expect(performance.now() - started).toBeLessThan(1500);
  });
});
