// The offset tree: part shapes, RFC 2046 boundary rules, robustness and limits, and the round-trip
// property the rewriter relies on (ranges plus the delimiter lines between them give back the bytes).
import { describe, expect, test } from "bun:test";
import { headerValue, messageId, parseMessage, walkParts } from "../../../core/mime/parse.ts";
import { decodePartBody } from "../../../core/mime/decode.ts";
import type { MimePart } from "../../../core/mime/types.ts";
import { attachment, deeplyNested, largeMessage, leaf, manyParts, message, multipart } from "../../helpers/messages.ts";

const enc = (s: string) => Buffer.from(s, "latin1");
const text = (buf: Uint8Array, a: number, b: number) => Buffer.from(buf.subarray(a, b)).toString("latin1");
const body = (buf: Uint8Array, p: MimePart) => text(buf, p.bodyStart, p.bodyEnd);
const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/**
 * Rebuilds part's bytes from its ranges, checking that every gap between them is only what the
 * rewriter may keep verbatim: preamble + delimiter, delimiter lines, close delimiter + epilogue.
 */
function rebuild(buf: Uint8Array, p: MimePart): string {
  expect(p.start).toBeLessThanOrEqual(p.headerEnd);
  expect(p.headerEnd).toBe(p.bodyStart);
  expect(p.bodyStart).toBeLessThanOrEqual(p.bodyEnd);
  let out = text(buf, p.start, p.bodyStart);
  if (p.message) {
    expect(p.message.start).toBe(p.bodyStart);
    expect(p.message.bodyEnd).toBe(p.bodyEnd);
    return out + rebuild(buf, p.message);
  }
  if (p.children.length === 0) return out + body(buf, p);
  const d = escape("--" + p.params.boundary!);
  let at = p.bodyStart;
  p.children.forEach((c, i) => {
    const gap = text(buf, at, c.start);
    expect(gap).toMatch(new RegExp(i === 0 ? `^([\\s\\S]*\\n)?${d}[ \\t]*\\r?\\n$` : `^(\\r?\\n)?${d}[ \\t]*\\r?\\n$`)); // no break when the part before is empty
    out += gap + rebuild(buf, c);
    at = c.bodyEnd;
  });
  const tail = text(buf, at, p.bodyEnd);
  expect(tail === "" || new RegExp(`^(\\r?\\n)?${d}--`).test(tail)).toBe(true);
  return out + tail;
}

function expectRoundTrip(buf: Uint8Array, root: MimePart) {
  expect(root.start).toBe(0);
  expect(root.bodyEnd).toBe(buf.length);
  expect(rebuild(buf, root)).toBe(text(buf, 0, buf.length));
}

const shape = (root: MimePart) => [...walkParts(root)].map((p) => [p.id, p.contentType, p.depth]);

describe("tree shape", () => {
  const msg = message(
    multipart(
      "outer",
      [
        multipart("alt", ["Content-Type: text/plain\r\n\r\nhi", "Content-Type: text/html\r\n\r\n<b>hi</b>"], { subtype: "alternative" }),
        attachment("a.bin", "ABC"),
        "Content-Type: message/rfc822\r\n\r\n" + message(multipart("in", [attachment("b.bin", "XYZ"), "Content-Type: text/plain\r\n\r\ninner"])),
      ],
      { preamble: "This is a multi-part message in MIME format." },
    ),
  );
  const buf = enc(msg);
  const root = parseMessage(buf);

  test("ids follow IMAP section numbers, inner messages keep their part's id", () => {
    expect(shape(root)).toEqual([
      ["", "multipart/mixed", 0],
      ["1", "multipart/alternative", 1],
      ["1.1", "text/plain", 2],
      ["1.2", "text/html", 2],
      ["2", "application/octet-stream", 1],
      ["3", "message/rfc822", 1],
      ["3", "multipart/mixed", 2],
      ["3.1", "application/octet-stream", 3],
      ["3.2", "text/plain", 3],
    ]);
  });

  test("bodies end before the line break that precedes the next delimiter", () => {
    const parts = [...walkParts(root)];
    expect(body(buf, parts[2]!)).toBe("hi");
    expect(body(buf, parts[3]!)).toBe("<b>hi</b>");
    expect(Buffer.from(decodePartBody(buf, parts[4]!)).toString()).toBe("ABC");
    expect(body(buf, parts[8]!)).toBe("inner");
  });

  test("filenames, encodings, dispositions, params", () => {
    const a = [...walkParts(root)][4]!;
    expect(a.filename).toBe("a.bin");
    expect(a.transferEncoding).toBe("base64");
    expect(a.disposition).toBe("attachment");
    expect(a.params).toEqual({ name: "a.bin" });
    expect(headerValue(a, "CONTENT-disposition")).toBe('attachment; filename="a.bin"');
    expect(headerValue(a, "x-missing")).toBeUndefined();
    expect(root.params.boundary).toBe("outer");
  });

  test("messageId reads a folded field, trims it, and never looks into the body", () => {
    const enc = (t: string) => Buffer.from(t, "latin1");
    expect(messageId(parseMessage(enc("Subject: x\r\nMessage-ID:\r\n <a@b> \r\n\r\nMessage-ID: <no@no>\r\n")))).toBe("<a@b>");
    expect(messageId(parseMessage(enc("Subject: x\n\nMessage-ID: <no@no>\n")))).toBeNull();
    expect(messageId(parseMessage(enc("Message-Id:   \nSubject: x\n\n")))).toBeNull();
  });

  test("ranges cover the message exactly", () => expectRoundTrip(buf, root));

  test("replacing one part's body range gives a message with only that part changed", () => {
    const target = [...walkParts(root)][4]!;
    const replaced = Buffer.concat([buf.subarray(0, target.bodyStart), enc("UkVQTEFDRUQ="), buf.subarray(target.bodyEnd)]);
    const again = parseMessage(replaced);
    expect(shape(again)).toEqual(shape(root));
    expect(Buffer.from(decodePartBody(replaced, [...walkParts(again)][4]!)).toString()).toBe("REPLACED");
    expect(body(replaced, [...walkParts(again)][8]!)).toBe("inner");
  });
});

describe("RFC 2046 boundaries", () => {
  test("LF-only line ends", () => {
    const buf = enc(message(multipart("b", ["Content-Type: text/plain\n\none", "\ntwo"], { eol: "\n" }), "\n"));
    const root = parseMessage(buf);
    expect(root.children.map((c) => body(buf, c))).toEqual(["one", "two"]);
    expect(root.children[1]!.contentType).toBe("text/plain");
    expectRoundTrip(buf, root);
  });

  test("mixed line ends", () => {
    const buf = enc("Content-Type: multipart/mixed; boundary=b\n\r\n--b\r\nContent-Type: text/plain\n\none\n--b\n\r\ntwo\r\n--b--\n");
    const root = parseMessage(buf);
    expect(root.children.map((c) => body(buf, c))).toEqual(["one", "two"]);
    expectRoundTrip(buf, root);
  });

  test("delimiter followed by blanks; longer boundary and mid-line delimiters are not delimiters", () => {
    const buf = enc("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b \t\r\n\r\none\r\n--bb\r\nx --b\r\n--b\r\n\r\ntwo\r\n--b-- \r\n");
    const root = parseMessage(buf);
    expect(root.children.map((c) => body(buf, c))).toEqual(["one\r\n--bb\r\nx --b", "two"]);
    expectRoundTrip(buf, root);
  });

  test("missing close delimiter: the last part runs to the end", () => {
    const buf = enc(message(multipart("b", [leaf({ headers: ["Content-Type: text/plain"], body: "one" }), attachment("x.bin", "hello")], { close: false })));
    const root = parseMessage(buf);
    expect(root.children).toHaveLength(2);
    expect(root.children[1]!.bodyEnd).toBe(buf.length);
    expect(Buffer.from(decodePartBody(buf, root.children[1]!)).toString()).toBe("hello");
    expectRoundTrip(buf, root);
  });

  test("an outer boundary closes an unclosed inner multipart", () => {
    const inner = multipart("in", ["Content-Type: text/plain\r\n\r\ninner1", "Content-Type: text/plain\r\n\r\ninner2"], { close: false });
    const buf = enc(message(multipart("out", [inner, "Content-Type: text/plain\r\n\r\nafter"])));
    const root = parseMessage(buf);
    expect(shape(root).map((s) => s[0])).toEqual(["", "1", "1.1", "1.2", "2"]);
    expect(body(buf, root.children[0]!.children[1]!)).toBe("inner2\r\n"); // the generator ends every part with a line end
    expect(body(buf, root.children[1]!)).toBe("after");
    expectRoundTrip(buf, root);
  });

  test("an outer boundary that is a prefix of the inner one does not split the inner part", () => {
    const inner = multipart("abc", ["Content-Type: text/plain\r\n\r\nx", "Content-Type: text/plain\r\n\r\ny"]);
    const buf = enc(message(multipart("ab", [inner])));
    const root = parseMessage(buf);
    expect(shape(root).map((s) => s[0])).toEqual(["", "1", "1.1", "1.2"]);
    expectRoundTrip(buf, root);
  });

  test("preamble and epilogue stay outside every part; text before the first boundary is not a part", () => {
    const buf = enc(message(multipart("b", ["\r\nonly"], { preamble: "--not-b\r\nfake: header\r\n", epilogue: "--b\r\n\r\nepilogue part?\r\n" })));
    const root = parseMessage(buf);
    expect(root.children.map((c) => body(buf, c))).toEqual(["only"]);
    expectRoundTrip(buf, root);
  });

  test("empty parts and a delimiter at the very start of the body", () => {
    const buf = enc("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n--b\r\n\r\n\r\n--b--");
    const root = parseMessage(buf);
    expect(root.children.map((c) => [c.start, c.bodyEnd - c.start])).toEqual([[50, 0], [55, 2]]);
    expectRoundTrip(buf, root);
  });

  test("multipart/digest children default to message/rfc822", () => {
    const buf = enc(multipart("d", ["\r\n" + message("Content-Type: text/plain\r\n\r\ndigested")], { subtype: "digest" }));
    const root = parseMessage(buf);
    const [, digestItem, inner] = [...walkParts(root)];
    expect(digestItem!.contentType).toBe("message/rfc822");
    expect(body(buf, inner!)).toBe("digested");
  });

  test("a multipart without boundary parameter, or whose boundary never occurs, is a leaf", () => {
    for (const m of ["Content-Type: multipart/mixed\r\n\r\nbody", "Content-Type: multipart/mixed; boundary=zz\r\n\r\nbody"]) {
      const root = parseMessage(enc(m));
      expect(root.children).toEqual([]);
      expect(body(enc(m), root)).toBe("body");
    }
  });
});

describe("headers of parts", () => {
  test("no Content-Type: text/plain, 7bit", () => {
    const root = parseMessage(enc("Subject: x\r\n\r\nhello"));
    expect([root.contentType, root.transferEncoding, root.disposition, root.filename]).toEqual(["text/plain", "7bit", "", undefined]);
  });

  test("unparseable Content-Type falls back to text/plain; case is lowered", () => {
    expect(parseMessage(enc("Content-Type: garbage\r\n\r\n")).contentType).toBe("text/plain");
    expect(parseMessage(enc("Content-Type: Application/PDF; Name=A.pdf\r\nContent-Transfer-Encoding: BASE64\r\n\r\n"))).toMatchObject({
      contentType: "application/pdf",
      transferEncoding: "base64",
      params: { name: "A.pdf" },
      filename: "A.pdf",
    });
  });

  test("8-bit and malformed header lines do not break the tree", () => {
    const raw = Buffer.concat([
      enc("Subject: caf"), Buffer.from([0xe9, 0xff, 0x00]), enc("\r\nthis line has no colon\r\n: empty name\r\n"),
      enc("Content-Type: multipart/mixed;\r\n\tboundary=\"q\"\r\n\r\n--q\r\nContent-Disposition: attachment; filename=\"r"),
      Buffer.from("ésumé.pdf", "utf8"), enc("\"\r\n\r\ndata\r\n--q--\r\n"),
    ]);
    const root = parseMessage(raw);
    expect(root.contentType).toBe("multipart/mixed");
    expect(root.headers.map((h) => h.name)).toEqual(["Subject", "Content-Type"]);
    expect(root.children[0]!.filename).toBe("résumé.pdf");
    expectRoundTrip(raw, root);
  });

  test("a message with no blank line is all header; one starting with a blank line is all body", () => {
    const a = parseMessage(enc("Subject: x\r\nX-A: y"));
    expect([a.headerEnd, a.bodyStart, a.bodyEnd]).toEqual([18, 18, 18]);
    const b = parseMessage(enc("\r\nbody only"));
    expect([b.headers.length, b.bodyStart]).toEqual([0, 2]);
    const empty = parseMessage(new Uint8Array(0));
    expect([empty.bodyStart, empty.bodyEnd, empty.children.length]).toEqual([0, 0, 0]);
  });

  test("offsets index the caller's buffer even when it is a view into a larger one", () => {
    const big = enc("XXXX" + message(multipart("b", ["\r\none"])));
    const view = big.subarray(4);
    const root = parseMessage(new Uint8Array(view.buffer, view.byteOffset, view.byteLength));
    expect(body(view, root.children[0]!)).toBe("one");
  });
});

describe("limits and hostile input", () => {
  test("10,000 parts parse; the 10,001st is cut off as too-many-files", () => {
    const buf = enc(manyParts(10_000));
    let t0 = performance.now();
    const root = parseMessage(buf);
    const ms = performance.now() - t0;
    expect(root.children).toHaveLength(10_000);
    expect(root.truncated).toBeUndefined();
    expect(body(buf, root.children[9_999]!)).toBe("part 9999");
    expectRoundTrip(buf, root);
    expect(ms).toBeLessThan(1000);
    const more = parseMessage(enc(manyParts(10_001)));
    expect(more.children).toHaveLength(10_000);
    expect(more.truncated).toBe("too-many-files");
    const small = parseMessage(buf, { maxParts: 3 });
    expect([small.children.length, small.truncated]).toEqual([3, "too-many-files"]);
  });

  test("depth 1000 nesting stops at maxDepth with too-deep", () => {
    const buf = enc(deeplyNested(1000));
    const t0 = performance.now();
    const root = parseMessage(buf);
    expect(performance.now() - t0).toBeLessThan(2000);
    const parts = [...walkParts(root)];
    expect(parts).toHaveLength(17);
    const last = parts.at(-1)!;
    expect([last.depth, last.truncated, last.contentType, last.id]).toEqual([16, "too-deep", "multipart/mixed", "1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1"]);
    expect(parts.filter((p) => p.truncated)).toHaveLength(1);
    const shallow = parseMessage(buf, { maxDepth: 2 });
    expect([...walkParts(shallow)].map((p) => p.truncated)).toEqual([undefined, undefined, "too-deep"]);
    const all = parseMessage(buf, { maxDepth: 5000 });
    expect([...walkParts(all)]).toHaveLength(1001);
  });

  test("nested message/rfc822 counts towards depth", () => {
    let m = "Content-Type: text/plain\r\n\r\nbottom";
    for (let i = 0; i < 40; i++) m = `Content-Type: message/rfc822\r\n\r\n` + m;
    const root = parseMessage(enc(m), { maxDepth: 10 });
    const parts = [...walkParts(root)];
    expect(parts).toHaveLength(11);
    expect(parts.at(-1)!.truncated).toBe("too-deep");
  });

  test("a 1 MB header block", () => {
    const lines: string[] = [];
    for (let i = 0; lines.length * 40 < 1024 * 1024; i++) lines.push(`X-Filler-${i}: ${"v".repeat(20)}\r\n\t${"w".repeat(8)}`);
    const long = "X-Long: " + "a".repeat(1024 * 1024);
    const buf = enc(lines.join("\r\n") + "\r\n" + long + "\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nok\r\n--b--\r\n");
    const t0 = performance.now();
    const root = parseMessage(buf);
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(root.headers.length).toBe(lines.length + 2);
    expect(headerValue(root, "x-long")!.length).toBe(1024 * 1024);
    expect(headerValue(root, "x-filler-3")).toBe(`${"v".repeat(20)}\t${"w".repeat(8)}`);
    expect(body(buf, root.children[0]!)).toBe("ok");
  });

  test("a 1 MB run of header lines without colons", () => {
    const buf = enc("X: 1\r\n" + "no colon here\r\n".repeat(70_000) + "Y: 2\r\n\r\nbody");
    const t0 = performance.now();
    const root = parseMessage(buf);
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(root.headers.map((h) => h.name)).toEqual(["X", "Y"]);
  });

  test("a 100 MB line inside a part", () => {
    const head = enc(message(multipart("b", ["Content-Type: application/octet-stream\r\n\r\n"], { close: false })).slice(0, -2));
    const line = Buffer.alloc(100 * 1024 * 1024, 0x41);
    const buf = Buffer.concat([head, line, enc("\r\n--b\r\n\r\nsecond\r\n--b--\r\n")]);
    const t0 = performance.now();
    const root = parseMessage(buf);
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(root.children).toHaveLength(2);
    expect(root.children[0]!.bodyEnd - root.children[0]!.bodyStart).toBe(line.length);
    expect(body(buf, root.children[1]!)).toBe("second");
  });

  test("a 100 MB header line", () => {
    const buf = Buffer.concat([enc("Subject: "), Buffer.alloc(100 * 1024 * 1024, 0x61), enc("\r\n\r\nbody")]);
    const t0 = performance.now();
    const root = parseMessage(buf);
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(body(buf, root)).toBe("body");
  });

  test("many almost-delimiters stay linear", () => {
    const buf = enc("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n" + "--bx\n".repeat(400_000) + "\r\n--b--\r\n");
    const t0 = performance.now();
    const root = parseMessage(buf);
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(root.children).toHaveLength(1);
  });

  test("random garbage never throws and always covers the buffer", () => {
    const alphabet = ["--b", "\r\n", "\n", "Content-Type: multipart/mixed; boundary=b", "Content-Type: message/rfc822", ":", " ", "x", "--", "=?utf-8?B?", "?="];
    let seed = 12345;
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
    for (let i = 0; i < 500; i++) {
      let s = "";
      const n = rnd(60);
      for (let k = 0; k < n; k++) s += alphabet[rnd(alphabet.length)];
      const buf = enc(s);
      const root = parseMessage(buf);
      expect(root.bodyEnd).toBe(buf.length);
      for (const p of walkParts(root)) {
        expect(p.start).toBeGreaterThanOrEqual(0);
        expect(p.bodyEnd).toBeLessThanOrEqual(buf.length);
        expect(p.bodyStart).toBeLessThanOrEqual(p.bodyEnd);
      }
    }
  });
});

describe("speed", () => {
  test("tree of a 20 MB, 1,500-part message", () => {
    const buf = largeMessage(20 * 1024 * 1024, 1500);
    parseMessage(buf); // warm up the JIT like a running proxy
    const runs: number[] = [];
    let root!: MimePart;
    for (let i = 0; i < 10; i++) {
      const t0 = performance.now();
      root = parseMessage(buf);
      runs.push(performance.now() - t0);
    }
    const best = Math.min(...runs);
    console.log(`mime tree: ${(buf.length / 1048576).toFixed(1)} MB, ${[...walkParts(root)].length} parts, best ${best.toFixed(1)} ms, runs ${runs.map((r) => r.toFixed(1)).join(" ")}`);
    expect([...walkParts(root)].filter((p) => p.filename?.startsWith("file"))).toHaveLength(1500);
    expectRoundTrip(buf, root);
    expect(best).toBeLessThan(50);
  });
});
