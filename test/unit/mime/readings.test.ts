// Other readings of ambiguous headers, and the objects a reader finds in bodies the structure does
// not announce (base64 runs, data: URIs, a multipart's own delimiters).
import { describe, expect, test } from "bun:test";
import { decodeBase64Runs, findBase64Runs, findDataUris, guessBoundary } from "../../../core/mime/embedded.ts";
import { findUuencoded } from "../../../core/mime/decode.ts";
import { normalizeEncoding, otherReadings, parseMessage } from "../../../core/mime/parse.ts";
import { parseParams } from "../../../core/mime/headers.ts";
import { pseudoRandom } from "../../helpers/messages.ts";

const bytes = (s: string) => Buffer.from(s, "latin1");

describe("readings of repeated and odd headers", () => {
  test("the first Content-Type counts, the last in the other reading, and the root says so", () => {
    const raw = bytes('Content-Type: text/plain\r\nContent-Type: multipart/mixed; boundary="X"\r\n\r\n--X\r\n\r\nhi\r\n--X--\r\n');
    const first = parseMessage(raw);
    expect(first.contentType).toBe("text/plain");
    expect(otherReadings(first)).toEqual([{ last: true }]);
    const last = parseMessage(raw, { reading: { last: true } });
    expect(last.contentType).toBe("multipart/mixed");
    expect(last.children.length).toBe(1);
  });

  test("a repeat with the same value is no ambiguity; ordinary mail has no other reading", () => {
    expect(otherReadings(parseMessage(bytes("Content-Type: text/plain\r\nContent-Type: text/plain\r\n\r\nx")))).toEqual([]);
    expect(otherReadings(parseMessage(bytes("Subject: a\r\nContent-Type: text/plain\r\n\r\nx\r\ny\rz")))).toEqual([]); // a CR in the body is not a header's
  });

  test("a lone CR in a header block gives the CR readings, which split the line there", () => {
    const raw = bytes('Subject: x\rContent-Type: multipart/mixed; boundary="X"\r\n\r\n--X\r\n\r\nhi\r\n--X--\r\n');
    const first = parseMessage(raw);
    expect(first.contentType).toBe("text/plain");
    expect(otherReadings(first)).toEqual([{ bareCr: true }, { bareCr: true, last: true }]);
    expect(parseMessage(raw, { reading: { bareCr: true } }).contentType).toBe("multipart/mixed");
  });

  test("a repeated parameter: first (RFC 2231 before plain) by default, last (plain before RFC 2231) in the other reading", () => {
    expect(parseParams('a; boundary="A"; boundary="B"').params.boundary).toBe("A");
    expect(parseParams('a; boundary="A"; boundary="B"', true).params.boundary).toBe("B");
    const mixed = "a; boundary=\"A\"; boundary*=us-ascii''B";
    expect(parseParams(mixed).params.boundary).toBe("B");
    expect(parseParams(mixed, true).params.boundary).toBe("A");
    expect([...parseParams(mixed).conflicting]).toEqual(["boundary"]);
    expect([...parseParams('a; boundary="A"; boundary="A"').conflicting]).toEqual([]);
  });

  test("a multipart with a bent subtype is still split, as mixed (RFC 2046 §5.1.3)", () => {
    const root = parseMessage(bytes('Content-Type: multipart/m(xed; boundary="X"\r\n\r\n--X\r\n\r\nhi\r\n--X--\r\n'));
    expect([root.contentType, root.children.length]).toEqual(["multipart/mixed", 1]);
    expect(parseMessage(bytes("Content-Type: text/pl(in\r\n\r\nx")).contentType).toBe("text/plain");
  });

  test("a transfer encoding is read as readers act on it: comments, quotes, NULs and blanks go", () => {
    expect(normalizeEncoding("base64 (fast)")).toBe("base64");
    expect(normalizeEncoding("(x (y)) Quoted-Printable")).toBe("quoted-printable");
    expect(normalizeEncoding("quoted-\0printable")).toBe("quoted-printable");
    expect(normalizeEncoding('"base64"')).toBe("base64");
    expect(normalizeEncoding("  ")).toBe("7bit");
    expect(normalizeEncoding("`quoted-printable")).toBe("quoted-printable");
    expect(normalizeEncoding("7bit base64")).toBe("base64");
    expect(normalizeEncoding("x-uuencode")).toBe("x-uuencode");
  });
});

describe("objects in bodies", () => {
  const run = Buffer.from(pseudoRandom(300)).toString("base64").replace(/.{76}/g, "$&\r\n");

  test("a base64 run in prose is found and decoded; prose, rules, words and hex digests are not runs", () => {
    const body = bytes(`Hello,\r\n\r\nplease see below.\r\n\r\n${run}\r\n\r\n-------------------------------\r\nRegards\r\n` +
      "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\nSupercalifragilisticexpialidocious\r\n");
    const found = decodeBase64Runs(body);
    expect(found.length).toBe(1);
    expect(Buffer.from(found[0]!).equals(Buffer.from(pseudoRandom(300)))).toBe(true);
  });

  test("short runs hold too little to matter", () => {
    expect(findBase64Runs(bytes("QUJDREVGR0hJSktMTU5PUA==\r\n"))).toEqual([]);
  });

  test("data: URIs: base64 with blanks inside, percent-encoded, any case", () => {
    const body = bytes('<img src="data:image/png;base64,QUJD\n REVG"><a href=\'DATA:text/plain,%41%42%43\'>x</a><p>data: nothing</p>');
    expect(findDataUris(body).map((b) => Buffer.from(b).toString("latin1"))).toEqual(["ABCDEF", "ABC"]);
    expect(findDataUris(bytes('<a href="DaTa:,%44%45">'))).toEqual([Buffer.from("DE")]);
    expect(findDataUris(bytes("no scheme here, only a: colon and Data"))).toEqual([]);
  });

  test("the boundary a multipart body's own delimiter lines use", () => {
    expect(guessBoundary(bytes("preamble\r\n--real\r\nContent-Type: text/plain\r\n\r\nx\r\n--real--\r\n"), "declared")).toBe("real");
    expect(guessBoundary(bytes("--declared\r\nContent-Type: text/plain\r\n\r\nx"), "declared")).toBeNull();
    expect(guessBoundary(bytes("-- \r\nsignature\r\n"), "x")).toBeNull();
  });

  test("begin-base64 blocks (uuencode -m) decode up to ====", () => {
    const body = bytes(`text\r\nbegin-base64 644 f.bin\r\n${Buffer.from("payload bytes").toString("base64")}\r\n====\r\nafter\r\n`);
    const [block] = findUuencoded(body);
    expect(block!.filename).toBe("f.bin");
    expect(Buffer.from(block!.data).toString()).toBe("payload bytes");
  });
});
