// The configuration's shape and its defaults. Validation lives in schema.ts, loading in load.ts.
// Every key has a visible default here so `config show` can print the effective configuration.
import { DEFAULT_LIMITS, type Limits, type UnscannedReason } from "../limits.ts";

/** What happens to an infected message (DESIGN.md, Actions). */
export type Action = "ignore" | "clean" | "delete" | "rename" | "quarantine" | "auto-clean";
/** What happens to a message that could not be scanned completely (over a limit, encrypted, corrupt). */
export type UnscannedAction = "deliver" | "delete" | "quarantine" | "tempfail";
/**
 * The action for each reason a message could not be scanned completely. A file may give one action
 * for all ("quarantine") or name some reasons; the rest keep their defaults.
 */
export type UnscannedPolicy = Record<UnscannedReason, UnscannedAction>;
/** What happens when the scanner itself fails. tempfail: POP3 -ERR [SYS/TEMP], IMAP NO [UNAVAILABLE]. */
export type ErrorAction = "tempfail" | "deliver" | "delete";
export type UpstreamTls = "required" | "opportunistic" | "off";
export type Protocol = "pop3" | "pop3s" | "imap" | "imaps";

export interface ListenerAddress {
  /** "host:port", "[v6]:port". */
  address: string;
  /** Fixed upstream "host:port": the proxy connects first and detects POP3/IMAP from the greeting. */
  upstream?: string;
}

export interface ListenerConfig {
  enabled: boolean;
  /** Plain strings are shorthand for { address }. */
  addresses: (string | ListenerAddress)[];
}

/** One engine of the chain: the built-in one, a clamd (its addresses) or an ICAP service. */
export type EngineConfig =
  | "builtin"
  | { clamd: string[]; timeout?: number; connections?: number }
  | { icap: string[]; timeout?: number; connections?: number };

export interface Config {
  /** Directory of ClamAV signature files (.hdb .hsb .ndb .cvd .cld); null: EICAR only. */
  signatures: string | null;
  /** The engines every message goes through, in order; the worst verdict wins. */
  engines: EngineConfig[];
  /** all: every engine scans every message; first-detection: the first detection ends the scan. */
  engineMode: "all" | "first-detection";
  action: Action;
  onUnscanned: UnscannedPolicy;
  onError: ErrorAction;
  /** Add X-Virus-Status/X-Virus-Scanned to clean messages too (they then stop being byte-identical). */
  tagClean: boolean;
  /** Prefix added to the Subject of infected messages, e.g. "[VIRUS]"; "" for none. */
  subjectTag: string;
  /** Quarantine directory; null: $XDG_STATE_HOME/mailsentry/quarantine. */
  quarantineDir: string | null;
  /** Limits the proxy applies at start and daily, oldest first: days kept, bytes kept (0: no limit). */
  quarantine: { maxAge: number; maxSize: number };
  limits: Limits;
  listeners: Record<Protocol, ListenerConfig>;
  upstreamTls: UpstreamTls;
  /** Upstream ports that speak TLS from the first byte (POP3S, IMAPS); any other port upgrades with STLS/STARTTLS. */
  upstreamImplicitTlsPorts: { pop3: number[]; imap: number[] };
  /** Compress the upstream IMAP leg with COMPRESS=DEFLATE (RFC 4978) when the server offers it. */
  /** true: when the server offers it and is not on loopback; "always": on loopback too. */
  upstreamCompress: boolean | "always";
  /** Extra CA file (PEM) trusted for upstream servers, on top of the system roots and NODE_EXTRA_CA_CERTS. */
  upstreamCaFile: string | null;
  /** Hosts whose upstream certificate is not verified (logged as a warning on every connection). */
  insecureUpstreamHosts: string[];
  /** Upstream hosts/CIDRs a client may route to; required (non-empty) when any listener binds beyond loopback. */
  upstreamAllowlist: string[];
  /** Upstream ports a routed login may name. */
  allowedUpstreamPorts: number[];
  /** IPs/CIDRs of resolved upstream servers whose sessions are relayed without scanning. */
  excludedServers: string[];
  /** Executable names or paths of local client processes whose sessions are relayed without scanning. */
  excludedApps: string[];
  /** Extra DNS names / IPs for the client-leg leaf certificate (localhost, 127.0.0.1, ::1 are always in). */
  tlsNames: string[];
  logFormat: "text" | "json";
  logLevel: "error" | "warn" | "info" | "debug";
}

export const DEFAULT_CONFIG: Readonly<Config> = Object.freeze({
  signatures: null,
  engines: ["builtin"],
  engineMode: "all",
  quarantine: { maxAge: 30, maxSize: 1024 * 1024 * 1024 },
  action: "auto-clean",
  // What a user cannot help (an encrypted archive, a big video, a slow scan) is delivered, tagged;
  // depth, count, ratio and corruption are what evasions look like, so those are held back.
  onUnscanned: {
    encrypted: "deliver",
    // A zip member packed with BZip2 or LZMA: most readers cannot open it either (clamd can).
    unsupported: "deliver",
    "too-large": "deliver",
    "time-limit": "deliver",
    "too-deep": "quarantine",
    "too-many-files": "quarantine",
    bomb: "quarantine",
    corrupt: "quarantine",
  },
  onError: "tempfail",
  tagClean: false,
  subjectTag: "",
  quarantineDir: null,
  limits: { ...DEFAULT_LIMITS },
  listeners: {
    pop3: { enabled: true, addresses: ["127.0.0.1:1110"] },
    pop3s: { enabled: true, addresses: ["127.0.0.1:1995"] },
    imap: { enabled: true, addresses: ["127.0.0.1:1143"] },
    imaps: { enabled: true, addresses: ["127.0.0.1:1993"] },
  },
  upstreamTls: "opportunistic",
  upstreamImplicitTlsPorts: { pop3: [995], imap: [993] },
  upstreamCompress: true,
  upstreamCaFile: null,
  insecureUpstreamHosts: [],
  upstreamAllowlist: [],
  allowedUpstreamPorts: [110, 995, 143, 993],
  excludedServers: [],
  excludedApps: [],
  tlsNames: [],
  logFormat: "text",
  logLevel: "info",
}) as Config;
