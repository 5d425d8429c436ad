// Archive readers: sniffing by magic bytes, members of zip/gzip/tar, and every way extraction can fail.
import { describe, expect, test } from "bun:test";
import { readArchive, sniffArchive, type ArchiveMember } from "../../../../core/scan/archive/index.ts";
import { gzip, gzipBomb, makeTar, makeZip, withMethod, zipBomb } from "../../../helpers/archives.ts";
import { pseudoRandom } from "../../../helpers/messages.ts";

const MB = 1 << 20;
const text = (d: Uint8Array) => new TextDecoder().decode(d);

async function members(data: Uint8Array, name = "a", maxFileSize = 10 * MB): Promise<ArchiveMember[]> {
  const kind = sniffArchive(data);
  if (!kind) throw new Error("not an archive");
  const out: ArchiveMember[] = [];
  for await (const m of readArchive(kind, data, name, { maxFileSize })) out.push(m);
  return out;
}

const summary = (ms: ArchiveMember[]) => ms.map((m) => ("data" in m ? [m.name, text(m.data)] : [m.name, m.unscanned]));

describe("sniffArchive", () => {
  test("recognises zip, gzip and tar and nothing else", async () => {
    expect(sniffArchive(await makeZip([{ name: "a", data: "x" }]))).toBe("zip");
    expect(sniffArchive(await makeZip([]))).toBe("zip");
    expect(sniffArchive(gzip("x"))).toBe("gzip");
    expect(sniffArchive(makeTar([{ name: "a", data: "x" }]))).toBe("tar");
    expect(sniffArchive(new TextEncoder().encode("PK is not enough"))).toBeNull();
    expect(sniffArchive(new Uint8Array(4096).fill(0x41))).toBeNull();
    expect(sniffArchive(new Uint8Array(1024))).toBeNull();
    expect(sniffArchive(new Uint8Array(0))).toBeNull();
  });

  test("a zip after a stub or junk is found by its end record and read whole; the signature alone is not a zip", async () => {
    const zip = await makeZip([{ name: "inner.txt", data: "hidden ".repeat(50) }]);
    const prefixed = Buffer.concat([Buffer.from("MZ"), pseudoRandom(70_000), zip]);
    expect(sniffArchive(prefixed)).toBe("zip");
    expect(summary(await members(prefixed))).toEqual([["inner.txt", "hidden ".repeat(50)]]);
    const lure = Buffer.concat([pseudoRandom(5000), Buffer.from([0x50, 0x4b, 5, 6]), Buffer.alloc(18, 1)]);
    expect(sniffArchive(lure)).toBeNull();
    // A record further than 64 KiB from the end is no end record.
    expect(sniffArchive(Buffer.concat([zip, pseudoRandom(70_000)]).subarray(2))).toBeNull();
  });
});

describe("zip", () => {
  test("yields every file member with its bytes, skipping directories", async () => {
    const zip = await makeZip([{ name: "a.txt", data: "alpha" }, { name: "dir/", data: "" }, { name: "dir/b.txt", data: "beta" }]);
    const got = summary(await members(zip)).filter(([n]) => n !== "dir/");
    expect(got).toEqual([["a.txt", "alpha"], ["dir/b.txt", "beta"]]);
  });

  test("an encrypted member is reported, its clear siblings still read", async () => {
    const zip = await makeZip([{ name: "secret.exe", data: "hidden", password: "pw" }, { name: "plain.txt", data: "open" }]);
    expect(summary(await members(zip))).toEqual([["secret.exe", "encrypted"], ["plain.txt", "open"]]);
  });

  test("a bomb stops at maxFileSize, fast and without inflating it, and is called a bomb", async () => {
    const bomb = zipBomb(1024); // 1 GiB of zeros in ~1 MB
    expect(bomb.length).toBeLessThan(2 * MB);
    const t0 = performance.now();
    expect(summary(await members(bomb, "b.zip", 10 * MB))).toEqual([["bomb.bin", "bomb"]]);
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  test("a bomb lying about its size is stopped by the capped sink, with bounded memory", async () => {
    const bomb = zipBomb(1024, "liar.bin", 1000);
    const rss0 = process.memoryUsage().rss;
    const t0 = performance.now();
    const [m] = await members(bomb, "b.zip", 10 * MB);
    expect(m.name).toBe("liar.bin");
    expect("data" in m).toBe(false); // too-large or corrupt: never its data
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(process.memoryUsage().rss - rss0).toBeLessThan(200 * MB);
  });

  test("an honest member larger than the cap is too-large, one under it is read", async () => {
    const zip = await makeZip([{ name: "big", data: pseudoRandom(3000) }, { name: "small", data: "ok" }]);
    expect(summary(await members(zip, "z", 2000))).toEqual([["big", "too-large"], ["small", "ok"]]);
  });

  test("past the cap, a member that inflates over 100:1 is a bomb, in zip and gzip alike", async () => {
    const zip = await makeZip([{ name: "zeros", data: new Uint8Array(300_000) }]);
    expect(summary(await members(zip, "z", 100_000))).toEqual([["zeros", "bomb"]]);
    expect(summary(await members(gzip(new Uint8Array(300_000)), "z.gz", 100_000))).toEqual([["z", "bomb"]]);
    expect(summary(await members(gzip(pseudoRandom(300_000)), "r.gz", 100_000))).toEqual([["r", "too-large"]]);
  });

  test("a member packed with a method the reader lacks (BZip2, LZMA, Implode) is unsupported, not corrupt", async () => {
    const zip = await makeZip([{ name: "a.txt", data: "hello" }, { name: "b.txt", data: "world" }]);
    for (const method of [12, 14, 6]) {
      expect(summary(await members(withMethod(zip, method)))).toEqual([["a.txt", "unsupported"], ["b.txt", "unsupported"]]);
    }
  });

  test("a truncated zip is corrupt, not an exception", async () => {
    const zip = await makeZip([{ name: "a.txt", data: "alpha".repeat(100) }]);
    expect(summary(await members(zip.subarray(0, zip.length - 30)))).toEqual([["", "corrupt"]]);
  });

  test("a member whose compressed data is damaged is corrupt", async () => {
    const zip = await makeZip([{ name: "a.txt", data: "alpha beta gamma ".repeat(500) }]);
    const broken = Uint8Array.from(zip);
    for (let i = 40; i < 80; i++) broken[i] = 0xff;
    const got = await members(broken);
    expect(got.length).toBeGreaterThan(0);
    expect(got.every((m) => "unscanned" in m && m.unscanned === "corrupt")).toBe(true);
  });
});

describe("gzip", () => {
  test("one member named after the archive", async () => {
    expect(summary(await members(gzip("hello"), "notes.txt.gz"))).toEqual([["notes.txt", "hello"]]);
    expect(summary(await members(gzip("x"), "dir/pack.tgz"))).toEqual([["pack.tar", "x"]]);
  });

  test("the name stored in the header (FNAME, after an FEXTRA field) wins; without one the outer name says gunzipped", async () => {
    const plain = gzip("hello");
    // RFC 1952: flags FEXTRA|FNAME, then XLEN + extra bytes, then the NUL-terminated name.
    const extra = Buffer.from([4, 0, 0x41, 0x42, 2, 0]);
    const named = Buffer.concat([plain.subarray(0, 3), Buffer.from([0x0c]), plain.subarray(4, 10), extra, Buffer.from("inner.exe\0", "latin1"), plain.subarray(10)]);
    expect(summary(await members(named, "outer.gz"))).toEqual([["inner.exe", "hello"]]);
    expect(summary(await members(plain, "data.bin"))).toEqual([["data.bin (gunzipped)", "hello"]]);
    expect(summary(await members(plain, ""))).toEqual([["gunzipped", "hello"]]);
  });

  test("a gzip bomb stops at maxFileSize quickly", async () => {
    const bomb = gzipBomb(1024);
    const t0 = performance.now();
    expect(summary(await members(bomb, "z.gz", 10 * MB))).toEqual([["z", "too-large"]]);
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  test("a truncated stream is corrupt", async () => {
    const gz = gzip("hello world ".repeat(1000));
    expect(summary(await members(gz.subarray(0, gz.length - 20), "a.gz"))).toEqual([["a", "corrupt"]]);
  });
});

describe("tar", () => {
  test("members by name, long names through pax headers, contents exact", async () => {
    const long = "deep/".repeat(30) + "file.txt";
    const tar = makeTar([{ name: "a.txt", data: "alpha" }, { name: long, data: "x".repeat(700) }, { name: "empty", data: "" }]);
    expect(summary(await members(tar))).toEqual([["a.txt", "alpha"], [long, "x".repeat(700)], ["empty", ""]]);
  });

  test("a member over maxFileSize is too-large; a damaged header is corrupt; truncation is corrupt", async () => {
    const tar = makeTar([{ name: "big", data: new Uint8Array(5000) }, { name: "ok", data: "fine" }]);
    expect(summary(await members(tar, "t", 4000))).toEqual([["big", "too-large"], ["ok", "fine"]]);
    const bad = Uint8Array.from(tar);
    bad[512 * 11 + 10] ^= 0xff; // header of the second member (after 1 + 10 blocks)
    expect(summary(await members(bad, "t"))).toEqual([["big", "\0".repeat(5000)], ["", "corrupt"]]);
    expect(summary(await members(tar.subarray(0, 2048), "t"))).toEqual([["big", "corrupt"]]);
  });

  test("GNU forms: a base-256 size field and an 'L' long-name member", async () => {
    const tar = Uint8Array.from(makeTar([{ name: "a.bin", data: "alpha" }]));
    tar.fill(0, 124, 136);
    tar[124] = 0x80; // base-256: high bit set, big-endian value in the rest of the field
    tar[135] = 5;
    setChecksum(tar, 0);
    expect(summary(await members(tar))).toEqual([["a.bin", "alpha"]]);

    const long = "l".repeat(150);
    const gnu = Uint8Array.from(makeTar([{ name: "././@LongLink", data: `${long}\0` }, { name: "short", data: "body" }]));
    gnu[156] = "L".charCodeAt(0);
    setChecksum(gnu, 0);
    expect(summary(await members(gnu))).toEqual([[long, "body"]]);
  });

  test("tar.gz unpacks to a tar", async () => {
    const tgz = gzip(makeTar([{ name: "in.txt", data: "inside" }]));
    const [outer] = await members(tgz, "x.tar.gz");
    expect(outer.name).toBe("x.tar");
    if (!("data" in outer)) throw new Error("expected data");
    expect(summary(await members(outer.data))).toEqual([["in.txt", "inside"]]);
  });
});

/** Recomputes the header checksum of the tar block at `at` after a test edited it. */
function setChecksum(tar: Uint8Array, at: number): void {
  tar.fill(0x20, at + 148, at + 156);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += tar[at + i]!;
  Buffer.from(tar.buffer, tar.byteOffset).write(`${sum.toString(8).padStart(6, "0")}\0 `, at + 148, "latin1");
}
