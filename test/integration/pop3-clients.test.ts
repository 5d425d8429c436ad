// A real POP3 client (python3 poplib) through the proxy: STLS with the proxy's CA, login by routed
// name, LIST and RETR of a clean and an infected message.
import { expect, test } from "bun:test";
import { have } from "../helpers/clients.ts";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { eicar } from "../helpers/eicar.ts";
import { startMockPop3 } from "../helpers/mock-pop3.ts";
import { startProxy } from "../helpers/proxy.ts";

const hasPython = have("python3");

test.skipIf(!hasPython)("python3 poplib: STLS, USER/PASS, LIST, RETR", async () => {
  const dir = await mkdtemp(join(tmpdir(), "mailsentry-poplib-"));
  const infected = `Subject: bad\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: application/octet-stream; name=e.com\r\nContent-Transfer-Encoding: base64\r\n\r\n${Buffer.from(eicar()).toString("base64")}\r\n--b--\r\n`;
  const mock = await startMockPop3({ messages: ["Subject: hello\r\n\r\n.dotted\r\nbody\r\n", infected] });
  await using proxy = await startProxy({ allowedUpstreamPorts: [mock.port] });
  const caFile = join(dir, "ca.pem");
  await writeFile(caFile, proxy.caPem);
  const script = `
import poplib, ssl, sys, json
ctx = ssl.create_default_context(cafile=sys.argv[3])
p = poplib.POP3("127.0.0.1", int(sys.argv[1]), timeout=10)
p.stls(context=ctx)
p.user("alice/127.0.0.1:" + sys.argv[2])
p.pass_("secret")
count, size = p.stat()
out = {"count": count, "list": [l.decode() for l in p.list()[1]]}
out["m1"] = b"\\r\\n".join(p.retr(1)[1]).decode()
out["m2"] = b"\\r\\n".join(p.retr(2)[1]).decode()
p.quit()
print(json.dumps(out))
`;
  const proc = Bun.spawn(["python3", "-c", script, String(proxy.ports.pop3), String(mock.port), caFile], { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  expect(err).toBe("");
  expect(code).toBe(0);
  const r = JSON.parse(out);
  expect(r.count).toBe(2);
  expect(r.m1).toBe("Subject: hello\r\n\r\n.dotted\r\nbody");
  expect(r.m2).toContain("Subject: bad");
  expect(r.m2).not.toContain(Buffer.from(eicar()).toString("base64"));
  mock.stop();
  await rm(dir, { recursive: true, force: true });
});
