// The built-in EICAR test-file check, always loaded. Like ClamAV, an object that starts with the
// standard 68-byte string is "Eicar-Test-Signature", whatever follows it.

export const EICAR_NAME = "Eicar-Test-Signature";

// Assembled from parts so the whole string never sits in a file a scanner would flag.
const EICAR = new TextEncoder().encode("X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + "EICAR-STANDARD-ANTIVIRUS" + "-TEST-FILE!$H+H*");

/** True when data starts with the EICAR test string. */
export function isEicar(data: Uint8Array): boolean {
  if (data.length < EICAR.length) return false;
  for (let i = 0; i < EICAR.length; i++) if (data[i] !== EICAR[i]) return false;
  return true;
}
