// Real IMAP clients through the proxy in front of a real Dovecot, in plain, STARTTLS and IMAPS (with
// implicit TLS upstream): python imaplib in every fetch shape, mbsync, curl, fetchmail and imapflow.
// Clean mail arrives as Dovecot serves it; an infected message arrives as one cleaned copy of the
// original's size, the same bytes whichever client, fetch shape, session or proxy instance asked
// first; IDLE reports new mail, infected new mail included.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { asCrlf, cleanCorpus, infectedMessage } from "../helpers/clients.ts";
import { AWKWARD_PASSWORD, startDovecot, type Dovecot } from "../helpers/dovecot.ts";
import { eicar, EICAR_TEXT } from "../helpers/eicar.ts";
import {
  asLf, bodiesOf, curlImap, fetchmailImap, have, imapflowDownload, imaplib, imaplibIdle, mbsync, nestedMessage, withoutTuid,
  type ImapConnect,
} from "../helpers/imap-clients.ts";
import { attachment, leaf, message, multipart } from "../helpers/messages.ts";
import { startProxy, type ConfigOverrides, type StartedProxy } from "../helpers/proxy.ts";

const PW = "imap-pw";
const enc = new TextEncoder();
const nested = nestedMessage();
// Over 64 KiB with the payload in the middle, so chunks of a cleaned copy span the replaced part.
const infectedBig = enc.encode(message(multipart("BIG", [
  leaf({ headers: ["Content-Type: text/plain"], body: "filler line\r\n".repeat(8000) }),
  attachment("eicar.com", EICAR_TEXT),
  leaf({ headers: ["Content-Type: text/plain"], body: "after the attachment\r\n" }),
]), "\r\n", "infected big"));
// Under a kilobyte: the notice has to be cut to fit the original's size.
const infectedSmall = infectedMessage(eicar(), "tool.com", "tool");
const corpus = [...cleanCorpus(), { name: "nested", bytes: nested.bytes }];
const served = corpus.map((c) => asCrlf(c.bytes));
const INFECTED = [corpus.length + 1, corpus.length + 2];
const originals = [infectedBig, infectedSmall];
const allUids = [...corpus.map((_, i) => i + 1), ...INFECTED];
const BOB_MESSAGE = enc.encode("From: b@example.test\r\nSubject: for bob\r\n\r\nbob's body\r\n");
const MODES = ["plain", "starttls", "imaps"] as const;
type Mode = (typeof MODES)[number];

const buf = (b: Uint8Array | null | undefined) => Buffer.from(b ?? new Uint8Array());
const hasEicar = (b: Uint8Array) => buf(b).includes(EICAR_TEXT);
const bodyOf = (m: Uint8Array) => buf(m).subarray(buf(m).indexOf("\r\n\r\n") + 4);

describe.skipIf(!have("dovecot") || !have("python3"))("IMAP clients through the proxy", () => {
  let dc: Dovecot;
  let proxy: StartedProxy;
  let caFile: string;
  /** The cleaned copies of INFECTED, as the first whole fetch got them. */
  let cleaned: Uint8Array[];
  /** Every message a client should get, by UID order: served clean mail, then the cleaned copies. */
  let expected: Uint8Array[];

  const proxyOptions = (): ConfigOverrides => ({
    allowedUpstreamPorts: [dc.ports.imap, dc.ports.imaps],
    upstreamCaFile: dc.caFile,
    upstreamImplicitTlsPorts: { pop3: [dc.ports.pop3s], imap: [dc.ports.imaps] },
  });
  /** A client of `p` in `mode`; IMAPS clients are routed to Dovecot's IMAPS port (implicit TLS on both legs). */
  const conn = (mode: Mode, user = "alice", password = PW, p = proxy): ImapConnect => ({
    host: "127.0.0.1",
    port: mode === "imaps" ? p.ports.imaps : p.ports.imap,
    mode,
    user: `${user}/127.0.0.1:${mode === "imaps" ? dc.ports.imaps : dc.ports.imap}`,
    password,
    caFile,
  });
  const direct = (user: string, password = PW): ImapConnect => ({ host: "127.0.0.1", port: dc.ports.imap, mode: "plain", user, password });

  beforeAll(async () => {
    dc = await startDovecot({
      users: [{ name: "alice", password: PW }, { name: "bob", password: AWKWARD_PASSWORD }, { name: "idler", password: PW }, { name: "oracle", password: PW }],
    });
    await dc.seed("alice", [...corpus.map((c) => c.bytes), ...originals]);
    await dc.seed("bob", [BOB_MESSAGE]);
    proxy = await startProxy(proxyOptions(), { env: {} });
    caFile = join(proxy.stateDir, "test-proxy-ca.pem");
    await writeFile(caFile, proxy.caPem);
    cleaned = bodiesOf(await imaplib({ ...conn("plain"), uids: INFECTED }, "whole"));
    expected = [...served, ...cleaned];
    // Dovecot holding the cleaned copies is the oracle for how their parts and structure must look.
    await dc.seed("oracle", cleaned);
  }, 60_000);
  afterAll(async () => {
    await proxy?.stop();
    await dc?.stop();
  });

  test("the cleaned copies: no payload, the original's size, the text around the payload kept", () => {
    cleaned.forEach((c, i) => {
      expect(hasEicar(c)).toBe(false);
      expect(c.length).toBe(originals[i]!.length);
    });
    expect(buf(cleaned[0]!).includes("after the attachment\r\n")).toBe(true);
    expect(buf(cleaned[1]!).includes("Please find the invoice attached.")).toBe(true);
  });

  describe("python3 imaplib", () => {
    for (const mode of MODES) {
      test(`${mode}: UID FETCH n BODY.PEEK[]: clean mail as Dovecot serves it, cleaned copies, RFC822.SIZE their length; no COMPRESS offered`, async () => {
        const r = await imaplib(conn(mode), "whole");
        expect(r.greeting).toStartWith("* OK");
        expect(r.capabilities).toContain("IDLE");
        expect(r.capabilities.some((c) => /^COMPRESS=/i.test(c))).toBe(false);
        expect(r.messages.map((m) => m.uid)).toEqual(allUids);
        expect(bodiesOf(r)).toEqual(expected);
        expect(r.messages.map((m) => m.size)).toEqual(expected.map((m) => m.length));
      });
    }

    test("RFC822 (EXAMINE, nothing marked seen) and UID FETCH 1:* BODY.PEEK[] in one command", async () => {
      const [rfc822, bulk] = await Promise.all([imaplib({ ...conn("plain"), readonly: true }, "rfc822"), imaplib(conn("starttls"), "bulk")]);
      expect(bodiesOf(rfc822)).toEqual(expected);
      expect(rfc822.messages.every((m) => !m.flags.includes("\\Seen"))).toBe(true);
      expect(bodiesOf(bulk)).toEqual(expected);
    });

    test("RFC822.PEEK gets the same answer through the proxy as from Dovecot", async () => {
      const [viaProxy, straight] = await Promise.all([
        imaplib({ ...conn("plain"), uids: [1, INFECTED[0]!] }, "rfc822peek"),
        imaplib({ ...direct("alice"), uids: [1, INFECTED[0]!] }, "rfc822peek"),
      ]);
      expect(viaProxy.messages.map((m) => m.error?.replace(/^\S+ /, ""))).toEqual(straight.messages.map((m) => m.error?.replace(/^\S+ /, "")));
      expect(viaProxy.messages.every((m) => Object.values(m.items).every((v) => !v || !hasEicar(v)))).toBe(true);
    });

    for (const mode of ["plain", "imaps"] as const) {
      test(`${mode}: Thunderbird-style 64 KiB chunks add up to RFC822.SIZE and to the whole copy`, async () => {
        const r = await imaplib(conn(mode), "chunked");
        expect(bodiesOf(r)).toEqual(expected);
        for (const m of r.messages) {
          expect(m.chunks!.reduce((a, b) => a + b, 0)).toBe(m.size);
          expect(m.chunks!.slice(0, -1).every((n) => n === 65536)).toBe(true);
        }
        expect(r.messages.find((m) => m.uid === INFECTED[0])!.chunks!.length).toBeGreaterThan(1);
      });
    }

    test("BODYSTRUCTURE then every part: clean sections byte for byte; the cleaned copies' parts and structure as Dovecot gives them for the copy", async () => {
      const r = await imaplib(conn("starttls"), "parts");
      const m = r.messages.find((x) => x.uid === corpus.length)!;
      expect(m.sections).toEqual(["1", "2.1", "2.2", "3.1", "3.2", "4.1"]);
      for (const [sec, want] of Object.entries(nested.sections)) {
        expect(buf(m.items[`BODY[${sec}]`]).equals(buf(want.body))).toBe(true);
        expect(buf(m.items[`BODY[${sec}.MIME]`]).equals(buf(want.mime))).toBe(true);
      }
      const oracle = await imaplib(direct("oracle"), "parts");
      INFECTED.forEach((uid, i) => {
        const got = r.messages.find((x) => x.uid === uid)!;
        const want = oracle.messages[i]!;
        expect(got.bodystructure).toBe(want.bodystructure!);
        expect(got.sections).toEqual(want.sections!);
        expect(Object.keys(got.items)).toEqual(Object.keys(want.items));
        for (const [k, v] of Object.entries(want.items)) expect(buf(got.items[k]).equals(buf(v))).toBe(true);
      });
    });

    test("BODY.PEEK[TEXT]<0.2048> is the first 2048 bytes of the body served whole", async () => {
      const r = await imaplib(conn("imaps"), "text-preview");
      r.messages.forEach((m, i) => expect(buf(m.items["BODY[TEXT]<0>"]).equals(bodyOf(expected[i]!).subarray(0, 2048))).toBe(true));
    });

    test("a fresh proxy asked first for chunks, for parts or for a preview builds the same cleaned copy", async () => {
      const partsOf = async (p: StartedProxy) => (await imaplib({ ...conn("plain", "alice", PW, p), uids: INFECTED }, "parts")).messages;
      const oracle = (await imaplib(direct("oracle"), "parts")).messages;
      for (const first of ["chunked", "parts", "text-preview"] as const) {
        await using p = await startProxy(proxyOptions(), { env: {} });
        const pCa = join(p.stateDir, "test-proxy-ca.pem");
        await writeFile(pCa, p.caPem);
        const r = await imaplib({ ...conn("imaps", "alice", PW, p), caFile: pCa, uids: INFECTED }, first);
        if (first === "chunked") expect(bodiesOf(r)).toEqual(cleaned);
        if (first === "text-preview") r.messages.forEach((m, i) => expect(buf(m.items["BODY[TEXT]<0>"]).equals(bodyOf(cleaned[i]!).subarray(0, 2048))).toBe(true));
        if (first === "parts") {
          (await partsOf(p)).forEach((m, i) => {
            for (const [k, v] of Object.entries(oracle[i]!.items)) expect(buf(m.items[k]).equals(buf(v))).toBe(true);
          });
        }
        expect(bodiesOf(await imaplib({ ...conn("plain", "alice", PW, p), uids: INFECTED }, "whole"))).toEqual(cleaned);
      }
    }, 60_000);

    test("LOGIN quoted, as a literal and AUTHENTICATE PLAIN with an awkward password; names routed with / and #", async () => {
      for (const login of ["literal", "plain"] as const) {
        const r = await imaplib({ ...conn("starttls", "bob", AWKWARD_PASSWORD), login }, "whole");
        expect(bodiesOf(r)).toEqual([BOB_MESSAGE]);
      }
      const hashed = await imaplib({ ...conn("plain"), user: `bob#127.0.0.1:${dc.ports.imap}`, password: AWKWARD_PASSWORD }, "whole");
      expect(bodiesOf(hashed)).toEqual([BOB_MESSAGE]);
      const quoted = await imaplib({ ...conn("plain"), login: "quoted", uids: [1] }, "whole");
      expect(bodiesOf(quoted)).toEqual([served[0]!]);
    });

    for (const mode of MODES) {
      test(`${mode}: IDLE sees new mail within a second or two; infected new mail is then served cleaned`, async () => {
        const arriving = infectedMessage(eicar(), `idle-${mode}.com`, `idle ${mode}`);
        const before = (await dc.maildirMessages("idler")).length;
        const r = await imaplibIdle(conn(mode, "idler"), () => dc.seed("idler", [arriving]));
        expect(r.existsBefore).toBe(before);
        expect(r.continuation).toStartWith("+");
        expect(r.untagged.at(-1)).toBe(`* ${before + 1} EXISTS`);
        expect(r.done).toMatch(/^\S+ OK/);
        expect(r.waitedMs).toBeLessThan(2500);
        const got = (await imaplib(conn(mode, "idler"), "whole")).messages.at(-1)!;
        expect(hasEicar(got.items["BODY[]"]!)).toBe(false);
        expect(got.items["BODY[]"]!.length).toBe(arriving.length);
        expect(got.size).toBe(arriving.length);
      });
    }
  });

  describe.skipIf(!have("mbsync"))("mbsync", () => {
    for (const mode of MODES) {
      test(`${mode}: pulls INBOX; the files are the served messages and the cleaned copies with LF line ends`, async () => {
        const r = await mbsync(conn(mode));
        expect(r.uids).toEqual(allUids);
        expect(r.messages.map(withoutTuid)).toEqual(expected.map(asLf));
      });
    }

    test("a routed name and an awkward password, with SASL and with the LOGIN command", async () => {
      for (const authMechs of [undefined, "LOGIN"]) {
        const r = await mbsync({ ...conn("imaps", "bob", AWKWARD_PASSWORD), authMechs });
        expect(r.messages.map(withoutTuid)).toEqual([asLf(BOB_MESSAGE)]);
      }
    });
  });

  describe.skipIf(!have("curl"))("curl", () => {
    for (const mode of MODES) {
      test(`${mode}: imap${mode === "imaps" ? "s" : ""}://…/INBOX;UID=n gives each message as served, the infected ones cleaned`, async () => {
        const got = await Promise.all(allUids.map((uid) => curlImap(conn(mode), uid)));
        expect(got).toEqual(expected);
      });
    }

    test("an awkward password percent-encoded in the URL, with SASL PLAIN and LOGIN", async () => {
      for (const saslMech of ["PLAIN", "LOGIN"]) {
        expect(await curlImap({ ...conn("starttls", "bob", AWKWARD_PASSWORD), saslMech }, 1)).toEqual(BOB_MESSAGE);
      }
    });
  });

  describe.skipIf(!have("fetchmail"))("fetchmail over IMAP", () => {
    for (const mode of MODES) {
      test(`${mode}: every message arrives below fetchmail's Received: header, the infected ones cleaned; the server keeps them`, async () => {
        const r = await fetchmailImap(conn(mode));
        expect(r.messages.length).toBe(expected.length);
        r.messages.forEach((m, i) => {
          expect(buf(m).toString("latin1")).toStartWith("Received: from ");
          const want = asLf(expected[i]!);
          expect(buf(m).subarray(m.length - want.length).equals(buf(want))).toBe(true);
          expect(hasEicar(m)).toBe(false);
        });
        expect((await dc.maildirMessages("alice")).length).toBe(allUids.length);
      });
    }
  });

  describe("imapflow download()", () => {
    for (const mode of MODES) {
      test(`${mode}: each message of the size RFC822.SIZE announced, the infected ones cleaned`, async () => {
        for (const [i, uid] of allUids.entries()) {
          const d = await imapflowDownload(conn(mode), uid);
          expect(buf(d.bytes).equals(buf(expected[i]!))).toBe(true);
          expect(d.expectedSize).toBe(expected[i]!.length);
          expect(d.compressed).toBe(false);
        }
      });
    }

    test("parts, transfer-decoded: a clean attachment as sent, the infected one without its payload", async () => {
      const part = await imapflowDownload({ ...conn("plain"), part: "3.2" }, corpus.length);
      expect(buf(part.bytes).equals(Buffer.from(Array.from({ length: 300 }, (_, i) => i & 0xff)))).toBe(true);
      const replaced = await imapflowDownload({ ...conn("starttls"), part: "2" }, INFECTED[0]!);
      expect(hasEicar(replaced.bytes)).toBe(false);
      expect(replaced.bytes.length).toBeGreaterThan(0);
      const after = await imapflowDownload({ ...conn("imaps"), part: "3" }, INFECTED[0]!);
      expect(buf(after.bytes).toString()).toBe("after the attachment\r\n");
    });
  });

  test("every client got its cleaned copies from one scan per message and server address: one detection logged for each", () => {
    // Every test above ran against this proxy, in sessions of their own. The copies are cached per
    // server address, and Dovecot was reached at two (its IMAP and IMAPS ports): one scan each.
    const objects = proxy.logs.map((l) => JSON.parse(l) as Record<string, unknown>);
    const serverOf = new Map(objects.filter((l) => l.msg === "logged in").map((l) => [l.session, `${l.user} ${l.server}`]));
    const scans = new Map<string, Record<string, unknown>[]>();
    for (const d of objects.filter((l) => l.msg === "detection" && INFECTED.includes(Number(l.uid)))) {
      const key = `${serverOf.get(d.session)} ${d.mailbox} ${d.uid}`;
      scans.set(key, [...(scans.get(key) ?? []), d]);
    }
    expect([...scans.keys()].sort()).toEqual(INFECTED.flatMap((uid) => [dc.ports.imap, dc.ports.imaps].map((port) => `alice 127.0.0.1:${port} INBOX ${uid}`)).sort());
    for (const [, ds] of scans) {
      expect(ds.length).toBe(1);
      expect(ds[0]).toMatchObject({ action: "clean" });
      expect(String(ds[0]!.quarantine)).toMatch(/\S/);
    }
  });
});

