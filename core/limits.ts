// Every byte, depth, count and time cap of mailsentry, validated in one place.
// Names follow clamd's (MaxScanSize, MaxFileSize, …) so administrators recognise them.
// Whole numbers only; Infinity is an honest "no cap". A limit that would switch scanning off (a
// maxFileSize of 0, a maxScanTime of 0, a fraction) is refused: each has a minimum below which the
// scanner would pass everything unscanned. NaN, negatives and non-numbers are errors.

/**
 * Why a scan stopped short of the whole message. Most are limits; encrypted and corrupt are what a
 * reader could not open. bomb: an archive member that inflates past maxFileSize at a ratio no real
 * file has — a decompression bomb, told apart from a merely big member because it is an attack.
 * unsupported: an archive member stored with a method the built-in readers lack (BZip2, LZMA…);
 * clamd or ICAP in the chain read it, so with one of them it is covered.
 */
export const UNSCANNED_REASONS = ["encrypted", "too-large", "too-deep", "too-many-files", "bomb", "corrupt", "unsupported", "time-limit"] as const;
export type UnscannedReason = (typeof UNSCANNED_REASONS)[number];

export interface ScanLimits {
  /** Bytes scanned per message (sum over every object scanned). clamd MaxScanSize. */
  maxScanSize: number;
  /** Size of one decoded or decompressed object. The seed's 30 MB decompressed limit. */
  maxFileSize: number;
  /** Nesting depth of messages inside messages and archives inside archives. */
  maxRecursion: number;
  /** Objects (parts + archive members) scanned per message. */
  maxFiles: number;
  /** Wall-clock time per message, in milliseconds. */
  maxScanTime: number;
}

export interface ProxyLimits {
  /** Longest command line a client may send before login is refused (RFC 1939 allows 255). */
  maxClientLine: number;
  /** Longest single response line accepted from an upstream server outside a message body. */
  maxUpstreamLine: number;
  /** Largest message held in memory to be scanned; a bigger one is spooled to a private file and scanned from there. */
  maxMessageSize: number;
  /**
   * Largest message scanned at all. Past maxMessageSize a message is written to <state>/spool as it
   * arrives and scanned from a memory map, in bounded heap; past this cap it is not scanned and
   * follows onUnscanned "too-large". Padding a message past maxMessageSize gains an attacker nothing.
   */
  maxSpooledMessageSize: number;
  /** Client idle timeout, ms. RFC 1939 requires at least 10 minutes. */
  clientIdleTimeout: number;
  /** Time a client has from connecting to logging in, ms, however busy it keeps the line (Dovecot: 60 s too). */
  clientLoginTimeout: number;
  /** Connections from one client address that have not logged in yet; more are turned away at the greeting. */
  maxUnauthenticatedPerClient: number;
  /** Failed logins on one connection before the proxy closes it. */
  maxLoginFailures: number;
  /** Upstream connect timeout, ms. */
  upstreamConnectTimeout: number;
  /** Upstream read timeout (no bytes while a reply is awaited), ms. */
  upstreamReadTimeout: number;
  /**
   * Deadline for the upstream greeting and the proxy's own login steps (STLS/STARTTLS, capabilities,
   * authentication) taken together, ms: a server that accepts but stalls there fails the login
   * quickly instead of holding the client for upstreamReadTimeout at every step.
   */
  upstreamLoginTimeout: number;
  /** Deadline for sessions in flight when the proxy is asked to stop, ms. */
  drainTimeout: number;
  /**
   * Bytes of scanned IMAP copies kept in memory for partial and section fetches, shared by all
   * sessions. Only changed (cleaned) copies take room; clean messages are remembered by key alone.
   */
  messageCacheSize: number;
}

export type Limits = ScanLimits & ProxyLimits;

const MB = 1024 * 1024;

export const DEFAULT_SCAN_LIMITS: Readonly<ScanLimits> = Object.freeze({
  maxScanSize: 100 * MB,
  maxFileSize: 30 * MB,
  maxRecursion: 16,
  maxFiles: 10_000,
  maxScanTime: 30_000,
});

export const DEFAULT_PROXY_LIMITS: Readonly<ProxyLimits> = Object.freeze({
  maxClientLine: 8 * 1024,
  maxUpstreamLine: 64 * 1024,
  maxMessageSize: 100 * MB,
  maxSpooledMessageSize: 1024 * MB,
  clientIdleTimeout: 10 * 60_000,
  clientLoginTimeout: 60_000,
  maxUnauthenticatedPerClient: 100,
  maxLoginFailures: 3,
  upstreamConnectTimeout: 30_000,
  upstreamReadTimeout: 5 * 60_000,
  upstreamLoginTimeout: 30_000,
  drainTimeout: 30_000,
  messageCacheSize: 128 * MB,
});

export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({ ...DEFAULT_SCAN_LIMITS, ...DEFAULT_PROXY_LIMITS });

/** Lower bounds that are not 0: below them the product would break its promises. */
const MINIMUM: Partial<Record<keyof Limits, number>> = {
  clientIdleTimeout: 10 * 60_000, // RFC 1939 §3: an autologout timer MUST be at least 10 minutes
  // Below these nothing real gets scanned: an EICAR file is 68 bytes, a tiny message a few hundred.
  maxScanSize: 512,
  maxFileSize: 512,
  maxMessageSize: 512,
  maxSpooledMessageSize: 512,
  maxFiles: 1,
  maxRecursion: 1,
  maxScanTime: 100,
  maxClientLine: 512,
  maxUpstreamLine: 512,
  upstreamLoginTimeout: 1000,
  clientLoginTimeout: 1000,
  maxUnauthenticatedPerClient: 1,
  maxLoginFailures: 1,
};

export class LimitError extends Error {
  constructor(readonly key: string, message: string) {
    super(message);
    this.name = "LimitError";
  }
}

/** Checks one value; returns it as a number or throws a LimitError naming the key. */
export function validateLimit(key: keyof Limits, value: unknown): number {
  if (typeof value !== "number" || Number.isNaN(value)) {
    throw new LimitError(key, `${key}: expected a number, got ${JSON.stringify(value)}`);
  }
  if (value < 0) throw new LimitError(key, `${key}: must not be negative (got ${value})`);
  if (value !== Infinity && !Number.isSafeInteger(value)) throw new LimitError(key, `${key}: expected a whole number (got ${value})`);
  const min = MINIMUM[key];
  if (min !== undefined && value < min) throw new LimitError(key, `${key}: must be at least ${min} (got ${value})`);
  return value;
}

/** Merges overrides onto the defaults, validating every key; unknown keys are refused. */
export function resolveLimits(overrides: Record<string, unknown> = {}): Limits {
  const out: Limits = { ...DEFAULT_LIMITS };
  for (const [key, value] of Object.entries(overrides)) {
    if (value === undefined) continue;
    if (!(key in DEFAULT_LIMITS)) throw new LimitError(key, `${key}: not a known limit`);
    out[key as keyof Limits] = validateLimit(key as keyof Limits, value);
  }
  return out;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)} MB`;
  return `${(n / 1024 ** 3).toFixed(2)} GB`;
}

/** The detail of a too-large verdict: which limit was hit, so a user knows what to raise. */
export function overLimit(key: keyof Limits, value: number): string {
  return `over limits.${key} ${formatBytes(value)}`;
}
