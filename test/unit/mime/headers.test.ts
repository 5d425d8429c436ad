// Header decoding: field splitting with offsets, RFC 2047 encoded-words, RFC 2045/2231 parameters,
// and filenames as a user would see them in a mail client.
import { describe, expect, test } from "bun:test";
import { decodeEncodedWords, parseHeaderBlock, parseHeaderValueWithParams } from "../../../core/mime/headers.ts";
import { parseMessage } from "../../../core/mime/parse.ts";

const enc = (s: string) => Buffer.from(s, "latin1");

describe("parseHeaderBlock", () => {
  test("fields, folds and offsets", () => {
    const block = "Subject: hello\r\n  world\r\nX-Empty:\r\nTo:a@b\nbroken line\r\n\tstray fold\r\nFrom : c@d\r\n\r\nbody: not a header\r\n";
    const buf = enc("PRE" + block);
    const fields = parseHeaderBlock(buf, 3, buf.length);
    expect(fields.map((f) => [f.name, f.value])).toEqual([
      ["Subject", "hello  world"],
      ["X-Empty", ""],
      ["To", "a@b"],
      ["From", "c@d"],
    ]);
    expect(fields.map((f) => buf.subarray(f.start, f.end).toString("latin1"))).toEqual([
      "Subject: hello\r\n  world\r\n",
      "X-Empty:\r\n",
      "To:a@b\n",
      "From : c@d\r\n",
    ]);
  });

  test("stops at its end offset even without a line end", () => {
    const buf = enc("A: 1\r\nB: 2xxxx");
    expect(parseHeaderBlock(buf, 0, 10).map((f) => [f.name, f.value, f.end])).toEqual([["A", "1", 6], ["B", "2", 10]]);
  });
});

describe("decodeEncodedWords (RFC 2047)", () => {
  test("B and Q in UTF-8 and ISO-8859-1", () => {
    expect(decodeEncodedWords("=?UTF-8?B?w6lsw6h2ZS5wZGY=?=")).toBe("élève.pdf");
    expect(decodeEncodedWords("=?iso-8859-1?q?caf=E9_cr=E8me?=")).toBe("café crème");
    expect(decodeEncodedWords("Re: =?utf-8?Q?=E2=82=AC100?= invoice")).toBe("Re: €100 invoice");
  });

  test("adjacent words are joined, even when a character is split between them", () => {
    // "€" is E2 82 AC: split across two words.
    expect(decodeEncodedWords("=?UTF-8?Q?=E2=82?= \r\n =?UTF-8?Q?=AC?=")).toBe("€");
    expect(decodeEncodedWords("=?UTF-8?B?4oI=?=\t=?UTF-8?B?rA==?=")).toBe("€");
    expect(decodeEncodedWords("=?ISO-8859-1?Q?a?= =?UTF-8?Q?b?=")).toBe("ab");
    expect(decodeEncodedWords("=?UTF-8?Q?a?= x =?UTF-8?Q?b?=")).toBe("a x b");
  });

  test("language suffix, unknown charset, malformed input: best effort, never throws", () => {
    expect(decodeEncodedWords("=?UTF-8*en?Q?hi?=")).toBe("hi");
    expect(decodeEncodedWords("=?x-unknown?Q?plain?=")).toBe("plain");
    expect(decodeEncodedWords("=?x-unknown?B?w6k=?=")).toBe("é");
    expect(decodeEncodedWords("=?utf-8?B?###?=")).toBe("");
    expect(decodeEncodedWords("=?utf-8?Z?x?= =?broken")).toBe("=?utf-8?Z?x?= =?broken");
    expect(decodeEncodedWords("plain")).toBe("plain");
  });

  test("raw 8-bit UTF-8 (a latin1 view of the bytes) is read as UTF-8; other 8-bit text stays", () => {
    expect(decodeEncodedWords(Buffer.from("naïve", "utf8").toString("latin1"))).toBe("naïve");
    expect(decodeEncodedWords("caf\xe9")).toBe("caf\xe9");
  });
});

describe("parseHeaderValueWithParams (RFC 2045 / 2231)", () => {
  test("quoting, escapes, semicolons inside quotes, case of names", () => {
    expect(parseHeaderValueWithParams(' multipart/mixed ; Boundary="a;b\\"c" ; charset=utf-8;; junk ; x= "unterminated')).toEqual({
      value: "multipart/mixed",
      params: { boundary: 'a;b"c', charset: "utf-8", x: "unterminated" },
    });
  });

  test("RFC 2231 charset'lang'%XX and continuations", () => {
    expect(parseHeaderValueWithParams("attachment; filename*=UTF-8''%C3%A9t%C3%A9.txt").params.filename).toBe("été.txt");
    expect(parseHeaderValueWithParams("attachment; filename*=iso-8859-1'fr'caf%E9.doc").params.filename).toBe("café.doc");
    expect(
      parseHeaderValueWithParams('attachment; filename*1*=%A9t%C3%A9; filename*0*=utf-8\'\'%C3; filename*2="-report.pdf"').params.filename,
    ).toBe("été-report.pdf");
    expect(parseHeaderValueWithParams('attachment; filename*0="long"; filename*1="name.txt"').params.filename).toBe("longname.txt");
  });

  test("an RFC 2231 value wins over a plain one; the first plain one wins over later ones", () => {
    expect(parseHeaderValueWithParams("a; filename=plain.txt; filename*=utf-8''ext.txt").params.filename).toBe("ext.txt");
    expect(parseHeaderValueWithParams("a; name=first; name=second").params.name).toBe("first");
  });
});

describe("filenames of parts", () => {
  const part = (headers: string) => parseMessage(enc(headers + "\r\n\r\nbody"));

  test("Content-Disposition filename wins over Content-Type name", () => {
    expect(part('Content-Type: application/pdf; name="ct.pdf"\r\nContent-Disposition: attachment; filename="cd.pdf"').filename).toBe("cd.pdf");
    expect(part('Content-Type: application/pdf; name="ct.pdf"\r\nContent-Disposition: inline').filename).toBe("ct.pdf");
  });

  test("RFC 2047 inside a quoted parameter, UTF-8 and ISO-8859-1", () => {
    expect(part('Content-Disposition: attachment; filename="=?UTF-8?B?0YTQsNC50LsuZXhl?="').filename).toBe("файл.exe");
    expect(part('Content-Type: text/plain; name="=?ISO-8859-1?Q?r=E9sum=E9?= .txt"').filename).toBe("résumé .txt");
  });

  test("RFC 2231 continuations over folded lines", () => {
    const p = part("Content-Disposition: attachment;\r\n filename*0*=UTF-8''%E6%97%A5%E6%9C%AC;\r\n filename*1*=%E8%AA%9E.zip");
    expect([p.disposition, p.filename]).toEqual(["attachment", "日本語.zip"]);
  });

  test("raw UTF-8 filename bytes", () => {
    const raw = Buffer.concat([enc('Content-Disposition: attachment; filename="'), Buffer.from("Übersicht.xlsx", "utf8"), enc('"\r\n\r\nx')]);
    expect(parseMessage(raw).filename).toBe("Übersicht.xlsx");
  });

  test("boundaries stay byte-exact even with 8-bit bytes", () => {
    const boundary = Buffer.from("é=_b", "utf8").toString("latin1");
    const buf = enc(`Content-Type: multipart/mixed; boundary="${boundary}"\r\n\r\n--${boundary}\r\n\r\none\r\n--${boundary}--\r\n`);
    const root = parseMessage(buf);
    expect(root.children).toHaveLength(1);
  });
});

describe("hostile header values stay bounded", () => {
  test("huge parameter lists, RFC 2231 segments and encoded-word runs", () => {
    let segments = "Content-Disposition: attachment";
    for (let i = 0; i < 12_000; i++) segments += `; filename*${i}*=%41`;
    const cases = [
      "Content-Type: multipart/mixed; boundary=b; x=\"" + "a;".repeat(2_000_000) + "\"\r\n\r\n--b\r\n\r\nx\r\n--b--",
      "Content-Type: text/plain" + "; a=1".repeat(1_000_000) + "\r\n\r\nx",
      "Content-Disposition: attachment; filename=\"" + "=?utf-8?Q?a?= ".repeat(300_000) + "\"\r\n\r\nx",
      "Content-Disposition: attachment; filename=\"" + "=?".repeat(2_000_000) + "\"\r\n\r\nx",
      segments + "\r\n\r\nx",
    ];
    for (const c of cases) {
      const t0 = performance.now();
      const root = parseMessage(enc(c));
      expect(performance.now() - t0).toBeLessThan(5000);
      expect(root.bodyEnd).toBe(c.length);
    }
    expect(parseMessage(enc(segments + "\r\n\r\nx")).filename).toBe("A".repeat(10_000)); // segments past 9,999 are ignored
  });
});
