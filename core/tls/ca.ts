// mailsentry's local CA for the client leg: an ECDSA P-256 root made on first use in the state
// directory, and a short-lived leaf for loopback + configured names, renewed before it runs out.
// Private keys are written owner-only (0600 in a 0700 directory) and replaced atomically by rename.
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { chmod, mkdir, open, readFile, rename, rm, stat } from "node:fs/promises";
import { isIP } from "node:net";
import { join } from "node:path";

x509.cryptoProvider.set(crypto);

export interface CaPaths { dir: string; caCert: string; caKey: string; leafCert: string; leafKey: string }

/** A certificate and its key, in memory. */
export interface CertAndKey { cert: x509.X509Certificate; keys: CryptoKeyPair; certPem: string; keyPem: string }

const EC = { name: "ECDSA", namedCurve: "P-256" } as const;
const SIGN = { name: "ECDSA", hash: "SHA-256" } as const;
const DAY = 24 * 3600 * 1000;
const CA_DAYS = 3650;
const LEAF_DAYS = 90;
/** Renew the leaf when fewer days than this remain, so a running proxy never serves an expired one. */
const LEAF_RENEW_DAYS = 30;
/** Clock skew between this machine and a client (VMs, phones) must not make a fresh leaf "not yet valid". */
const BACKDATE_MS = 3600 * 1000;
/** Loopback names are always in the leaf: clients reach the proxy through them. */
const ALWAYS_NAMES = ["localhost", "127.0.0.1", "::1"];

export function caPaths(stateDir: string): CaPaths {
  const dir = join(stateDir, "ca");
  return {
    dir,
    caCert: join(dir, "ca.pem"),
    caKey: join(dir, "ca.key"),
    leafCert: join(dir, "leaf.pem"),
    leafKey: join(dir, "leaf.key"),
  };
}

/** SHA-256 of the DER certificate as upper-case colon hex, the form browsers and openssl show. */
export async function fingerprint(cert: x509.X509Certificate | string): Promise<string> {
  const c = typeof cert === "string" ? new x509.X509Certificate(cert) : cert;
  const hash = new Uint8Array(await c.getThumbprint("SHA-256"));
  return Array.from(hash, (b) => b.toString(16).padStart(2, "0").toUpperCase()).join(":");
}

function randomSerial(): string {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[0] = (b[0] & 0x7f) | 0x01; // positive and not shortened by DER
  return Buffer.from(b).toString("hex");
}

/** PEM ending in a newline: concatenated bundles (update-ca-certificates, chains) break without it. */
function nl(pem: string): string {
  return pem.endsWith("\n") ? pem : pem + "\n";
}

function certPemOf(cert: x509.X509Certificate): string {
  return nl(cert.toString("pem"));
}

async function keyPem(keys: CryptoKeyPair): Promise<string> {
  const der = await crypto.subtle.exportKey("pkcs8", keys.privateKey);
  return nl(x509.PemConverter.encode(der, "PRIVATE KEY"));
}

/** Creates a self-signed CA certificate (in memory only). */
export async function createCaCert(opts: { commonName?: string; days?: number; now?: Date } = {}): Promise<CertAndKey> {
  const now = opts.now ?? new Date();
  const keys = await crypto.subtle.generateKey(EC, true, ["sign", "verify"]);
  const name = `CN=${opts.commonName ?? "mailsentry local CA"}, O=mailsentry`;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name,
    notBefore: new Date(now.getTime() - BACKDATE_MS),
    notAfter: new Date(now.getTime() + (opts.days ?? CA_DAYS) * DAY),
    keys,
    signingAlgorithm: SIGN,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert, keys, certPem: certPemOf(cert), keyPem: await keyPem(keys) };
}

/** Lower-cases DNS names, compresses IPv6, drops duplicates; throws on a name no certificate can carry. */
export function normalizeNames(names: string[]): string[] {
  const out = new Set<string>();
  for (const raw of [...ALWAYS_NAMES, ...names]) {
    const n = raw.trim().replace(/^\[(.*)\]$/, "$1");
    if (isIP(n) === 4) out.add(n);
    else if (isIP(n) === 6) out.add(new URL(`http://[${n}]/`).hostname.slice(1, -1));
    else if (/^(\*\.)?[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_-]{1,63})*\.?$/i.test(n) && n.length <= 253) out.add(n.toLowerCase());
    else throw new Error(`tlsNames: "${raw}" is neither a DNS name nor an IP address`);
  }
  return [...out].sort();
}

/** Issues a server certificate for `names` (plus loopback) signed by `ca` (in memory only). */
export async function issueLeafCert(
  ca: CertAndKey,
  names: string[],
  opts: { days?: number; now?: Date } = {},
): Promise<CertAndKey> {
  const now = opts.now ?? new Date();
  const all = normalizeNames(names);
  const keys = await crypto.subtle.generateKey(EC, true, ["sign", "verify"]);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: "CN=localhost, O=mailsentry",
    issuer: ca.cert.subject,
    notBefore: new Date(now.getTime() - BACKDATE_MS),
    notAfter: new Date(now.getTime() + (opts.days ?? LEAF_DAYS) * DAY),
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    signingAlgorithm: SIGN,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(all.map((n) => ({ type: isIP(n) ? "ip" : "dns", value: n }))),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(ca.keys.publicKey),
    ],
  });
  return { cert, keys, certPem: certPemOf(cert), keyPem: await keyPem(keys) };
}

/** Names in a certificate's SAN, normalized like normalizeNames so sets compare. */
export function certNames(cert: x509.X509Certificate): string[] {
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  if (!san) return [];
  return normalizeNames(san.names.items.filter((n) => n.type === "dns" || n.type === "ip").map((n) => n.value));
}

// ---- disk ----

async function writePrivate(path: string, text: string): Promise<void> {
  const tmp = `${path}.${process.pid}.${randomSerial().slice(0, 8)}.tmp`;
  const fh = await open(tmp, "wx", 0o600);
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await chmod(tmp, 0o600); // umask never widens, but be explicit: a key file is owner-only
  await rename(tmp, path);
}

async function readIf(path: string): Promise<string | null> {
  try {
    return await readFile(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw e;
  }
}

async function importKeyPair(cert: x509.X509Certificate, pem: string): Promise<CryptoKeyPair | null> {
  try {
    const der = x509.PemConverter.decodeFirst(pem);
    const privateKey = await crypto.subtle.importKey("pkcs8", der, EC, true, ["sign"]);
    const publicKey = await cert.publicKey.export(EC, ["verify"]);
    // A key that does not belong to the certificate (torn write, hand edit) is useless: detect it.
    const a = await crypto.subtle.exportKey("jwk", privateKey);
    const b = await crypto.subtle.exportKey("jwk", publicKey);
    return a.x === b.x && a.y === b.y ? { privateKey, publicKey } : null;
  } catch {
    return null;
  }
}

async function loadPair(certPath: string, keyPath: string): Promise<CertAndKey | null> {
  const [certPem, kPem] = await Promise.all([readIf(certPath), readIf(keyPath)]);
  if (certPem === null || kPem === null) return null;
  let cert: x509.X509Certificate;
  try {
    cert = new x509.X509Certificate(certPem);
  } catch {
    return null;
  }
  const keys = await importKeyPair(cert, kPem);
  return keys ? { cert, keys, certPem: certPemOf(cert), keyPem: kPem } : null;
}

async function ensureDir(stateDir: string, dir: string): Promise<void> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
}

/** Serialises CA/leaf creation across processes sharing a state dir (serve + `config ca` at once). */
async function withLock<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const lock = join(dir, ".lock");
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      await mkdir(lock);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      const age = await stat(lock).then((s) => Date.now() - s.mtimeMs, () => 0);
      if (age > 30_000 || Date.now() > deadline) await rm(lock, { recursive: true, force: true }); // stale: holder died
      else await Bun.sleep(20);
    }
  }
  try {
    return await fn();
  } finally {
    await rm(lock, { recursive: true, force: true });
  }
}

function usable(cert: x509.X509Certificate, now: number, minDays: number): boolean {
  return cert.notBefore.getTime() <= now + BACKDATE_MS && cert.notAfter.getTime() - now > minDays * DAY;
}

async function loadOrCreateCa(stateDir: string): Promise<CertAndKey> {
  const paths = caPaths(stateDir);
  const fast = await loadPair(paths.caCert, paths.caKey);
  if (fast && usable(fast.cert, Date.now(), 1)) return fast;
  await ensureDir(stateDir, paths.dir);
  return withLock(paths.dir, async () => {
    const again = await loadPair(paths.caCert, paths.caKey);
    if (again && usable(again.cert, Date.now(), 1)) return again;
    const ca = await createCaCert();
    // Key before certificate: a reader that sees the new certificate also finds its key.
    await writePrivate(paths.caKey, ca.keyPem);
    await writePrivate(paths.caCert, ca.certPem);
    await chmod(paths.caCert, 0o644); // the CA certificate is public: users copy it into trust stores
    return ca;
  });
}

/** Loads the local CA from `stateDir`, creating it on first use. */
export async function ensureCa(
  stateDir: string,
): Promise<{ certPem: string; keyPem: string; paths: CaPaths; fingerprint: string }> {
  const ca = await loadOrCreateCa(stateDir);
  return { certPem: ca.certPem, keyPem: ca.keyPem, paths: caPaths(stateDir), fingerprint: await fingerprint(ca.cert) };
}

async function leafFits(leaf: CertAndKey, ca: CertAndKey, names: string[]): Promise<boolean> {
  if (!usable(leaf.cert, Date.now(), LEAF_RENEW_DAYS)) return false;
  if (certNames(leaf.cert).join(",") !== names.join(",")) return false;
  return leaf.cert.verify({ publicKey: ca.keys.publicKey, signatureOnly: true }).catch(() => false);
}

/**
 * The leaf for the client-leg listeners, as Bun.listen({ tls: { cert, key } }) and upgradeTLS want it:
 * `cert` is the leaf PEM followed by the CA PEM. Renewed when < 30 days remain, when the name set
 * changed, or when the CA was replaced.
 */
export async function ensureLeaf(stateDir: string, extraNames: string[]): Promise<{ cert: string; key: string }> {
  const names = normalizeNames(extraNames);
  const paths = caPaths(stateDir);
  // Listeners may ask per connection (STLS): answer from memory while the files on disk are unchanged.
  const cacheKey = `${stateDir}\0${names.join(",")}`;
  const stamp = await fileStamp(paths.leafCert, paths.caCert);
  const hit = leafCache.get(cacheKey);
  if (hit && hit.stamp === stamp && hit.renewAt > Date.now()) return hit.value;
  const ca = await loadOrCreateCa(stateDir);
  let leaf = await loadPair(paths.leafCert, paths.leafKey);
  if (!leaf || !(await leafFits(leaf, ca, names))) {
    leaf = await withLock(paths.dir, async () => {
      const again = await loadPair(paths.leafCert, paths.leafKey);
      if (again && (await leafFits(again, ca, names))) return again;
      const fresh = await issueLeafCert(ca, names);
      await writePrivate(paths.leafKey, fresh.keyPem);
      await writePrivate(paths.leafCert, fresh.certPem);
      return fresh;
    });
  }
  const value = { cert: leaf.certPem + ca.certPem, key: leaf.keyPem };
  if (leafCache.size >= LEAF_CACHE_MAX) leafCache.delete(leafCache.keys().next().value!);
  leafCache.set(cacheKey, {
    value,
    stamp: await fileStamp(paths.leafCert, paths.caCert),
    renewAt: leaf.cert.notAfter.getTime() - LEAF_RENEW_DAYS * DAY,
  });
  return value;
}

/** A handful of state dirs × name sets per process at most; the cap only guards against misuse. */
const LEAF_CACHE_MAX = 16;
const leafCache = new Map<string, { value: { cert: string; key: string }; stamp: string; renewAt: number }>();

async function fileStamp(...paths: string[]): Promise<string> {
  const parts = await Promise.all(
    paths.map((p) => stat(p).then((s) => `${s.ino}:${s.mtimeMs}:${s.size}`, () => "-")),
  );
  return parts.join("|");
}
