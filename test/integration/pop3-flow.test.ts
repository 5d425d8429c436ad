// Flow control through the proxy: a client that stops reading must not make the proxy read the
// whole message from the server into memory; once the client reads again it gets every byte.
import { describe, expect, test } from "bun:test";
import { startMockPop3 } from "../helpers/mock-pop3.ts";
import { startProxy, TestClient, unstuff, type ConfigOverrides } from "../helpers/proxy.ts";

const MB = 1024 * 1024;

function bigMessage(size: number): Buffer {
  const line = "The quick brown fox jumps over the lazy dog 0123456789 abcdefghijklmnopqrstuvwxyz\r\n";
  const parts = ["Subject: big\r\n\r\n"];
  let n = parts[0]!.length;
  for (let i = 0; n < size; i++) {
    const l = (i % 7 === 0 ? "." : "") + line; // line-start dots: stuffed by the mock, unstuffed and re-stuffed by the proxy
    parts.push(l);
    n += l.length;
  }
  return Buffer.from(parts.join(""), "latin1");
}

// What the proxy may hold for one streaming session: on each side a high-water mark (1 MiB) plus
// one socket read (Bun hands over at most 512 KiB at a time), which may land whole on either queue.
const PROXY_BOUND = 3 * MB;

describe("POP3 flow control", () => {
  const cases: [string, ConfigOverrides, string][] = [
    ["an excluded server (streamed unscanned)", { excludedServers: ["127.0.0.1"] }, ""],
    ["a message over maxSpooledMessageSize (streamed unscanned)", { limits: { maxMessageSize: MB, maxSpooledMessageSize: 2 * MB } }, "X-Virus-Status: Unscanned (too-large)\r\n"],
  ];
  for (const [name, overrides, header] of cases) {
    test(`a 40 MB RETR from ${name} to a client that does not read: the proxy pauses the server, then delivers it intact`, async () => {
      const msg = bigMessage(40 * MB);
      const mock = await startMockPop3({ messages: [msg] });
      await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port], ...overrides });
      await using c = await TestClient.connect(proxy.ports.pop3);
      await c.line();
      c.send(`USER alice/127.0.0.1:${mock.port}`);
      await c.line();
      c.send("PASS secret");
      expect(await c.line()).toStartWith("+OK");
      c.pause();
      c.send("RETR 1");
      const paused = await proxy.waitLog((l) => l.msg === "upstream read paused: client not reading");
      // What the proxy holds when it stops reading the server is bounded, not the message size.
      expect((paused.clientQueued as number) + (paused.upstreamBuffered as number)).toBeLessThanOrEqual(PROXY_BOUND);
      // The server still has bytes it could not send: the pause reached it.
      expect(mock.backlog()).toBeGreaterThan(0);
      c.resume();
      const { status, body } = await c.multi();
      expect(status).toStartWith("+OK");
      const got = unstuff(body);
      expect(got.length).toBe(header.length + msg.length);
      expect(got.subarray(0, header.length).toString("latin1")).toBe(header);
      expect(got.subarray(header.length).equals(msg)).toBe(true);
      c.send("QUIT");
      expect(await c.line()).toStartWith("+OK");
      mock.stop();
    });
  }
});
