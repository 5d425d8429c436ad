// The ICAP engine: against Debian's c-icap with its virus_scan service in front of a test clamd,
// and against scripted ICAP services for what a real one will not do on demand (an early answer
// to the preview, a 200 that names no threat, errors, stalls, Max-Connections).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { IcapEngine, parseIcapUrl, threatOf } from "../../core/net/engines/icap.ts";
import { hdbLine, startClamd, type Clamd } from "../helpers/clamd.ts";
import { have } from "../helpers/clients.ts";
import { eicar } from "../helpers/eicar.ts";
import { startCIcap, type CIcap } from "../helpers/icap.ts";
import { attachment, leaf, message, multipart, pseudoRandom } from "../helpers/messages.ts";

const PAYLOAD = "this harmless text stands in for malware that only clamd knows\r\n";
const engine = (urls: string[], timeoutMs = 10_000, connections = 4) => new IcapEngine({ urls, timeoutMs, connections });
const enc = new TextEncoder();

interface Script {
  /** The reply head to RESPMOD, given what arrived so far ("" until the preview's end). */
  respmod: (seen: string) => string | null;
  options?: string;
  /** Called when a RESPMOD starts arriving and when it is answered (concurrency). */
  onRequest?: () => void;
  onAnswer?: () => void;
  /** Every byte count that arrives, answered or not. */
  onData?: (n: number) => void;
}

/** The chunked body (or the preview) has ended: a last chunk, with or without ieof. */
const ended = (seen: string) => /(^|\r\n)0(; ieof)?\r\n\r\n$/.test(seen);

const OPTIONS_OK = "ICAP/1.0 200 OK\r\nMethods: RESPMOD\r\nService: scripted\r\nISTag: \"t1\"\r\nAllow: 204\r\nPreview: 16\r\nOptions-TTL: 60\r\nEncapsulated: null-body=0\r\n\r\n";

/** A scripted ICAP service on a free loopback port. */
function scripted(s: Script): { url: string; stop(): void } {
  const server = Bun.listen<{ seen: string; answered: boolean }>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(sock) { sock.data = { seen: "", answered: false }; },
      data(sock, chunk) {
        if (sock.data.seen === "" && Buffer.from(chunk).toString("latin1").startsWith("RESPMOD")) s.onRequest?.();
        sock.data.seen += Buffer.from(chunk).toString("latin1");
        s.onData?.(chunk.length);
        const seen = sock.data.seen;
        if (seen.startsWith("OPTIONS") && seen.includes("\r\n\r\n")) { sock.write(s.options ?? OPTIONS_OK); sock.end(); return; }
        if (!seen.startsWith("RESPMOD") || sock.data.answered) return;
        const reply = s.respmod(seen);
        if (reply) { sock.data.answered = true; s.onAnswer?.(); sock.write(reply); }
      },
    },
  });
  return { url: `icap://127.0.0.1:${server.port}/scan`, stop: () => server.stop(true) };
}

describe("ICAP pieces", () => {
  test("URLs: default ports, icaps, bad ones refused", () => {
    expect(parseIcapUrl("icap://10.0.0.5/avscan")).toEqual({ tls: false, host: "10.0.0.5", port: 1344, uri: "icap://10.0.0.5:1344/avscan" });
    expect(parseIcapUrl("icaps://scanner.example:11345/av")).toMatchObject({ tls: true, port: 11345 });
    for (const bad of ["http://x/", "icap://", "icap://host:0/"]) expect(() => parseIcapUrl(bad)).toThrow("not an ICAP URL");
  });

  test("threat names: X-Infection-Found, X-Virus-ID, X-Violations-Found", () => {
    expect(threatOf(new Map([["x-infection-found", "Type=0; Resolution=2; Threat=Eicar-Test-Signature;"]]))).toBe("Eicar-Test-Signature");
    expect(threatOf(new Map([["x-virus-id", "W32/Example.A"]]))).toBe("W32/Example.A");
    expect(threatOf(new Map([["x-violations-found", "1\nmessage.eml\nTrojan.Example\n12\n2"]]))).toBe("Trojan.Example");
    expect(threatOf(new Map())).toBeNull();
  });
});

describe("scripted ICAP services", () => {
  test("a 204 answered to the preview: clean, and the rest of the message is never sent", async () => {
    let received = 0;
    const svc = scripted({ onData: (n) => { received += n; }, respmod: (seen) => (ended(seen) ? "ICAP/1.0 204 No Content\r\nISTag: \"t1\"\r\n\r\n" : null) });
    try {
      expect(await engine([svc.url]).scanMessage(pseudoRandom(500_000, 1))).toEqual({ kind: "clean" });
      await Bun.sleep(50);
      expect(received).toBeLessThan(2000); // the OPTIONS, the RESPMOD head and the 16-byte preview
    } finally { svc.stop(); }
  });

  test("a 200 that names no threat is still a detection; X-Virus-ID is read", async () => {
    const bare = scripted({ respmod: (seen) => (ended(seen) ? "ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0, null-body=19\r\n\r\nHTTP/1.1 403 Forbidden\r\n\r\n" : null) });
    const named = scripted({ respmod: (seen) => (ended(seen) ? "ICAP/1.0 200 OK\r\nX-Virus-ID: Test.Vendor.Name\r\n\r\n" : null) });
    try {
      expect(await engine([bare.url]).scanMessage(enc.encode("hello"))).toEqual({ kind: "infected", name: "ICAP.Modified-By-Service" });
      expect(await engine([named.url]).scanMessage(enc.encode("hello"))).toEqual({ kind: "infected", name: "Test.Vendor.Name" });
    } finally { bare.stop(); named.stop(); }
  });

  test("an error status fails over to the next service; a stalled one is timed out; all failing is an error", async () => {
    const broken = scripted({ respmod: (seen) => (seen.includes("\r\n\r\n") ? "ICAP/1.0 500 Server Error\r\n\r\n" : null) });
    const stall = scripted({ respmod: () => null });
    const good = scripted({ respmod: (seen) => (ended(seen) ? "ICAP/1.0 204 No Content\r\n\r\n" : null) });
    try {
      expect(await engine([broken.url, good.url]).scanMessage(enc.encode("x"))).toEqual({ kind: "clean" });
      const t0 = performance.now();
      expect(await engine([stall.url, good.url], 400).scanMessage(enc.encode("x"))).toEqual({ kind: "clean" });
      expect(performance.now() - t0).toBeLessThan(3000);
      await expect(engine([broken.url, stall.url], 400).scanMessage(enc.encode("x"))).rejects.toThrow("every icap address failed");
    } finally { broken.stop(); stall.stop(); good.stop(); }
  });

  test("a service without Allow: 204 is refused (a clean answer would look like a changed one)", async () => {
    const no204 = scripted({ options: OPTIONS_OK.replace("Allow: 204\r\n", ""), respmod: () => "ICAP/1.0 204 No Content\r\n\r\n" });
    try {
      await expect(engine([no204.url]).scanMessage(enc.encode("x"))).rejects.toThrow("does not offer Allow: 204");
    } finally { no204.stop(); }
  });

  test("Max-Connections from OPTIONS bounds the scans in flight", async () => {
    let open = 0;
    let most = 0;
    const svc = scripted({
      options: OPTIONS_OK.replace("Options-TTL", "Max-Connections: 2\r\nOptions-TTL"),
      onRequest: () => { most = Math.max(most, ++open); },
      onAnswer: () => { open--; },
      respmod: (seen) => (ended(seen) ? "ICAP/1.0 204 No Content\r\n\r\n" : null),
    });
    try {
      const e = engine([svc.url], 5000, 8);
      await e.check();
      await Promise.all(Array.from({ length: 10 }, () => e.scanMessage(pseudoRandom(100_000, 3))));
      expect(most).toBeLessThanOrEqual(2);
    } finally { svc.stop(); }
  });
});

describe.skipIf(!have("clamd") || !have("c-icap"))("c-icap with virus_scan in front of a real clamd", () => {
  let clamd: Clamd;
  let icap: CIcap;
  beforeAll(async () => {
    clamd = await startClamd({ db: { "extra.hdb": `${hdbLine(PAYLOAD, "Test.Payload")}\n` } });
    icap = await startCIcap(clamd.unix);
  }, 60_000);
  afterAll(async () => {
    await icap?.[Symbol.asyncDispose]();
    await clamd?.[Symbol.asyncDispose]();
  });

  test("EICAR and a payload in an attachment are found with clamd's names; clean mail and a 3 MB message are clean", async () => {
    const e = engine([icap.url]);
    expect(await e.scanMessage(eicar())).toEqual({ kind: "infected", name: "Test.Eicar.UNOFFICIAL" });
    const withPayload = enc.encode(message(multipart("P", [leaf({ headers: ["Content-Type: text/plain"], body: "see attached" }), attachment("tool.txt", PAYLOAD)])));
    expect(await e.scanMessage(withPayload)).toEqual({ kind: "infected", name: "Test.Payload.UNOFFICIAL" });
    expect(await e.scanMessage(enc.encode("From: a@example.org\r\nSubject: hi\r\n\r\nhello\r\n"))).toEqual({ kind: "clean" });
    expect(await e.scanMessage(pseudoRandom(3_000_000, 4))).toEqual({ kind: "clean" });
    const [c] = await e.check();
    expect(c).toMatchObject({ engine: "icap", ok: true });
    expect(c!.version).toContain("C-ICAP");
  });
});
