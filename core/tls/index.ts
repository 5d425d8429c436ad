// Public face of core/tls: the local CA and the client-leg leaf certificate.
export { ensureCa, ensureLeaf, caPaths, fingerprint, type CaPaths } from "./ca.ts";
