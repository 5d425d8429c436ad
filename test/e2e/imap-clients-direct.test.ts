// The real-client IMAP harness against Dovecot directly, in plain, STARTTLS and IMAPS: every client
// and fetch shape gets the seeded bytes, chunks add up to RFC822.SIZE, COMPRESS=DEFLATE is offered,
// IDLE sees new mail, and routed names and awkward passwords reach the server intact.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { asCrlf, cleanCorpus } from "../helpers/clients.ts";
import { AWKWARD_PASSWORD, startDovecot, type Dovecot } from "../helpers/dovecot.ts";
import {
  asLf, bodiesOf, curlImap, fetchmailImap, have, imapflowDownload, imaplib, imaplibIdle, mbsync, nestedMessage, withoutTuid,
  type ImapConnect,
} from "../helpers/imap-clients.ts";

const PW = "imap-pw";
const nested = nestedMessage();
const corpus = [...cleanCorpus(), { name: "nested", bytes: nested.bytes }];
/** What an IMAP client receives for each seeded message: Dovecot sends bare LF as CRLF. */
const served = corpus.map((c) => asCrlf(c.bytes));
const uids = corpus.map((_, i) => i + 1);
const BOB_MESSAGE = new TextEncoder().encode("From: b@example.test\r\nSubject: for bob\r\n\r\nbob's body\r\n");
const MODES = ["plain", "starttls", "imaps"] as const;

const buf = (b: Uint8Array | null | undefined) => Buffer.from(b ?? new Uint8Array());
const bodyOf = (m: Uint8Array) => buf(m).subarray(buf(m).indexOf("\r\n\r\n") + 4);

describe.skipIf(!have("dovecot"))("IMAP clients against Dovecot directly", () => {
  let dc: Dovecot;
  const conn = (mode: (typeof MODES)[number], user = "alice", password = PW): ImapConnect => ({
    host: "127.0.0.1", port: mode === "imaps" ? dc.ports.imaps : dc.ports.imap, mode, user, password, caFile: dc.caFile,
  });

  beforeAll(async () => {
    dc = await startDovecot({
      users: [{ name: "alice", password: PW }, { name: "bob", password: AWKWARD_PASSWORD }, { name: "idler", password: PW }],
      routedNames: true,
    });
    await dc.seed("alice", corpus.map((c) => c.bytes));
    await dc.seed("bob", [BOB_MESSAGE]);
  }, 30_000);
  afterAll(async () => {
    await dc?.stop();
  });

  describe.skipIf(!have("python3"))("python3 imaplib", () => {
    for (const mode of MODES) {
      test(`${mode}: UID FETCH n BODY.PEEK[] gives the seeded bytes, RFC822.SIZE their length; COMPRESS=DEFLATE after login`, async () => {
        const r = await imaplib(conn(mode), "whole");
        expect(r.greeting).toStartWith("* OK");
        expect(r.capabilities).toContain("COMPRESS=DEFLATE");
        expect(r.messages.map((m) => m.uid)).toEqual(uids);
        expect(bodiesOf(r)).toEqual(served);
        expect(r.messages.map((m) => m.size)).toEqual(served.map((m) => m.length));
      });
    }

    test("RFC822 (EXAMINE, so nothing is marked seen) and UID FETCH 1:* BODY.PEEK[] in one command", async () => {
      const [rfc822, bulk] = await Promise.all([imaplib({ ...conn("plain"), readonly: true }, "rfc822"), imaplib(conn("starttls"), "bulk")]);
      expect(Object.keys(rfc822.messages[0]!.items)).toEqual(["RFC822"]);
      expect(bodiesOf(rfc822)).toEqual(served);
      expect(rfc822.messages.every((m) => !m.flags.includes("\\Seen"))).toBe(true);
      expect(bodiesOf(bulk)).toEqual(served);
    });

    test("RFC822.PEEK, which Outlook sends, is refused by Dovecot 2.3 with BAD", async () => {
      const r = await imaplib({ ...conn("plain"), uids: [1] }, "rfc822peek");
      expect(r.messages[0]!.error).toContain("BAD");
      expect(r.messages[0]!.error).toContain("RFC822.PEEK");
    });

    for (const mode of ["plain", "imaps"] as const) {
      test(`${mode}: Thunderbird-style 64 KiB chunks after a header sync add up to RFC822.SIZE and to the message`, async () => {
        const r = await imaplib(conn(mode), "chunked");
        expect(bodiesOf(r)).toEqual(served);
        for (const m of r.messages) {
          expect(m.chunks!.reduce((a, b) => a + b, 0)).toBe(m.size);
          expect(m.chunks!.slice(0, -1).every((n) => n === 65536)).toBe(true);
          expect(m.chunks!.at(-1)!).toBeLessThan(65536);
          expect(m.items["BODY[HEADER.FIELDS (FROM TO SUBJECT DATE MESSAGE-ID)]"]).toBeInstanceOf(Uint8Array);
        }
        const large = r.messages[corpus.findIndex((c) => c.name === "large")]!;
        expect(large.chunks!.length).toBe(Math.ceil(large.size / 65536) + (large.size % 65536 === 0 ? 1 : 0));
      });
    }

    test("BODYSTRUCTURE then every leaf BODY.PEEK[n.MIME] and BODY.PEEK[n]: the nested message's sections byte for byte", async () => {
      const r = await imaplib(conn("plain"), "parts");
      const m = r.messages.find((x) => x.uid === corpus.length)!;
      expect(m.sections).toEqual(["1", "2.1", "2.2", "3.1", "3.2", "4.1"]);
      expect(m.bodystructure).toStartWith('(("text" "plain" ("charset" "utf-8")');
      for (const [sec, want] of Object.entries(nested.sections)) {
        expect(buf(m.items[`BODY[${sec}]`]).toString("latin1")).toBe(buf(want.body).toString("latin1"));
        expect(buf(m.items[`BODY[${sec}.MIME]`]).toString("latin1")).toBe(buf(want.mime).toString("latin1"));
      }
      // A single-part message is section 1: its body, with the message header as 1.MIME.
      const plain = r.messages[0]!;
      expect(plain.sections).toEqual(["1"]);
      expect(buf(plain.items["BODY[1]"]).equals(bodyOf(served[0]!))).toBe(true);
      expect(buf(plain.items["BODY[1.MIME]"]).equals(buf(served[0]!).subarray(0, bodyOf(served[0]!).byteOffset - buf(served[0]!).byteOffset))).toBe(true);
    });

    test("BODY.PEEK[TEXT]<0.2048> is the first 2048 bytes of the body", async () => {
      const r = await imaplib(conn("imaps"), "text-preview");
      r.messages.forEach((m, i) => expect(buf(m.items["BODY[TEXT]<0>"]).equals(bodyOf(served[i]!).subarray(0, 2048))).toBe(true));
    });

    test("LOGIN with the password quoted, as a literal, and AUTHENTICATE PLAIN; a routed name with / and # logs in", async () => {
      const port = dc.ports.imap;
      const ascii = await imaplib({ ...conn("plain", `alice/127.0.0.1:${port}`), login: "quoted", uids: [1] }, "whole");
      expect(bodiesOf(ascii)).toEqual([served[0]!]);
      for (const login of ["literal", "plain"] as const) {
        for (const user of [`bob/127.0.0.1:${port}`, "bob#localhost"]) {
          const r = await imaplib({ ...conn("starttls", user, AWKWARD_PASSWORD), login }, "whole");
          expect(bodiesOf(r)).toEqual([BOB_MESSAGE]);
        }
      }
    });

    for (const mode of MODES) {
      test(`${mode}: IDLE sees a message delivered while idling, within a second or two`, async () => {
        const before = (await dc.maildirMessages("idler")).length;
        const r = await imaplibIdle(conn(mode, "idler"), () => dc.seed("idler", [BOB_MESSAGE]));
        expect(r.existsBefore).toBe(before);
        expect(r.continuation).toStartWith("+");
        expect(r.untagged.at(-1)).toBe(`* ${before + 1} EXISTS`);
        expect(r.done).toMatch(/^\S+ OK/);
        expect(r.waitedMs).toBeLessThan(2500);
      });
    }
  });

  describe.skipIf(!have("mbsync"))("mbsync", () => {
    for (const mode of MODES) {
      test(`${mode}: pulls INBOX; the files are the served messages with LF line ends plus mbsync's X-TUID`, async () => {
        const r = await mbsync(conn(mode));
        expect(r.uids).toEqual(uids);
        expect(r.messages.map(withoutTuid)).toEqual(served.map(asLf));
        expect(r.messages.every((m) => /^X-TUID: /m.test(buf(m).toString("latin1")))).toBe(true);
      });
    }

    test("a routed name and an awkward password through the rc file, with SASL and with the LOGIN command", async () => {
      for (const authMechs of [undefined, "LOGIN"]) {
        const r = await mbsync({ ...conn("imaps", `bob/127.0.0.1:${dc.ports.imaps}`, AWKWARD_PASSWORD), authMechs });
        expect(r.messages.map(withoutTuid)).toEqual([asLf(BOB_MESSAGE)]);
      }
    });
  });

  describe.skipIf(!have("curl"))("curl", () => {
    for (const mode of MODES) {
      test(`${mode}: imap${mode === "imaps" ? "s" : ""}://…/INBOX;UID=n gives each message's bytes`, async () => {
        const got = await Promise.all(uids.map((uid) => curlImap(conn(mode), uid)));
        expect(got).toEqual(served);
      });
    }

    test("routed names and an awkward password, percent-encoded in the URL, with SASL PLAIN and LOGIN", async () => {
      for (const saslMech of ["PLAIN", "LOGIN"]) {
        for (const user of [`bob/127.0.0.1:${dc.ports.imap}`, "bob#localhost"]) {
          expect(await curlImap({ ...conn("starttls", user, AWKWARD_PASSWORD), saslMech }, 1)).toEqual(BOB_MESSAGE);
        }
      }
    });
  });

  describe.skipIf(!have("fetchmail"))("fetchmail over IMAP", () => {
    for (const mode of MODES) {
      test(`${mode}: every message arrives as served (LF line ends) below fetchmail's Received: header; the server keeps them`, async () => {
        const r = await fetchmailImap(conn(mode));
        expect(r.messages.length).toBe(served.length);
        r.messages.forEach((m, i) => {
          const text = buf(m).toString("latin1");
          expect(text).toStartWith("Received: from ");
          expect(buf(m).subarray(m.length - asLf(served[i]!).length).equals(asLf(served[i]!))).toBe(true);
        });
        expect((await dc.maildirMessages("alice")).length).toBe(corpus.length);
      });
    }

    test("a routed name and an awkward password in the rc file", async () => {
      const r = await fetchmailImap(conn("starttls", `bob#127.0.0.1:${dc.ports.imap}`, AWKWARD_PASSWORD));
      expect(r.messages.length).toBe(1);
      expect(buf(r.messages[0]!).toString("latin1")).toEndWith(buf(asLf(BOB_MESSAGE)).toString("latin1"));
    });
  });

  describe("imapflow download()", () => {
    for (const mode of MODES) {
      test(`${mode}: each message's bytes, of the size RFC822.SIZE announced (over COMPRESS=DEFLATE)`, async () => {
        for (const uid of uids) {
          const d = await imapflowDownload(conn(mode), uid);
          expect(buf(d.bytes).equals(served[uid - 1]!)).toBe(true);
          expect(d.expectedSize).toBe(served[uid - 1]!.length);
          expect(d.capabilities).toContain("COMPRESS=DEFLATE");
          expect(d.compressed).toBe(true);
        }
      });
    }

    test("a part, transfer-decoded; a routed name and an awkward password", async () => {
      const part = await imapflowDownload({ ...conn("plain"), part: "3.2" }, corpus.length);
      expect(buf(part.bytes).equals(Buffer.from(Array.from({ length: 300 }, (_, i) => i & 0xff)))).toBe(true);
      const d = await imapflowDownload(conn("imaps", `bob/127.0.0.1:${dc.ports.imaps}`, AWKWARD_PASSWORD), 1);
      expect(d.bytes).toEqual(BOB_MESSAGE);
    });
  });

  // Last: after a failed login Dovecot's anvil delays the next logins from 127.0.0.1 by seconds
  // (its auth penalty, apart from auth_failure_delay).
  test.skipIf(!have("python3"))("a wrong password is refused", async () => {
    await expect(imaplib({ ...conn("plain", "bob"), password: "p w" }, "whole")).rejects.toThrow(/AUTHENTICATIONFAILED/);
  });

  test.skipIf(!have("python3"))("without the zlib plugins COMPRESS=DEFLATE is not offered", async () => {
    await using bare = await startDovecot({ users: [{ name: "alice", password: PW }], compress: false });
    const r = await imaplib({ host: "127.0.0.1", port: bare.ports.imap, mode: "plain", user: "alice", password: PW }, "whole");
    expect(r.capabilities).toContain("IMAP4rev1");
    expect(r.capabilities).not.toContain("COMPRESS=DEFLATE");
  });
});
