// IMAP bodies over maxMessageSize against a real Dovecot, read with python imaplib: spooled and
// scanned, never passed unscanned for their size. An infected one is served as the same cleaned
// copy of its own size whole, in Thunderbird's chunks and by parts; a clean one byte-identical.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { startDovecot, type Dovecot } from "../helpers/dovecot.ts";
import { logObjects, startProxy, type StartedProxy } from "../helpers/proxy.ts";
import { have, imaplib, type ImapConnect } from "../helpers/imap-clients.ts";
import { EICAR_TEXT } from "../helpers/eicar.ts";
import { attachment, leaf, message, multipart, pseudoRandom } from "../helpers/messages.ts";

const enc = new TextEncoder();
const hasEicar = (b: Uint8Array) => Buffer.from(b).includes(EICAR_TEXT);
const LIMITS = { maxMessageSize: 100_000 };

const cleanBig = enc.encode(message(multipart("c1", [leaf({ headers: ["Content-Type: text/plain"], body: "see attached" }), attachment("data.bin", pseudoRandom(600_000, 4))]), "\r\n", "big clean"));
const infectedBig = enc.encode(message(multipart("i1", [
  leaf({ headers: ["Content-Type: text/plain"], body: "padding line\r\n".repeat(40_000) }),
  attachment("eicar.com", EICAR_TEXT),
  leaf({ headers: ["Content-Type: text/plain"], body: "after" }),
]), "\r\n", "big infected"));

async function spoolFiles(p: StartedProxy): Promise<string[]> {
  const root = join(p.stateDir, "spool");
  const out: string[] = [];
  for (const d of await readdir(root).catch(() => [] as string[])) out.push(...await readdir(join(root, d)));
  return out;
}

describe.skipIf(!have("dovecot") || !have("python3"))("IMAP: bodies over maxMessageSize (spooled)", () => {
  let dc: Dovecot;
  let proxy: StartedProxy;
  let conn: () => ImapConnect;

  beforeAll(async () => {
    dc = await startDovecot();
    await dc.seed("alice", [cleanBig, infectedBig]);
    proxy = await startProxy({ allowedUpstreamPorts: [dc.ports.imap], upstreamCaFile: dc.caFile, limits: LIMITS }, { env: {} });
    conn = () => ({ host: "127.0.0.1", port: proxy.ports.imap, mode: "plain", user: `alice/127.0.0.1:${dc.ports.imap}`, password: "alice-secret" });
  });
  afterAll(async () => {
    await proxy?.stop();
    await dc?.stop();
  });

  test("a clean body over maxMessageSize is byte-identical whole and in chunks", async () => {
    expect(cleanBig.length).toBeGreaterThan(LIMITS.maxMessageSize);
    const whole = (await imaplib({ ...conn(), uids: [1] }, "whole")).messages[0]!;
    expect(Buffer.from(whole.items["BODY[]"]!).equals(Buffer.from(cleanBig))).toBe(true);
    const chunked = (await imaplib({ ...conn(), uids: [1] }, "chunked")).messages[0]!;
    expect(Buffer.from(chunked.items["BODY[]"]!).equals(Buffer.from(cleanBig))).toBe(true);
    expect(logObjects(proxy.logs).some((l) => l.msg === "message over maxMessageSize: spooled to disk to be scanned")).toBe(true);
  });

  test("an infected body over maxMessageSize: one cleaned copy of its own size, whole, in chunks and by parts; the original quarantined", async () => {
    expect(infectedBig.length).toBeGreaterThan(LIMITS.maxMessageSize);
    const whole = (await imaplib({ ...conn(), uids: [2] }, "whole")).messages[0]!;
    const body = whole.items["BODY[]"]!;
    expect(hasEicar(body)).toBe(false);
    expect(body.length).toBe(infectedBig.length);
    expect(whole.size).toBe(infectedBig.length);
    // A new session (nothing kept from the first) and Thunderbird's 64 KiB chunks: the same copy.
    const chunked = (await imaplib({ ...conn(), uids: [2] }, "chunked")).messages[0]!;
    expect(Buffer.from(chunked.items["BODY[]"]!).equals(Buffer.from(body))).toBe(true);
    const parts = (await imaplib({ ...conn(), uids: [2] }, "parts")).messages[0]!;
    for (const [name, bytes] of Object.entries(parts.items)) if (/^BODY\[\d/.test(name) && bytes) expect(hasEicar(bytes)).toBe(false);
    const q = (await readdir(proxy.quarantineDir)).filter((f) => f.endsWith(".eml"));
    expect(q.length).toBeGreaterThanOrEqual(1);
    const originals = await Promise.all(q.map((f) => readFile(join(proxy.quarantineDir, f))));
    expect(originals.some((o) => o.equals(Buffer.from(infectedBig)))).toBe(true);
    expect(await spoolFiles(proxy)).toEqual([]);
  });

  test("over maxSpooledMessageSize the old rule holds: onUnscanned tempfail withholds the body", async () => {
    await using p = await startProxy({ allowedUpstreamPorts: [dc.ports.imap], upstreamCaFile: dc.caFile, onUnscanned: "tempfail", limits: { maxMessageSize: 50_000, maxSpooledMessageSize: 100_000 } }, { env: {} });
    const r = await imaplib({ ...conn(), port: p.ports.imap, uids: [2] }, "whole");
    const body = r.messages[0]?.items["BODY[]"];
    expect(!body || !hasEicar(body)).toBe(true);
  });
});
