import { describe, expect, test } from "bun:test";
import { MboxSplitter, readMbox, unquote, type MboxMessage } from "../../../core/mbox/reader.ts";
import { messageId, parseMessage } from "../../../core/mime/parse.ts";
import { quoteMboxrd } from "../../../core/mbox/writer.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array | null) => (b ? Buffer.from(b).toString("latin1") : null);

function msg(id: string, body: string): string {
  return `From: a@example.org\nMessage-ID: <${id}@example.org>\nSubject: ${id}\n\n${body}`;
}

/** Feeds data in the given split points and returns what the splitter produced. */
function split(data: Uint8Array, cuts: number[], opts = {}): MboxMessage[] {
  const s = new MboxSplitter(opts);
  const out: MboxMessage[] = [];
  let prev = 0;
  for (const c of [...cuts, data.length]) {
    out.push(...s.push(data.subarray(prev, c)));
    prev = c;
  }
  out.push(...s.end());
  return out;
}

function randomCuts(len: number, seed: number): number[] {
  let x = seed;
  const rnd = () => ((x = (x * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const cuts: number[] = [];
  let p = 0;
  while (true) {
    p += 1 + Math.floor(rnd() * 12);
    if (p >= len) break;
    cuts.push(p);
  }
  return cuts;
}

const summary = (ms: MboxMessage[]) => ms.map((m) => ({ index: m.index, offset: m.offset, fromLine: m.fromLine, text: dec(m.bytes) }));

function buildMbox(eol: string): { data: Uint8Array; expected: ReturnType<typeof summary> } {
  const bodies = [
    msg("one", "hello\n>From the start\n>>From two\nFrom: is not a From_ line\n"),
    msg("two", "From the desk of nobody? no: this line is quoted below\n"),
    msg("three", "last line without newline"),
  ];
  const fromLines = ["From alice@example.org Mon Jan  1 00:00:00 2024", "From bob@example.org Tue Jan  2 00:00:00 2024", "From MAILER-DAEMON Wed Jan  3 00:00:00 2024"];
  let text = "";
  const expected: ReturnType<typeof summary> = [];
  bodies.forEach((b, i) => {
    const quoted = dec(quoteMboxrd(enc(b)))!;
    const offset = Buffer.byteLength(text, "latin1");
    text += `${fromLines[i]}\n${quoted}${quoted.endsWith("\n") ? "" : "\n"}\n`;
    expected.push({ index: i + 1, offset, fromLine: fromLines[i]!, text: b.endsWith("\n") ? b : `${b}\n` });
  });
  if (eol === "\r\n") {
    text = text.replace(/\n/g, "\r\n");
    let off = 0;
    const lines = text.split("\r\n");
    const offsets: number[] = [];
    for (const l of lines) { if (l.startsWith("From ")) offsets.push(off); off += l.length + 2; }
    expected.forEach((e, i) => { e.offset = offsets[i]!; e.text = e.text!.replace(/\n/g, "\r\n"); });
  }
  return { data: enc(text), expected };
}

describe("mbox reader", () => {
  for (const eol of ["\n", "\r\n"]) {
    const name = eol === "\n" ? "LF" : "CRLF";
    test(`${name}: messages, numbers, From_ lines, byte offsets, mboxrd unquoting`, () => {
      const { data, expected } = buildMbox(eol);
      expect(summary(split(data, []))).toEqual(expected);
      // offsets point at the From_ line in the file
      for (const e of expected) expect(dec(data.subarray(e.offset, e.offset + 5))).toBe("From ");
    });

    test(`${name}: byte by byte and in random splits gives the same messages`, () => {
      const { data, expected } = buildMbox(eol);
      expect(summary(split(data, Array.from({ length: data.length - 1 }, (_, i) => i + 1)))).toEqual(expected);
      for (let seed = 1; seed <= 50; seed++) expect(summary(split(data, randomCuts(data.length, seed)))).toEqual(expected);
    });
  }

  test("mboxo strips only one level on lines that are exactly >From", () => {
    const b = enc("a\n>From x\n>>From y\n");
    expect(dec(unquote(b, "mboxo"))).toBe("a\nFrom x\n>>From y\n");
    expect(dec(unquote(b, "mboxrd"))).toBe("a\nFrom x\n>From y\n");
    const ms = split(enc("From a\n>>From y\n\n"), [], { quoting: "mboxo" });
    expect(dec(ms[0]!.bytes)).toBe(">>From y\n");
  });

  test("unquoting copies nothing when no line is quoted", () => {
    const data = enc("From a\nSubject: x\n\nbody\n\n");
    const [m] = split(data, []);
    expect(m!.bytes!.buffer).toBe(data.buffer);
  });

  test("content before the first From_ line is a message numbered 0, not skipped", () => {
    const ms = split(enc("Subject: stray\n\nx\nFrom b\nSubject: y\n\n"), []);
    expect(ms.map((m) => [m.index, m.offset, m.fromLine, dec(m.bytes)])).toEqual([
      [0, 0, null, "Subject: stray\n\nx\n"],
      [1, 18, "From b", "Subject: y\n"],
    ]);
  });

  test("a message over the cap is reported too large with its head, and memory is not kept", () => {
    const big = `From a\nMessage-ID: <big@x>\n\n${"x".repeat(5000)}\n\nFrom b\nSubject: small\n\nok\n`;
    const data = enc(big);
    for (const cuts of [[], randomCuts(data.length, 7)]) {
      const ms = split(data, cuts, { maxMessageSize: 1000 });
      expect(ms.map((m) => [m.index, m.tooLarge, m.bytes === null])).toEqual([[1, true, true], [2, false, false]]);
      expect(messageId(parseMessage(ms[0]!.head))).toBe("<big@x>");
      expect(ms[0]!.size).toBe(big.indexOf("From b"));
      expect(ms[1]!.offset).toBe(big.indexOf("From b"));
    }
  });

  test("a message over the cap goes to the spill exactly as it stands in the file, in any chunking (byte by byte too)", () => {
    const bigBody = `${"x".repeat(3000)}\n>From quoted line\n${"y".repeat(3000)}\n`;
    const text = `From a\nMessage-ID: <big@x>\n\n${bigBody}\nFrom b\nSubject: small\n\nok\n\nFrom c\nMessage-ID: <huge@x>\n\n${"z".repeat(9000)}\n`;
    const data = enc(text);
    for (const cuts of [[], randomCuts(data.length, 3), randomCuts(data.length, 11), Array.from({ length: data.length - 1 }, (_, i) => i + 1)]) {
      const spills: { bytes: number[]; discarded: boolean }[] = [];
      const spill = () => {
        const s = { bytes: [] as number[], discarded: false };
        spills.push(s);
        return {
          write: (c: Uint8Array) => { for (const b of c) s.bytes.push(b); },
          dropTail: (n: number) => { s.bytes.length -= n; },
          discard: () => { s.discarded = true; },
        };
      };
      const ms = split(data, cuts, { maxMessageSize: 1000, spill, maxSpilledSize: 8000 });
      expect(ms.map((m) => [m.index, m.tooLarge, m.bytes === null, m.spilled !== null])).toEqual([[1, false, true, true], [2, false, false, false], [3, true, true, false]]);
      const first = ms[0]!;
      const written = Buffer.from(spills[0]!.bytes).toString("latin1");
      expect(written).toBe(text.slice(0, text.indexOf("From b")));
      expect(written.slice(first.spilled!.bodyStart)).toBe(`Message-ID: <big@x>\n\n${bigBody}\n`);
      expect(first.fromLine).toBe("From a");
      expect(messageId(parseMessage(first.head))).toBe("<big@x>");
      // The third went past maxSpilledSize: its spill was given up (or never opened, when one chunk held it).
      expect(spills.length).toBeLessThanOrEqual(2);
      expect(spills.slice(1).every((s) => s.discarded)).toBe(true);
      expect(messageId(parseMessage(ms[2]!.head))).toBe("<huge@x>");
    }
  });

  test("empty input gives no messages; readMbox works on a stream", async () => {
    expect(split(new Uint8Array(0), [])).toEqual([]);
    const { data, expected } = buildMbox("\n");
    const stream = new Blob([data]).stream();
    const got: MboxMessage[] = [];
    for await (const m of readMbox(stream)) got.push(m);
    expect(summary(got)).toEqual(expected);
  });
});
