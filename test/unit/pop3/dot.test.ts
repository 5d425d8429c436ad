import { describe, expect, test } from "bun:test";
import { DotDecoder, DotEncoder, DotTerminatorScanner, concatBytes, stuffBody } from "../../../core/pop3/dot.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

/** Splits bytes at the given cut points. */
function split(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let at = 0;
  for (const c of [...cuts].sort((a, b) => a - b)) { out.push(bytes.subarray(at, c)); at = c; }
  out.push(bytes.subarray(at));
  return out;
}

function randomCuts(n: number, len: number, seed: number): number[] {
  let x = seed;
  const rnd = () => ((x = (x * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  return Array.from({ length: n }, () => Math.floor(rnd() * (len + 1)));
}

function decodeAll(chunks: Uint8Array[]): { body: string; done: boolean; rest: string } {
  const d = new DotDecoder();
  const body: Uint8Array[] = [];
  let rest: Uint8Array = new Uint8Array(0);
  let done = false;
  for (const c of chunks) {
    const step = d.push(c);
    body.push(...step.chunks);
    if (step.done) { done = true; rest = concatBytes([rest, step.rest]); }
  }
  return { body: dec(concatBytes(body)), done, rest: dec(rest) };
}

function encodeAll(chunks: Uint8Array[]): string {
  const e = new DotEncoder();
  const out: Uint8Array[] = [];
  for (const c of chunks) out.push(...e.push(c));
  out.push(e.end());
  return dec(concatBytes(out));
}

const CASES: [string, string][] = [
  // [body, wire form]
  ["Subject: a\r\n\r\nhello\r\n", "Subject: a\r\n\r\nhello\r\n.\r\n"],
  [".first line dot\r\nx\r\n", "..first line dot\r\nx\r\n.\r\n"],
  ["a\r\n.\r\nb\r\n", "a\r\n..\r\nb\r\n.\r\n"],
  ["a\r\n..\r\n.x\r\n", "a\r\n...\r\n..x\r\n.\r\n"],
  ["", ".\r\n"],
  [".\r\n", "..\r\n.\r\n"],
  ["line\r\n\r\n.\r\n\r\n", "line\r\n\r\n..\r\n\r\n.\r\n"],
];

describe("dot decoder", () => {
  for (const [body, wire] of CASES) {
    test(`decodes ${JSON.stringify(wire)} whole, byte by byte and in random splits`, () => {
      const bytes = enc(wire + "+OK next\r\n");
      const whole = decodeAll([bytes]);
      expect(whole).toEqual({ body, done: true, rest: "+OK next\r\n" });
      const byByte = decodeAll(Array.from(bytes, (_, i) => bytes.subarray(i, i + 1)));
      expect(byByte).toEqual(whole);
      for (let seed = 1; seed < 40; seed++) {
        expect(decodeAll(split(bytes, randomCuts(3, bytes.length, seed)))).toEqual(whole);
      }
    });
  }

  test("is not done before the terminating line, even when \\r\\n. is split across chunks", () => {
    const d = new DotDecoder();
    expect(d.push(enc("abc\r\n")).done).toBe(false);
    expect(d.push(enc(".")).done).toBe(false);
    expect(d.push(enc("\r")).done).toBe(false);
    const last = d.push(enc("\n"));
    expect(last.done).toBe(true);
    expect(d.done).toBe(true);
  });

  test(".\\r\\n inside a line is data", () => {
    expect(decodeAll([enc("x.\r\ny .\r\n.\r\n")]).body).toBe("x.\r\ny .\r\n");
  });

  test("a connection cut mid-body never reports done", () => {
    const r = decodeAll([enc("a\r\nb\r\n.")]);
    expect(r.done).toBe(false);
  });
});

describe("dot encoder", () => {
  for (const [body, wire] of CASES) {
    test(`encodes ${JSON.stringify(body)} whole, byte by byte and in random splits`, () => {
      const bytes = enc(body);
      expect(encodeAll([bytes])).toBe(wire);
      expect(encodeAll(Array.from(bytes, (_, i) => bytes.subarray(i, i + 1)))).toBe(wire);
      for (let seed = 1; seed < 40; seed++) expect(encodeAll(split(bytes, randomCuts(3, bytes.length, seed)))).toBe(wire);
    });
  }

  test("a body of many dot-leading lines becomes one stuffed copy, not a view per line", () => {
    for (const lines of [64, 65, 100_000]) {
      const body = enc("Subject: x\r\n\r\n" + ".line\r\n".repeat(lines));
      const pieces = new DotEncoder().push(body);
      expect(pieces.length).toBeLessThanOrEqual(2 * 64 + 1);
      expect(dec(concatBytes(pieces))).toBe(dec(body).replace(/\n\./g, "\n.."));
    }
    // The first line counts too, in both ways of building the output.
    for (const lines of [3, 200]) {
      const body = enc(".first\r\n".repeat(lines));
      expect(dec(concatBytes(new DotEncoder().push(body)))).toBe(".." + dec(body).slice(1).replace(/\n\./g, "\n.."));
    }
  });

  test("a body without a final line break gets CRLF before the terminator", () => {
    expect(dec(stuffBody(enc("no newline")))).toBe("no newline\r\n.\r\n");
  });

  test("round trip: decode(encode(x)) == x for random bodies full of dots and line breaks", () => {
    const alphabet = [".", "\r\n", "a", "\r", "\n", ".."];
    let x = 7;
    for (let n = 0; n < 200; n++) {
      let s = "";
      const len = (x = (x * 48271) % 2147483647) % 30;
      for (let i = 0; i < len; i++) s += alphabet[(x = (x * 48271) % 2147483647) % alphabet.length];
      if (!s.endsWith("\n")) s += "\r\n";
      const wire = enc(encodeAll([enc(s)]));
      expect(decodeAll(split(wire, randomCuts(2, wire.length, n + 1))).body).toBe(s);
    }
  });
});

/** Where the decoder says the body ends: the wire length minus what it hands back as the next reply. */
function decoderEnd(bytes: Uint8Array): number {
  const d = new DotDecoder();
  const step = d.push(bytes);
  return step.done ? bytes.length - step.rest.length : -1;
}

/** The scanner over chunks: the end as an offset into the whole stream, or -1. */
function scannerEnd(chunks: Uint8Array[]): number {
  const s = new DotTerminatorScanner();
  let base = 0;
  for (const c of chunks) {
    const at = s.push(c);
    if (at >= 0) return base + at;
    base += c.length;
  }
  return -1;
}

describe("dot terminator scanner", () => {
  const wires = [
    ...CASES.map(([, wire]) => wire),
    "a\n.\n", // bare-LF server
    "a\r\n.\rb\r\n.\r\n", // ".\r" then data: not the end
    "..\r\n...\r\n.\r\n",
    "x\r\n.x\r\n.\r\n", // an unstuffed dot line (lenient servers) is data
  ];
  for (const wire of wires) {
    test(`finds the end of ${JSON.stringify(wire)} where the decoder does, whole, byte by byte and in random splits`, () => {
      const bytes = enc(wire + "+OK next\r\n.\r\n");
      const end = decoderEnd(bytes);
      expect(end).toBe(enc(wire).length);
      expect(scannerEnd([bytes])).toBe(end);
      expect(scannerEnd(Array.from(bytes, (_, i) => bytes.subarray(i, i + 1)))).toBe(end);
      for (let seed = 1; seed < 60; seed++) expect(scannerEnd(split(bytes, randomCuts(4, bytes.length, seed)))).toBe(end);
    });
  }

  test("agrees with the decoder on random stuffed bodies in random splits, and never ends a cut-off body", () => {
    const alphabet = [".", "\r\n", "a", "\r", "\n", "..", "\n."];
    let x = 11;
    for (let n = 0; n < 300; n++) {
      let s = "";
      const len = (x = (x * 48271) % 2147483647) % 40;
      for (let i = 0; i < len; i++) s += alphabet[(x = (x * 48271) % 2147483647) % alphabet.length];
      const wire = enc(s + "\r\n.\r\n+OK");
      const end = decoderEnd(wire);
      expect(scannerEnd(split(wire, randomCuts(3, wire.length, n + 1)))).toBe(end);
      if (end > 0) expect(scannerEnd([wire.subarray(0, end - 1)])).toBe(-1);
    }
  });
});
