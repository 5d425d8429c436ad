// Messages over maxMessageSize: spooled to a private file and scanned from there, never delivered
// unscanned for their size alone (padding a message was a bypass). Small caps stand in for 100 MB.
import { describe, expect, test } from "bun:test";
import { chmod, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { eicar } from "../helpers/eicar.ts";
import { attachment, message, multipart, pseudoRandom } from "../helpers/messages.ts";
import { startMockPop3 } from "../helpers/mock-pop3.ts";
import { logObjects, popLoggedIn, startProxy, unstuff, type StartedProxy } from "../helpers/proxy.ts";

const CAPS = { maxMessageSize: 200_000, maxSpooledMessageSize: 5_000_000 };

/** About size bytes: text padding and a random attachment, then the EICAR attachment last. */
function paddedInfected(size: number): string {
  const pad = Buffer.from(pseudoRandom(Math.floor(size * 0.7), 3)).toString("base64").replace(/.{76}/g, "$&\r\n");
  return message(multipart("PAD", [
    "Content-Type: text/plain\r\n\r\nSee the attached files.\r\n",
    `Content-Type: application/octet-stream; name="video.bin"\r\nContent-Transfer-Encoding: base64\r\n\r\n${pad}`,
    attachment("eicar.com", eicar()),
  ]));
}

function cleanBig(size: number): string {
  return message(multipart("CLEAN", [attachment("data.bin", pseudoRandom(Math.floor(size * 0.74), 5))]));
}

/** Files left in the proxy's spool (every process directory). */
async function spooled(proxy: StartedProxy): Promise<string[]> {
  const root = join(proxy.stateDir, "spool");
  const dirs = await readdir(root).catch(() => [] as string[]);
  const files: string[] = [];
  for (const d of dirs) files.push(...(await readdir(join(root, d))).map((f) => join(d, f)));
  return files;
}

describe("POP3: messages over maxMessageSize", () => {
  test("an infected message padded past maxMessageSize is scanned from the spool and cleaned; the original is quarantined byte for byte", async () => {
    const msg = paddedInfected(1_500_000);
    expect(msg.length).toBeGreaterThan(CAPS.maxMessageSize);
    const mock = await startMockPop3({ messages: [msg, "Subject: small\r\n\r\nok\r\n"] });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port], limits: CAPS });
    await using c = await popLoggedIn(proxy.ports.pop3, mock.port);
    c.sendRaw("RETR 1\r\nRETR 2\r\n");
    const r = await c.multi();
    const got = unstuff(r.body).toString("latin1");
    expect(got).toContain("X-Virus-Status: Cleaned (Eicar-Test-Signature)");
    expect(got).not.toContain(Buffer.from(eicar()).toString("base64"));
    expect(got).toContain('name="video.bin"'); // the clean parts stay
    // The status line's octet count is the copy's.
    expect(Number(/^\+OK (\d+)/.exec(r.status)?.[1])).toBe(unstuff(r.body).length);
    expect(unstuff((await c.multi()).body).toString()).toBe("Subject: small\r\n\r\nok\r\n");
    const files = (await readdir(proxy.quarantineDir)).filter((f) => f.endsWith(".eml"));
    expect(files.length).toBe(1);
    expect((await readFile(join(proxy.quarantineDir, files[0]!))).toString("latin1")).toBe(msg);
    expect(logObjects(proxy.logs).some((l) => l.msg === "message over maxMessageSize: spooled to disk to be scanned")).toBe(true);
    expect(await spooled(proxy)).toEqual([]);
    mock.stop();
  });

  test("a clean message over maxMessageSize arrives byte-identical with its final dot, and the spool is emptied", async () => {
    const msg = cleanBig(2_000_000);
    const mock = await startMockPop3({ messages: [msg] });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port], limits: CAPS });
    await using c = await popLoggedIn(proxy.ports.pop3, mock.port);
    c.send("RETR 1");
    const r = await c.multi();
    expect(unstuff(r.body).toString("latin1")).toBe(msg);
    expect(await spooled(proxy)).toEqual([]);
    const root = await stat(join(proxy.stateDir, "spool"));
    expect(root.mode & 0o777).toBe(0o700);
    mock.stop();
  });

  test("a part that decodes past maxFileSize is unscanned (too-large), while the EICAR after it is still found", async () => {
    const msg = paddedInfected(1_500_000);
    const mock = await startMockPop3({ messages: [msg] });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port], limits: { ...CAPS, maxFileSize: 500_000 } });
    await using c = await popLoggedIn(proxy.ports.pop3, mock.port);
    c.send("RETR 1");
    const got = unstuff((await c.multi()).body).toString("latin1");
    expect(got).toContain("X-Virus-Status: Cleaned (Eicar-Test-Signature)");
    mock.stop();
  });

  test("upstream cut while spooling: no final dot, and nothing is left in the spool", async () => {
    const msg = cleanBig(1_000_000);
    const mock = await startMockPop3({ messages: [msg], faults: { cutRetr: { msg: 1, cutAfter: 600_000 } } });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port], limits: CAPS });
    await using c = await popLoggedIn(proxy.ports.pop3, mock.port);
    c.send("RETR 1");
    const rest = (await c.rest()).toString("latin1");
    expect(rest).not.toContain("\r\n.\r\n");
    expect(rest.length).toBe(0); // nothing of a message that was never scanned
    expect(await spooled(proxy)).toEqual([]);
    mock.stop();
  });

  test("a spool that cannot be written is a temporary failure, never an unscanned pass; the session goes on", async () => {
    const mock = await startMockPop3({ messages: [cleanBig(1_000_000), "Subject: small\r\n\r\nok\r\n"] });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port], limits: CAPS });
    // A file where the spool directory would be: creating it fails as a full or read-only disk would.
    await writeFile(join(proxy.stateDir, "spool"), "not a directory");
    await chmod(join(proxy.stateDir, "spool"), 0o400);
    await using c = await popLoggedIn(proxy.ports.pop3, mock.port);
    c.sendRaw("RETR 1\r\nRETR 2\r\n");
    expect(await c.line()).toStartWith("-ERR [SYS/TEMP]");
    expect(unstuff((await c.multi()).body).toString()).toBe("Subject: small\r\n\r\nok\r\n");
    expect(logObjects(proxy.logs).some((l) => l.msg === "message could not be spooled for scanning")).toBe(true);
    mock.stop();
  });

  test("TOP of a message past maxMessageSize is judged from the spool too: infected output is refused", async () => {
    const msg = paddedInfected(1_000_000);
    const mock = await startMockPop3({ messages: [msg] });
    await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port], limits: CAPS });
    await using c = await popLoggedIn(proxy.ports.pop3, mock.port);
    c.send("TOP 1 100000");
    expect(await c.line()).toStartWith("-ERR");
    c.send("NOOP");
    expect(await c.line()).toBe("+OK");
    expect(await spooled(proxy)).toEqual([]);
    mock.stop();
  });
});
