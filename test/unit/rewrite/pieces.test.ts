// The building blocks: splicing, line endings, the subject tag on odd Subject fields, notice encoding,
// and a randomised check that cleaning any subset of parts keeps valid MIME and untouched bytes.
import { expect, test } from "bun:test";
import PostalMime from "postal-mime";
import { parseMessage, walkParts } from "../../../core/mime/parse.ts";
import { applyPolicy, policyFromConfig } from "../../../core/rewrite/index.ts";
import { encodeNotice } from "../../../core/rewrite/notice.ts";
import { filenameParam, statusEdits } from "../../../core/rewrite/headers.ts";
import { lineEnding, splice } from "../../../core/rewrite/splice.ts";
import { DEFAULT_CONFIG } from "../../../core/config/types.ts";
import { EOLS, b64, infectedAt } from "./fixtures.test.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => Buffer.from(b).toString("latin1");

test("splice applies edits in offset order and refuses overlaps", () => {
  const raw = enc("0123456789");
  expect(dec(splice(raw, [{ start: 8, end: 10, bytes: enc("X") }, { start: 0, end: 0, bytes: enc("<") }, { start: 0, end: 2, bytes: new Uint8Array() }]))).toBe("<234567X");
  expect(splice(raw, [])).toBe(raw);
  expect(() => splice(raw, [{ start: 0, end: 5, bytes: enc("") }, { start: 3, end: 6, bytes: enc("") }])).toThrow(RangeError);
});

test("lineEnding follows the message", () => {
  expect(lineEnding(enc("A: b\r\n\r\nx"))).toBe("\r\n");
  expect(lineEnding(enc("A: b\n\nx"))).toBe("\n");
  expect(lineEnding(enc("no line end"))).toBe("\r\n");
});

test("the subject tag goes after the colon on folded, tight and empty Subject fields", () => {
  const cases: [string, string][] = [
    ["Subject:\r\n folded\r\n\r\n", "Subject: [V] \r\n folded\r\n"],
    ["Subject:tight\r\n\r\n", "Subject: [V] tight\r\n"],
    ["SUBJECT :  two\r\n\r\n", "SUBJECT :  [V] two\r\n"],
    ["Subject:\r\n\r\n", "Subject: [V] \r\n"],
  ];
  for (const [msg, want] of cases) {
    const raw = enc(msg);
    const out = dec(splice(raw, statusEdits(raw, parseMessage(raw), "\r\n", { status: "S", product: "P", subjectTag: "[V]" })));
    expect(out).toBe(`X-Virus-Status: S\r\nX-Virus-Scanned: P\r\n${want}\r\n`);
  }
});

test("a non-ASCII subject tag is written as an encoded-word", async () => {
  const raw = enc("From: a@b\r\nSubject: hi\r\n\r\nbody\r\n");
  const out = applyPolicy(raw, parseMessage(raw), infectedAt(["", ""]), { ...policyFromConfig(DEFAULT_CONFIG, "p"), action: "ignore", subjectTag: "[VÍRUS]" });
  expect(/^[\x00-\x7f]*$/.test(dec(out.bytes))).toBe(true);
  expect((await PostalMime.parse(out.bytes)).subject).toBe("[VÍRUS] hi");
});

test("notice encoding: 7bit for ASCII, quoted-printable otherwise, never a line starting with '-'", () => {
  expect(encodeNotice(["plain", "", "text"], "\n")).toEqual({ transferEncoding: "7bit", body: "plain\n\ntext\n" });
  const long = "é-".repeat(100) + " --b1 = end ";
  for (const eol of EOLS) {
    const e = encodeNotice([long, "-leading dash"], eol);
    expect(e.transferEncoding).toBe("quoted-printable");
    const lines = e.body.split(eol).slice(0, -1);
    for (const l of lines) {
      expect(l.length).toBeLessThanOrEqual(76);
      expect(l.startsWith("-")).toBe(false);
      expect(/^[\x21-\x7e ]*$/.test(l)).toBe(true);
    }
    const decoded = Buffer.from(
      e.body.replace(new RegExp(`=${eol}`, "g"), "").replace(/=([0-9A-F]{2})/g, (_, h) => String.fromCharCode(parseInt(h, 16))),
      "latin1",
    ).toString("utf8");
    expect(decoded).toBe(`${long}${eol}-leading dash${eol}`);
  }
});

test("filename parameters: quoted ASCII with escapes, RFC 2231 for the rest", () => {
  expect(filenameParam('a "b".txt')).toBe('filename="a \\"b\\".txt"');
  expect(filenameParam("été (1).txt")).toBe("filename*=utf-8''%C3%A9t%C3%A9%20%281%29.txt");
  expect(filenameParam("x\r\ny")).toBe('filename="x y"');
});

/** Small deterministic PRNG so a failure can be replayed from its seed. */
function rng(seed: number) {
  return () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000);
}

test("cleaning random subsets of random messages keeps valid MIME and every untouched part's bytes", async () => {
  for (let seed = 1; seed <= 60; seed++) {
    const r = rng(seed);
    const eol = r() < 0.5 ? "\r\n" : "\n";
    const n = 1 + Math.floor(r() * 6);
    const lines = ["From: a@example.org", "Subject: s" + seed, 'Content-Type: multipart/mixed; boundary="=_b"', ""];
    for (let i = 0; i < n; i++) {
      lines.push("--=_b");
      if (r() < 0.5) lines.push("Content-Type: text/plain", "", `text ${i} ${"y".repeat(Math.floor(r() * 300))}`);
      else lines.push(`Content-Type: application/octet-stream; name="f${i}.bin"`, "Content-Transfer-Encoding: base64", "", b64(new Uint8Array(Math.floor(r() * 500)).fill(i), eol) + `x${i}`);
    }
    lines.push("--=_b--", "");
    const raw = enc(lines.join(eol));
    const tree = parseMessage(raw);
    const ids = tree.children.map((c) => c.id);
    const hit = ids.filter(() => r() < 0.4);
    if (hit.length === 0) hit.push(ids[0]!);
    const out = applyPolicy(raw, tree, infectedAt(...hit.map((id) => [id, `part ${id}`] as [string, string])), policyFromConfig(DEFAULT_CONFIG, "p"));
    expect(out.applied).toBe("clean");
    expect(out.removed.map((x) => x.partId)).toEqual(hit);
    const after = parseMessage(out.bytes);
    expect([...walkParts(after)].map((p) => p.id)).toEqual([...walkParts(tree)].map((p) => p.id));
    for (const [i, before] of tree.children.entries()) {
      const now = after.children[i]!;
      if (hit.includes(before.id)) expect(now.contentType).toBe("text/plain");
      else expect(dec(out.bytes.subarray(now.start, now.bodyEnd))).toBe(dec(raw.subarray(before.start, before.bodyEnd)));
    }
    const mail = await PostalMime.parse(out.bytes);
    expect(mail.attachments.length).toBe(tree.children.filter((c) => c.filename && !hit.includes(c.id)).length);
    expect((mail.text ?? "").split("mailsentry removed").length - 1).toBe(hit.length);
  }
});
