// The shape every mail-client module (thunderbird.ts, fetchmail.ts, mbsync.ts) shares with the
// orchestration in apply.ts: accounts found in a config file, the values a proxy set-up changes, and
// the text edits that change and restore them. Each module works on text only; reading, writing,
// backups and the journal belong to apply.ts, so every client gets the same safety.

export type ClientKind = "thunderbird" | "fetchmail" | "mbsync";
export type MailProtocol = "pop3" | "imap";
/** plain: no TLS; starttls: STLS/STARTTLS required; tls: TLS from the first byte (POP3S/IMAPS). */
export type Security = "plain" | "starttls" | "tls";

/** One account of one client config file, as the file says it today. */
export interface ClientAccount {
  client: ClientKind;
  /** Stable within its file across apply and revert: "server3" (prefs.js), "poll 2", "IMAPAccount work". */
  ref: string;
  /** Absolute path of the file the account lives in (prefs.js, .fetchmailrc, .mbsyncrc). */
  file: string;
  /** What the user calls it: the account's pretty name, the poll name, the IMAPAccount name. */
  label: string;
  protocol: MailProtocol;
  /** Where the client connects now. */
  server: string;
  port: number;
  security: Security;
  /** The user name the client logs in with now ("" when the file does not say). */
  user: string;
  /** Already goes through a mailsentry listener: loopback server and a "name/server" user. */
  proxied: boolean;
  /** Why this account cannot be set up (e.g. "user comes from UserCmd"); null when it can. */
  unsupported: string | null;
}

/** Where the running configuration listens, and the CA a client must trust for the TLS listeners. */
export interface ProxyTarget {
  /** Loopback host the listeners bind ("127.0.0.1"). */
  host: string;
  /**
   * A DNS name for host that the local certificate carries ("localhost"): fetchmail 6.4 and
   * isync 1.4 match certificates against DNS names only, never IP addresses, so their TLS
   * accounts connect by this name.
   */
  dnsName: string;
  /** Port per listener; a missing one means that listener is off. */
  ports: Partial<Record<"pop3" | "pop3s" | "imap" | "imaps", number>>;
  /** PEM file of mailsentry's local CA. */
  caFile: string;
}

/**
 * One value of a config file, in the file's own terms: a pref name, "poll 2/port", "IMAPAccount work/Host".
 * `value` is the raw text as it appears in the file (a JS literal in prefs.js, a token in fetchmailrc),
 * so writing back the old value restores the file byte for byte. null: the key is absent.
 */
export interface Setting {
  key: string;
  value: string | null;
}

/** What a client module provides; the orchestrator calls nothing else. */
export interface ClientFormat {
  kind: ClientKind;
  /** The config files of this client that exist for the user of `env` (HOME, XDG_CONFIG_HOME), absolute. */
  findFiles(env: NodeJS.ProcessEnv): Promise<string[]>;
  /**
   * Why the file must not be written now (e.g. "Thunderbird is running on this profile (pid 123)"),
   * or null. Checked before apply and revert.
   */
  busy?(file: string): Promise<string | null>;
  /** The accounts of one file's text (POP3 and IMAP only; other kinds are left out). */
  accounts(text: string, file: string): ClientAccount[];
  /**
   * The settings that route `account` through `target`, keeping security at least as strong;
   * `text` is the file as it is now (Thunderbird moves folder URIs elsewhere in it). Throws an
   * Error with a user-facing message when the needed listener is off.
   */
  plan(account: ClientAccount, target: ProxyTarget, text: string): Setting[];
  /** The current raw value of `key` for the account `ref`, or null when absent. */
  get(text: string, ref: string, key: string): string | null;
  /**
   * The text with `key` of account `ref` set to the raw `value` (null removes it). Setting a key
   * back to the value get() returned before a change restores the text exactly.
   */
  set(text: string, ref: string, key: string, value: string | null): string;
}
