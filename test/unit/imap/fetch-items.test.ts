// parseFetch and classifyItem on what real clients send (Thunderbird, mbsync, mutt, K-9, Outlook,
// imapflow, CONDSTORE modifiers, macros): every item sorted into the kind the relay acts on, with
// its section and partial range, and the item list and modifiers kept as written.
import { describe, expect, test } from "bun:test";
import { classifyItem, matchingParen, parseFetch, singleNumber, type ItemKind } from "../../../core/imap/fetch-items.ts";

type Want = [upper: string, kind: ItemKind, section: string | null, peek: boolean, partial: string | null];

function names(args: string, uid = true): Want[] | null {
  const r = parseFetch(args, uid);
  if (!r) return null;
  return r.names.map((n) => [n.upper, n.kind, n.section, n.peek, n.partial ? `${n.partial.origin}.${n.partial.length}` : null]);
}

const THUNDERBIRD_FIELDS = "From To Cc Bcc Subject Date Message-ID Priority X-Priority References Newsgroups In-Reply-To Content-Type Reply-To Received";

describe("parseFetch: what clients send", () => {
  const cases: [client: string, args: string, want: Want[]][] = [
    ["Thunderbird header sync", `1:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (${THUNDERBIRD_FIELDS})])`, [
      ["UID", "meta", null, true, null],
      ["RFC822.SIZE", "meta", null, true, null],
      ["FLAGS", "meta", null, true, null],
      [`BODY.PEEK[HEADER.FIELDS (${THUNDERBIRD_FIELDS.toUpperCase()})]`, "header", `HEADER.FIELDS (${THUNDERBIRD_FIELDS.toUpperCase()})`, true, null],
    ]],
    ["Thunderbird display chunk (sets \\Seen)", "4711 (UID RFC822.SIZE BODY[]<0.65536>)", [
      ["UID", "meta", null, true, null],
      ["RFC822.SIZE", "meta", null, true, null],
      ["BODY[]<0.65536>", "section", "", false, "0.65536"],
    ]],
    ["Thunderbird later chunk", "4711 (UID RFC822.SIZE BODY[]<65536.73728>)", [
      ["UID", "meta", null, true, null],
      ["RFC822.SIZE", "meta", null, true, null],
      ["BODY[]<65536.73728>", "section", "", false, "65536.73728"],
    ]],
    ["Thunderbird offline sync", "1:13,15,17:40 (UID RFC822.SIZE BODY.PEEK[])", [
      ["UID", "meta", null, true, null],
      ["RFC822.SIZE", "meta", null, true, null],
      ["BODY.PEEK[]", "whole", "", true, null],
    ]],
    ["Thunderbird preview", "7 (UID BODY.PEEK[TEXT]<0.2048>)", [
      ["UID", "meta", null, true, null],
      ["BODY.PEEK[TEXT]<0.2048>", "section", "TEXT", true, "0.2048"],
    ]],
    ["imapflow download window", "12 BODY.PEEK[]<0.65536>", [
      ["BODY.PEEK[]<0.65536>", "section", "", true, "0.65536"],
    ]],
    ["imapflow part download", "12 (BODY.PEEK[1.MIME] BODY.PEEK[1])", [
      ["BODY.PEEK[1.MIME]", "header", "1.MIME", true, null],
      ["BODY.PEEK[1]", "section", "1", true, null],
    ]],
    ["K-9 header sync", "1:50 (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (date subject from content-type to cc reply-to message-id references in-reply-to X-K9mail-Identity Chat-Version)] BODYSTRUCTURE)", [
      ["UID", "meta", null, true, null],
      ["FLAGS", "meta", null, true, null],
      ["INTERNALDATE", "meta", null, true, null],
      ["RFC822.SIZE", "meta", null, true, null],
      ["BODY.PEEK[HEADER.FIELDS (DATE SUBJECT FROM CONTENT-TYPE TO CC REPLY-TO MESSAGE-ID REFERENCES IN-REPLY-TO X-K9MAIL-IDENTITY CHAT-VERSION)]", "header", "HEADER.FIELDS (DATE SUBJECT FROM CONTENT-TYPE TO CC REPLY-TO MESSAGE-ID REFERENCES IN-REPLY-TO X-K9MAIL-IDENTITY CHAT-VERSION)", true, null],
      ["BODYSTRUCTURE", "structure", null, true, null],
    ]],
    ["K-9 single part and truncated body", "9 (UID BODY.PEEK[1.2] BODY.PEEK[TEXT]<0.32768> BODY.PEEK[]<0.65536>)", [
      ["UID", "meta", null, true, null],
      ["BODY.PEEK[1.2]", "section", "1.2", true, null],
      ["BODY.PEEK[TEXT]<0.32768>", "section", "TEXT", true, "0.32768"],
      ["BODY.PEEK[]<0.65536>", "section", "", true, "0.65536"],
    ]],
    ["Outlook (obsolete RFC822.PEEK, whole header)", "3 (UID RFC822.PEEK BODY.PEEK[HEADER])", [
      ["UID", "meta", null, true, null],
      ["RFC822.PEEK", "whole", "", true, null],
      ["BODY.PEEK[HEADER]", "header", "HEADER", true, null],
    ]],
    ["mutt body", "42 BODY.PEEK[]", [["BODY.PEEK[]", "whole", "", true, null]]],
    ["mutt on old servers", "42 RFC822", [["RFC822", "whole", "", false, null]]],
    ["mutt header sync", "1:100 (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (DATE FROM SENDER SUBJECT TO CC MESSAGE-ID REFERENCES CONTENT-TYPE CONTENT-DESCRIPTION IN-REPLY-TO REPLY-TO LINES LIST-POST LIST-SUBSCRIBE LIST-UNSUBSCRIBE X-LABEL X-ORIGINAL-TO)])", [
      ["UID", "meta", null, true, null],
      ["FLAGS", "meta", null, true, null],
      ["INTERNALDATE", "meta", null, true, null],
      ["RFC822.SIZE", "meta", null, true, null],
      ["BODY.PEEK[HEADER.FIELDS (DATE FROM SENDER SUBJECT TO CC MESSAGE-ID REFERENCES CONTENT-TYPE CONTENT-DESCRIPTION IN-REPLY-TO REPLY-TO LINES LIST-POST LIST-SUBSCRIBE LIST-UNSUBSCRIBE X-LABEL X-ORIGINAL-TO)]", "header", "HEADER.FIELDS (DATE FROM SENDER SUBJECT TO CC MESSAGE-ID REFERENCES CONTENT-TYPE CONTENT-DESCRIPTION IN-REPLY-TO REPLY-TO LINES LIST-POST LIST-SUBSCRIBE LIST-UNSUBSCRIBE X-LABEL X-ORIGINAL-TO)", true, null],
    ]],
    ["mbsync header sync", "1:200 (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (X-TUID MESSAGE-ID)])", [
      ["UID", "meta", null, true, null],
      ["FLAGS", "meta", null, true, null],
      ["RFC822.SIZE", "meta", null, true, null],
      ["BODY.PEEK[HEADER.FIELDS (X-TUID MESSAGE-ID)]", "header", "HEADER.FIELDS (X-TUID MESSAGE-ID)", true, null],
    ]],
    ["mbsync new messages", "150:* (UID BODY.PEEK[HEADER.FIELDS (X-TUID)])", [
      ["UID", "meta", null, true, null],
      ["BODY.PEEK[HEADER.FIELDS (X-TUID)]", "header", "HEADER.FIELDS (X-TUID)", true, null],
    ]],
    ["mbsync body", "77 (FLAGS INTERNALDATE BODY.PEEK[])", [
      ["FLAGS", "meta", null, true, null],
      ["INTERNALDATE", "meta", null, true, null],
      ["BODY.PEEK[]", "whole", "", true, null],
    ]],
    ["lower case, as some scripts write it", "5 (uid body.peek[header.fields (from)] body[text] rfc822.text rfc822.header)", [
      ["UID", "meta", null, true, null],
      ["BODY.PEEK[HEADER.FIELDS (FROM)]", "header", "HEADER.FIELDS (FROM)", true, null],
      ["BODY[TEXT]", "section", "TEXT", false, null],
      ["RFC822.TEXT", "section", "TEXT", false, null],
      ["RFC822.HEADER", "header", "HEADER", true, null],
    ]],
    ["header sections of parts and HEADER.FIELDS.NOT", "5 (BODY.PEEK[2.HEADER] BODY.PEEK[2.TEXT] BODY.PEEK[HEADER.FIELDS.NOT (X-A X-B)] BODY[1.2.MIME])", [
      ["BODY.PEEK[2.HEADER]", "header", "2.HEADER", true, null],
      ["BODY.PEEK[2.TEXT]", "section", "2.TEXT", true, null],
      ["BODY.PEEK[HEADER.FIELDS.NOT (X-A X-B)]", "header", "HEADER.FIELDS.NOT (X-A X-B)", true, null],
      ["BODY[1.2.MIME]", "header", "1.2.MIME", false, null],
    ]],
    ["BINARY and decoded-content items", "5 (BINARY.PEEK[1] BINARY[2]<0.100> BINARY.SIZE[1] PREVIEW SNIPPET)", [
      ["BINARY.PEEK[1]", "binary", "1", true, null],
      ["BINARY[2]<0.100>", "binary", "2", false, "0.100"],
      ["BINARY.SIZE[1]", "binary", "1", false, null],
      ["PREVIEW", "binary", null, true, null],
      ["SNIPPET", "binary", null, true, null],
    ]],
    ["RFC 8970 PREVIEW with its modifier list", "1:4 (UID PREVIEW (LAZY))", [
      ["UID", "meta", null, true, null],
      ["PREVIEW (LAZY)", "binary", null, true, null],
    ]],
    ["Dovecot's SNIPPET with its modifier list", "5 (SNIPPET (LAZY=FUZZY) FLAGS)", [
      ["SNIPPET (LAZY=FUZZY)", "binary", null, true, null],
      ["FLAGS", "meta", null, true, null],
    ]],
    ["BODY and BODYSTRUCTURE, ENVELOPE", "5 (BODY BODYSTRUCTURE ENVELOPE MODSEQ EMAILID)", [
      ["BODY", "structure", null, true, null],
      ["BODYSTRUCTURE", "structure", null, true, null],
      ["ENVELOPE", "meta", null, true, null],
      ["MODSEQ", "meta", null, true, null],
      ["EMAILID", "meta", null, true, null],
    ]],
  ];
  for (const [client, args, want] of cases) {
    test(`${client}: ${args.length > 70 ? args.slice(0, 70) + "…" : args}`, () => {
      expect(names(args)).toEqual(want);
    });
  }

  test("the set, the item list and what follows are kept as written", () => {
    const r = parseFetch("1:13,15,17:40 (UID RFC822.SIZE BODY.PEEK[])", true)!;
    expect([r.uid, r.set, r.itemsText, r.modifiers]).toEqual([true, "1:13,15,17:40", "(UID RFC822.SIZE BODY.PEEK[])", ""]);
    expect(parseFetch("$ (FLAGS)", false)!.set).toBe("$");
  });

  test("CONDSTORE / QRESYNC modifiers stay apart from the items", () => {
    const r = parseFetch("1:* (UID FLAGS) (CHANGEDSINCE 12345 VANISHED)", true)!;
    expect(r.itemsText).toBe("(UID FLAGS)");
    expect(r.modifiers).toBe(" (CHANGEDSINCE 12345 VANISHED)");
    expect(names("1:* (UID FLAGS) (CHANGEDSINCE 12345 VANISHED)")).toEqual([["UID", "meta", null, true, null], ["FLAGS", "meta", null, true, null]]);
    const bare = parseFetch("1:* FLAGS (CHANGEDSINCE 7)", false)!;
    expect([bare.itemsText, bare.modifiers]).toEqual(["FLAGS", " (CHANGEDSINCE 7)"]);
    expect(bare.names.map((n) => n.upper)).toEqual(["FLAGS"]);
  });

  test("macros ALL, FAST and FULL expand (any case); inside a list they are no macros", () => {
    expect(parseFetch("1:5 ALL", false)!.names.map((n) => n.upper)).toEqual(["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"]);
    expect(parseFetch("1:5 fast", false)!.names.map((n) => n.upper)).toEqual(["FLAGS", "INTERNALDATE", "RFC822.SIZE"]);
    const full = parseFetch("1:5 FULL (CHANGEDSINCE 3)", false)!;
    expect(full.names.map((n) => [n.upper, n.kind])).toEqual([["FLAGS", "meta"], ["INTERNALDATE", "meta"], ["RFC822.SIZE", "meta"], ["ENVELOPE", "meta"], ["BODY", "structure"]]);
    expect([full.itemsText, full.modifiers]).toEqual(["FULL", " (CHANGEDSINCE 3)"]);
    expect(parseFetch("1:5 (FULL)", false)!.names.map((n) => n.upper)).toEqual(["FULL"]);
  });

  test("what does not parse is null (the relay then passes the command on as it is)", () => {
    for (const args of ["", "1:*", "abc (FLAGS)", "1 (FLAGS", "1 ()", "1 (FLAGS)x", "1 (BODY[HEADER.FIELDS (From)])(X)"]) {
      expect({ args, r: parseFetch(args, true) }).toEqual({ args, r: null });
    }
  });
});

describe("classifyItem: the names servers answer with", () => {
  test.each([
    ["BODY[]", "whole", "", null],
    ["BODY[]<0>", "section", "", "0.NaN"],
    ["BODY[]<65536>", "section", "", "65536.NaN"],
    ["BODY[1.2.MIME]", "header", "1.2.MIME", null],
    ["BODY[1.2]", "section", "1.2", null],
    ["BODY[HEADER]", "header", "HEADER", null],
    ["BODY[HEADER.FIELDS (FROM TO)]", "header", "HEADER.FIELDS (FROM TO)", null],
    ["BODY[TEXT]<0>", "section", "TEXT", "0.NaN"],
    ["BINARY[1]", "binary", "1", null],
    ["BINARY[1]<0>", "binary", "1", "0.NaN"],
    ["RFC822", "whole", "", null],
    ["RFC822.TEXT", "section", "TEXT", null],
    ["RFC822.HEADER", "header", "HEADER", null],
    ["RFC822.SIZE", "meta", null, null],
    ["BODYSTRUCTURE", "structure", null, null],
    ["PREVIEW", "binary", null, null],
    ["SNIPPET", "binary", null, null],
    ["X-GM-LABELS", "meta", null, null],
  ] as [string, ItemKind, string | null, string | null][])("%s", (name, kind, section, partial) => {
    const c = classifyItem(name);
    expect([c.kind, c.section, c.partial ? `${c.partial.origin}.${c.partial.length}` : null]).toEqual([kind, section, partial]);
  });
});

describe("helpers", () => {
  test("matchingParen skips bracketed sections and quoted strings", () => {
    const s = '(UID BODY.PEEK[HEADER.FIELDS (A ")" B)] X) (CHANGEDSINCE 1)';
    expect(matchingParen(s, 0)).toBe(s.indexOf(" (CHANGEDSINCE") - 1);
    expect(matchingParen("(a (b)", 0)).toBe(-1);
  });

  test("singleNumber: one UID, not a range", () => {
    expect([singleNumber("4711"), singleNumber("1:5"), singleNumber("*"), singleNumber("1,2")]).toEqual([4711, null, null, null]);
  });
});
