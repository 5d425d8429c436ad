// BODYSTRUCTURE, BODY and ENVELOPE against Dovecot as the judge: what the proxy writes for a message
// is what Dovecot says of the same bytes, for a corpus of awkward messages and for every cleaned copy
// (header items and ENVELOPE included, once the message is scanned);
// nodes of parts cleaning left alone keep Dovecot's own text; a structure asked for before the message
// was scanned already describes the copy; a FETCH that hides its items behind a literal is not a way
// around the scanner.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startDovecot, type Dovecot } from "../helpers/dovecot.ts";
import { startProxy, TestClient, type StartedProxy } from "../helpers/proxy.ts";
import { have } from "../helpers/imap-clients.ts";
import { EICAR_TEXT } from "../helpers/eicar.ts";
import { attachment, base64Lines, leaf, message, multipart } from "../helpers/messages.ts";
import { structureText } from "../../core/imap/bodystructure.ts";
import { envelopeText } from "../../core/imap/envelope.ts";
import { canonical, parseSexp, type Sexp } from "../../core/imap/sexp.ts";
import { parseMessage } from "../../core/mime/parse.ts";

const crlf = (s: string) => s.replace(/\r?\n/g, "\r\n");
const bytes = (s: string) => new Uint8Array(Buffer.from(s, "latin1"));

// Messages whose structure takes some reading: every extension field, RFC 2231 continuations, an
// attached message, a digest, a type without subtype, an empty Content-Type, a multipart whose boundary
// never comes, 8-bit and quoted parameter values, address lists with groups, comments and odd names.
const corpus: Uint8Array[] = [
  bytes(crlf(`From: "Al B" <al@x.test>, bob@y.test
To: undisclosed-recipients:;
Cc: Grp: a@b.c, "q\\"x" <d@e.f>;, carol@z.test (Carol C)
Subject: =?utf-8?q?h=C3=A9?= "q"
Date: Mon, 1 Jan 2024 00:00:00 +0000
Message-ID: <a@b>
In-Reply-To: <z@y>
Content-Type: TEXT/Plain; Charset="UTF-8"; format=flowed
Content-Transfer-Encoding: Quoted-Printable
Content-ID: <cid@x>
Content-Description: desc
Content-Language: en, de
Content-Location: http://x/y
Content-MD5: abc
Content-Disposition: inline; filename="a b.txt"

hello
world
`)),
  bytes(crlf(`From: a@b
Reply-To: r@b
Sender: s@b
Bcc: hidden@b
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="XX"

pre
--XX
Content-Type: text/plain

one
--XX
Content-Type: application/octet-stream; name*0="long"; name*1=".bin"
Content-Transfer-Encoding: base64
Content-Disposition: attachment

AAAA
--XX
Content-Type: message/rfc822

From: c@d
To: "Dee" <dee@d>
Subject: inner
Content-Type: multipart/alternative; boundary=YY

--YY

plain
--YY
Content-Type: text/html

<b>x</b>
--YY--

--XX--
epilogue
`)),
  bytes(crlf(`Content-Type: MULTIPART/Mixed; b="1"; boundary=ZZ; d=p

--ZZ
Content-Type: multipart/digest; boundary=DD

--DD

Subject: dig

d
--DD--
--ZZ
Content-Type: text

nosub
--ZZ
Content-Type: multipart/related; boundary=NEVER

no parts here
--ZZ
Content-Type: 

empty
--ZZ
Content-Type: image/png; name=a.png
Content-Transfer-Encoding: BASE64

AAAA
BBBB
--ZZ--
`)),
  bytes(crlf(`Subject: params
From: nohost, <>
Content-Type: application/x; name="a\\"b"; n2="\xc3\xa9"; n3="x y"

bin`)),
  bytes(crlf(`Subject: no content type at all

body without a line end`)),
];

const big = "filler line\r\n".repeat(6000);
// Infected shapes: an attachment between text parts (over 64 KiB), one inside an attached message, a
// single-part message, and an inline part deep in alternative/related.
const infected: Uint8Array[] = [
  bytes(message(multipart("b1", [
    leaf({ headers: ["Content-Type: text/plain; charset=utf-8"], body: big }),
    attachment("eicar.com", EICAR_TEXT),
    leaf({ headers: ["Content-Type: text/plain"], body: "after" }),
  ]), "\r\n", "attachment")),
  bytes(message(multipart("b2", [
    leaf({ headers: ["Content-Type: text/plain"], body: "see the forwarded message" }),
    `Content-Type: message/rfc822\r\n\r\n${message(multipart("in", [
      leaf({ headers: ["Content-Type: text/plain"], body: "inner text" }),
      attachment("inner.com", EICAR_TEXT),
    ]), "\r\n", "forwarded")}`,
  ]), "\r\n", "forwarded")),
  bytes(`From: x@example.test\r\nSubject: single\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n${base64Lines(EICAR_TEXT)}`),
  bytes(message(multipart("b4", [
    multipart("alt", [
      leaf({ headers: ["Content-Type: text/plain"], body: "plain" }),
      multipart("rel", [
        leaf({ headers: ["Content-Type: text/html"], body: "<p>html</p>" }),
        attachment("x.com", EICAR_TEXT, "\r\n", "application/x-msdownload"),
      ], { subtype: "related" }),
    ], { subtype: "alternative" }),
    leaf({ headers: ["Content-Type: text/plain"], body: "footer" }),
  ]), "\r\n", "deep")),
];

/** Items of each FETCH response for uids, as Dovecot or the proxy sent them: item name → value text (latin1, literals inline). */
async function fetchItems(port: number, user: string, uids: string, items: string): Promise<Map<number, Map<string, { text: string; node: Sexp }>>> {
  const py = `
import imaplib, sys, json, base64
m = imaplib.IMAP4('127.0.0.1', ${port}); m.login(${JSON.stringify(user)}, 'alice-secret'); m.select('INBOX')
t, d = m.uid('FETCH', ${JSON.stringify(uids)}, ${JSON.stringify(items)})
assert t == 'OK', (t, d)
out, cur = [], b''
for x in d:
    if isinstance(x, tuple): cur += x[0] + b'\\r\\n' + x[1]
    else:
        cur += x; out.append(base64.b64encode(cur).decode()); cur = b''
print(json.dumps(out)); m.logout()
`;
  const p = Bun.spawn(["python3", "-c", py], { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (code !== 0) throw new Error(`imaplib failed: ${err}`);
  const result = new Map<number, Map<string, { text: string; node: Sexp }>>();
  for (const b64 of JSON.parse(out) as string[]) {
    const text = Buffer.from(b64, "base64").toString("latin1");
    const listText = text.slice(text.indexOf("("));
    const list = parseSexp(listText);
    if (list.t !== "list") throw new Error("not a FETCH list");
    const byName = new Map<string, { text: string; node: Sexp }>();
    for (let i = 0; i + 1 < list.items.length; i += 2) {
      const name = list.items[i]!;
      const value = list.items[i + 1]!;
      if (name.t === "atom") byName.set(name.v.toUpperCase(), { text: listText.slice(value.start, value.end), node: value });
    }
    const uid = byName.get("UID");
    if (uid) result.set(Number(uid.text), byName);
  }
  return result;
}

const valueBytes = (v: { node: Sexp }) => new Uint8Array(Buffer.from(v.node.t === "string" ? v.node.v : "", "latin1"));

describe.skipIf(!have("dovecot") || !have("python3"))("body structure of served copies, judged by Dovecot", () => {
  let dc: Dovecot;
  let proxy: StartedProxy;
  let viaProxy: string;
  const firstInfected = corpus.length + 1;

  beforeAll(async () => {
    dc = await startDovecot({ compress: false });
    await dc.seed("alice", [...corpus, ...infected]);
    proxy = await startProxy({ allowedUpstreamPorts: [dc.ports.imap], upstreamTls: "off" }, { env: {} });
    viaProxy = `alice/127.0.0.1:${dc.ports.imap}`;
  });
  afterAll(async () => {
    await proxy?.stop();
    await dc?.stop();
  });

  test("for unchanged messages our BODYSTRUCTURE, BODY and ENVELOPE say what Dovecot says, and Dovecot's text is kept whole", async () => {
    const got = await fetchItems(dc.ports.imap, "alice", `1:${corpus.length}`, "(UID BODYSTRUCTURE BODY ENVELOPE BODY.PEEK[])");
    expect(got.size).toBe(corpus.length);
    for (const [uid, items] of got) {
      const served = valueBytes(items.get("BODY[]")!);
      const tree = parseMessage(served);
      for (const name of ["BODYSTRUCTURE", "BODY"]) {
        const dovecot = items.get(name)!;
        const ext = name === "BODYSTRUCTURE";
        // Nothing differs from the server's view: its text comes back byte for byte.
        expect(structureText(served, tree, dovecot.text, ext)).toBe(dovecot.text);
        // Written entirely from the message ("NIL" leaves nothing to reuse), it reads the same.
        const ours = structureText(served, tree, "NIL", ext)!;
        expect({ uid, name, v: canonical(parseSexp(ours)) }).toEqual({ uid, name, v: canonical(dovecot.node) });
      }
      expect({ uid, v: canonical(parseSexp(envelopeText(tree))) }).toEqual({ uid, v: canonical(items.get("ENVELOPE")!.node) });
    }
    // A copy that differs inside an attached message: the changed nodes are written anew, the
    // attached message's envelope is still the server's text.
    const items = got.get(2)!;
    const served = Buffer.from(valueBytes(items.get("BODY[]")!)).toString("latin1");
    const changed = bytes(served.replace("<b>x</b>", "<b>changed</b>"));
    const dovecot = items.get("BODYSTRUCTURE")!;
    const out = structureText(changed, parseMessage(changed), dovecot.text, true)!;
    expect(out).not.toBe(dovecot.text);
    expect(canonical(parseSexp(out))).toBe(canonical(parseSexp(structureText(changed, parseMessage(changed), "NIL", true)!)));
    const rfc822 = dovecot.node.t === "list" ? dovecot.node.items[2] : undefined; // part 3, the attached message
    const env = rfc822?.t === "list" ? rfc822.items[7]! : undefined;
    expect(env?.t).toBe("list");
    const envelope = dovecot.text.slice(env!.start - dovecot.node.start, env!.end - dovecot.node.start);
    expect(envelope).toContain('"inner"');
    expect(out).toContain(envelope);
    expect(out).toContain('"html" ("charset" "us-ascii") NIL NIL "7bit" 14 0');
  });

  test("an infected message's structure, asked for before anything else, describes the cleaned copy exactly as Dovecot would", async () => {
    const uids = `${firstInfected}:${firstInfected + infected.length - 1}`;
    // Structure first, as K-9 and FairEmail sync: the proxy scans the messages before it answers.
    const structures = await fetchItems(proxy.ports.imap, viaProxy, uids, "(UID BODYSTRUCTURE BODY)");
    const headers = await fetchItems(proxy.ports.imap, viaProxy, uids, "(UID ENVELOPE BODY.PEEK[HEADER] BODY.PEEK[1.MIME] BODY.PEEK[2.MIME])");
    const copies = await fetchItems(proxy.ports.imap, viaProxy, uids, "(UID BODY.PEEK[])");
    const originals = await fetchItems(dc.ports.imap, "alice", uids, "(UID BODYSTRUCTURE)");
    const copyBytes = [...copies.values()].map((m) => valueBytes(m.get("BODY[]")!));
    for (const c of copyBytes) expect(Buffer.from(c).includes(EICAR_TEXT)).toBe(false);
    // Dovecot judges the copies themselves: stored as new messages, their structure is what ours must say.
    await dc.seed("alice", copyBytes);
    const firstCopy = firstInfected + infected.length;
    const judged = await fetchItems(dc.ports.imap, "alice", `${firstCopy}:*`, "(UID BODYSTRUCTURE BODY BODY.PEEK[] ENVELOPE BODY.PEEK[HEADER] BODY.PEEK[1.MIME] BODY.PEEK[2.MIME])");
    const judgedByBytes = new Map([...judged.values()].map((m) => [Buffer.from(valueBytes(m.get("BODY[]")!)).toString("latin1"), m]));
    for (let i = 0; i < infected.length; i++) {
      const uid = firstInfected + i;
      const copy = copies.get(uid)!.get("BODY[]")!;
      const dovecot = judgedByBytes.get(Buffer.from(valueBytes(copy)).toString("latin1"));
      expect(dovecot).toBeDefined();
      for (const name of ["BODYSTRUCTURE", "BODY"]) {
        const proxied = structures.get(uid)!.get(name)!;
        expect({ uid, name, v: canonical(proxied.node) }).toEqual({ uid, name, v: canonical(dovecot!.get(name)!.node) });
      }
      // Header items and the envelope, once the message is scanned, are the copy's too.
      for (const name of ["ENVELOPE", "BODY[HEADER]", "BODY[1.MIME]", "BODY[2.MIME]"]) {
        const proxied = headers.get(uid)!.get(name);
        expect({ uid, name, v: proxied && canonical(proxied.node) }).toEqual({ uid, name, v: canonical(dovecot!.get(name)!.node) });
      }
      // The structure changed where the infected part was.
      expect(canonical(structures.get(uid)!.get("BODYSTRUCTURE")!.node)).not.toBe(canonical(originals.get(uid)!.get("BODYSTRUCTURE")!.node));
    }
    // Nodes of untouched parts are the server's own text: the 78,000-byte first part of the first message.
    const first = originals.get(firstInfected)!.get("BODYSTRUCTURE")!;
    const part1 = first.node.t === "list" ? first.node.items[0]! : null;
    expect(part1).not.toBeNull();
    expect(structures.get(firstInfected)!.get("BODYSTRUCTURE")!.text).toContain(first.text.slice(part1!.start - first.node.start, part1!.end - first.node.start));
  });

  test("a FETCH that names its items through a literal is parsed, not waved through: BINARY still refused, HEADER.FIELDS answered", async () => {
    await using c = await TestClient.connect(proxy.ports.imap);
    await c.line();
    c.send(`a LOGIN "${viaProxy}" "alice-secret"`);
    while (!(await c.line()).startsWith("a ")) { /* capabilities */ }
    c.send("b SELECT INBOX");
    while (!(await c.line()).startsWith("b ")) { /* mailbox data */ }
    // BINARY of the infected attachment behind a synchronizing literal: the proxy gives the "+" itself.
    c.send(`c UID FETCH ${firstInfected} (BINARY.PEEK[2] BODY.PEEK[HEADER.FIELDS ({4}`);
    expect(await c.line()).toStartWith("+");
    c.send("From)])");
    let seen = "";
    for (;;) { const l = await c.line(); seen += l + "\n"; if (l.startsWith("c ")) break; }
    expect(seen).toContain("c NO [CANNOT]");
    expect(seen).not.toContain("EICAR");
    // The same with LITERAL+, asking for something legitimate: the header field comes back.
    c.sendRaw(`d UID FETCH 1 (BODY.PEEK[HEADER.FIELDS ({7+}\r\nSubject)])\r\n`);
    seen = "";
    for (;;) { const l = await c.line(); seen += l + "\n"; if (l.startsWith("d ")) break; }
    expect(seen).toContain("Subject: =?utf-8?q?h=C3=A9?=");
    expect(seen).toContain("d OK");
    // A literal too long to be a field list is refused before the client sends it.
    c.send(`e UID FETCH 1 (BODY.PEEK[HEADER.FIELDS ({100000}`);
    expect(await c.line()).toStartWith("e BAD");
    // A literal that cannot be written as a quoted string (8-bit) is read and refused, not guessed at.
    c.sendRaw(new Uint8Array([...Buffer.from("g UID FETCH 1 (BODY.PEEK[HEADER.FIELDS ({2+}\r\n"), 0xc3, 0xa9, ...Buffer.from(")])\r\n")]));
    const refused = await c.line();
    expect(refused).toStartWith("g BAD");
    expect(refused).toContain("mailsentry"); // the proxy's refusal, not the server's
    c.send("f NOOP");
    expect(await c.line()).toStartWith("f OK");
  });
});
