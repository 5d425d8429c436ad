// Scanned copies of IMAP messages, shared by every session of one proxy, so chunked and section
// fetches are answered from one consistent copy. Invariant: the bytes charged never exceed maxBytes.
// Least recently used entries go first; a doubly linked list, because evicting from the front of a JS
// Map after many delete+set refreshes costs tens of microseconds per call in Bun once it holds 50,000.
import { ownedBytes } from "../filter/buffers.ts";

/** Which message: a UID names one message only within one UIDVALIDITY of one mailbox of one account. */
export interface MessageKey {
  /** Upstream server as routed, e.g. "mail.example.org:993" (host names are compared case-insensitively). */
  server: string;
  user: string;
  /** Case-sensitive, except INBOX (RFC 3501 5.1), which is normalised. */
  mailbox: string;
  uidValidity: number;
  uid: number;
}

export interface CachedMessage {
  /**
   * The copy served to clients when changed; for an unchanged message the original while a chunked
   * download is cut from it, else empty (its verdict is all that is needed: the server's bytes pass).
   */
  bytes: Uint8Array;
  /** The served copy differs from the original (cleaned, replaced or tagged). */
  changed: boolean;
  /** Octet count of the served copy, as RFC822.SIZE reports it to the client. */
  size: number;
  /** Short text for logs, e.g. "clean" or "infected Eicar-Test-Signature". */
  verdict: string;
}

/** 128 MiB: a few messages at the 100 MB maxMessageSize default, or thousands of ordinary ones. */
export const DEFAULT_MESSAGE_CACHE_BYTES = 128 * 1024 * 1024;
/** Charged per entry on top of its bytes (key text, list node, record), so that many tiny or empty
 *  messages are bounded too. */
export const CACHE_ENTRY_OVERHEAD = 256;

/** One string per message; JSON keeps it unambiguous whatever the names contain. */
export function messageKeyString(k: MessageKey): string {
  const mailbox = k.mailbox.toUpperCase() === "INBOX" ? "INBOX" : k.mailbox;
  return JSON.stringify([k.server.toLowerCase(), k.user, mailbox, k.uidValidity, k.uid]);
}

interface Node {
  key: string;
  value: CachedMessage;
  charge: number;
  newer: Node | null;
  older: Node | null;
}

export class MessageCache {
  readonly maxBytes: number;
  #bytes = 0;
  #peakBytes = 0;
  readonly #nodes = new Map<string, Node>();
  /** Most and least recently used ends of the list. */
  #newest: Node | null = null;
  #oldest: Node | null = null;
  readonly #loading = new Map<string, Promise<CachedMessage | null>>();
  /** Counts clear() calls, so a load begun before one is not cached after it. */
  #epoch = 0;

  constructor(maxBytes: number = DEFAULT_MESSAGE_CACHE_BYTES) {
    if (!(maxBytes >= 0)) throw new RangeError(`message cache size must be a number of bytes >= 0, got ${maxBytes}`);
    this.maxBytes = maxBytes;
  }

  /** Bytes charged now (message bytes plus CACHE_ENTRY_OVERHEAD each); never above maxBytes. */
  get bytes(): number {
    return this.#bytes;
  }

  /** The most bytes ever charged at once (what a status report checks against maxBytes). */
  get peakBytes(): number {
    return this.#peakBytes;
  }

  get entries(): number {
    return this.#nodes.size;
  }

  /** The cached copy, now the most recently used; undefined when absent. */
  get(key: MessageKey): CachedMessage | undefined {
    const node = this.#nodes.get(messageKeyString(key));
    if (!node) return undefined;
    this.#unlink(node);
    this.#pushNewest(node);
    return node.value;
  }

  /**
   * Stores value (replacing any entry of that key), evicting the least recently used until it fits.
   * False, and nothing stored, when it alone would exceed maxBytes. A view into a larger buffer is
   * copied first: keeping the view would keep the whole buffer alive, uncharged.
   */
  put(key: MessageKey, value: CachedMessage): boolean {
    const k = messageKeyString(key);
    this.#remove(k);
    const charge = value.bytes.byteLength + CACHE_ENTRY_OVERHEAD;
    if (charge > this.maxBytes) return false;
    while (this.#bytes + charge > this.maxBytes && this.#oldest) this.#remove(this.#oldest.key);
    const bytes = ownedBytes(value.bytes);
    const owned = bytes === value.bytes ? value : { ...value, bytes };
    const node: Node = { key: k, value: owned, charge, newer: null, older: null };
    this.#nodes.set(k, node);
    this.#pushNewest(node);
    this.#bytes += charge;
    if (this.#bytes > this.#peakBytes) this.#peakBytes = this.#bytes;
    return true;
  }

  delete(key: MessageKey): boolean {
    return this.#remove(messageKeyString(key));
  }

  /** Drops every entry (e.g. after a signature reload, when the copies were scanned under old ones).
   *  Loads already running still answer their callers but are not kept, and later callers load anew. */
  clear(): void {
    this.#epoch++;
    this.#loading.clear();
    this.#nodes.clear();
    this.#newest = this.#oldest = null;
    this.#bytes = 0;
  }

  /**
   * The cached copy, or the result of load (cached when not null). Callers asking for the same
   * message while a load runs share that one load; a rejected load is not cached and every waiter
   * sees the rejection. A result that does not fit is still returned, just not kept.
   */
  getOrLoad(key: MessageKey, load: () => Promise<CachedMessage | null>): Promise<CachedMessage | null> {
    const hit = this.get(key);
    if (hit) return Promise.resolve(hit);
    const k = messageKeyString(key);
    const running = this.#loading.get(k);
    if (running) return running;
    const epoch = this.#epoch;
    // load runs in a later microtask, so even a load that throws at once finds p registered and removes it.
    const p: Promise<CachedMessage | null> = Promise.resolve()
      .then(load)
      .then((value) => {
        if (value && epoch === this.#epoch) this.put(key, value);
        return value;
      })
      .finally(() => {
        if (this.#loading.get(k) === p) this.#loading.delete(k);
      });
    this.#loading.set(k, p);
    return p;
  }

  #remove(k: string): boolean {
    const node = this.#nodes.get(k);
    if (!node) return false;
    this.#nodes.delete(k);
    this.#unlink(node);
    this.#bytes -= node.charge;
    return true;
  }

  #unlink(n: Node): void {
    if (n.newer) n.newer.older = n.older;
    else this.#newest = n.older;
    if (n.older) n.older.newer = n.newer;
    else this.#oldest = n.newer;
    n.newer = n.older = null;
  }

  #pushNewest(n: Node): void {
    n.older = this.#newest;
    if (this.#newest) this.#newest.newer = n;
    this.#newest = n;
    if (!this.#oldest) this.#oldest = n;
  }
}
