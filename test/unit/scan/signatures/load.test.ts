// Loading a directory: plain files, .cvd/.cld containers, unsupported files, the report, and EICAR.
import { expect, test } from "bun:test";
import { BuiltinEngine } from "../../../../core/scan/engines/builtin.ts";
import { formatLoadReport } from "../../../../core/scan/signatures/load.ts";
import { eicar } from "../../../helpers/eicar.ts";
import { buildCvd, writeSigDir } from "../../../helpers/clamav.ts";

const enc = new TextEncoder();
const hex = (s: string) => Buffer.from(s).toString("hex");
const md5 = (d: Uint8Array) => new Bun.CryptoHasher("md5").update(d).digest("hex");
const hashed = enc.encode("exact file content\n");

test("EICAR is always detected, with nothing loaded, when the object starts with it", () => {
  const e = BuiltinEngine.eicarOnly();
  expect(e.signatureCount).toBe(1);
  expect(e.scan(eicar())?.name).toBe("Eicar-Test-Signature");
  expect(e.scan(Buffer.concat([eicar(), enc.encode("   \r\n trailing bytes")]))?.name).toBe("Eicar-Test-Signature");
  expect(e.scan(Buffer.concat([enc.encode(" "), eicar()]))).toBeNull();
  expect(e.scan(eicar().subarray(0, 67))).toBeNull();
  expect(e.scan(new Uint8Array(0))).toBeNull();
});

test("load(null) is EICAR only; a missing directory rejects", async () => {
  const { engine, report } = await BuiltinEngine.load(null);
  expect(engine.scan(eicar())?.name).toBe("Eicar-Test-Signature");
  expect(report).toEqual({ files: [], unsupported: [], total: 0 });
  await expect(BuiltinEngine.load("/nonexistent/mailsentry-sigs")).rejects.toThrow();
});

test("a directory of .hdb/.ndb and a .cvd with members; other files are reported", async () => {
  const cvd = buildCvd([
    { name: "main.info", data: "ClamAV-VDB:...\n" },
    { name: "main.hdb", data: `${md5(hashed)}:${hashed.length}:Cvd.Hash\n` },
    { name: "main.ndb", data: `Cvd.Body:0:*:${hex("in the cvd")}\n` },
    { name: "main.ldb", data: "L1;Engine:51-255,Target:0;0;6162\nL2;Engine:51-255,Target:0;0;6364\n" },
    { name: "main.mdb", data: "1:aa:X\n" },
  ]);
  const dir = writeSigDir({
    "main.cvd": cvd,
    "local.ndb": `Local.Body:0:*:${hex("local pattern")}\nBroken:0:*:zz\n`,
    "local.hdu": `${md5(hashed)}:${hashed.length}:Pua\n`,
    "notes.txt": "hello\n",
  });
  const { engine, report } = await BuiltinEngine.load(dir);
  expect(engine.scan(hashed)?.name).toBe("Cvd.Hash");
  expect(engine.scan(enc.encode("xx in the cvd xx"))?.name).toBe("Cvd.Body");
  expect(engine.scan(enc.encode("a local pattern"))?.name).toBe("Local.Body");
  expect(engine.scan(eicar())?.name).toBe("Eicar-Test-Signature");
  expect(report.total).toBe(3);
  expect(engine.signatureCount).toBe(4);
  const files = report.files.map((f) => [f.path.slice(dir.length + 1), f.kind, f.signatures]);
  expect(files).toEqual([
    ["local.ndb", "ndb", 1],
    ["main.cvd/main.info", "metadata", 0],
    ["main.cvd/main.hdb", "hdb", 1],
    ["main.cvd/main.ndb", "ndb", 1],
  ]);
  const unsupported = report.unsupported.map((u) => [u.file.slice(dir.length + 1), u.count]);
  expect(unsupported).toEqual([
    ["local.hdu", 1],
    ["local.ndb", 1],
    ["main.cvd/main.ldb", 2],
    ["main.cvd/main.mdb", 1],
    ["notes.txt", 1],
  ]);
  const lines = formatLoadReport(report);
  expect(lines[0]).toContain("signatures: 3 loaded");
  expect(lines.some((l) => l.includes("main.cvd/main.ldb: 2") && l.includes("logical"))).toBe(true);
});

test("a .cld with a plain tar loads; a .cvd whose MD5 does not match is reported, not loaded", async () => {
  const members = [{ name: "daily.ndb", data: `Daily.Body:0:*:${hex("daily pattern")}\n` }];
  const dir = writeSigDir({ "daily.cld": buildCvd(members, { gzip: false }), "bad.cvd": buildCvd(members, { badMd5: true }), "junk.cvd": "nope" });
  const { engine, report } = await BuiltinEngine.load(dir);
  expect(engine.scan(enc.encode("a daily pattern"))?.name).toBe("Daily.Body");
  expect(report.total).toBe(1);
  const reasons = report.unsupported.map((u) => `${u.file.slice(dir.length + 1)}: ${u.reason}`);
  expect(reasons).toEqual([
    "bad.cvd: corrupt container (MD5 in header does not match)",
    "junk.cvd: not a ClamAV-VDB container (bad 512-byte header)",
  ]);
});
