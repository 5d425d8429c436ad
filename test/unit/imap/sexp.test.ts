// The IMAP value parser behind BODYSTRUCTURE rewriting: lists, quoted strings with escapes, literals
// inline, the source span of every node, and strings written back quoted or as literals.
import { describe, expect, test } from "bun:test";
import { canonical, imapStringText, nstringText, parseSexp, SexpError } from "../../../core/imap/sexp.ts";

describe("parseSexp", () => {
  test("nodes keep their source spans, so a value can be copied back byte for byte", () => {
    const text = '(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 3 0)("a\\"b" {3}\r\nx y NIL) "mixed")';
    const v = parseSexp(text);
    expect(v.t).toBe("list");
    if (v.t !== "list") return;
    expect(text.slice(v.items[0]!.start, v.items[0]!.end)).toBe('("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 3 0)');
    const second = v.items[1]!;
    expect(second.t === "list" && second.items.map((x) => (x.t === "list" ? "list" : x.v))).toEqual(['a"b', "x y", "NIL"]);
    expect(text.slice(second.start, second.end)).toBe('("a\\"b" {3}\r\nx y NIL)');
    expect(v.items[2]).toMatchObject({ t: "string", v: "mixed" });
  });

  test("malformed values are errors, not guesses", () => {
    for (const bad of ["(", '("a"', '"open', "({9}\r\nab)", "(a) b", ")", ""]) expect(() => parseSexp(bad)).toThrow(SexpError);
    expect(() => parseSexp("(".repeat(300) + ")".repeat(300))).toThrow(SexpError);
  });

  test("strings are quoted when they can be, literals otherwise, and read back the same", () => {
    for (const s of ["plain", 'q"x', "back\\slash", "", "caf\xc3\xa9", "two\r\nlines", "nul\x00"]) {
      const w = imapStringText(s);
      expect(w.startsWith("{")).toBe(/[\x00\r\n\x80-\xff]/.test(s));
      expect(parseSexp(w)).toMatchObject({ t: "string", v: s });
    }
    expect(nstringText(null)).toBe("NIL");
  });

  test("canonical form ignores case (types, subtypes, parameter names) and quoting style", () => {
    expect(canonical(parseSexp('("TEXT" "Plain" nil)'))).toBe(canonical(parseSexp('({4}\r\ntext "plain" NIL)')));
    expect(canonical(parseSexp('("text" 12)'))).not.toBe(canonical(parseSexp('("text" 13)')));
  });
});
