// Same-size copies: with sameSize, every cleaned copy and notice message has exactly the original's
// octet count, is the same bytes every time, keeps section numbers, and still reads as a message
// (our parser, postal-mime) without the payload; with addTags off, tag-only changes are not made.
import { describe, expect, test } from "bun:test";
import PostalMime from "postal-mime";
import { DEFAULT_CONFIG } from "../../../core/config/types.ts";
import { DEFAULT_LIMITS } from "../../../core/limits.ts";
import { parseMessage, walkParts } from "../../../core/mime/parse.ts";
import { cutMessage, HEADER_PADDING_MAX } from "../../../core/rewrite/fit.ts";
import { applyPolicy, policyFromConfig, type ActionPolicy } from "../../../core/rewrite/index.ts";
import { quarantineIdOfBytes } from "../../../core/rewrite/quarantine-id.ts";
import { fillerLines, minPaddingField, paddingField, PADDING_FIELD } from "../../../core/rewrite/padding.ts";
import { BuiltinEngine } from "../../../core/scan/engines/builtin.ts";
import { scanMessage } from "../../../core/scan/pipeline.ts";
import { eicar } from "../../helpers/eicar.ts";
import { attachment, leaf, message, multipart, pseudoRandom } from "../../helpers/messages.ts";

const enc = new TextEncoder();
const latin1 = (b: Uint8Array) => Buffer.from(b).toString("latin1");
const engine = BuiltinEngine.eicarOnly();
const base = (p: Partial<ActionPolicy> = {}) => policyFromConfig(DEFAULT_CONFIG, "mailsentry 0.1.0", { sameSize: true, ...p });

async function rewrite(raw: Uint8Array, p: Partial<ActionPolicy> = {}) {
  const { result, tree } = await scanMessage(raw, { engine, limits: DEFAULT_LIMITS });
  return { result, out: applyPolicy(raw, tree, result, base(p)) };
}

/** What a user checks of a changed copy: exact size, no payload under any reading, parses, same every time. */
async function expectSafeSameSize(raw: Uint8Array, p: Partial<ActionPolicy> = {}) {
  const { result, out } = await rewrite(raw, p);
  expect(result.verdict.kind).toBe("infected");
  expect(out.bytes.length).toBe(raw.length);
  const again = await rewrite(raw, p);
  expect(latin1(again.out.bytes)).toBe(latin1(out.bytes));
  const rescan = await scanMessage(out.bytes, { engine, limits: DEFAULT_LIMITS });
  expect(rescan.result.verdict.kind).toBe("clean");
  expect(latin1(out.bytes)).not.toContain("EICAR-STANDARD");
  return out;
}

describe("padding arithmetic", () => {
  for (const eol of ["\r\n", "\n"]) {
    test(`a padding field is exactly n bytes for every n, folded within 78 columns (${JSON.stringify(eol)})`, () => {
      for (let n = minPaddingField(eol); n <= HEADER_PADDING_MAX + 200; n++) {
        const f = paddingField(n, eol);
        expect(f.length).toBe(n);
        const text = latin1(f);
        expect(text.startsWith(`${PADDING_FIELD}: x`)).toBe(true);
        expect(text.endsWith(eol)).toBe(true);
        const lines = text.slice(0, -eol.length).split(eol);
        for (const [i, l] of lines.entries()) {
          expect(l.length).toBeLessThanOrEqual(78);
          if (i > 0) expect(l).toMatch(/^ x+$/);
        }
        if (n < 400) {
          // One field to a parser, whatever its length.
          const tree = parseMessage(enc.encode(`${text}Subject: s${eol}${eol}body${eol}`));
          expect(tree.headers.map((h) => h.name)).toEqual([PADDING_FIELD, "Subject"]);
        }
      }
    });

    test(`filler lines are exactly n bytes and never look like a boundary (${JSON.stringify(eol)})`, () => {
      for (let n = 1 + eol.length; n < 2000; n++) {
        const text = latin1(fillerLines(n, eol));
        expect(text.length).toBe(n);
        for (const l of text.slice(0, -eol.length).split(eol)) expect(l).toMatch(/^x{1,78}$/);
      }
    });

    test(`a cut message is exactly the size asked for, from 0 bytes up (${JSON.stringify(eol)})`, () => {
      for (let n = 0; n < 300; n++) {
        const m = cutMessage(n, "Infected (Eicar-Test-Signature)", "mailsentry removed this message (malware).", eol);
        expect(m.length).toBe(n);
      }
    });
  }
});

describe("cleaned copies keep the original's size", () => {
  for (const eol of ["\r\n", "\n"] as const) {
    test(`an infected attachment among others, for attachments from 68 bytes to 3 MB (${JSON.stringify(eol)})`, async () => {
      for (const extra of [0, 1, 7, 30, 200, 5000, 9000, 40_000, 3_000_000]) {
        const payload = new Uint8Array([...eicar(), ...pseudoRandom(extra, extra + 1)]);
        const raw = enc.encode(message(multipart("b1", [leaf({ headers: ["Content-Type: text/plain"], body: "Hello, see attached." }, eol), attachment("x.com", payload, eol), attachment("notes.txt", "hello", eol)], { eol }), eol));
        const out = await expectSafeSameSize(raw);
        expect(out.applied).toBe("clean");
        // Section numbers stay: the same ids, the infected one now a text/plain notice.
        const ids = (b: Uint8Array) => [...walkParts(parseMessage(b))].map((p) => p.id);
        expect(ids(out.bytes)).toEqual(ids(raw));
        const tree = parseMessage(out.bytes);
        const parts = [...walkParts(tree)];
        expect(parts.find((p) => p.id === "2")!.contentType).toBe("text/plain");
        expect(latin1(out.bytes.subarray(parts.find((p) => p.id === "3")!.start))).toContain("notes.txt");
        // The padding in the header block stays bounded; the rest is in the preamble nobody shows.
        const pad = tree.headers.find((h) => h.name === PADDING_FIELD);
        if (pad) expect(pad.end - pad.start).toBeLessThanOrEqual(HEADER_PADDING_MAX);
        const mail = await PostalMime.parse(out.bytes);
        // The notice may show inline after the text (the smaller drafts drop its disposition).
        expect(mail.text?.startsWith("Hello, see attached.")).toBe(true);
        expect(mail.attachments.map((a) => a.filename)).toContain("notes.txt");
        expect(mail.subject).toBe("test");
      }
    });

    test(`a whole-message infection becomes a notice of the same size, from tiny to 2 MB (${JSON.stringify(eol)})`, async () => {
      for (const extra of [0, 3, 50, 700, 9000, 2_000_000]) {
        const body = latin1(eicar()) + eol + "y".repeat(extra);
        const raw = enc.encode(`From: m@example.org${eol}To: b@example.net${eol}Subject: hi${eol}Message-ID: <x@y>${eol}${eol}${body}${eol}`);
        const out = await expectSafeSameSize(raw);
        expect(out.applied).toBe("replace");
        const mail = await PostalMime.parse(out.bytes);
        expect(mail.text ?? "").toContain("mailsentry removed this message");
        // No Date invented: it would differ between two downloads.
        expect(parseMessage(out.bytes).headers.some((h) => h.name.toLowerCase() === "date")).toBe(false);
      }
    });
  }

  test("the notice names the quarantine id even in a copy the size of a small infected message", async () => {
    // Small infected messages as they arrive: a 300-byte program attached (a notice replaces a part
    // within the part's own bytes: a bare 68-byte EICAR leaves room for one line only), or a bare
    // EICAR body under the headers every server adds. The notice says what was removed and the id.
    const head = "Return-Path: <m@example.org>\r\nReceived: from mx.example.org by mail.example.net; Mon, 7 Dec 2026 10:00:00 +0000\r\n";
    const program = new Uint8Array([...eicar(), ...pseudoRandom(232, 9)]);
    const attached = enc.encode(head + message(multipart("b1", [leaf({ headers: ["Content-Type: text/plain"], body: "Hello." }), attachment("x.com", program)])));
    const whole = enc.encode(`${head}From: m@example.org\r\nTo: b@example.net\r\nSubject: hi\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <1@example.org>\r\n\r\n${latin1(eicar())}\r\n`);
    for (const raw of [attached, whole]) {
      const out = await expectSafeSameSize(raw, { originalKept: "quarantine" });
      expect([raw.length, latin1(out.bytes)]).toEqual([raw.length, expect.stringContaining(quarantineIdOfBytes(raw))]);
      expect(latin1(out.bytes)).toContain(raw === attached ? 'removed the attachment "x.com"' : "removed this message");
    }
  });

  test("an original just big enough for its payload still gets a same-size copy that says what happened", async () => {
    const raw = eicar();
    const out = await expectSafeSameSize(raw);
    expect(latin1(out.bytes)).toContain("X-Virus-Status");
  });

  test("every size between a bare payload and a roomy message gives an exact copy", async () => {
    for (let extra = 0; extra < 400; extra += 3) {
      const raw = enc.encode(`Subject: ${"s".repeat(extra)}\r\n\r\n${latin1(eicar())}\r\n`);
      await expectSafeSameSize(raw);
    }
  });

  test("without sameSize the copy is written as it falls (the CLI)", async () => {
    const raw = enc.encode(message(multipart("b1", [attachment("x.com", eicar())])));
    const { out } = await rewrite(raw, { sameSize: false });
    expect(out.bytes.length).not.toBe(raw.length);
    expect(latin1(out.bytes)).not.toContain(PADDING_FIELD);
  });
});

describe("addTags off (IMAP)", () => {
  const clean = enc.encode(message(multipart("b1", [attachment("notes.txt", "hello")])));
  test("tagClean, unscanned and ignored detections deliver the very same bytes", async () => {
    const { out: c } = await rewrite(clean, { addTags: false, tagClean: true });
    expect(c.bytes).toBe(clean);
    const infected = enc.encode(message(multipart("b1", [attachment("x.com", eicar())])));
    const { out: i } = await rewrite(infected, { addTags: false, action: "ignore" });
    expect(i.bytes).toBe(infected);
    expect(i.applied).toBe("none");
  });
  test("a cleaned copy still carries its status", async () => {
    const infected = enc.encode(message(multipart("b1", [attachment("x.com", eicar())])));
    const out = await expectSafeSameSize(infected, { addTags: false });
    expect(latin1(out.bytes)).toContain("X-Virus-Status: Cleaned");
  });
});
