// The multi-pattern matchers report exactly the occurrences a naive search finds.
import { expect, test } from "bun:test";
import { Gram4Matcher } from "../../../../core/scan/signatures/gram.ts";
import { Automaton } from "../../../../core/scan/signatures/matcher.ts";

function rng(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x9e3779b9) >>> 0) / 2 ** 32);
}

function naive(keys: Uint8Array[], data: Uint8Array): string[] {
  const out: string[] = [];
  for (let end = 0; end < data.length; end++) {
    keys.forEach((k, id) => {
      const s = end - k.length + 1;
      if (s >= 0 && k.every((b, i) => data[s + i] === b)) out.push(`${id}@${end}`);
    });
  }
  return out.sort();
}

function collect(m: { scan(d: Uint8Array, f: (id: number, end: number) => boolean): boolean }, data: Uint8Array): string[] {
  const out: string[] = [];
  m.scan(data, (id, end) => { out.push(`${id}@${end}`); return false; });
  return out.sort();
}

// A small alphabet makes overlapping and nested keys common, which is where Aho-Corasick goes wrong.
const alphabet = (r: () => number, n: number) => Uint8Array.from({ length: n }, () => 0x61 + Math.floor(r() * 3));

test("Aho-Corasick finds every occurrence of keys of 1–5 bytes, overlapping and nested", () => {
  const r = rng(7);
  for (let round = 0; round < 20; round++) {
    const keys = Array.from({ length: 12 }, () => alphabet(r, 1 + Math.floor(r() * 5)));
    const data = alphabet(r, 300);
    expect(collect(Automaton.build(keys), data)).toEqual(naive(keys, data));
  }
});

test("the 4-gram filter finds every occurrence, including duplicate keys", () => {
  const r = rng(9);
  for (let round = 0; round < 20; round++) {
    const keys = Array.from({ length: 30 }, () => alphabet(r, 4));
    keys.push(keys[0]);
    const data = alphabet(r, 400);
    expect(collect(new Gram4Matcher(keys), data)).toEqual(naive(keys, data));
  }
});

test("binary keys over random bytes, and early stop", () => {
  const r = rng(11);
  const data = Uint8Array.from({ length: 20000 }, () => Math.floor(r() * 256));
  const keys = Array.from({ length: 200 }, (_, i) => data.slice(i * 97, i * 97 + 4));
  expect(collect(new Gram4Matcher(keys), data)).toEqual(naive(keys, data));
  expect(collect(Automaton.build(keys.map((k) => k.subarray(0, 3))), data)).toEqual(naive(keys.map((k) => k.subarray(0, 3)), data));
  let calls = 0;
  expect(new Gram4Matcher(keys).scan(data, () => ++calls === 3)).toBe(true);
  expect(calls).toBe(3);
});
