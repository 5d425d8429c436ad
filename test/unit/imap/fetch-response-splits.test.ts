// FetchResponse fed from the wire reader as the relay feeds it, with the server's bytes whole, one
// byte per chunk and in 200 seeded random splits: the same items, values and literal bytes every time,
// the literal the parser waits for is the one the reader announced, serialize() gives back exactly the
// server's bytes when nothing is replaced (also when body literals are streamed past it), and a
// replaced item changes only itself.
import { describe, expect, test } from "bun:test";
import { FetchResponse, FetchSyntaxError, isFetchResponse, literalItem } from "../../../core/imap/fetch-response.ts";
import { cutAt, everySplit as everySplitOf, feed as feedOf, mulberry32, splits as splitsOf, type Mode } from "../../helpers/splits.ts";
import { ImapReader, ReadError, literalAtEnd, segmentText, type Segment } from "../../../core/imap/wire.ts";

// ---- splits: the same stream cut every way (test/helpers/splits.ts) ------------------------------

const SEED = 0x5eed0f37;
const splits = (bytes: Uint8Array, random = 200, byteByByte = true) => splitsOf(bytes, SEED, random, byteByByte);
const feed = <T>(chunks: Uint8Array[], mode: Mode, consume: (r: ImapReader) => Promise<T>) => feedOf(chunks, mode, consume, { highWater: Number.POSITIVE_INFINITY });

// ---- reading responses the way the relay does ---------------------------------------------------

const CRLF = new Uint8Array([0x0d, 0x0a]);
const latin1 = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("latin1");
const concat = (parts: Uint8Array[]) => new Uint8Array(Buffer.concat(parts));
const MAX_LINE = 1024 * 1024;

interface ItemView {
  name: string;
  kind: string;
  section: string | null;
  partial: string | null;
  /** The value as the server wrote it (latin1), literal announcements and bytes included. */
  value: string;
  /** The top-level literal's bytes (latin1), or null. */
  literal: string | null;
}

type Response = { seq: number; items: ItemView[] } | { line: string; data: string | null };

interface Options {
  /** Stream top-level literals past the parser (readExact + literalStreamed), as the relay does for big bodies. */
  stream?: boolean;
  /** Replace this item's value (by upper-cased name) with literalItem(name, bytes). */
  replace?: { upper: string; bytes: Uint8Array };
}

/** What the parser waits for must be what the reader announced, or the stream desynchronises. */
function agree(seg: Segment, r: FetchResponse): void {
  const announced = seg.literal?.size ?? null;
  const needed = r.literalNeeded?.size ?? null;
  if (announced !== needed) throw new Error(`reader announced ${announced}, parser waits for ${needed} after ${JSON.stringify(segmentText(seg).slice(-40))}`);
}

async function readResponses(reader: ImapReader, o: Options = {}): Promise<{ responses: Response[]; passed: Uint8Array }> {
  const responses: Response[] = [];
  const out: Uint8Array[] = [];
  for (;;) {
    let seg: Segment;
    try {
      seg = await reader.readSegment(MAX_LINE);
    } catch (e) {
      if (e instanceof ReadError && e.code === "eof" && reader.buffered === 0) break;
      throw e;
    }
    const text = segmentText(seg);
    if (!isFetchResponse(text)) {
      // Passed on as it comes, like relaySegments (these streams hold no literal outside FETCH but LIST's).
      out.push(seg.text, CRLF);
      let data: string | null = null;
      if (seg.literal) {
        const parts: Uint8Array[] = [];
        await reader.readExact(seg.literal.size, (c) => { parts.push(c); out.push(c); });
        data = latin1(concat(parts));
        const after = await reader.readSegment(MAX_LINE);
        out.push(after.text, CRLF);
        data += `|${segmentText(after)}`;
      }
      responses.push({ line: text, data });
      continue;
    }
    const r = new FetchResponse(text);
    agree(seg, r);
    const streamed = new Map<object, Uint8Array>();
    let headWritten = false;
    while (!r.complete) {
      const p = r.literalNeeded;
      if (!p) {
        seg = await reader.readSegment(MAX_LINE);
        r.feedText(segmentText(seg));
        agree(seg, r);
        continue;
      }
      if (o.stream && p.topLevel) {
        out.push(...r.serialize({ head: !headWritten, tail: false }));
        headWritten = true;
        for (const it of r.items) it.written = true;
        const parts: Uint8Array[] = [];
        await reader.readExact(p.size, (c) => { parts.push(c); out.push(c); });
        streamed.set(p.item, concat(parts));
        r.literalStreamed();
        continue;
      }
      r.feedLiteral(await reader.readBytes(p.size));
    }
    if (o.replace) {
      const it = r.items.find((i) => i.info.upper === o.replace!.upper);
      if (it) it.replacement = literalItem(it.name, o.replace.bytes);
    }
    out.push(...r.serialize({ head: !headWritten }));
    responses.push({
      seq: r.seq,
      items: r.items.map((it) => {
        const s = streamed.get(it);
        const value = it.value.map((v) => (typeof v === "string" ? v : latin1(v))).join("") + (s ? latin1(s) : "");
        const lit = it.literal ?? s ?? null;
        const partial = it.info.partial ? `${it.info.partial.origin}.${it.info.partial.length}` : null;
        return { name: it.name, kind: it.info.kind, section: it.info.section, partial, value, literal: lit === null ? null : latin1(lit) };
      }),
    });
  }
  return { responses, passed: concat(out) };
}

// ---- the server's bytes -------------------------------------------------------------------------

/** Builds the stream from segments (latin1 text, CRLF added); a text ending in "{}" announces the literal given with it. */
class Stream {
  private readonly parts: Uint8Array[] = [];
  add(...segments: [text: string, literal?: Uint8Array | string][]): this {
    for (const [text, lit] of segments) {
      const data = lit === undefined ? null : typeof lit === "string" ? Buffer.from(lit, "latin1") : lit;
      this.parts.push(Buffer.from(data ? text.replace(/\{\}$/, `{${data.length}}`) : text, "latin1"), CRLF);
      if (data) this.parts.push(data);
    }
    return this;
  }
  get bytes(): Uint8Array { return concat(this.parts); }
}

const utf8 = (s: string) => Buffer.from(s, "utf8");
// A body holding CRLF, literal announcements, a ")" line and lines that look like responses.
const MSG1 = "Return-Path: <a@example.org>\r\nSubject: test {5}\r\n\r\n* 2 FETCH (UID 9 BODY[] {3}\r\nabc)\r\na5 OK done\r\n)\r\n";
const HDR2 = "From: b@example.org\r\nTo: c@example.org\r\nSubject: parts\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n";
const PART2 = 'first part (with parens) and "quotes"\r\n{7}\r\n';
const MSG3 = "From: d@example.org\r\nSubject: a longer message than fifty bytes\r\n\r\nbody\r\n";
const MIME4 = "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n";
const PART4 = latin1(utf8("grüße, 例え\r\n"));
const BIN5 = latin1(new Uint8Array([0x00, 0x01, 0xff, 0x0d, 0x0a, 0x7b, 0x7d, 0x00]));
const ENV8 = '("Mon, 7 Feb 1994 21:52:25 -0800" "Re: (paren) \\"quoted\\" )" (("Fred (Foo) Foobar" NIL "foobar" "example.org")) ((NIL NIL "foobar" "example.org")) ((NIL NIL "foobar" "example.org")) ((NIL NIL "joe" "example.org")(NIL NIL "amy" "example.org")) NIL NIL "<a(b)@example.org>" "<B27397-0100000@example.org>")';
const SUBJ9 = 'Subj (x)\r\n"y" {3}';
const BS10 = '((("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 12 1 NIL NIL NIL NIL)("TEXT" "HTML" ("CHARSET" "utf-8") NIL NIL "QUOTED-PRINTABLE" 40 2 NIL NIL NIL NIL) "ALTERNATIVE" ("BOUNDARY" "=_alt") NIL NIL NIL)("APPLICATION" "PDF" ("NAME" "a (1).pdf") NIL NIL "BASE64" 1000 NIL ("ATTACHMENT" ("FILENAME" "a (1).pdf")) NIL NIL) "MIXED" ("BOUNDARY" "=_mix") NIL NIL NIL)';
const MSG12 = "Subject: size first\r\n\r\nx\r\n";
const HDR14 = "From: e@example.org\r\nSubject: fields\r\n\r\n";
// Parameter values a server sends as literals inside BODYSTRUCTURE (8-bit, CR/LF, unbalanced quote and parens).
const NAME17 = latin1(utf8('ab"c)(d ü\r\n'));
const VALUE17 = "{3}\r\n)";

function serverStream(): Stream {
  return new Stream().add(
    ["* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN] Dovecot ready."],
    ["+ "],
    ["a1 OK [CAPABILITY IMAP4rev1 LITERAL+ CONDSTORE BINARY] Logged in"],
    ['* LIST (\\HasNoChildren) "/" {}', 'a"b (c)'], [""],
    ["* 3 EXISTS"],
    ["* OK [UIDVALIDITY 1700000000] UIDs valid"],
    ["a2 OK [READ-WRITE] Select completed (0.001 + 0.000 secs)."],
    [`* 1 FETCH (UID 101 RFC822.SIZE ${MSG1.length} FLAGS (\\Seen) BODY[] {}`, MSG1], [")"],
    ["* 2 FETCH (UID 102 BODY[HEADER] {}", HDR2], [" BODY[1] {}", PART2], [" FLAGS (\\Seen \\Answered))"],
    ["* 3 FETCH (UID 103 BODY[]<0> {}", MSG3.slice(0, 50)], [")"],
    ["* 4 FETCH (UID 104 BODY[1.2.MIME] {}", MIME4], [" BODY[1.2] {}", PART4], [")"],
    ["* 5 FETCH (UID 105 BINARY[1] ~{}", BIN5], [")"],
    ['* 6 FETCH (UID 106 BODY[TEXT] "a \\"quoted\\" body with \\\\ and (parens) {5}")'],
    ["* 7 FETCH (UID 107 BODY[2] NIL)"],
    [`* 8 FETCH (UID 108 ENVELOPE ${ENV8} FLAGS ())`],
    ["* 9 FETCH (ENVELOPE (NIL {}", SUBJ9], [' (("A" NIL "a" "example.org")) NIL NIL NIL NIL NIL NIL NIL) UID 109)'],
    [`* 10 FETCH (UID 110 BODYSTRUCTURE ${BS10})`],
    ["+ idling"],
    ["* 11 FETCH (MODSEQ (12345) FLAGS (\\Seen $Label1) UID 111)"],
    [`* 12 FETCH (RFC822.SIZE ${MSG12.length} BODY[] {}`, MSG12], [" UID 112 FLAGS (\\Seen))"],
    ["* 13 FETCH (FLAGS (\\Deleted))"],
    ["* 14 FETCH (UID 114 BODY[HEADER.FIELDS (FROM TO SUBJECT)] {}", HDR14], [" BODY[]<100> {}", ""], [")"],
    ["* 15 fetch (uid 115 body[] {}", "abc"], [")"],
    [`* 16 FETCH (UID 116 INTERNALDATE "17-Jul-1996 02:44:25 -0700" X-GM-LABELS ("\\Inbox" "a)b") EMAILID (M6d99ac3275bb4e) BODY[HEADER.FIELDS.NOT (X-A)] {}`, HDR14], [" RFC822.SIZE 40)"],
    ['* 17 FETCH (UID 117 BODYSTRUCTURE ("TEXT" "PLAIN" ("NAME" {}', NAME17], [" FILENAME {}", VALUE17], [') NIL NIL "7BIT" 3 1 NIL ("ATTACHMENT" NIL) NIL NIL) BODY[]<0> "abc")'],
    ["a3 OK Fetch completed (0.001 + 0.000 secs)."],
    ["* BYE Logging out"],
    ["a4 OK Logout completed (0.001 + 0.000 secs)."],
  );
}

const item = (name: string, kind: string, value: string, extra: Partial<ItemView> = {}): ItemView => ({
  name, kind, section: null, partial: null, value, literal: null, ...extra,
});
const lit = (s: string) => `{${s.length}}\r\n${s}`;
const body = (name: string, kind: string, section: string, data: string, partial: string | null = null): ItemView =>
  item(name, kind, (name.startsWith("BINARY") ? "~" : "") + lit(data), { section, partial, literal: data });

/** What a reader of the stream must find, written out by hand. */
const EXPECTED: Response[] = [
  { line: "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN] Dovecot ready.", data: null },
  { line: "+ ", data: null },
  { line: "a1 OK [CAPABILITY IMAP4rev1 LITERAL+ CONDSTORE BINARY] Logged in", data: null },
  { line: '* LIST (\\HasNoChildren) "/" {7}', data: 'a"b (c)|' },
  { line: "* 3 EXISTS", data: null },
  { line: "* OK [UIDVALIDITY 1700000000] UIDs valid", data: null },
  { line: "a2 OK [READ-WRITE] Select completed (0.001 + 0.000 secs).", data: null },
  { seq: 1, items: [item("UID", "meta", "101"), item("RFC822.SIZE", "meta", String(MSG1.length)), item("FLAGS", "meta", "(\\Seen)"), body("BODY[]", "whole", "", MSG1)] },
  { seq: 2, items: [item("UID", "meta", "102"), body("BODY[HEADER]", "header", "HEADER", HDR2), body("BODY[1]", "section", "1", PART2), item("FLAGS", "meta", "(\\Seen \\Answered)")] },
  { seq: 3, items: [item("UID", "meta", "103"), body("BODY[]<0>", "section", "", MSG3.slice(0, 50), "0.NaN")] },
  { seq: 4, items: [item("UID", "meta", "104"), body("BODY[1.2.MIME]", "header", "1.2.MIME", MIME4), body("BODY[1.2]", "section", "1.2", PART4)] },
  { seq: 5, items: [item("UID", "meta", "105"), body("BINARY[1]", "binary", "1", BIN5)] },
  { seq: 6, items: [item("UID", "meta", "106"), item("BODY[TEXT]", "section", '"a \\"quoted\\" body with \\\\ and (parens) {5}"', { section: "TEXT" })] },
  { seq: 7, items: [item("UID", "meta", "107"), item("BODY[2]", "section", "NIL", { section: "2" })] },
  { seq: 8, items: [item("UID", "meta", "108"), item("ENVELOPE", "meta", ENV8), item("FLAGS", "meta", "()")] },
  { seq: 9, items: [item("ENVELOPE", "meta", `(NIL ${lit(SUBJ9)} (("A" NIL "a" "example.org")) NIL NIL NIL NIL NIL NIL NIL)`), item("UID", "meta", "109")] },
  { seq: 10, items: [item("UID", "meta", "110"), item("BODYSTRUCTURE", "structure", BS10)] },
  { line: "+ idling", data: null },
  { seq: 11, items: [item("MODSEQ", "meta", "(12345)"), item("FLAGS", "meta", "(\\Seen $Label1)"), item("UID", "meta", "111")] },
  { seq: 12, items: [item("RFC822.SIZE", "meta", String(MSG12.length)), body("BODY[]", "whole", "", MSG12), item("UID", "meta", "112"), item("FLAGS", "meta", "(\\Seen)")] },
  { seq: 13, items: [item("FLAGS", "meta", "(\\Deleted)")] },
  { seq: 14, items: [item("UID", "meta", "114"), body("BODY[HEADER.FIELDS (FROM TO SUBJECT)]", "header", "HEADER.FIELDS (FROM TO SUBJECT)", HDR14), body("BODY[]<100>", "section", "", "", "100.NaN")] },
  { seq: 15, items: [item("uid", "meta", "115"), body("body[]", "whole", "", "abc")] },
  { seq: 16, items: [
    item("UID", "meta", "116"), item("INTERNALDATE", "meta", '"17-Jul-1996 02:44:25 -0700"'), item("X-GM-LABELS", "meta", '("\\Inbox" "a)b")'),
    item("EMAILID", "meta", "(M6d99ac3275bb4e)"), body("BODY[HEADER.FIELDS.NOT (X-A)]", "header", "HEADER.FIELDS.NOT (X-A)", HDR14), item("RFC822.SIZE", "meta", "40"),
  ] },
  { seq: 17, items: [
    item("UID", "meta", "117"),
    item("BODYSTRUCTURE", "structure", `("TEXT" "PLAIN" ("NAME" ${lit(NAME17)} FILENAME ${lit(VALUE17)}) NIL NIL "7BIT" 3 1 NIL ("ATTACHMENT" NIL) NIL NIL)`),
    item("BODY[]<0>", "section", '"abc"', { section: "", partial: "0.NaN" }),
  ] },
  { line: "a3 OK Fetch completed (0.001 + 0.000 secs).", data: null },
  { line: "* BYE Logging out", data: null },
  { line: "a4 OK Logout completed (0.001 + 0.000 secs).", data: null },
];

const everySplit = (bytes: Uint8Array, check: (chunks: Uint8Array[], mode: Mode) => Promise<void>, random = 200, byteByByte = true) =>
  everySplitOf(bytes, SEED, check, random, byteByByte);

describe("FETCH responses whatever the cuts", () => {
  test("items, values and literal bytes are what the server sent, and serialize() gives back its exact bytes", async () => {
    const bytes = serverStream().bytes;
    await everySplit(bytes, async (chunks, mode) => {
      const got = await feed(chunks, mode, (r) => readResponses(r));
      expect(got.responses).toEqual(EXPECTED);
      expect(latin1(got.passed)).toBe(latin1(bytes));
    });
  });

  test("with body literals streamed past the parser the bytes passed on are still the server's", async () => {
    const bytes = serverStream().bytes;
    await everySplit(bytes, async (chunks, mode) => {
      const got = await feed(chunks, mode, (r) => readResponses(r, { stream: true }));
      expect(got.responses).toEqual(EXPECTED);
      expect(latin1(got.passed)).toBe(latin1(bytes));
    }, 50);
  });

  test("a replaced body changes that item alone; everything around it stays as the server wrote it", async () => {
    const replacement = Buffer.from("Subject: cleaned\r\n\r\nok\r\n", "latin1");
    const bytes = serverStream().bytes;
    const want = latin1(bytes)
      .replace(`BODY[] ${lit(MSG1)}`, `BODY[] ${lit(latin1(replacement))}`)
      .replace(`BODY[] ${lit(MSG12)}`, `BODY[] ${lit(latin1(replacement))}`)
      .replace(`body[] ${lit("abc")}`, `body[] ${lit(latin1(replacement))}`);
    expect(want).not.toBe(latin1(bytes));
    await everySplit(bytes, async (chunks, mode) => {
      const got = await feed(chunks, mode, (r) => readResponses(r, { replace: { upper: "BODY[]", bytes: replacement } }));
      expect(latin1(got.passed)).toBe(want);
    }, 20);
  });

  test("UID and RFC822.SIZE are found wherever the server put them", async () => {
    const sizes: [number | null, number | null][] = [];
    const bytes = new Stream().add(
      [`* 12 FETCH (RFC822.SIZE ${MSG12.length} BODY[] {}`, MSG12], [" UID 112 FLAGS (\\Seen))"],
      ["* 11 FETCH (MODSEQ (12345) FLAGS (\\Seen) UID 111)"],
      ["* 13 FETCH (FLAGS (\\Deleted))"],
    ).bytes;
    const reader = new ImapReader();
    reader.push(bytes);
    reader.close();
    for (let i = 0; i < 3; i++) {
      let seg = await reader.readSegment(MAX_LINE);
      const r = new FetchResponse(segmentText(seg));
      while (!r.complete) {
        const p = r.literalNeeded;
        if (p) r.feedLiteral(await reader.readBytes(p.size));
        else { seg = await reader.readSegment(MAX_LINE); r.feedText(segmentText(seg)); }
      }
      sizes.push([r.number("UID"), r.number("RFC822.SIZE")]);
    }
    expect(sizes).toEqual([[112, MSG12.length], [111, null], [null, null]]);
  });

  test("a 300 KiB body literal split over many chunks arrives whole and passes through byte-identical", async () => {
    const big = new Uint8Array(300 * 1024);
    const rnd = mulberry32(SEED);
    for (let i = 0; i < big.length; i++) big[i] = Math.floor(rnd() * 256);
    // Lines that look like the end of the response inside the literal.
    big.set(Buffer.from("\r\n)\r\na9 OK done\r\n* 2 FETCH (BODY[] {5}\r\n", "latin1"), 1000);
    const bytes = new Stream().add(
      ["* 1 FETCH (UID 1 RFC822.SIZE 307200 BODY[] {}", big], [" FLAGS (\\Seen))"],
      ["a1 OK Fetch completed."],
    ).bytes;
    const small = cutAt(bytes, Array.from({ length: Math.floor(bytes.length / 1000) }, (_, i) => (i + 1) * 1000));
    const cases: [string, Uint8Array[]][] = [["1000-byte chunks", small], ...splits(bytes, 30, false).map((s) => [s.label, s.chunks] as [string, Uint8Array[]])];
    for (const [label, chunks] of cases) {
      for (const stream of [false, true]) {
        for (const mode of ["buffered", "trickled"] as Mode[]) {
          const got = await feed(chunks, mode, (r) => readResponses(r, { stream })).catch((e: Error) => { throw new Error(`${label}, ${mode}: ${e.message}`); });
          const fetch = got.responses[0] as { items: ItemView[] };
          expect(fetch.items.map((i) => i.name)).toEqual(["UID", "RFC822.SIZE", "BODY[]", "FLAGS"]);
          expect(Buffer.compare(Buffer.from(fetch.items[2]!.literal!, "latin1"), big)).toBe(0);
          expect(Buffer.compare(got.passed, bytes)).toBe(0);
        }
      }
    }
  });

  test("a body literal arriving one byte per chunk", async () => {
    const big = new Uint8Array(64 * 1024).fill(0x61);
    const bytes = new Stream().add(["* 1 FETCH (UID 1 BODY[] {}", big], [")"]).bytes;
    const chunks = Array.from(bytes, (_, i) => bytes.subarray(i, i + 1));
    for (const stream of [false, true]) {
      const got = await feed(chunks, "buffered", (r) => readResponses(r, { stream }));
      expect(Buffer.compare(got.passed, bytes)).toBe(0);
    }
  });

  test("a literal is waited for exactly when the reader holds one back", () => {
    const first = (line: string) => {
      const announced = literalAtEnd(Buffer.from(line, "latin1"))?.size ?? null;
      try {
        return { announced, waits: new FetchResponse(line).literalNeeded?.size ?? null };
      } catch (e) {
        return { announced, refused: e instanceof FetchSyntaxError };
      }
    };
    expect(first("* 1 FETCH (UID 1 BODY[] {5}")).toEqual({ announced: 5, waits: 5 });
    expect(first("* 1 FETCH (UID 1 BINARY[1] ~{5}")).toEqual({ announced: 5, waits: 5 });
    expect(first("* 1 FETCH (UID 1 ENVELOPE (NIL {5}")).toEqual({ announced: 5, waits: 5 });
    // Not for servers to send (LITERAL+ is the client's), but the reader takes them as literals.
    expect(first("* 1 FETCH (UID 1 BODY[] {5+}")).toEqual({ announced: 5, waits: 5 });
    // Announcements the two cannot agree on end the response instead of desynchronising it.
    expect(first("* 1 FETCH (UID 1 BODY[] {1234567890123456}")).toEqual({ announced: null, refused: true });
    expect(first("* 1 FETCH (UID 1 X-ODD abc{5}")).toEqual({ announced: 5, refused: true });
    expect(first("* 1 FETCH (UID 1 BODY[] NIL)")).toEqual({ announced: null, waits: null });
  });
});
