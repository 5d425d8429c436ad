// applyPolicy end to end on real parsed messages: what the client receives for each verdict and action.
import { describe, expect, test } from "bun:test";
import PostalMime from "postal-mime";
import { applyPolicy, policyFromConfig, type ActionPolicy } from "../../../core/rewrite/index.ts";
import { parseMessage, walkParts } from "../../../core/mime/parse.ts";
import type { MimePart } from "../../../core/mime/types.ts";
import { DEFAULT_CONFIG, type UnscannedAction, type UnscannedPolicy } from "../../../core/config/types.ts";
import { UNSCANNED_REASONS, type UnscannedReason } from "../../../core/limits.ts";
import type { ScanResult } from "../../../core/scan/verdict.ts";
import { EICAR_TEXT } from "../../helpers/eicar.ts";
import { EOLS, infectedAt, mixed, nested, plain } from "./fixtures.test.ts";

const PRODUCT = "mailsentry 0.1.0";
const policy = (p: Partial<ActionPolicy> = {}): ActionPolicy => ({ ...policyFromConfig(DEFAULT_CONFIG, PRODUCT), ...p });
const text = (b: Uint8Array) => Buffer.from(b).toString("latin1");
const clean: ScanResult = { verdict: { kind: "clean" }, findings: [], bytesScanned: 10, objects: 3 };

function run(raw: Uint8Array, result: ScanResult, p: Partial<ActionPolicy> = {}) {
  return applyPolicy(raw, parseMessage(raw), result, policy(p));
}

/** Header block of the root as a list of "Name: value" (unfolded). */
function headers(raw: Uint8Array): string[] {
  return parseMessage(raw).headers.map((h) => `${h.name}: ${h.value}`);
}

function partBytes(raw: Uint8Array, p: MimePart): string {
  return text(raw.subarray(p.start, p.bodyEnd));
}

function byId(root: MimePart): Map<string, MimePart> {
  const m = new Map<string, MimePart>();
  for (const p of walkParts(root)) if (!m.has(p.id)) m.set(p.id, p);
  return m;
}

/** Every part not inside a replaced one has the same bytes before and after, found by section id. */
function expectUntouchedIdentical(before: Uint8Array, after: Uint8Array, replaced: string[]) {
  const a = byId(parseMessage(before));
  const b = byId(parseMessage(after));
  expect([...b.keys()].filter((id) => !replaced.some((r) => id.startsWith(`${r}.`)))).toEqual(
    [...a.keys()].filter((id) => !replaced.some((r) => id.startsWith(`${r}.`))),
  );
  let compared = 0;
  for (const [id, p] of a) {
    // The root and any ancestor of a replaced part contain the change; everything else must not move a byte.
    if (id === "" || replaced.some((r) => id === r || id.startsWith(`${r}.`) || r.startsWith(`${id}.`))) continue;
    expect(partBytes(after, b.get(id)!)).toBe(partBytes(before, p));
    compared++;
  }
  expect(compared).toBeGreaterThan(0);
}

describe("clean messages", () => {
  test("pass as the very same bytes unless tagClean", () => {
    const raw = mixed("\r\n");
    const out = run(raw, clean);
    expect(out).toEqual({ disposition: "deliver", bytes: raw, applied: "none", quarantine: false, removed: [] });
    expect(out.bytes).toBe(raw);
  });

  for (const eol of EOLS) {
    test(`tagClean puts our headers on top, drops upstream X-Virus-* (${JSON.stringify(eol)})`, () => {
      const raw = mixed(eol);
      const out = run(raw, clean, { tagClean: true });
      expect(out.applied).toBe("tag");
      const s = text(out.bytes);
      expect(s.startsWith(`X-Virus-Status: Clean${eol}X-Virus-Scanned: ${PRODUCT}${eol}Received:`)).toBe(true);
      expect(headers(out.bytes).filter((h) => h.toLowerCase().startsWith("x-virus"))).toEqual([
        "X-Virus-Status: Clean",
        `X-Virus-Scanned: ${PRODUCT}`,
      ]);
      if (eol === "\n") expect(s.includes("\r")).toBe(false);
      // Everything after the header block is unchanged.
      const body = (r: Uint8Array) => text(r.subarray(parseMessage(r).bodyStart));
      expect(body(out.bytes)).toBe(body(raw));
      expect(s).not.toContain("Subject: [");
    });
  }
});

describe("infected, cleanable", () => {
  for (const eol of EOLS) {
    test(`auto-clean replaces the attachment by a notice, keeps the rest byte-identical (${JSON.stringify(eol)})`, async () => {
      const raw = mixed(eol);
      const out = run(raw, infectedAt(["2", "attachment \"eicar.com\""]), { subjectTag: "[VIRUS]" });
      expect(out.disposition).toBe("deliver");
      expect(out.applied).toBe("clean");
      expect(out.quarantine).toBe(true);
      expect(out.removed).toEqual([{ partId: "2", filename: "eicar.com", detection: 'Eicar-Test-Signature in attachment "eicar.com"' }]);
      const s = text(out.bytes);
      expect(s).not.toContain(Buffer.from(EICAR_TEXT).toString("base64").slice(0, 40));
      expect(headers(out.bytes).slice(0, 2)).toEqual(["X-Virus-Status: Cleaned (Eicar-Test-Signature)", `X-Virus-Scanned: ${PRODUCT}`]);
      expect(headers(out.bytes)).toContain("Subject: [VIRUS] Quarterly report");
      if (eol === "\n") expect(s.includes("\r")).toBe(false);
      else expect(s.replace(/\r\n/g, "").includes("\n")).toBe(false);
      expectUntouchedIdentical(raw, out.bytes, ["2"]);

      const part = byId(parseMessage(out.bytes)).get("2")!;
      expect(part.contentType).toBe("text/plain");
      expect(part.params.charset).toBe("utf-8");
      expect(part.filename).toBe("eicar.com.removed.txt");
      expect(part.headers.map((h) => h.name)).toEqual(["Content-ID", "Content-Type", "Content-Transfer-Encoding", "Content-Disposition"]);

      const mail = await PostalMime.parse(out.bytes);
      expect(mail.subject).toBe("[VIRUS] Quarterly report");
      // The notice is inline text/plain, so clients show it in the message text where the file was.
      expect(mail.attachments.map((a) => a.filename)).toEqual(["report.pdf"]);
      const noticeText = mail.text!;
      expect(noticeText).toContain("Hello Bob, see attached.");
      expect(noticeText).toContain("mailsentry removed the attachment \"eicar.com\"");
      expect(noticeText).toContain("File: eicar.com");
      expect(noticeText).toContain('Detection: Eicar-Test-Signature in attachment "eicar.com"');
      expect(noticeText).toContain("quarantine");
      const pdf = mail.attachments[0]!;
      expect(new TextDecoder().decode(pdf.content as ArrayBuffer)).toStartWith("%PDF-1.4 harmless report");
    });
  }

  test("action clean behaves like auto-clean when cleanable and quarantines the original too", () => {
    const raw = mixed("\r\n");
    const out = run(raw, infectedAt(["2", "x"]), { action: "clean" });
    expect(out.applied).toBe("clean");
    expect(out.quarantine).toBe(true);
  });

  test("an infected part inside an attached message replaces the whole attached message", async () => {
    const raw = nested("\r\n");
    const out = run(raw, infectedAt(["3.2", 'attachment "fwd.eml" › e.exe']));
    expect(out.applied).toBe("clean");
    expect(out.removed.map((r) => [r.partId, r.filename])).toEqual([["3", "fwd.eml"]]);
    expectUntouchedIdentical(raw, out.bytes, ["3"]);
    const after = byId(parseMessage(out.bytes));
    expect(after.get("3")!.contentType).toBe("text/plain");
    expect(after.has("3.1")).toBe(false);
    const mail = await PostalMime.parse(out.bytes);
    expect(mail.attachments.map((a) => a.filename)).toEqual(["a.zip"]);
    expect(mail.text).toContain('mailsentry removed the attachment "fwd.eml"');
    expect(after.get("3")!.filename).toBe("fwd.eml.removed.txt");
  });

  test("an archive finding removes the archive part; a nested leaf can be cleaned alone; several at once", () => {
    const raw = nested("\n");
    const out = run(raw, infectedAt(["4", 'attachment "a.zip" › eicar.com'], ["2.2", "html"]));
    expect(out.applied).toBe("clean");
    expect(out.removed.map((r) => r.partId)).toEqual(["2.2", "4"]);
    expect(out.removed[1]!.detection).toBe('Eicar-Test-Signature in attachment "a.zip" › eicar.com');
    expectUntouchedIdentical(raw, out.bytes, ["2.2", "4"]);
    const after = byId(parseMessage(out.bytes));
    expect(after.get("2.2")!.contentType).toBe("text/plain");
    expect(after.get("2.2")!.filename).toBe("removed.txt");
    expect(after.get("4")!.filename).toBe("a.zip.removed.txt");
    expect(text(out.bytes)).toContain("section 2.2");
  });

  test("findings in a part and in its parent replace the parent once", () => {
    const raw = nested("\r\n");
    const out = run(raw, infectedAt(["2.1", "a"], ["2", "b"]));
    expect(out.removed.map((r) => r.partId)).toEqual(["2"]);
    expect(out.removed[0]!.detection).toBe("Eicar-Test-Signature in b; Eicar-Test-Signature in a");
    expectUntouchedIdentical(raw, out.bytes, ["2"]);
  });

  test("a non-ASCII filename is carried into the notice and its name", async () => {
    const raw = mixed("\r\n", { filename: "=?utf-8?B?ZmFjdHVyZV/DqXTDqS5leGU=?=" });
    const tree = parseMessage(raw);
    const name = byId(tree).get("2")!.filename!;
    expect(name).toBe("facture_été.exe");
    const out = applyPolicy(raw, tree, infectedAt(["2", "x"]), policy());
    const mail = await PostalMime.parse(out.bytes);
    expect(mail.attachments.map((a) => a.filename)).toEqual(["report.pdf"]);
    expect(mail.text).toContain("File: facture_été.exe");
    expect(byId(parseMessage(out.bytes)).get("2")!.filename).toBe("facture_été.exe.removed.txt");
    expect(text(out.bytes)).toContain("Content-Transfer-Encoding: quoted-printable");
    expectUntouchedIdentical(raw, out.bytes, ["2"]);
  });
});

describe("infected, replaced by a notice message", () => {
  const cases: [ActionPolicy["action"], boolean][] = [["auto-clean", true], ["clean", true], ["delete", false], ["rename", true], ["quarantine", true]];
  for (const [action, quarantine] of cases) {
    test(`body infection with ${action}: notice message, quarantine ${quarantine}`, async () => {
      const raw = plain("\r\n");
      const out = run(raw, infectedAt(["", "message body"]), { action, subjectTag: "[VIRUS]" });
      expect(out.disposition).toBe("deliver");
      expect(out.applied).toBe("replace");
      expect(out.quarantine).toBe(quarantine);
      expect(out.removed).toEqual([{ partId: "", filename: null, detection: "Eicar-Test-Signature in message body" }]);
      expect(text(out.bytes)).not.toContain(EICAR_TEXT.slice(0, 20));
      expect(headers(out.bytes)).toEqual([
        "X-Virus-Status: Infected (Eicar-Test-Signature)",
        `X-Virus-Scanned: ${PRODUCT}`,
        "From: Mallory <m@example.org>",
        "To: bob@example.net",
        "Subject: [VIRUS] =?utf-8?B?w6lsw6lwaGFudA==?=",
        "Date: Mon, 1 Jan 2024 10:00:00 +0000",
        "Message-ID: <m2@example.org>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 7bit",
      ]);
      const mail = await PostalMime.parse(out.bytes);
      expect(mail.subject).toBe("[VIRUS] éléphant");
      expect(mail.messageId).toBe("<m2@example.org>");
      expect(mail.text).toContain("removed this message because it contained malware");
      expect(mail.text).toContain("Detection: Eicar-Test-Signature in message body");
      expect(mail.text!.includes("quarantine")).toBe(quarantine);
    });
  }

  test("delete on a cleanable message still replaces the whole message, keeping Cc", () => {
    const raw = mixed("\n");
    const out = run(raw, infectedAt(["2", "x"]), { action: "delete" });
    expect(out.applied).toBe("replace");
    expect(out.quarantine).toBe(false);
    const h = headers(out.bytes);
    expect(h).toContain("Cc: carol@example.net");
    expect(h.some((x) => x.startsWith("Received") || x.startsWith("X-Mailer"))).toBe(false);
    expect(text(out.bytes).includes("\r")).toBe(false);
  });

  test("a finding the tree does not show (parsing stopped early) is not cleanable", () => {
    const out = run(mixed("\r\n"), infectedAt(["7.3", "x"]));
    expect(out.applied).toBe("replace");
    expect(out.quarantine).toBe(true);
  });

  test("ignore delivers unchanged apart from our headers and the subject tag", () => {
    const raw = mixed("\r\n");
    const out = run(raw, infectedAt(["2", "x"]), { action: "ignore", subjectTag: "[VIRUS]" });
    expect(out.applied).toBe("tag");
    expect(out.quarantine).toBe(false);
    expect(headers(out.bytes)[0]).toBe("X-Virus-Status: Infected (Eicar-Test-Signature)");
    expect(headers(out.bytes)).toContain("Subject: [VIRUS] Quarterly report");
    expectUntouchedIdentical(raw, out.bytes, []);
  });

  test("the subject tag is not doubled, and is added when there is no Subject", () => {
    const tagged = run(mixed("\r\n", { subject: "[VIRUS] again" }), infectedAt(["2", "x"]), { action: "ignore", subjectTag: "[VIRUS]" });
    expect(headers(tagged.bytes)).toContain("Subject: [VIRUS] again");
    const none = run(mixed("\r\n", { subject: null }), infectedAt(["2", "x"]), { action: "ignore", subjectTag: "[VIRUS]" });
    expect(headers(none.bytes)).toContain("Subject: [VIRUS]");
    const del = run(mixed("\r\n", { subject: null }), infectedAt(["2", "x"]), { action: "delete", subjectTag: "[VIRUS]" });
    expect(headers(del.bytes)).toContain("Subject: [VIRUS]");
  });

  test("hostile detection names and tags cannot inject header lines", () => {
    const raw = mixed("\r\n");
    const result = infectedAt(["2", "x\r\n--b1\r\nContent-Type: text/html"]);
    (result.findings[0]!.verdict as { name: string }).name = "Evil\r\nBcc: victim@example.org";
    result.verdict = result.findings[0]!.verdict;
    for (const action of ["ignore", "auto-clean", "delete"] as const) {
      const out = run(raw, result, { action, subjectTag: "[X]\r\nBcc: y@z" });
      const h = headers(out.bytes);
      expect(h.some((x) => x.toLowerCase().startsWith("bcc"))).toBe(false);
      const ids = [...walkParts(parseMessage(out.bytes))].map((p) => p.id);
      expect(ids).toEqual(action === "delete" ? [""] : ["", "1", "2", "3"]);
    }
  });
});

describe("unscanned and error verdicts", () => {
  const unscanned: ScanResult = {
    verdict: { kind: "unscanned", reason: "encrypted", path: 'attachment "s.zip"' },
    findings: [{ partId: "2", verdict: { kind: "unscanned", reason: "encrypted", path: 'attachment "s.zip"' } }],
    bytesScanned: 10,
    objects: 2,
  };
  const error: ScanResult = { verdict: { kind: "error", reason: "clamd: connection refused" }, findings: [], bytesScanned: 0, objects: 0 };

  test("onUnscanned deliver (default) adds the Unscanned header and leaves the subject alone", () => {
    const raw = mixed("\r\n");
    const out = run(raw, unscanned, { subjectTag: "[VIRUS]" });
    expect(out.applied).toBe("tag");
    expect(headers(out.bytes).slice(0, 2)).toEqual(["X-Virus-Status: Unscanned (encrypted)", `X-Virus-Scanned: ${PRODUCT}`]);
    expect(headers(out.bytes)).toContain("Subject: Quarterly report");
    expectUntouchedIdentical(raw, out.bytes, []);
  });

  const all = (action: UnscannedAction): UnscannedPolicy => Object.fromEntries(UNSCANNED_REASONS.map((r) => [r, action])) as UnscannedPolicy;

  test("onUnscanned tempfail, delete, quarantine", () => {
    const raw = mixed("\r\n");
    expect(run(raw, unscanned, { onUnscanned: all("tempfail") })).toEqual({ disposition: "tempfail", bytes: raw, applied: "none", quarantine: false, removed: [] });
    const del = run(raw, unscanned, { onUnscanned: all("delete") });
    expect([del.applied, del.quarantine]).toEqual(["replace", false]);
    expect(del.removed).toEqual([{ partId: "2", filename: "eicar.com", detection: 'not scanned (encrypted) at attachment "s.zip"' }]);
    expect(headers(del.bytes)[0]).toBe("X-Virus-Status: Unscanned (encrypted)");
    const q = run(raw, unscanned, { onUnscanned: all("quarantine") });
    expect([q.applied, q.quarantine]).toEqual(["replace", true]);
    expect(text(q.bytes)).toContain("could not scan this message completely (encrypted");
  });

  test("by default depth, count, ratio and corruption quarantine; encryption, size and time deliver tagged", () => {
    const raw = mixed("\r\n");
    const at = (reason: UnscannedReason): ScanResult => ({
      verdict: { kind: "unscanned", reason, path: "x" },
      findings: [{ partId: "2", verdict: { kind: "unscanned", reason, path: "x" } }],
      bytesScanned: 1,
      objects: 1,
    });
    const held = UNSCANNED_REASONS.filter((r) => run(raw, at(r)).quarantine);
    expect(held.sort()).toEqual(["bomb", "corrupt", "too-deep", "too-many-files"]);
    for (const r of ["encrypted", "too-large", "time-limit"] as const) {
      const out = run(raw, at(r));
      expect(out.applied).toBe("tag");
      expect(headers(out.bytes)[0]).toBe(`X-Virus-Status: Unscanned (${r})`);
    }
  });

  test("the strictest reason wins: an encrypted archive beside a nesting bomb is quarantined for the bomb", () => {
    const raw = mixed("\r\n");
    const two: ScanResult = {
      verdict: { kind: "unscanned", reason: "encrypted", path: 'attachment "s.zip"' },
      findings: [
        { partId: "2", verdict: { kind: "unscanned", reason: "encrypted", path: 'attachment "s.zip"' } },
        { partId: "3", verdict: { kind: "unscanned", reason: "too-deep", path: 'attachment "deep.zip"' } },
      ],
      bytesScanned: 1,
      objects: 2,
    };
    const out = run(raw, two);
    expect([out.applied, out.quarantine]).toEqual(["replace", true]);
    expect(headers(out.bytes)[0]).toBe("X-Virus-Status: Unscanned (too-deep)");
    expect(text(out.bytes)).toContain('(too-deep at attachment "deep.zip")');
    // Told to deliver every reason, the same message is only tagged.
    expect(run(raw, two, { onUnscanned: all("deliver") }).applied).toBe("tag");
  });

  test("onError tempfail (default), deliver, delete; the internal reason never reaches the client", () => {
    const raw = mixed("\r\n");
    expect(run(raw, error).disposition).toBe("tempfail");
    expect(run(raw, error).bytes).toBe(raw);
    const d = run(raw, error, { onError: "deliver" });
    expect(headers(d.bytes)[0]).toBe("X-Virus-Status: Error");
    const x = run(raw, error, { onError: "delete" });
    expect(x.applied).toBe("replace");
    expect(x.quarantine).toBe(false);
    for (const o of [d, x]) expect(text(o.bytes)).not.toContain("clamd");
  });
});

test("policyFromConfig copies the action settings and the product", () => {
  expect(policyFromConfig({ ...DEFAULT_CONFIG, subjectTag: "[V]", tagClean: true }, "p 1")).toEqual({
    action: "auto-clean",
    onUnscanned: DEFAULT_CONFIG.onUnscanned,
    onError: "tempfail",
    tagClean: true,
    subjectTag: "[V]",
    product: "p 1",
    originalKept: "quarantine",
    sameSize: false,
    addTags: true,
  });
  expect(policyFromConfig(DEFAULT_CONFIG, "p", { sameSize: true, addTags: false })).toMatchObject({ sameSize: true, addTags: false });
});
