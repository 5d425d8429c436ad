// Transfer decoding: lenient base64, quoted-printable, uuencode, and decodePartBody's dispatch.
import { describe, expect, test } from "bun:test";
import { decodeBase64, decodeBase64Lenient, decodePartBody, decodeQuotedPrintable, findUuencoded } from "../../../core/mime/decode.ts";
import { parseMessage } from "../../../core/mime/parse.ts";
import { eicar, EICAR_TEXT } from "../../helpers/eicar.ts";
import { base64Lines, pseudoRandom, uuencode } from "../../helpers/messages.ts";

const enc = (s: string) => Buffer.from(s, "latin1");
const str = (u: Uint8Array) => Buffer.from(u).toString("latin1");


describe("decodeBase64", () => {
  test("round-trips random data in 76-column lines, CRLF or LF", () => {
    const data = pseudoRandom(100_003, 3);
    expect(Buffer.compare(Buffer.from(decodeBase64(enc(base64Lines(data)))), Buffer.from(data))).toBe(0);
    expect(Buffer.compare(Buffer.from(decodeBase64(enc(base64Lines(data, "\n")))), Buffer.from(data))).toBe(0);
  });

  test("lenient: whitespace, junk characters, missing padding", () => {
    expect(str(decodeBase64(enc(" QU JD\r\n\tRA==\r\n")))).toBe("ABCD");
    expect(str(decodeBase64(enc("QU*JD!RA")))).toBe("ABCD");
    expect(str(decodeBase64(enc("QUJDRA")))).toBe("ABCD");
    expect(str(decodeBase64(enc("QUJDR")))).toBe("ABC");
    expect(str(decodeBase64(enc("")))).toBe("");
    expect(str(decodeBase64(enc("====")))).toBe("");
  });

  test("text after padding (concatenated encodings) is decoded too", () => {
    expect(str(decodeBase64(enc("QQ==\r\nQkM=\r\nRA==")))).toBe("ABCD");
    expect(str(decodeBase64(enc("QUJD====RA==")))).toBe("ABCD");
  });

  test("the native reading of clean bodies and the table's agree, cut at any max, into any memory", () => {
    let seed = 11;
    const rand = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
    for (let k = 0; k < 400; k++) {
      const data = pseudoRandom(Math.floor(rand() * 3000), k);
      const text = rand() < 0.5 ? base64Lines(data) : Buffer.from(data).toString("base64").replace(/=+$/, "");
      const max = rand() < 0.3 ? Infinity : Math.floor(rand() * (data.length + 4));
      const cap = Math.min(Math.ceil(text.length / 4) * 3, max + 1);
      const lenient = decodeBase64Lenient(enc(text), false, cap, new Uint8Array(cap + 3));
      // Leased memory: a view into a bigger buffer that already holds bytes.
      const lease = (n: number) => new Uint8Array(n + 50).fill(0xaa).subarray(25, 25 + n);
      const got = decodeBase64(enc(text), false, max, lease);
      expect({ k, max, got: Buffer.from(got).toString("hex") }).toEqual({ k, max, got: Buffer.from(lenient).toString("hex") });
      expect(got.length).toBe(Math.min(data.length, max + 1));
    }
  });

  test("bodies of many native blocks decode the same, whatever the line width, cut or not", () => {
    const data = pseudoRandom(2_600_000, 5);
    const b64 = Buffer.from(data).toString("base64");
    for (const width of [76, 75, 1001]) {
      const text = enc(b64.replace(new RegExp(`.{${width}}`, "g"), "$&\r\n"));
      for (const max of [Infinity, 1_500_000, data.length - 1]) {
        const cap = Math.min(Math.ceil(text.length / 4) * 3, max + 1);
        const lenient = decodeBase64Lenient(text, false, cap, new Uint8Array(cap + 3));
        const got = decodeBase64(text, false, max);
        expect({ width, max, equal: Buffer.from(got).equals(Buffer.from(lenient)), length: got.length }).toEqual({ width, max, equal: true, length: Math.min(data.length, max + 1) });
      }
    }
    // Two encodings one after the other, both decoded: the first one's padding inside a block (the
    // native reader refuses it, the table decodes it), and padding that ends a block exactly (a block
    // is 256 KiB of text: 196,607 bytes encode to 262,144 characters ending in "=").
    const second = pseudoRandom(1_200_001, 6);
    const joined = enc(base64Lines(data.subarray(0, 1_100_002)) + base64Lines(second));
    expect(Buffer.from(decodeBase64(joined)).equals(Buffer.concat([data.subarray(0, 1_100_002), second]))).toBe(true);
    const first = data.subarray(0, 196_607);
    const atBoundary = Buffer.from(first).toString("base64");
    expect(atBoundary.length).toBe(256 * 1024);
    expect(atBoundary.endsWith("=")).toBe(true);
    const acrossBlocks = enc(atBoundary + Buffer.from(second).toString("base64"));
    expect(Buffer.from(decodeBase64(acrossBlocks)).equals(Buffer.concat([first, second]))).toBe(true);
  });

  test("EICAR hidden in base64 comes out whole", () => {
    expect(str(decodeBase64(enc(base64Lines(eicar()))))).toBe(EICAR_TEXT);
  });

  test("gives what Buffer's decoder gives, piece by piece between \"=\" runs, for random text with junk, padding and both alphabets (MIME's skips - and _)", () => {
    // Node's decoder stops at the first "="; mail readers go on after it. The reference below is
    // Node's decoding of each piece between "=" runs, which is what a lenient reader extracts.
    const reference = (text: string) => Buffer.concat(text.split(/=+/).map((piece) => Buffer.from(piece, "base64")));
    const pool = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_=  \r\n\t*!.\x00\xff";
    let seed = 7;
    const rand = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
    for (let k = 0; k < 3000; k++) {
      let text = "";
      const length = Math.floor(rand() * 40);
      for (let j = 0; j < length; j++) text += rand() < 0.7 ? pool[Math.floor(rand() * 64)] : pool[Math.floor(rand() * pool.length)];
      // The URL-safe reading is Buffer's; MIME's skips "-" and "_" as junk, as postal-mime and mail clients do.
      expect({ text, got: str(decodeBase64(enc(text), true)) }).toEqual({ text, got: reference(text).toString("latin1") });
      expect({ text, got: str(decodeBase64(enc(text))) }).toEqual({ text, got: reference(text.replace(/[-_]/g, "")).toString("latin1") });
    }
  });
});

describe("decodeQuotedPrintable", () => {
  test("=XX escapes in either case, soft line breaks with CRLF, LF and trailing blanks", () => {
    expect(str(decodeQuotedPrintable(enc("caf=E9 =c3=a9")))).toBe("caf\xe9 \xc3\xa9");
    expect(str(decodeQuotedPrintable(enc("long=\r\nline=\njoined= \t\r\nhere=")))).toBe("longlinejoinedhere");
    expect(str(decodeQuotedPrintable(enc("hard\r\nbreak")))).toBe("hard\r\nbreak");
  });

  test("a stray = that starts no escape stays literal", () => {
    expect(str(decodeQuotedPrintable(enc("a=b =ZZ 1+1=2=")))).toBe("a=b =ZZ 1+1=2");
    expect(str(decodeQuotedPrintable(enc("x=4")))).toBe("x=4");
  });

  test("EICAR split by soft breaks and escapes", () => {
    const qp = EICAR_TEXT.slice(0, 20).replace(/=/g, "=3D") + "=\r\n" + [...EICAR_TEXT.slice(20)].map((ch) => "=" + ch.charCodeAt(0).toString(16).toUpperCase().padStart(2, "0")).join("");
    expect(str(decodeQuotedPrintable(enc(qp)))).toBe(EICAR_TEXT);
  });
});

describe("findUuencoded", () => {
  test("finds blocks inside a text body with their offsets", () => {
    const a = pseudoRandom(1000, 9);
    const text = "Hi,\r\nsee attached.\r\n\r\n" + uuencode(a, "data.bin", "\r\n") + "bye\r\n" + uuencode(eicar(), "eicar com.exe");
    const blocks = findUuencoded(enc(text));
    expect(blocks.map((b) => b.filename)).toEqual(["data.bin", "eicar com.exe"]);
    expect(Buffer.compare(Buffer.from(blocks[0]!.data), Buffer.from(a))).toBe(0);
    expect(str(blocks[1]!.data)).toBe(EICAR_TEXT);
    expect(text.slice(blocks[0]!.start, blocks[0]!.end)).toBe(uuencode(a, "data.bin", "\r\n"));
  });

  test("lenient: missing end, no zero-length line, not at a line start, bad mode", () => {
    const full = uuencode(eicar(), "x.com");
    const noEnd = full.replace("`\nend\n", "");
    expect(str(findUuencoded(enc(noEnd + "trailing text with lower case\n"))[0]!.data)).toBe(EICAR_TEXT);
    expect(str(findUuencoded(enc(noEnd))[0]!.data)).toBe(EICAR_TEXT);
    expect(findUuencoded(enc("say begin 644 x.com\n"))).toEqual([]);
    expect(findUuencoded(enc("begin now\nend\n"))).toEqual([]);
  });

  test("text/plain part with x-uuencode transfer encoding decodes through decodePartBody", () => {
    const buf = enc("Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n" + uuencode(eicar(), "e.com"));
    expect(str(decodePartBody(buf, parseMessage(buf)))).toBe(EICAR_TEXT);
  });
});

describe("decodePartBody", () => {
  test("identity encodings return a view of the message, no copy", () => {
    for (const cte of ["7bit", "8bit", "binary", "x-unknown"]) {
      const buf = enc(`Content-Transfer-Encoding: ${cte}\r\n\r\nraw body`);
      const out = decodePartBody(buf, parseMessage(buf));
      expect(str(out)).toBe("raw body");
      expect(out.buffer).toBe(buf.buffer);
    }
  });

  test("base64 and quoted-printable", () => {
    const b = enc(`Content-Transfer-Encoding: Base64\r\n\r\n${base64Lines(eicar())}\r\n`);
    expect(str(decodePartBody(b, parseMessage(b)))).toBe(EICAR_TEXT);
    const q = enc("Content-Transfer-Encoding: quoted-printable\r\n\r\nsoft=\r\nbreak=3D");
    expect(str(decodePartBody(q, parseMessage(q)))).toBe("softbreak=");
  });

  test("30 MB of base64 decodes in bounded time", () => {
    const data = pseudoRandom(30 * 1024 * 1024, 5);
    const b64 = enc(base64Lines(data));
    let out = decodeBase64(b64);
    let ms = Infinity;
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      out = decodeBase64(b64);
      ms = Math.min(ms, performance.now() - t0);
    }
    console.log(`base64: 30 MB decoded in ${ms.toFixed(1)} ms`);
    expect(out.length).toBe(data.length);
    expect(ms).toBeLessThan(2000);
  });
});

describe("decoding stops one byte past max (a part bigger than the scanner takes is never decoded whole)", () => {
  const data = pseudoRandom(100_000, 9);
  const b64 = new TextEncoder().encode(base64Lines(data));
  const qp = new TextEncoder().encode(Array.from(data.subarray(0, 30_000), (b) => `=${b.toString(16).padStart(2, "0").toUpperCase()}`).join("").replace(/.{72}/g, "$&=\r\n"));
  for (const max of [0, 1, 2, 3, 4, 57, 1000, 99_999]) {
    test(`max ${max}`, () => {
      const got = decodeBase64(b64, false, max);
      expect(got.length).toBe(max + 1);
      expect(Buffer.from(got).equals(Buffer.from(data.subarray(0, max + 1)))).toBe(true);
      if (max < 30_000) {
        const q = decodeQuotedPrintable(qp, max);
        expect(Buffer.from(q).equals(Buffer.from(data.subarray(0, max + 1)))).toBe(true);
      }
    });
  }
  test("at or past the decoded size nothing is cut", () => {
    expect(Buffer.from(decodeBase64(b64, false, 100_000)).equals(Buffer.from(data))).toBe(true);
    expect(decodeQuotedPrintable(qp, 30_000).length).toBe(30_000);
    const part = parseMessage(new TextEncoder().encode(`Content-Transfer-Encoding: base64\r\n\r\n${base64Lines(data)}`));
    expect(decodePartBody(new TextEncoder().encode(`Content-Transfer-Encoding: base64\r\n\r\n${base64Lines(data)}`), part, 500).length).toBe(501);
  });
});
