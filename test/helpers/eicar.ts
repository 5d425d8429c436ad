// The EICAR test file, assembled at run time from parts so the whole string never sits in a tracked
// file (scanners on developer machines would otherwise quarantine the repository).

/** The 68-byte EICAR test string. */
export const EICAR_TEXT: string = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + "EICAR-STANDARD-ANTIVIRUS" + "-TEST-FILE!$H+H*";

/** A fresh copy of the EICAR bytes (callers may mutate it). */
export function eicar(): Uint8Array {
  return new TextEncoder().encode(EICAR_TEXT);
}
