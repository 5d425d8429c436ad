// The control socket's status answer of a running `serve`: sessions open and the IMAP message cache
// (bytes held, its bound, the most it ever held), which is how the benchmark checks the bound.
import { describe, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sendControl } from "../../core/control.ts";
import { EICAR_TEXT } from "../helpers/eicar.ts";
import { startMockImap } from "../helpers/mock-imap.ts";
import { freePort, startProxyProcess, TestClient } from "../helpers/proxy.ts";

// Infected, so each cached entry holds a cleaned copy (a clean message is cached as its verdict only).
const message = (n: number) => `From: a@example.test\r\nSubject: m${n}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="B"\r\n\r\n` +
  `--B\r\nContent-Type: text/plain\r\n\r\n${"x".repeat(3000)}\r\n--B\r\nContent-Type: application/octet-stream; name="e.com"\r\n\r\n${EICAR_TEXT}\r\n--B--\r\n`;

describe("serve status", () => {
  test("names the open sessions and the message cache: held, bound, peak and entries", async () => {
    const home = await mkdtemp(join(tmpdir(), "mailsentry-status-"));
    await using mock = await startMockImap({ messages: [message(1), message(2), message(3)] });
    const port = await freePort();
    const off = { enabled: false, addresses: [] };
    const config = join(home, "config.json");
    // Room for two cached copies, not three: the peak stays under the bound while the third evicts.
    await writeFile(config, JSON.stringify({
      listeners: { pop3: off, pop3s: off, imap: { enabled: true, addresses: [`127.0.0.1:${port}`] }, imaps: off },
      allowedUpstreamPorts: [mock.port], upstreamTls: "off", limits: { messageCacheSize: 8000 },
    }));
    const p = await startProxyProcess({ config, home });
    try {
      const stateDir = join(home, "state", "mailsentry");
      expect(await sendControl(stateDir, "status")).toMatch(/^ok pid \d+, 0 session\(s\), message cache 0 of 8000 bytes \(peak 0, 0 messages\)$/);
      await using c = await TestClient.connect(port);
      await c.line();
      c.send(`a LOGIN "alice/127.0.0.1:${mock.port}" secret`);
      await c.untilTagged("a");
      c.send("b SELECT INBOX");
      await c.untilTagged("b");
      // Partial fetches make the proxy fetch, scan and cache each whole message.
      for (const uid of [1, 2, 3]) {
        c.send(`f${uid} UID FETCH ${uid} BODY.PEEK[]<0.100>`);
        expect((await c.untilTagged(`f${uid}`)).at(-1)).toStartWith(`f${uid} OK`);
      }
      const status = await sendControl(stateDir, "status");
      const m = /^ok pid \d+, 1 session\(s\), message cache (\d+) of 8000 bytes \(peak (\d+), (\d+) messages\)$/.exec(status);
      expect(m, status).not.toBeNull();
      const [held, peak, entries] = [Number(m![1]), Number(m![2]), Number(m![3])];
      expect(entries).toBe(2);
      expect(held).toBeGreaterThan(2 * 3000);
      expect(peak).toBeGreaterThanOrEqual(held);
      expect(peak).toBeLessThanOrEqual(8000);
    } finally {
      p.proc.kill("SIGTERM");
      await p.proc.exited;
      await rm(home, { recursive: true, force: true });
    }
  });
});
