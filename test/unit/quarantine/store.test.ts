// The quarantine store as an administrator relies on it: entries listed in time order, owner-only
// files, originals restored byte for byte, nothing overwritten, crashes leaving no phantom entries.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { QuarantineError, QuarantineStore, isQuarantineId } from "../../../core/quarantine/store.ts";
import type { Verdict } from "../../../core/scan/verdict.ts";
import { eicar } from "../../helpers/eicar.ts";

const verdict: Verdict = { kind: "infected", name: "Eicar-Test-Signature", path: 'attachment "eicar.com"' };
let root: string;
let dir: string;

function message(n: number): Uint8Array<ArrayBuffer> {
  const head = new TextEncoder().encode(`From: a@example.org\r\nSubject: ${n}\r\n\r\n`);
  return new Uint8Array([...head, ...eicar(), 0x0d, 0x0a, ...new Uint8Array(n).fill(0x41)]);
}

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "qtest-"));
  dir = join(root, "state", "quarantine");
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("QuarantineStore", () => {
  test("put stores the original with metadata beside it, owner-only", async () => {
    const q = new QuarantineStore(dir);
    const raw = message(10);
    const e = await q.put(raw, { verdict, source: "pop3 alice@mail.example.org #3" });
    expect(isQuarantineId(e.id)).toBe(true);
    expect(e.size).toBe(raw.length);
    expect(e.sha256).toBe(new Bun.CryptoHasher("sha256").update(raw).digest("hex"));
    expect(e.path).toBe(join(dir, `${e.id}.eml`));
    expect(Math.abs(Date.parse(e.time) - Date.now())).toBeLessThan(60_000);
    expect(new Uint8Array(await readFile(e.path))).toEqual(raw);
    expect((await readdir(dir)).sort()).toEqual([`${e.id}.eml`, `${e.id}.json`]);
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    expect((await stat(e.path)).mode & 0o777).toBe(0o600);
    expect((await stat(join(dir, `${e.id}.json`))).mode & 0o777).toBe(0o600);
    const meta = JSON.parse(await readFile(join(dir, `${e.id}.json`), "utf8"));
    expect(meta).toEqual({ id: e.id, time: e.time, verdict, source: e.source, size: e.size, sha256: e.sha256, from: "a@example.org", subject: "10" });
    // The id is the start of the SHA-256: the same message is one entry however often it is kept.
    expect(e.id).toBe(e.sha256.slice(0, 20));
    expect((await q.put(raw, { verdict, source: "again" })).id).toBe(e.id);
    expect((await q.list()).length).toBe(1);
    expect(await q.list()).toEqual([e]);
    const got = await q.get(e.id);
    expect(got!.entry).toEqual(e);
    expect(got!.bytes).toEqual(raw);
  });

  test("an existing directory with loose permissions is tightened", async () => {
    await Bun.write(join(dir, ".keep"), "");
    const { chmod } = await import("node:fs/promises");
    await chmod(dir, 0o755);
    await new QuarantineStore(dir).put(message(1), { verdict, source: "x" });
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
  });

  test("ids differ per message; list is oldest first", async () => {
    const q = new QuarantineStore(dir);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      ids.push((await q.put(message(i), { verdict, source: `m${i}` })).id);
      await Bun.sleep(2);
    }
    expect(new Set(ids).size).toBe(5);
    const listed = await q.list();
    expect(listed.map((e) => e.id)).toEqual(ids);
    expect(listed.map((e) => e.time)).toEqual([...listed.map((e) => e.time)].sort());
  });

  test("delete removes an entry; enforce drops what is too old, then the oldest until the rest fit", async () => {
    const q = new QuarantineStore(dir);
    const es = [];
    for (let i = 0; i < 4; i++) { es.push(await q.put(message(1000 + i), { verdict, source: `m${i}` })); await Bun.sleep(2); }
    expect(await q.delete(es[0]!.id)).toBe(true);
    expect(await q.delete(es[0]!.id)).toBe(false);
    await expect(q.delete("../etc")).rejects.toThrow("not a quarantine id");
    // Too old: only what is older than a day from "now" two days on goes; then size keeps one entry.
    const later = Date.now() + 2 * 86_400_000;
    expect((await q.enforce({ maxAgeDays: 0, maxSize: es[3]!.size + 10 })).map((e) => e.id)).toEqual([es[1]!.id, es[2]!.id]);
    expect((await q.list()).map((e) => e.id)).toEqual([es[3]!.id]);
    expect((await q.enforce({ maxAgeDays: 1, maxSize: 0 }, later)).map((e) => e.id)).toEqual([es[3]!.id]);
    expect(await q.list()).toEqual([]);
  });

  test("concurrent puts (also from two store objects on one directory) all land intact", async () => {
    const a = new QuarantineStore(dir);
    const b = new QuarantineStore(dir);
    const msgs = Array.from({ length: 40 }, (_, i) => message(i * 997));
    const entries = await Promise.all(msgs.map((m, i) => (i % 2 ? a : b).put(m, { verdict, source: `s${i}` })));
    const listed = await a.list();
    expect(listed.length).toBe(40);
    expect(new Set(listed.map((e) => e.id)).size).toBe(40);
    for (const [i, e] of entries.entries()) {
      const got = await b.get(e.id);
      expect(got!.bytes).toEqual(msgs[i]!);
      expect(got!.entry.source).toBe(`s${i}`);
    }
    expect((await readdir(dir)).filter((n) => n.startsWith("."))).toEqual([]);
  });

  test("a crash mid-put (temp file left, or .eml without metadata, or torn metadata) shows no entry", async () => {
    const q = new QuarantineStore(dir);
    const ok = await q.put(message(3), { verdict, source: "ok" });
    await writeFile(join(dir, ".tmp-0123456789abcdef"), "half a mess");
    await writeFile(join(dir, "20240101T000000000Z-00000000000000aa.eml"), "orphan");
    await writeFile(join(dir, "20240101T000000000Z-00000000000000bb.json"), '{"id":"2024');
    await writeFile(join(dir, "not-an-id.json"), "{}");
    expect((await q.list()).map((e) => e.id)).toEqual([ok.id]);
    expect(await q.get("20240101T000000000Z-00000000000000aa")).toBeNull();
    expect(await q.get("20240101T000000000Z-00000000000000bb")).toBeNull();
  });

  test("list of a store never written is empty, and does not create the directory", async () => {
    expect(await new QuarantineStore(dir).list()).toEqual([]);
    expect(await stat(dir).catch(() => null)).toBeNull();
  });

  test("get refuses anything but an id (no path traversal)", async () => {
    const q = new QuarantineStore(dir);
    await q.put(message(1), { verdict, source: "x" });
    for (const bad of ["../x", "", "..", "20240101T000000000Z-00000000000000aa/../../etc/passwd", "a.json"]) {
      expect(await q.get(bad)).toBeNull();
      await expect(q.restore(bad, root)).rejects.toMatchObject({ code: "bad-id" });
    }
  });
});

describe("restore", () => {
  test("into a directory as <id>.eml, or to a file path; byte-identical", async () => {
    const q = new QuarantineStore(dir);
    const raw = message(50);
    const e = await q.put(raw, { verdict, source: "x" });
    const out1 = await q.restore(e.id, root);
    expect(out1).toBe(join(root, `${e.id}.eml`));
    expect(new Uint8Array(await readFile(out1))).toEqual(raw);
    const out2 = await q.restore(e.id, join(root, "again.eml"));
    expect(out2).toBe(join(root, "again.eml"));
    expect(new Uint8Array(await readFile(out2))).toEqual(raw);
    expect((await readdir(root)).filter((n) => n.startsWith("."))).toEqual([]);
  });

  test("never overwrites an existing file", async () => {
    const q = new QuarantineStore(dir);
    const e = await q.put(message(5), { verdict, source: "x" });
    const target = join(root, "mine.eml");
    await writeFile(target, "precious");
    const err = await q.restore(e.id, target).catch((x) => x);
    expect(err).toBeInstanceOf(QuarantineError);
    expect(err.code).toBe("exists");
    expect(await readFile(target, "utf8")).toBe("precious");
    await q.restore(e.id, root);
    expect((await q.restore(e.id, root).catch((x) => x)).code).toBe("exists");
    expect((await readdir(root)).filter((n) => n.startsWith("."))).toEqual([]);
  });

  test("unknown ids and tampered contents are refused", async () => {
    const q = new QuarantineStore(dir);
    expect((await q.restore("20240101T000000000Z-00000000000000aa", root).catch((x) => x)).code).toBe("not-found");
    const e = await q.put(message(5), { verdict, source: "x" });
    await writeFile(e.path, "changed");
    expect((await q.restore(e.id, root).catch((x) => x)).code).toBe("corrupt");
    expect(await stat(join(root, `${e.id}.eml`)).catch(() => null)).toBeNull();
  });
});
