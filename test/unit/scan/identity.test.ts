// The engine's identity: the same signatures always name themselves the same way, and any change to
// the databases read gives a new identity (so clean verdicts remembered under the old one lapse).
import { afterAll, expect, test } from "bun:test";
import { cpSync, mkdtempSync, renameSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BuiltinEngine } from "../../../core/scan/engines/builtin.ts";
import { HashDb } from "../../../core/scan/signatures/hash.ts";
import { loadSignatureFiles } from "../../../core/scan/signatures/load.ts";
import { buildCvd, writeSigDir } from "../../helpers/clamav.ts";

const hex = (s: string) => Buffer.from(s).toString("hex");
const md5 = (s: string) => new Bun.CryptoHasher("md5").update(s).digest("hex");
const FILES = {
  "local.ndb": `Local.Body:0:*:${hex("local pattern")}\n`,
  "local.hdb": `${md5("exact content")}:13:Local.Hash\n`,
};
const dirs: string[] = [];
const sigDir = (files: Record<string, string | Uint8Array>) => {
  const d = writeSigDir(files);
  dirs.push(d);
  return d;
};
const identityOf = async (dir: string | null) => (await BuiltinEngine.load(dir)).engine.identity;
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

test("EICAR only has one fixed identity, however it is made", async () => {
  const fixed = BuiltinEngine.eicarOnly().identity;
  expect(fixed).toMatch(/^[0-9a-f]{32}$/);
  // Pinned: changing it silently would make every installed proxy rescan everything once.
  expect(fixed).toBe("94c9851275d6e7120f0e5fbaf5e34e0f");
  expect(BuiltinEngine.eicarOnly().identity).toBe(fixed);
  expect(await identityOf(null)).toBe(fixed);
  expect(await identityOf(sigDir({}))).toBe(fixed);
});

test("the same databases give the same identity, wherever the directory is and in any order", async () => {
  const a = sigDir(FILES);
  const moved = join(mkdtempSync(join(tmpdir(), "mailsentry-moved-")), "sigs");
  dirs.push(moved);
  cpSync(a, moved, { recursive: true });
  const first = await identityOf(a);
  expect(first).not.toBe(BuiltinEngine.eicarOnly().identity);
  expect(await identityOf(a)).toBe(first);
  expect(await identityOf(moved)).toBe(first);
  const enc = (name: keyof typeof FILES) => ({ name, data: new TextEncoder().encode(FILES[name]) });
  const forward = new BuiltinEngine(loadSignatureFiles([enc("local.ndb"), enc("local.hdb")]).set).identity;
  const backward = new BuiltinEngine(loadSignatureFiles([enc("local.hdb"), enc("local.ndb")]).set).identity;
  expect(forward).toBe(backward);
  expect(forward).toBe(first);
});

test("changing, adding, removing or renaming a database file changes the identity", async () => {
  const dir = sigDir(FILES);
  const seen = new Set([await identityOf(dir)]);
  const expectNew = async () => {
    const id = await identityOf(dir);
    expect(seen.has(id)).toBe(false);
    seen.add(id);
  };
  writeFileSync(join(dir, "local.ndb"), `Local.Body:0:*:${hex("local pattern!")}\n`);
  await expectNew();
  writeFileSync(join(dir, "extra.hsb"), `${new Bun.CryptoHasher("sha256").update("x").digest("hex")}:1:Extra\n`);
  await expectNew();
  writeFileSync(join(dir, "off.ign2"), "Local.Body\n");
  await expectNew();
  writeFileSync(join(dir, "known.fp"), `${md5("exact content")}:13:Local.Hash\n`);
  await expectNew();
  renameSync(join(dir, "extra.hsb"), join(dir, "extra2.hsb"));
  await expectNew();
  unlinkSync(join(dir, "off.ign2"));
  await expectNew();
});

test("a changed member inside a .cvd changes the identity", async () => {
  const cvd = (pattern: string) => buildCvd([{ name: "main.ndb", data: `Cvd.Body:0:*:${hex(pattern)}\n` }]);
  const one = await identityOf(sigDir({ "main.cvd": cvd("in the cvd") }));
  expect(await identityOf(sigDir({ "main.cvd": cvd("in the cvd") }))).toBe(one);
  expect(await identityOf(sigDir({ "main.cvd": cvd("in the cvD") }))).not.toBe(one);
});

test("a hand-built set the engine cannot name never shares an identity", () => {
  const { set } = loadSignatureFiles([{ name: "a.ndb", data: new TextEncoder().encode(FILES["local.ndb"]) }]);
  const unnamed = { hashes: set.hashes, allow: new HashDb(), body: set.body };
  const a = new BuiltinEngine(unnamed).identity, b = new BuiltinEngine(unnamed).identity;
  expect(a).not.toBe(b);
  expect(a).not.toBe(new BuiltinEngine(set).identity);
});
