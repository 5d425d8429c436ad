// Big decoded bodies go into memory the thread keeps between scans: a kept buffer is handed out
// again, never to two bodies in use at once — not to a body nested in one being scanned, not to two
// scans that interleave on one thread — so every detection still comes out of the right bytes.
import { afterAll, describe, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { DEFAULT_SCAN_LIMITS } from "../../../core/limits.ts";
import { keptDecodeBytes, leaseDecodeBuffer } from "../../../core/scan/decode-buffers.ts";
import { BuiltinEngine } from "../../../core/scan/engines/builtin.ts";
import { scanMessage } from "../../../core/scan/pipeline.ts";
import { makeZip } from "../../helpers/archives.ts";
import { writeSigDir } from "../../helpers/clamav.ts";
import { attachment, message, multipart, pseudoRandom } from "../../helpers/messages.ts";

const MB = 1 << 20;
const md5 = (b: Uint8Array) => new Bun.CryptoHasher("md5").update(b).digest("hex");
const blob = pseudoRandom(1.5 * MB, 9);
const other = pseudoRandom(1.5 * MB, 10);
const sigDir = writeSigDir({ "local.hdb": `${md5(blob)}:${blob.length}:Local.Big\n` });
const { engine } = await BuiltinEngine.load(sigDir);
afterAll(() => rmSync(sigDir, { recursive: true, force: true }));

const bytes = (s: string) => Buffer.from(s, "latin1");
const scan = (raw: Uint8Array) => scanMessage(raw, { engine, limits: DEFAULT_SCAN_LIMITS }).then((s) => s.result);

describe("decode buffers", () => {
  test("a buffer given back is handed out again; two leases at once never share one", () => {
    const a = leaseDecodeBuffer();
    const first = a.alloc(2 * MB).buffer;
    a.release();
    const b = leaseDecodeBuffer();
    const c = leaseDecodeBuffer();
    const again = b.alloc(1.5 * MB).buffer;
    expect(again).toBe(first);
    expect(c.alloc(1.5 * MB).buffer).not.toBe(first);
    b.release();
    c.release();
    expect(keptDecodeBytes()).toBeGreaterThanOrEqual(2 * MB);
    // Past its cap a buffer is not kept.
    const d = leaseDecodeBuffer();
    d.alloc(40 * MB);
    d.release();
    expect(keptDecodeBytes()).toBeLessThanOrEqual(64 * MB);
  });

  test("two big attachments in turn: each decoded into kept memory, the signature found in the second", async () => {
    const raw = bytes(message(multipart("a", [attachment("pad.bin", pseudoRandom(2 * MB, 1)), attachment("blob.bin", blob)])));
    for (let round = 0; round < 2; round++) {
      const r = await scan(raw);
      expect(r.verdict).toMatchObject({ kind: "infected", name: "Local.Big" });
      expect(r.findings.map((f) => f.partId)).toEqual(["2"]);
    }
    expect(keptDecodeBytes()).toBeGreaterThan(0);
  });

  test("a big attachment inside a big attached message, decoded while the outer body is in use: memory of its own", async () => {
    const inner = bytes(message(multipart("i", [attachment("blob.bin", blob)])));
    const raw = bytes(message(multipart("o", [attachment("forwarded.eml", inner, "\r\n", "message/rfc822")])));
    const r = await scan(raw);
    expect(r.verdict).toMatchObject({ kind: "infected", name: "Local.Big" });
  });

  test("two scans that interleave on one thread (archives are read asynchronously) each keep their bytes", async () => {
    const infected = bytes(message(multipart("z", [attachment("files.zip", await makeZip([{ name: "blob.bin", data: blob }]))])));
    const clean = bytes(message(multipart("z", [attachment("files.zip", await makeZip([{ name: "other.bin", data: other }]))])));
    const [a, b, c] = await Promise.all([scan(infected), scan(clean), scan(infected)]);
    expect(a.verdict).toMatchObject({ kind: "infected", name: "Local.Big" });
    expect(b.verdict).toEqual({ kind: "clean" });
    expect(c.verdict).toMatchObject({ kind: "infected", name: "Local.Big" });
  });
});
