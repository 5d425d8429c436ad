// The scan pipeline as a user sees it: what is found, where (path and cleanable part), and what is
// reported unscanned when a limit, encryption or a broken archive stops the scan.
import { describe, expect, test } from "bun:test";
import { DEFAULT_SCAN_LIMITS, type ScanLimits } from "../../../core/limits.ts";
import { parseMessage } from "../../../core/mime/parse.ts";
import { BuiltinEngine } from "../../../core/scan/engines/builtin.ts";
import type { Engine } from "../../../core/scan/engine.ts";
import { looksLikeMessage, scanMessage, scanObject, type ScanContext } from "../../../core/scan/pipeline.ts";
import type { ScanResult } from "../../../core/scan/verdict.ts";
import { gzip, makeTar, makeZip, nestedZip, zipBomb } from "../../helpers/archives.ts";
import { EICAR_TEXT, eicar } from "../../helpers/eicar.ts";
import { throwingEngine } from "../../helpers/engine.ts";

const MB = 1 << 20;
const ctx = (limits: Partial<ScanLimits> = {}, engine: Engine = BuiltinEngine.eicarOnly()): ScanContext => ({
  engine,
  limits: { ...DEFAULT_SCAN_LIMITS, ...limits },
});

// --- message builders (CRLF, latin1 text; binary content goes through base64) ---
interface Part { type: string; filename?: string; encoding?: string; body: string }
const HEAD = "From: Alice <alice@example.org>\r\nTo: bob@example.org\r\nSubject: test\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <t@example.org>\r\nMIME-Version: 1.0\r\n";

function single(body: string, type = "text/plain", encoding?: string): Uint8Array {
  const cte = encoding ? `Content-Transfer-Encoding: ${encoding}\r\n` : "";
  return Buffer.from(`${HEAD}Content-Type: ${type}\r\n${cte}\r\n${body}`, "latin1");
}

function multipartText(parts: Part[], boundary = "b0undary"): string {
  const chunks = parts.map((p) => {
    const name = p.filename ? `; name="${p.filename}"` : "";
    const disp = p.filename ? `Content-Disposition: attachment; filename="${p.filename}"\r\n` : "";
    const cte = p.encoding ? `Content-Transfer-Encoding: ${p.encoding}\r\n` : "";
    return `--${boundary}\r\nContent-Type: ${p.type}${name}\r\n${disp}${cte}\r\n${p.body}\r\n`;
  });
  return `Content-Type: multipart/mixed; boundary="${boundary}"\r\n\r\nThis is MIME.\r\n${chunks.join("")}--${boundary}--\r\n`;
}

const multipart = (parts: Part[]) => Buffer.from(HEAD + multipartText(parts), "latin1");

function b64(data: Uint8Array | string): string {
  return (Buffer.from(data as Uint8Array).toString("base64").match(/.{1,76}/g) ?? []).join("\r\n");
}

const text = (body: string): Part => ({ type: "text/plain", body });
const attach = (filename: string, data: Uint8Array | string, type = "application/octet-stream"): Part =>
  ({ type, filename, encoding: "base64", body: b64(typeof data === "string" ? Buffer.from(data) : data) });

/** uuencode, as `uuencode` writes it. */
function uuencode(name: string, data: Uint8Array): string {
  const ch = (n: number) => String.fromCharCode(n === 0 ? 96 : n + 32);
  let out = `begin 644 ${name}\r\n`;
  for (let i = 0; i < data.length; i += 45) {
    const line = data.subarray(i, i + 45);
    out += ch(line.length);
    for (let j = 0; j < line.length; j += 3) {
      const [a, b = 0, c = 0] = [line[j], line[j + 1], line[j + 2]];
      out += ch(a >> 2) + ch(((a & 3) << 4) | (b >> 4)) + ch(((b & 15) << 2) | (c >> 6)) + ch(c & 63);
    }
    out += "\r\n";
  }
  return out + "`\r\nend\r\n";
}

const kinds = (r: ScanResult) => r.findings.map((f) => [f.verdict.kind, "reason" in f.verdict ? f.verdict.reason : f.verdict.kind === "infected" ? f.verdict.name : "", "path" in f.verdict ? f.verdict.path : "", f.partId]);
const infectedAt = (r: ScanResult) => r.findings.filter((f) => f.verdict.kind === "infected").map((f) => [(f.verdict as { path: string }).path, f.partId]);

describe("clean mail stays clean", () => {
  test("text, HTML and ordinary attachments", async () => {
    const pdfish = Uint8Array.from({ length: 5000 }, (_, i) => (i * 7919) & 0xff);
    const zip = await makeZip([{ name: "report.txt", data: "quarterly numbers" }]);
    const raw = multipart([
      text("Hello Bob,\r\nsee attached.\r\n"),
      { type: "text/html", body: "<p>Hello <b>Bob</b></p>" },
      attach("scan.pdf", pdfish, "application/pdf"),
      attach("report.zip", zip, "application/zip"),
      attach("notes.tar.gz", gzip(makeTar([{ name: "n.txt", data: "notes" }]))),
    ]);
    const { result, tree } = await scanMessage(raw, ctx());
    expect(result.verdict).toEqual({ kind: "clean" });
    expect(result.findings).toEqual([]);
    // text, html, pdf, zip + member, tgz + tar + member, and the raw message
    expect(result.objects).toBe(9);
    expect(result.bytesScanned).toBeGreaterThan(raw.length);
    expect(tree.children.length).toBe(5);
  });

  test("a tree passed in is used and handed back", async () => {
    const raw = single("just text\r\n");
    const tree = parseMessage(raw);
    const out = await scanMessage(raw, ctx(), tree);
    expect(out.tree).toBe(tree);
    expect(out.result.verdict.kind).toBe("clean");
  });
});

describe("EICAR is found wherever mail can carry it", () => {
  test("in the body of a single-part message: not cleanable (partId \"\")", async () => {
    const { result } = await scanMessage(single(EICAR_TEXT + "\r\n"), ctx());
    expect(result.verdict).toEqual({ kind: "infected", name: "Eicar-Test-Signature", path: "body (text/plain)" });
    expect(infectedAt(result)).toEqual([["body (text/plain)", ""]]);
  });

  test("base64 attachment", async () => {
    const { result } = await scanMessage(multipart([text("hi"), attach("eicar.com", eicar())]), ctx());
    expect(infectedAt(result)).toEqual([['attachment "eicar.com"', "2"]]);
  });

  test("quoted-printable part", async () => {
    const qp = EICAR_TEXT.replaceAll("!", "=21").replaceAll("$", "=24");
    const { result } = await scanMessage(multipart([text("hi"), { type: "application/octet-stream", encoding: "quoted-printable", body: qp }]), ctx());
    expect(infectedAt(result)).toEqual([["part 2 (application/octet-stream)", "2"]]);
  });

  test("uuencoded block inside a text body", async () => {
    const body = "Here it comes:\r\n\r\n" + uuencode("eicar.com", eicar()) + "\r\nbye\r\n";
    const { result } = await scanMessage(multipart([text(body), text("second")]), ctx());
    expect(infectedAt(result)).toEqual([['part 1 (text/plain) › uuencoded "eicar.com"', "1"]]);
  });

  test("in a zip attachment", async () => {
    const zip = await makeZip([{ name: "readme.txt", data: "clean" }, { name: "eicar.com", data: eicar() }]);
    const { result } = await scanMessage(multipart([text("see zip"), attach("invoice.zip", zip)]), ctx());
    expect(result.verdict).toEqual({ kind: "infected", name: "Eicar-Test-Signature", path: 'attachment "invoice.zip" › eicar.com' });
    expect(infectedAt(result)).toEqual([['attachment "invoice.zip" › eicar.com', "2"]]);
  });

  test("zip in zip in zip: the path names every level", async () => {
    const zip = await nestedZip(["inner.zip", "deeper.zip"], { name: "eicar.com", data: eicar() });
    const { result } = await scanMessage(multipart([text("x"), attach("invoice.zip", zip)]), ctx());
    expect(infectedAt(result)).toEqual([['attachment "invoice.zip" › inner.zip › deeper.zip › eicar.com', "2"]]);
  });

  test("gz, tar and tar.gz attachments", async () => {
    const tar = makeTar([{ name: "ok.txt", data: "fine" }, { name: "bad/eicar.com", data: eicar() }]);
    const raw = multipart([
      text("x"),
      attach("eicar.com.gz", gzip(eicar())),
      attach("pack.tar", tar),
      attach("pack.tar.gz", gzip(tar)),
    ]);
    const { result } = await scanMessage(raw, ctx());
    expect(infectedAt(result)).toEqual([
      ['attachment "eicar.com.gz" › eicar.com', "2"],
      ['attachment "pack.tar" › bad/eicar.com', "3"],
      ['attachment "pack.tar.gz" › pack.tar › bad/eicar.com', "4"],
    ]);
  });

  test("nested message/rfc822: the attached message is the part to remove", async () => {
    const inner = HEAD + multipartText([text("fwd body"), attach("x.exe", eicar())], "inner-b");
    const raw = multipart([text("forwarding"), { type: "message/rfc822", filename: "fwd.eml", body: inner }]);
    const { result } = await scanMessage(raw, ctx());
    expect(infectedAt(result)).toEqual([['message "fwd.eml" › attachment "x.exe"', "2"]]);
  });

  test("a base64-encoded attached message and an .eml inside a zip are opened and walked", async () => {
    const inner = HEAD + multipartText([text("fwd body"), attach("x.exe", eicar())], "inner-b");
    const encoded = { type: "message/rfc822", filename: "fwd.eml", encoding: "base64", body: b64(inner) };
    const a = await scanMessage(multipart([text("see"), encoded]), ctx());
    expect(infectedAt(a.result)).toEqual([['message "fwd.eml" › attachment "x.exe"', "2"]]);

    const zip = await makeZip([{ name: "mail/fwd.eml", data: inner }]);
    const b = await scanMessage(multipart([text("see"), attach("mails.zip", zip)]), ctx());
    expect(infectedAt(b.result)).toEqual([['attachment "mails.zip" › mail/fwd.eml › attachment "x.exe"', "2"]]);
    const c = await scanMessage(multipart([text("see"), attach("mails.zip", zip)]), ctx({ maxRecursion: 1 }));
    expect(kinds(c.result)).toEqual([["unscanned", "too-deep", 'attachment "mails.zip" › mail/fwd.eml', "2"]]);
  });

  test("raw-message hit not explained by any part is reported once, on the whole message", async () => {
    // Bytes before the first header line: decoders see headers, the raw scan sees EICAR at offset 0.
    const { result } = await scanMessage(Buffer.from(EICAR_TEXT + "\r\n" + HEAD + "\r\nbody\r\n", "latin1"), ctx());
    const hits = result.findings.filter((f) => f.verdict.kind === "infected");
    expect(hits.length).toBe(1);
    expect(hits[0].verdict.kind).toBe("infected");
  });
});

describe("what stops a scan is reported, never a silent clean", () => {
  test("password-protected zip → unscanned(encrypted)", async () => {
    const zip = await makeZip([{ name: "eicar.com", data: eicar(), password: "secret" }]);
    const { result } = await scanMessage(multipart([text("pw: secret"), attach("secret.zip", zip)]), ctx());
    expect(result.verdict).toEqual({ kind: "unscanned", reason: "encrypted", path: 'attachment "secret.zip" › eicar.com' });
    expect(result.findings[0].partId).toBe("2");
  });

  test("an infected sibling of an encrypted zip still makes the message infected", async () => {
    const zip = await makeZip([{ name: "a.exe", data: "whatever", password: "pw" }]);
    const { result } = await scanMessage(multipart([attach("secret.zip", zip), attach("eicar.com", eicar())]), ctx());
    expect(result.verdict.kind).toBe("infected");
    expect(kinds(result)).toEqual([
      ["infected", "Eicar-Test-Signature", 'attachment "eicar.com"', "2"],
      ["unscanned", "encrypted", 'attachment "secret.zip" › a.exe', "1"],
    ]);
  });

  test("zip bomb → unscanned(bomb), fast and with bounded memory", async () => {
    const bomb = zipBomb(1024);
    const raw = multipart([text("x"), attach("bomb.zip", bomb), attach("eicar.com", eicar())]);
    const rss0 = process.memoryUsage().rss;
    const t0 = performance.now();
    const { result } = await scanMessage(raw, ctx({ maxFileSize: 10 * MB }));
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(process.memoryUsage().rss - rss0).toBeLessThan(200 * MB);
    expect(kinds(result)).toEqual([
      ["infected", "Eicar-Test-Signature", 'attachment "eicar.com"', "3"],
      ["unscanned", "bomb", 'attachment "bomb.zip" › bomb.bin', "2"],
    ]);
  });

  test("a decompression storm (300 gzips of 29 MB zeros each) stops once maxScanSize bytes came out, as one bomb finding", async () => {
    const gz = gzip(new Uint8Array(29 * MB));
    const raw = multipart([text("x"), ...Array.from({ length: 300 }, (_, i) => attach(`z${i}.gz`, gz))]);
    const rss0 = process.memoryUsage().rss;
    const t0 = performance.now();
    const { result } = await scanMessage(raw, ctx());
    expect(performance.now() - t0).toBeLessThan(3000);
    expect(process.memoryUsage().rss - rss0).toBeLessThan(400 * MB);
    // 100 MB of the budget: three members whole, the fourth cut at what was left, then nothing.
    expect(result.bytesScanned).toBeLessThanOrEqual(100 * MB);
    expect(kinds(result)).toEqual([["unscanned", "bomb", 'attachment "z3.gz" › z3', "5"]]);
  });

  test("corrupt zip → unscanned(corrupt)", async () => {
    const zip = await makeZip([{ name: "a.txt", data: "alpha ".repeat(200) }]);
    const { result } = await scanMessage(multipart([attach("broken.zip", zip.subarray(0, zip.length - 25))]), ctx());
    expect(kinds(result)).toEqual([["unscanned", "corrupt", 'attachment "broken.zip"', "1"]]);
  });

  test("over maxFiles → unscanned(too-many-files)", async () => {
    const raw = multipart([text("a"), text("b"), text("c"), attach("eicar.com", eicar())]);
    const { result } = await scanMessage(raw, ctx({ maxFiles: 2 }));
    expect(result.verdict.kind).toBe("unscanned");
    expect(result.findings.some((f) => f.verdict.kind === "unscanned" && f.verdict.reason === "too-many-files")).toBe(true);
    expect(result.findings.some((f) => f.verdict.kind === "infected")).toBe(false);
  });

  test("maxFiles Infinity means no cap: 10,001 parts are all scanned, the last one infected", async () => {
    const parts = Array.from({ length: 10_000 }, (_, i) => text(`p${i}`));
    const raw = multipart([...parts, attach("eicar.com", eicar())]);
    const { result, tree } = await scanMessage(raw, ctx({ maxFiles: Infinity }));
    expect(tree.children.length).toBe(10_001);
    expect(kinds(result)).toEqual([["infected", "Eicar-Test-Signature", 'attachment "eicar.com"', "10001"]]);
  });

  test("a base64-encoded attached message is parsed under maxFiles too", async () => {
    const inner = HEAD + multipartText([text("a"), text("b"), text("c"), attach("x.exe", eicar())], "ib");
    const fwd = { type: "message/rfc822", filename: "fwd.eml", encoding: "base64", body: Buffer.from(inner, "latin1").toString("base64") };
    const { result } = await scanMessage(multipart([fwd]), ctx({ maxFiles: 3 }));
    expect(result.verdict).toMatchObject({ kind: "unscanned", reason: "too-many-files" });
    expect(result.findings.some((f) => f.verdict.kind === "infected")).toBe(false);
  });

  test("a message bigger than maxScanSize as a whole is reported too-large at \"message\"", async () => {
    const raw = multipart([text("x".repeat(3000))]);
    const { result } = await scanMessage(raw, ctx({ maxScanSize: 3100 }));
    expect(kinds(result)).toEqual([["unscanned", "too-large", "message", ""]]);
  });

  test("archive members count against maxFiles", async () => {
    const zip = await makeZip(Array.from({ length: 20 }, (_, i) => ({ name: `f${i}.txt`, data: `file ${i}` })));
    const { result } = await scanObject(zip, "many.zip", ctx({ maxFiles: 5 })).then((r) => ({ result: r }));
    expect(kinds(result)).toEqual([["unscanned", "too-many-files", "many.zip › f4.txt", ""]]);
  });

  test("over maxRecursion: archives in archives, messages in messages → unscanned(too-deep)", async () => {
    const zip = await nestedZip(["inner.zip"], { name: "eicar.com", data: eicar() });
    const a = await scanMessage(multipart([attach("outer.zip", zip)]), ctx({ maxRecursion: 1 }));
    expect(kinds(a.result)).toEqual([["unscanned", "too-deep", 'attachment "outer.zip" › inner.zip', "1"]]);

    const inner = HEAD + multipartText([attach("x.exe", eicar())], "ib");
    const b = await scanMessage(multipart([{ type: "message/rfc822", filename: "fwd.eml", body: inner }]), ctx({ maxRecursion: 0 }));
    expect(kinds(b.result)).toEqual([["unscanned", "too-deep", 'message "fwd.eml"', "1"]]);
  });

  test("multipart nesting follows maxRecursion too: deeper than the limit is too-deep, a raised limit scans it", async () => {
    let body = `Content-Type: text/plain\r\n\r\n${EICAR_TEXT}\r\n`;
    for (let d = 19; d >= 0; d--) body = `Content-Type: multipart/mixed; boundary="n${d}"\r\n\r\n--n${d}\r\n${body}--n${d}--\r\n`;
    const raw = new TextEncoder().encode(`From: a@example.org\r\nMIME-Version: 1.0\r\n${body}`);
    const capped = await scanMessage(raw, ctx({ maxRecursion: 16 }));
    expect(capped.result.verdict).toMatchObject({ kind: "unscanned", reason: "too-deep" });
    const raised = await scanMessage(raw, ctx({ maxRecursion: 24 }));
    expect(raised.result.verdict).toMatchObject({ kind: "infected", name: "Eicar-Test-Signature" });
  });

  test("maxScanTime 0 → time-limit", async () => {
    const { result } = await scanMessage(multipart([text("a"), attach("eicar.com", eicar())]), ctx({ maxScanTime: 0 }));
    expect(result.verdict).toMatchObject({ kind: "unscanned", reason: "time-limit" });
    expect(result.objects).toBe(0);
  });

  test("maxFileSize applies to a decoded part; maxScanSize leaves the rest unscanned", async () => {
    const big = new Uint8Array(4000).fill(0x61);
    const a = await scanMessage(multipart([attach("big.bin", big), attach("eicar.com", eicar())]), ctx({ maxFileSize: 1000 }));
    expect(kinds(a.result)).toEqual([
      ["infected", "Eicar-Test-Signature", 'attachment "eicar.com"', "2"],
      ["unscanned", "too-large", 'attachment "big.bin"', "1"],
    ]);
    const raw = multipart([attach("big.bin", big), attach("eicar.com", eicar())]);
    const b = await scanMessage(raw, ctx({ maxScanSize: 4000 + 10 }));
    expect(b.result.findings.map((f) => f.verdict.kind)).toContain("unscanned");
    expect(b.result.bytesScanned).toBeLessThanOrEqual(4010);
  });

  test("a part the parser truncated yields unscanned of that reason", async () => {
    const raw = multipart([text("a")]);
    const tree = parseMessage(raw);
    tree.children[0].truncated = "too-deep";
    const { result } = await scanMessage(raw, ctx(), tree);
    expect(kinds(result)).toEqual([["unscanned", "too-deep", "part 1 (text/plain)", "1"]]);
  });

  test("an engine that throws gives an error verdict, never clean", async () => {
    for (const mode of ["sync", "async"] as const) {
      const { result } = await scanMessage(multipart([text("a"), attach("z.zip", await makeZip([{ name: "a", data: "b" }]))]), ctx({}, throwingEngine(mode)));
      expect(result.verdict.kind).toBe("error");
      expect(result.findings.length).toBe(1);
      const r2 = await scanObject(Buffer.from("data"), "f.bin", ctx({}, throwingEngine(mode)));
      expect(r2.verdict.kind).toBe("error");
    }
  });

  test("an async engine gives the same results as a sync one", async () => {
    const sync = BuiltinEngine.eicarOnly();
    const asyncEngine: Engine = { name: "async", scan: async (d) => sync.scan(d) };
    const zip = await nestedZip(["inner.zip"], { name: "eicar.com", data: eicar() });
    const raw = multipart([text("x"), attach("a.zip", zip), attach("eicar.com", eicar())]);
    const a = await scanMessage(raw, ctx({}, sync));
    const b = await scanMessage(raw, ctx({}, asyncEngine));
    // The same findings, each naming the engine that made it.
    const unnamed = (r: typeof a.result) => ({ ...r, findings: r.findings.map(({ engine: _e, ...f }) => f) });
    expect(unnamed(b.result)).toEqual(unnamed(a.result));
    expect(b.result.findings.filter((f) => f.verdict.kind === "infected").every((f) => f.engine === "async")).toBe(true);
  });
});

describe("scanObject: files that are not messages", () => {
  test("raw bytes, zip, gz, tar, tar.gz", async () => {
    expect((await scanObject(eicar(), "eicar.com", ctx())).verdict).toEqual({ kind: "infected", name: "Eicar-Test-Signature", path: "eicar.com" });
    expect((await scanObject(Buffer.from("harmless"), "a.txt", ctx())).verdict).toEqual({ kind: "clean" });
    const zip = await makeZip([{ name: "docs/eicar.com", data: eicar() }]);
    expect((await scanObject(zip, "/tmp/in/a.zip", ctx())).verdict).toMatchObject({ path: "/tmp/in/a.zip › docs/eicar.com" });
    expect((await scanObject(gzip(eicar()), "e.com.gz", ctx())).verdict).toMatchObject({ kind: "infected", path: "e.com.gz › e.com" });
    const tar = makeTar([{ name: "x/eicar.com", data: eicar() }]);
    expect((await scanObject(tar, "t.tar", ctx())).verdict).toMatchObject({ kind: "infected", path: "t.tar › x/eicar.com" });
    expect((await scanObject(gzip(tar), "t.tgz", ctx())).verdict).toMatchObject({ kind: "infected", path: "t.tgz › t.tar › x/eicar.com" });
    const r = await scanObject(await makeZip([{ name: "ok.txt", data: "ok" }]), "ok.zip", ctx());
    expect(r).toEqual({ verdict: { kind: "clean" }, findings: [], bytesScanned: r.bytesScanned, objects: 2 });
  });
});

describe("looksLikeMessage", () => {
  test("header lines at the top, with or without an mbox From line", async () => {
    expect(looksLikeMessage(single("hi"))).toBe(true);
    expect(looksLikeMessage(Buffer.from("From alice@example.org Mon Jan  1 10:00:00 2024\n" + HEAD.replaceAll("\r\n", "\n") + "\nbody\n"))).toBe(true);
    expect(looksLikeMessage(Buffer.from("Received: from x\r\n\tby y\r\nSubject: s\r\n\r\nb"))).toBe(true);
  });
  test("a NUL or an 8-bit byte in the header, or a malformed line after real fields, is still a message", () => {
    // Each was scanned as an opaque file and called clean, while every mail client opens it as mail.
    const base = "From: a@example.org\r\nTo: b@example.org\r\nSubject: s\r\nMIME-Version: 1.0\r\n\r\nbody\r\n";
    expect(looksLikeMessage(Buffer.from(base.replace("Subject: s", "Subject: s\0x"), "latin1"))).toBe(true);
    expect(looksLikeMessage(Buffer.from(base.replace("Subject: s", "Subject: caf\xe9"), "latin1"))).toBe(true);
    expect(looksLikeMessage(Buffer.from(base.replace("Subject: s", "X-\xe9t\xe9: s"), "latin1"))).toBe(true);
    expect(looksLikeMessage(Buffer.from(base.replace("To: b@example.org", "\0\0garbage line"), "latin1"))).toBe(true);
    expect(looksLikeMessage(Buffer.from(base.replace("Subject: s", "Subject : s"), "latin1"))).toBe(true);
  });
  test("archives, plain text and EICAR are not messages", async () => {
    expect(looksLikeMessage(await makeZip([{ name: "a", data: "b" }]))).toBe(false);
    expect(looksLikeMessage(Buffer.from("Dear Bob,\nthis is a letter: read it.\n"))).toBe(false);
    expect(looksLikeMessage(Buffer.from("Note: hello\nmore text\n"))).toBe(false);
    expect(looksLikeMessage(eicar())).toBe(false);
    expect(looksLikeMessage(new Uint8Array(0))).toBe(false);
  });
});
