// Body signatures: every wildcard form, alternatives, offsets and target types, each with a near miss.
import { describe, expect, test } from "bun:test";
import { BuiltinEngine } from "../../../../core/scan/engines/builtin.ts";
import { loadSignatureFiles } from "../../../../core/scan/signatures/load.ts";

const enc = new TextEncoder();
const hex = (s: string) => Buffer.from(s, "latin1").toString("hex");

function engineFor(ndb: string) {
  const { set, report } = loadSignatureFiles([{ name: "t.ndb", data: enc.encode(ndb) }]);
  return { engine: new BuiltinEngine(set), report };
}
/** Does a single signature `Sig:0:<offset>:<hexsig>` detect text? */
function hits(sig: string, text: string, offset = "*"): boolean {
  const { engine, report } = engineFor(`Sig:0:${offset}:${sig}\n`);
  expect(report.unsupported).toEqual([]);
  return engine.scan(enc.encode(text))?.name === "Sig";
}

describe("wildcards", () => {
  const cases: [string, string, string[], string[]][] = [
    ["plain", hex("virus"), ["a virus here", "virus"], ["viru s", "VIRUS"]],
    ["??", hex("vi") + "??" + hex("us"), ["viXus", "vi-us"], ["vius", "viXXus"]],
    ["a? high nibble", hex("vir") + "7?" + hex("s"), ["virus", "virps"], ["vir s", "virAs"]],
    ["?a low nibble", hex("vir") + "?5" + hex("s"), ["virus", "vir5s", "virEs"], ["virts", "vir s"]],
    ["*", hex("begin") + "*" + hex("end"), ["beginend", "begin ... lots ... end"], ["endbegin", "begin en"]],
    ["{n}", hex("abc") + "{3}" + hex("xyz"), ["abc123xyz"], ["abc12xyz", "abc1234xyz"]],
    ["{-n}", hex("abc") + "{-2}" + hex("xyz"), ["abcxyz", "abc1xyz", "abc12xyz"], ["abc123xyz"]],
    ["{n-}", hex("abc") + "{2-}" + hex("xyz"), ["abc12xyz", "abc123456789xyz"], ["abcxyz", "abc1xyz"]],
    ["{n-m}", hex("abc") + "{1-3}" + hex("xyz"), ["abc1xyz", "abc123xyz"], ["abcxyz", "abc1234xyz"]],
    ["(a|b)", hex("tro") + "(6a|6e)" + hex("an"), ["trojan", "tronan"], ["trotan"]],
    ["(multi-byte|alternatives)", hex("mal") + `(${hex("ware")}|${hex("icious")})`, ["malware", "malicious"], ["malwa", "malady"]],
    ["!(a|b)", hex("wor") + "!(6d|6b)" + hex("s"), ["wors", "worts"].slice(1), ["worms", "works"]],
    ["leading alternative", `(${hex("x")}|${hex("y")})` + hex("ray"), ["xray", "yray"], ["zray"]],
  ];
  for (const [label, sig, yes, no] of cases) {
    test(label, () => {
      for (const t of yes) expect(hits(sig, t)).toBe(true);
      for (const t of no) expect(hits(sig, t)).toBe(false);
    });
  }

  test("gap after a common key: many hits in one object, still decided right", () => {
    const sig = hex("the ") + "*" + hex("Q9Z");
    const text = "the cat the dog the end ".repeat(2000);
    expect(hits(sig, text)).toBe(false);
    expect(hits(sig, text + "Q9Z")).toBe(true);
  });
});

describe("offsets", () => {
  const sig = hex("MAGIC");
  test("n: only at exactly that offset", () => {
    expect(hits(sig, "xxMAGIC", "2")).toBe(true);
    expect(hits(sig, "xxxMAGIC", "2")).toBe(false);
    expect(hits(sig, "xMAGIC", "2")).toBe(false);
  });
  test("n,m: from n to n+m", () => {
    expect(hits(sig, "xxMAGIC", "2,3")).toBe(true);
    expect(hits(sig, "xxxxxMAGIC", "2,3")).toBe(true);
    expect(hits(sig, "xxxxxxMAGIC", "2,3")).toBe(false);
    expect(hits(sig, "xMAGIC", "2,3")).toBe(false);
  });
  test("EOF-n: n bytes before the end", () => {
    expect(hits(sig, "xxxMAGIC", "EOF-5")).toBe(true);
    expect(hits(sig, "xxxMAGIC!", "EOF-5")).toBe(false);
    expect(hits(sig, "xxxMAGIC!", "EOF-6")).toBe(true);
  });
  test("offset applies to the start of the whole signature, not the anchor", () => {
    const s = "??" + hex("MAGIC");
    expect(hits(s, "xyMAGIC", "1")).toBe(true);
    expect(hits(s, "xyMAGIC", "2")).toBe(false);
  });
  test("a signature without a 2-byte literal works at a fixed offset", () => {
    expect(hits("4?" + "??" + "5?", "xxA-Z", "2")).toBe(true);
    expect(hits("4?" + "??" + "5?", "xxa-Z", "2")).toBe(false);
  });
});

describe("lines that cannot be used are reported, not thrown", () => {
  test("each reason counted with its first line", () => {
    const { engine, report } = engineFor([
      "Good:0:*:" + hex("good"),
      "BadHex:0:*:6g6f",
      "Odd:0:*:616",
      "Gap:0:*:6162{x}6364",
      "Short",
      "Ep:1:EP+10:" + hex("abcd"),
      "Html:3:*:" + hex("abcd"),
      "Float:0:*:4?5?",
      "Range:0:*:6162[1-3]6364",
      "Future:0:*:" + hex("abcd") + ":999",
      "BadHex2:0:*:zz",
    ].join("\n"));
    expect(engine.signatureCount).toBe(2); // EICAR + Good
    expect(report.total).toBe(1);
    const byReason = Object.fromEntries(report.unsupported.map((u) => [u.reason.replace(/ \(first at line \d+\)$/, ""), u.count]));
    expect(byReason["malformed hex signature: bad hex digits"]).toBe(3);
    expect(Object.entries(byReason).filter(([r]) => r.startsWith("malformed hex")).reduce((n, [, c]) => n + c, 0)).toBe(4);
    expect(byReason["malformed line (expected 4 to 6 fields)"]).toBe(1);
    expect(byReason["EP/section/version offsets (need executable parsing)"]).toBe(1);
    expect(byReason["target type 3 (normalised HTML)"]).toBe(1);
    expect(byReason["[n-m] anchored byte ranges"]).toBe(1);
    expect(Object.keys(byReason).some((r) => r.startsWith("no literal anchor"))).toBe(true);
    expect(Object.keys(byReason).some((r) => r.startsWith("outside functionality level"))).toBe(true);
    expect(report.unsupported.every((u) => u.file === "t.ndb" && / \(first at line \d+\)$/.test(u.reason))).toBe(true);
  });
});

describe("target types", () => {
  test("0 and 4 apply to any object; 1 (PE) only to objects starting with MZ", () => {
    const { engine } = engineFor(`Any:0:*:${hex("payload")}\n`);
    expect(engine.scan(enc.encode("..payload"))?.name).toBe("Any");
    const pe = engineFor(`Pe:1:*:${hex("payload")}\nMail:4:*:${hex("evilmail")}\n`).engine;
    expect(pe.scan(enc.encode("MZ..payload"))?.name).toBe("Pe");
    expect(pe.scan(enc.encode("..payload"))).toBeNull();
    expect(pe.scan(enc.encode("Subject: x\r\n\r\nevilmail"))?.name).toBe("Mail");
  });

  test("2 (OLE2), 5 (graphics), 6 (ELF), 9 (Mach-O), 10 (PDF) match only objects with their magic", () => {
    const magic: [number, number[] | string][] = [
      [2, [0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1]],
      [5, "GIF8"], [5, [0x89, 0x50, 0x4e, 0x47]], [5, [0xff, 0xd8, 0xff]],
      [6, [0x7f, 0x45, 0x4c, 0x46]],
      [9, [0xfe, 0xed, 0xfa, 0xcf]], [9, [0xca, 0xfe, 0xba, 0xbe]],
      [10, "junk before %PDF-1.7 "],
    ];
    for (const [type, head] of magic) {
      const { engine } = engineFor(`T${type}:${type}:*:${hex("payload")}
`);
      const prefix = typeof head === "string" ? Buffer.from(head, "latin1") : Buffer.from(head);
      expect([type, engine.scan(Buffer.concat([prefix, enc.encode("..payload")]))?.name]).toEqual([type, `T${type}`]);
      expect([type, engine.scan(enc.encode("MZ..payload"))]).toEqual([type, null]);
    }
  });
});

test("an alternative left of the anchor is matched in its own byte order", () => {
  const sig = hex("mul") + `(${hex("tiple")}|${hex("12345")})` + hex("choice");
  expect(hits(sig, "multiplechoice")).toBe(true);
  expect(hits(sig, "mul12345choice")).toBe(true);
  expect(hits(sig, "muleplitchoice")).toBe(false);
});
