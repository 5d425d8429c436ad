// The local CA and the client-leg leaf: files and modes on disk, reuse and renewal, and that real TLS
// clients (Bun, python3 ssl in strict mode, curl) accept the leaf with our CA and refuse it without.
import { afterAll, describe, expect, test } from "bun:test";
import { have } from "../../helpers/clients.ts";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { certNames, createCaCert, ensureCa, ensureLeaf, issueLeafCert, normalizeNames } from "../../../core/tls/ca.ts";
import * as x509 from "@peculiar/x509";

const dirs: string[] = [];
async function stateDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), "mailsentry-ca-"));
  dirs.push(d);
  return join(d, "state"); // not there yet: ensureCa must create it
}
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const mode = async (p: string) => (await stat(p)).mode & 0o777;

/** A TLS server with the leaf on 127.0.0.1:0 that greets like a POP3 server. */
function tlsServer(tls: { cert: string; key: string }) {
  return Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    tls,
    // Any client command ends the session: curl then exits with a protocol error, not a hang.
    socket: { open: (s) => void s.write("+OK ready\r\n"), data: (s) => void s.end() },
  });
}

/** Connects with Bun and reports the verification outcome and the first line. */
async function bunClient(port: number, tls: { ca: string; serverName?: string }) {
  const { promise, resolve } = Promise.withResolvers<{ ok: boolean; error?: string; greeting?: string }>();
  let verified: { ok: boolean; error?: string } | undefined;
  await Bun.connect({
    hostname: "127.0.0.1",
    port,
    tls,
    socket: {
      handshake(_s, ok, err) {
        verified = { ok: ok && !err, error: (err as NodeJS.ErrnoException | undefined)?.code ?? (err ? String(err) : undefined) };
        if (!ok) { resolve(verified); _s.end(); }
      },
      data(s, d) { resolve({ ...verified!, greeting: d.toString() }); s.end(); },
      error(_s, e) { resolve({ ok: false, error: String(e) }); },
      close() { resolve(verified ?? { ok: false, error: "closed" }); },
    },
  });
  return promise;
}

async function run(cmd: string[]) {
  const p = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { out, err, code };
}

describe("ensureCa", () => {
  test("creates the CA on first use with owner-only key and directory, then reuses it", async () => {
    const sd = await stateDir();
    const a = await ensureCa(sd);
    expect(await mode(a.paths.dir)).toBe(0o700);
    expect(await mode(a.paths.caKey)).toBe(0o600);
    expect(a.certPem).toStartWith("-----BEGIN CERTIFICATE-----");
    expect(a.keyPem).toStartWith("-----BEGIN PRIVATE KEY-----");
    expect(await readFile(a.paths.caCert, "utf8")).toBe(a.certPem);
    expect(a.fingerprint).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    const b = await ensureCa(sd);
    expect(b.fingerprint).toBe(a.fingerprint);
    expect(b.keyPem).toBe(a.keyPem);
  });

  test("is an ECDSA P-256 CA valid about ten years", async () => {
    const a = await ensureCa(await stateDir());
    const cert = new x509.X509Certificate(a.certPem);
    expect((cert.publicKey.algorithm as { namedCurve?: string }).namedCurve).toBe("P-256");
    expect(cert.getExtension(x509.BasicConstraintsExtension)?.ca).toBe(true);
    const years = (cert.notAfter.getTime() - Date.now()) / (365.25 * 86400e3);
    expect(years).toBeGreaterThan(9.9);
    expect(years).toBeLessThan(10.1);
  });

  test.skipIf(!have("openssl"))("its fingerprint is what openssl shows", async () => {
    const a = await ensureCa(await stateDir());
    const r = await run(["openssl", "x509", "-in", a.paths.caCert, "-noout", "-fingerprint", "-sha256"]);
    expect(r.out.trim().split("=")[1]).toBe(a.fingerprint);
  });

  test("concurrent first uses agree on one CA", async () => {
    const sd = await stateDir();
    const all = await Promise.all(Array.from({ length: 6 }, () => ensureCa(sd)));
    expect(new Set(all.map((x) => x.fingerprint)).size).toBe(1);
    expect((await ensureCa(sd)).fingerprint).toBe(all[0].fingerprint);
  });

  test("a key file that does not match the certificate is replaced by a new CA", async () => {
    const sd = await stateDir();
    const a = await ensureCa(sd);
    const other = await createCaCert();
    await writeFile(a.paths.caKey, other.keyPem);
    const b = await ensureCa(sd);
    expect(b.fingerprint).not.toBe(a.fingerprint);
    expect(await mode(b.paths.caKey)).toBe(0o600);
  });
});

describe("ensureLeaf", () => {
  test("issues a 90-day leaf for loopback plus extra names, backdated, chained to the CA, key 0600", async () => {
    const sd = await stateDir();
    const ca = await ensureCa(sd);
    const leaf = await ensureLeaf(sd, ["Mail.Example.test", "192.0.2.7", "[2001:db8:0::1]"]);
    const certs = leaf.cert.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g)!;
    expect(certs.length).toBe(2);
    expect(certs[1].replace(/\s/g, "")).toBe(ca.certPem.replace(/\s/g, ""));
    const cert = new x509.X509Certificate(certs[0]);
    expect(certNames(cert)).toEqual(["127.0.0.1", "192.0.2.7", "2001:db8::1", "::1", "localhost", "mail.example.test"]);
    expect(Date.now() - cert.notBefore.getTime()).toBeGreaterThan(59 * 60e3);
    const days = (cert.notAfter.getTime() - Date.now()) / 86400e3;
    expect(days).toBeGreaterThan(89);
    expect(days).toBeLessThan(91);
    expect(await cert.verify({ publicKey: new x509.X509Certificate(ca.certPem).publicKey, signatureOnly: true })).toBe(true);
    expect(await mode(ca.paths.leafKey)).toBe(0o600);
  });

  test("reuses the leaf while names are the same, and reissues when they change", async () => {
    const sd = await stateDir();
    const a = await ensureLeaf(sd, ["a.example", "10.1.2.3"]);
    const b = await ensureLeaf(sd, ["10.1.2.3", "A.example"]);
    expect(b).toEqual(a);
    const t = performance.now();
    for (let i = 0; i < 50; i++) expect(await ensureLeaf(sd, ["a.example", "10.1.2.3"])).toEqual(a);
    const perCall = (performance.now() - t) / 50;
    console.log(`ensureLeaf, unchanged: ${perCall.toFixed(2)} ms per call`);
    expect(perCall).toBeLessThan(5); // served from memory while the files are unchanged
    const c = await ensureLeaf(sd, ["b.example"]);
    expect(c.cert).not.toBe(a.cert);
    expect(certNames(new x509.X509Certificate(c.cert))).toContain("b.example");
  });

  test("renews a leaf with under 30 days left", async () => {
    const sd = await stateDir();
    const ca = await ensureCa(sd);
    await ensureLeaf(sd, []);
    const caPair = { cert: new x509.X509Certificate(ca.certPem), keys: await importPair(ca.certPem, ca.keyPem), certPem: ca.certPem, keyPem: ca.keyPem };
    const old = await issueLeafCert(caPair, [], { days: 10 });
    await writeFile(ca.paths.leafKey, old.keyPem);
    await writeFile(ca.paths.leafCert, old.certPem);
    const fresh = await ensureLeaf(sd, []);
    const cert = new x509.X509Certificate(fresh.cert);
    expect(cert.serialNumber).not.toBe(old.cert.serialNumber);
    expect(cert.notAfter.getTime() - Date.now()).toBeGreaterThan(80 * 86400e3);
  });

  test("reissues the leaf when the CA was replaced", async () => {
    const sd = await stateDir();
    const a = await ensureLeaf(sd, []);
    const ca = await ensureCa(sd);
    await rm(ca.paths.caCert);
    const ca2 = await ensureCa(sd);
    const b = await ensureLeaf(sd, []);
    expect(b.cert).not.toBe(a.cert);
    expect(b.cert).toContain(ca2.certPem.trim());
  });

  test("refuses names a certificate cannot carry", () => {
    expect(() => normalizeNames(["bad name"])).toThrow(/bad name/);
    expect(() => normalizeNames([""])).toThrow();
  });
});

describe("TLS clients against a Bun.listen server with the leaf", () => {
  test("Bun verifies it by name and by IP with our CA and refuses it with another CA", async () => {
    const sd = await stateDir();
    const ca = await ensureCa(sd);
    await using server = tlsServer(await ensureLeaf(sd, []));
    expect(await bunClient(server.port, { ca: ca.certPem, serverName: "localhost" })).toEqual({ ok: true, error: undefined, greeting: "+OK ready\r\n" });
    expect((await bunClient(server.port, { ca: ca.certPem })).ok).toBe(true); // IP SAN 127.0.0.1
    const other = await createCaCert();
    const bad = await bunClient(server.port, { ca: other.certPem, serverName: "localhost" });
    expect(bad).toMatchObject({ ok: false, error: "SELF_SIGNED_CERT_IN_CHAIN" });
    expect(bad.greeting).toBeUndefined();
    const wrongName = await bunClient(server.port, { ca: ca.certPem, serverName: "elsewhere.example" });
    expect(wrongName.ok).toBe(false);
  });

  test.skipIf(!have("python3"))("python3 ssl (X509 strict) verifies it by name and IP, and refuses another CA", async () => {
    const dir = await mkdtemp(join(tmpdir(), "mailsentry-ca-py-"));
    dirs.push(dir);
    const sd = join(dir, "state");
    const ca = await ensureCa(sd);
    const other = await createCaCert();
    await writeFile(join(dir, "other.pem"), other.certPem);
    await using server = tlsServer(await ensureLeaf(sd, []));
    const script = `
import socket, ssl, sys
port, cafile = int(sys.argv[1]), sys.argv[2]
for name in sys.argv[3:]:
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.verify_flags |= getattr(ssl, "VERIFY_X509_STRICT", 0)
    try:
        with socket.create_connection(("127.0.0.1", port)) as raw:
            with ctx.wrap_socket(raw, server_hostname=name) as s:
                print(name, "OK", s.recv(100).decode().strip())
    except ssl.SSLError as e:
        print(name, "FAIL", e.reason)
`;
    const good = await run(["python3", "-c", script, String(server.port), ca.paths.caCert, "localhost", "127.0.0.1", "::1"]);
    expect(good.out.trim().split("\n")).toEqual(["localhost OK +OK ready", "127.0.0.1 OK +OK ready", "::1 OK +OK ready"]);
    const bad = await run(["python3", "-c", script, String(server.port), join(dir, "other.pem"), "localhost"]);
    expect(bad.out).toContain("localhost FAIL CERTIFICATE_VERIFY_FAILED");
  });

  test.skipIf(!have("curl"))("curl --cacert completes the handshake by name and IP, and refuses without the CA", async () => {
    const sd = await stateDir();
    const ca = await ensureCa(sd);
    await using server = tlsServer(await ensureLeaf(sd, []));
    // The server speaks POP3, not HTTP: curl's exit 60 means a certificate problem, anything else got past TLS.
    for (const host of ["localhost", "127.0.0.1"]) {
      const r = await run(["curl", "-sS", "--max-time", "5", "--cacert", ca.paths.caCert,
        "--resolve", `localhost:${server.port}:127.0.0.1`, `pop3s://${host}:${server.port}/`]);
      expect(r.err).not.toContain("certificate");
      expect(r.code).not.toBe(60);
    }
    const r = await run(["curl", "-sS", "--max-time", "5", `pop3s://127.0.0.1:${server.port}/`]);
    expect(r.code).toBe(60);
  });
});

async function importPair(certPem: string, keyPem: string): Promise<CryptoKeyPair> {
  const EC = { name: "ECDSA", namedCurve: "P-256" };
  const privateKey = await crypto.subtle.importKey("pkcs8", x509.PemConverter.decodeFirst(keyPem), EC, true, ["sign"]);
  const publicKey = await new x509.X509Certificate(certPem).publicKey.export(EC, ["verify"]);
  return { privateKey, publicKey };
}
