// The quarantine id of a message: the first 20 hex digits of its SHA-256. Derived from the bytes,
// so the notice that names it is the same in every session (IMAP serves one cleaned copy however
// often it is fetched) and a message downloaded twice is kept once.

export const QUARANTINE_ID_HEX = 20;

export function quarantineIdOf(sha256Hex: string): string {
  return sha256Hex.slice(0, QUARANTINE_ID_HEX);
}

export function quarantineIdOfBytes(raw: Uint8Array): string {
  return quarantineIdOf(new Bun.CryptoHasher("sha256").update(raw).digest("hex"));
}
