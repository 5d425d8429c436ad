// Hash signatures (.hdb/.hsb): MD5, SHA1, SHA256, exact and `*` sizes, functionality levels.
import { expect, test } from "bun:test";
import { BuiltinEngine } from "../../../../core/scan/engines/builtin.ts";
import { loadSignatureFiles } from "../../../../core/scan/signatures/load.ts";

const enc = new TextEncoder();
const digest = (algo: "md5" | "sha1" | "sha256", d: Uint8Array) => new Bun.CryptoHasher(algo).update(d).digest("hex");
const load = (files: Record<string, string>) =>
  loadSignatureFiles(Object.entries(files).map(([name, text]) => ({ name, data: enc.encode(text) })));

const bad = enc.encode("this attachment is known bad\n");
const other = enc.encode("this attachment is known ok!\n"); // same size, different bytes

test("md5, sha1 and sha256 by size and digest, in .hdb and .hsb", () => {
  for (const algo of ["md5", "sha1", "sha256"] as const) {
    for (const file of ["x.hdb", "x.hsb"]) {
      const { set, report } = load({ [file]: `${digest(algo, bad)}:${bad.length}:Bad.${algo}\n` });
      expect(report.total).toBe(1);
      const e = new BuiltinEngine(set);
      expect(e.scan(bad)?.name).toBe(`Bad.${algo}`);
      expect(e.scan(other)).toBeNull();
    }
  }
});

test("a size that differs means no match even with the right digest", () => {
  const { set } = load({ "x.hdb": `${digest("md5", bad)}:${bad.length + 1}:Bad\n` });
  expect(new BuiltinEngine(set).scan(bad)).toBeNull();
});

test("`*` size needs a minimum functionality level of 73, as in ClamAV", () => {
  const ok = load({ "x.hsb": `${digest("sha256", bad)}:*:AnySize:73\n` });
  expect(new BuiltinEngine(ok.set).scan(bad)?.name).toBe("AnySize");
  const refused = load({ "x.hsb": `${digest("sha256", bad)}:*:AnySize\n` });
  expect(refused.report.total).toBe(0);
  expect(refused.report.unsupported[0].count).toBe(1);
  expect(refused.report.unsupported[0].reason).toContain("73");
});

test("signatures for a newer engine are skipped and reported", () => {
  const { set, report } = load({ "x.hdb": `${digest("md5", bad)}:${bad.length}:Future:999\n${digest("md5", bad)}:${bad.length}:Old:1:10\n` });
  expect(new BuiltinEngine(set).scan(bad)).toBeNull();
  expect(report.unsupported.reduce((n, u) => n + u.count, 0)).toBe(2);
});

test("malformed lines are counted per reason", () => {
  const { report } = load({ "x.hdb": "nothex:10:A\n" + "0".repeat(31) + ":10:B\n" + "0".repeat(32) + ":ten:C\n# comment\n\n" });
  expect(report.unsupported.map((u) => u.count).reduce((a, b) => a + b, 0)).toBe(3);
  expect(report.total).toBe(0);
});

test(".fp allowlist drops a detection of that exact object; .ign2 disables a signature by name", () => {
  const sigs = { "x.ndb": `Body.Bad:0:*:${Buffer.from("known bad").toString("hex")}\n` };
  const plain = load(sigs);
  expect(new BuiltinEngine(plain.set).scan(bad)?.name).toBe("Body.Bad");
  const fp = load({ ...sigs, "local.fp": `${digest("md5", bad)}:${bad.length}:Not.A.Virus\n` });
  expect(new BuiltinEngine(fp.set).scan(bad)).toBeNull();
  const ign = load({ ...sigs, "local.ign2": "Body.Bad\n" });
  expect(new BuiltinEngine(ign.set).scan(bad)).toBeNull();
  expect(ign.report.unsupported.some((u) => u.reason.includes("ignore list") && u.count === 1)).toBe(true);
});
