// A throwaway CA and server certificate for test servers (Dovecot, fake upstreams), written as PEM files.
// Reuses core/tls's generator so tests exercise the same certificate shape the proxy serves.
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createCaCert, issueLeafCert } from "../../core/tls/ca.ts";

export interface TestCa {
  caPem: string;
  /** CA certificate file: hand it to clients (--cacert, cafile=, sslcertfile). */
  caFile: string;
  /** Server certificate chain (leaf then CA) and key, as PEM strings and files. */
  certPem: string;
  keyPem: string;
  certFile: string;
  keyFile: string;
}

/** Makes a CA and a server certificate for localhost, 127.0.0.1, ::1 (+ names) in `dir`. */
export async function makeTestCa(dir: string, names: string[] = []): Promise<TestCa> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const ca = await createCaCert({ commonName: "mailsentry test CA" });
  const leaf = await issueLeafCert(ca, names);
  const certPem = leaf.certPem.trimEnd() + "\n" + ca.certPem.trimEnd() + "\n";
  const out: TestCa = {
    caPem: ca.certPem,
    caFile: join(dir, "test-ca.pem"),
    certPem,
    keyPem: leaf.keyPem,
    certFile: join(dir, "server.pem"),
    keyFile: join(dir, "server.key"),
  };
  await writeFile(out.caFile, out.caPem);
  await writeFile(out.certFile, out.certPem);
  await writeFile(out.keyFile, out.keyPem, { mode: 0o600 });
  return out;
}
