// The authenticated-state relay: client commands go upstream as they come (pipelining), and one pump
// carries the server's responses back in order. Everything passes byte-identical except what carries
// message content: FETCH body items are answered from the scanned copy (the whole message is fetched
// and scanned first when a client asks for part of one) and, where the copy differs, so are its
// structure, envelope and header items. The chunks of a chunked download are cut from the copy, by the
// proxy alone while the server was heard from within a second. Capability lists are filtered, and commands
// that would carry content past the scanner are refused. A literal cut short upstream closes the client:
// never a short literal, never a tagged OK for it.
import type { Channel } from "../net/queue.ts";
import type { Logger } from "../log.ts";
import type { UnscannedPolicy } from "../config/types.ts";
import type { UnscannedReason } from "../limits.ts";
import type { MessageFilter } from "../filter/index.ts";
import { filterCapabilityCode, filterCapabilityLine } from "./capability.ts";
import { FetchResponse, isFetchResponse, literalItem, textItem, type FetchItem } from "./fetch-response.ts";
import { structureText } from "./bodystructure.ts";
import { envelopeText } from "./envelope.ts";
import { parseFetch, singleNumber, type FetchRequest } from "./fetch-items.ts";
import { ImapProtocolError, type ImapServerConn } from "./server.ts";
import { partialRange, sectionBytes } from "./sections.ts";
import { CACHE_ENTRY_OVERHEAD, messageKeyString, type CachedMessage, type MessageCache, type MessageKey } from "./cache.ts";
import { Spool } from "../filter/spool.ts";
import { messageBuffer, ownedBytes, releaseMessageBuffer } from "../filter/buffers.ts";
import type { CleanIndex } from "./clean-index.ts";
import type { ByteBudget } from "../net/budget.ts";
import { astringBytes, commandHead, latin1Bytes, lineText, quoted, segmentText, tokenize, type Segment } from "./wire.ts";
import { parseMessage } from "../mime/parse.ts";
import type { MimePart } from "../mime/types.ts";

export interface RelayStats {
  messages: number;
  bytes: number;
  detections: number;
}

export interface RelayOptions {
  client: Channel;
  clientReader: import("./wire.ts").ImapReader;
  server: ImapServerConn;
  /** null: relay unscanned (an exclusion applied). */
  filter: MessageFilter | null;
  cache: MessageCache;
  cleanIndex: CleanIndex | null;
  /** Memory for bodies held whole while they are scanned, shared by all sessions. */
  holdBudget: ByteBudget;
  limits: { maxMessageSize: number; maxSpooledMessageSize: number; upstreamReadTimeout: number; maxClientLine: number };
  /** Per reason; a body over maxSpooledMessageSize follows its "too-large" entry. */
  onUnscanned: UnscannedPolicy;
  /** Where a body over maxMessageSize is spooled to be scanned (filter/spool.ts). */
  spoolDir: string;
  /** "host:port" and user: the account part of every cache key. */
  account: { server: string; user: string };
  log: Logger;
  stats: RelayStats;
  touch: () => void;
}

/** Where the server last said a message of the selected mailbox is (ImapRelay.placed). */
interface Placed {
  seq: number;
  size: number | null;
  /** The flagsEpoch in which the server last said the message is \Seen; -1: it did not. */
  seenIn: number;
}

/** What one FETCH response holds while it is judged: its share of the byte budget, and the buffers of its bodies. */
interface Hold {
  release: (() => void) | null;
  buffers: Uint8Array[];
}

/** What one command in flight is, for the pump. */
interface InFlight {
  tag: string;
  verb: string;
  /** The proxy's own command: its responses are consumed, not relayed. */
  own?: OwnCommand;
  fetch?: FetchRequest;
  /** UID was added to the client's FETCH items: strip it from the responses. */
  stripUid?: boolean;
  /** SELECT/EXAMINE: the mailbox being opened. */
  mailbox?: string;
  uidValidity?: number;
  /** Messages of this FETCH were withheld (scanner failure): its tagged OK becomes NO. */
  withheld?: boolean;
  /**
   * The whole-message ranges of this FETCH are cut from this copy (pinned, so an eviction meanwhile
   * cannot shorten a chunk); upstream was asked for one byte of each, to keep the response's shape.
   */
  copy?: { key: MessageKey; entry: CachedMessage };
  done: PromiseWithResolvers<string>;
  /** A synchronizing literal waits for "+" (go) or the tagged end of its command (stop). */
  literalWait?: PromiseWithResolvers<"go" | "stop">;
}

type OwnCommand =
  | { kind: "uids"; found: { uid: number; size: number }[] }
  /**
   * copies: for a command on one UID, what the message scanned to, kept for that command even when
   * the cache has no room (one message's worth; a many-message prefetch keeps nothing here).
   */
  | { kind: "prefetch"; keepOriginal: boolean; copies: Map<number, CachedMessage> | null }
  /** A message known clean, fetched whole so the rest of its chunked download is cut from it: not scanned again. */
  | { kind: "original"; copies: Map<number, CachedMessage> };

/** Thrown when the client must be cut off without completing the response in progress. */
export class RelayAbort extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RelayAbort";
  }
}

// Literals up to this size are read whole before anything of their response is written; bigger ones
// that need no scanning are streamed.
const STREAM_THRESHOLD = 256 * 1024;
/** A whole-message range as a client writes it, `BODY[]<0.65536>` or `BODY.PEEK[]<…>`: name, origin. */
const WHOLE_RANGE = /(BODY(?:\.PEEK)?\[\])<(\d+)\.\d+>/gi;
// Messages fetched whole per command of the proxy's own, so one command's responses stay bounded.
const PREFETCH_BATCH = 32;
// Longest literal a FETCH command may carry (a header field name list); longer ones are refused.
const MAX_INLINE_LITERAL = 4096;
const CRLF = new Uint8Array([0x0d, 0x0a]);
const EMPTY = new Uint8Array(0);
/** A spooled body is served in reads of this size. */
const SPOOL_SLICE = 512 * 1024;
/** Changed copies of spooled messages one session keeps (a chunked download needs its copy until done). */
const MAX_BIG_COPIES = 2;
/** A download copy (ImapRelay.downloadCopy) unused this long is given up. */
const DOWNLOAD_COPY_IDLE_MS = 60_000;
/**
 * Chunks answered from the copy alone (no upstream command) only while the server was last heard from
 * within this time: what it would have said with a chunk's response (new mail, flag changes) still
 * reaches the client at least this often during a download.
 */
export const NEWS_INTERVAL_MS = 1000;
/** Messages of the selected mailbox whose sequence number and size the relay remembers (a header sync's worth). */
const MAX_PLACED = 10_000;

export class ImapRelay {
  private readonly inflight: InFlight[] = [];
  private selected: { mailbox: string; uidValidity: number | null } | null = null;
  private readonly bigCopies = new Map<string, CachedMessage>();
  /**
   * The copy a chunked download of this session is cut from, when the shared cache had no room for it
   * (a copy bigger than the cache, or pushed out by other sessions between chunks): without it every
   * chunk fetched and scanned the whole message again. Charged to the hold budget, only while half
   * of it stays free, and given up at the download's last chunk, another message's copy, a mailbox
   * change, the session's end, or DOWNLOAD_COPY_IDLE_MS after its last use (a client gone quiet mid-download).
   */
  private downloadCopy: { id: string; entry: CachedMessage; release: () => void; timer: ReturnType<typeof setTimeout> } | null = null;
  private stopped = false;
  private logoutSeen = false;
  private drainWaiters: (() => void)[] = [];
  /**
   * UID → sequence number, RFC822.SIZE and \Seen, as the server's FETCH responses last told; forgotten
   * on any EXPUNGE or VANISHED (sequence numbers move) and when the mailbox changes.
   */
  private readonly placed = new Map<number, Placed>();
  /** Bumped by flags reported without a UID: which message they were is not known, so no \Seen is. */
  private flagsEpoch = 0;
  /** Known-clean messages this session fetched whole for a chunked download (once each: see chunkingKnownClean). */
  private readonly fetchedWhole = new Set<number>();
  /** When a command of this session last completed upstream (performance.now()). */
  private lastHeard = 0;
  /** The server's own words for a completed FETCH, used for the chunks answered from a copy. */
  private fetchDone = "OK Fetch completed.";
  /** The pump is in the middle of relaying a response: nothing else may be written to the client. */
  private responding = false;
  /**
   * The server put MODSEQ into a body's FETCH response unasked (CONDSTORE on, as some servers do; Dovecot
   * does not): a copy cannot know it, so no chunk is answered from the copy alone from then on.
   */
  private modseqs = false;

  constructor(private readonly o: RelayOptions) {}

  get idle(): boolean { return this.inflight.length === 0; }

  stop(): void {
    this.stopped = true;
    this.dropDownloadCopy();
    for (const f of this.inflight) f.literalWait?.resolve("stop");
  }

  // ---- client side ------------------------------------------------------------------------------

  /** Reads client commands and sends them upstream until the client leaves or logs out. */
  async commands(): Promise<void> {
    const { clientReader, limits } = this.o;
    while (!this.stopped && !this.logoutSeen) {
      let seg: Segment;
      try {
        seg = await clientReader.readSegment(limits.maxClientLine);
      } catch {
        return;
      }
      this.o.touch();
      await this.command(seg);
    }
  }

  private async command(seg: Segment): Promise<void> {
    const text = segmentText(seg);
    const head = commandHead(text);
    if (!head) return this.forwardRaw(seg, null); // DONE after IDLE, SASL answers: the server judges them
    const { tag, verb, rest } = head;
    switch (verb) {
      case "COMPRESS":
        return this.local(seg, tag, "NO [CANNOT] COMPRESS is not available through mailsentry (the proxy must see the mail it scans).");
      case "STARTTLS":
      case "LOGIN":
      case "AUTHENTICATE":
        return this.local(seg, tag, "BAD Already logged in.");
      case "FETCH":
      case "UID FETCH": {
        // A FETCH the proxy cannot read could ask for anything (BINARY of an infected part): refused.
        const line = seg.literal ? await this.inlineLiterals(seg, tag) : { seg, rest };
        if (!line) return;
        const req = parseFetch(line.rest, verb === "UID FETCH");
        if (req) return this.fetch(line.seg, tag, verb, req);
        return this.local(null, tag, "BAD FETCH items mailsentry cannot read.");
      }
      case "SELECT":
      case "EXAMINE": {
        const f = this.track(tag, verb);
        if (!seg.literal) f.mailbox = mailboxName(rest);
        return this.forwardRaw(seg, f, (names) => { f.mailbox = names; });
      }
      case "LOGOUT":
        this.logoutSeen = true;
        break;
    }
    return this.forwardRaw(seg, this.track(tag, verb));
  }

  /** A reply of the proxy's own, after whatever is in flight (order is kept). */
  private async local(seg: Segment | null, tag: string, response: string): Promise<void> {
    if (seg?.literal) await this.skipClientLiterals(seg);
    await this.drained();
    this.write(latin1Bytes(`${tag} ${response}\r\n`));
  }

  private track(tag: string, verb: string): InFlight {
    const f: InFlight = { tag, verb, done: Promise.withResolvers<string>() };
    f.done.promise.catch(() => {});
    this.inflight.push(f);
    return f;
  }

  /**
   * Sends a client command upstream as it is, literals streamed. A synchronizing literal goes only
   * after the server's "+" (relayed by the pump); a refusal instead ends the command.
   */
  private async forwardRaw(first: Segment, f: InFlight | null, onMailbox?: (m: string) => void): Promise<void> {
    const { server, clientReader, limits } = this.o;
    let seg = first;
    const mailboxParts: Uint8Array[] = [];
    for (;;) {
      server.ch.out.write(seg.text, CRLF);
      const lit = seg.literal;
      if (!lit) break;
      if (lit.sync && f) {
        f.literalWait = Promise.withResolvers<"go" | "stop">();
        const go = await f.literalWait.promise;
        f.literalWait = undefined;
        if (go === "stop") return;
      }
      await clientReader.readExact(lit.size, async (c) => {
        if (onMailbox && lit.size <= 1024) mailboxParts.push(c.slice());
        server.ch.out.write(c);
        if (server.ch.out.isFull) await server.ch.out.room();
      });
      seg = await clientReader.readSegment(limits.maxClientLine);
    }
    if (onMailbox && mailboxParts.length) onMailbox(Buffer.concat(mailboxParts).toString("latin1"));
  }

  /**
   * A command line whose literals (HEADER.FIELDS names sent as {n}) are read here and written as
   * quoted strings, so the proxy parses the command it relays; the client's synchronizing literals get
   * the proxy's own "+". null when a literal is too long or cannot be quoted: the command is refused
   * (a synchronizing one before its bytes are sent, as RFC 9051 §7.5 allows).
   */
  private async inlineLiterals(first: Segment, tag: string): Promise<{ seg: Segment; rest: string } | null> {
    const { clientReader, limits } = this.o;
    let seg = first;
    let text = "";
    let ok = true;
    while (seg.literal) {
      const lit = seg.literal;
      const line = segmentText(seg);
      text += line.slice(0, line.lastIndexOf(lit.binary ? "~{" : "{"));
      if (lit.size > MAX_INLINE_LITERAL) ok = false;
      if (lit.sync && !ok) {
        await this.local(null, tag, "BAD FETCH with a literal mailsentry cannot pass on.");
        return null; // the client sends no bytes: its next line is a new command
      }
      if (lit.sync) this.write(latin1Bytes("+ Ready for literal data\r\n"));
      const parts: Uint8Array[] = [];
      await clientReader.readExact(lit.size, (c) => { if (ok) parts.push(c.slice()); });
      const value = Buffer.concat(parts).toString("latin1");
      if (!ok || /[\x00\r\n\x80-\xff]/.test(value)) ok = false;
      else text += quoted(value);
      seg = await clientReader.readSegment(limits.maxClientLine);
    }
    if (!ok) {
      await this.local(null, tag, "BAD FETCH with a literal mailsentry cannot pass on; send the names quoted.");
      return null;
    }
    text += segmentText(seg);
    const head = commandHead(text);
    return { seg: { text: latin1Bytes(text), literal: null }, rest: head?.rest ?? "" };
  }

  private async skipClientLiterals(first: Segment): Promise<void> {
    let seg = first;
    while (seg.literal) {
      await this.o.clientReader.readExact(seg.literal.size, () => {});
      seg = await this.o.clientReader.readSegment(this.o.limits.maxClientLine);
    }
  }

  /**
   * FETCH / UID FETCH. Items with body bytes other than the whole message (parts, TEXT, partial
   * ranges) and BODYSTRUCTURE need the scanned copy: the proxy fetches and scans the whole messages
   * it does not know yet, then relays the client's command and answers from the copy.
   */
  private async fetch(seg: Segment, tag: string, verb: string, req: FetchRequest): Promise<void> {
    if (req.names.some((n) => n.kind === "binary")) {
      return this.local(seg, tag, "NO [CANNOT] BINARY, PREVIEW and SNIPPET are not available through mailsentry; fetch BODY[] instead.");
    }
    const needsCopy = this.o.filter !== null && req.names.some((n) => n.kind === "section" || n.kind === "structure");
    const fresh = needsCopy ? await this.prefetch(req) : null;
    const copy = seg.literal ? null : this.rangesFromCopy(req, fresh);
    if (copy && this.answerFromCopy(tag, req, copy)) return;
    const f = this.track(tag, verb);
    f.fetch = req;
    let line = seg.text;
    if (copy) {
      f.copy = copy;
      line = latin1Bytes(`${tag} ${verb} ${req.set} ${req.itemsText.replace(WHOLE_RANGE, "$1<$2.1>")}${req.modifiers}`);
    }
    // The cache is keyed by UID: a FETCH by sequence number asks for it too (and the client never sees it).
    if (!req.uid && !req.names.some((n) => n.upper === "UID") && this.o.filter) {
      f.stripUid = true;
      const items = req.itemsText.startsWith("(") ? `(UID ${req.itemsText.slice(1)}` : `(UID ${req.itemsText})`;
      line = latin1Bytes(`${tag} ${verb} ${req.set} ${items}${req.modifiers}`);
    }
    this.o.server.ch.out.write(line, CRLF);
  }

  /**
   * A chunked download (Thunderbird: `UID FETCH n (UID RFC822.SIZE BODY.PEEK[]<start.65536>)` until a
   * short chunk) of a message whose whole copy is cached: the chunks are cut from the copy, so the
   * server need not send the message a second time. Only for one UID whose body items are all such
   * ranges; the copy is pinned for the command, and one the cache could not keep (this command's
   * prefetch made it) becomes the session's download copy for the next chunks.
   */
  private rangesFromCopy(req: FetchRequest, fresh: Map<number, CachedMessage> | null): { key: MessageKey; entry: CachedMessage } | null {
    if (this.o.filter === null || !req.uid) return null;
    const uid = singleNumber(req.set);
    if (uid === null || !this.selected || this.selected.uidValidity === null) return null;
    const bodies = req.names.filter((n) => n.kind === "whole" || n.kind === "section" || n.kind === "header");
    if (bodies.length === 0 || !bodies.every((n) => n.section === "" && n.partial)) return null;
    // The rewrite must reach every one of them: the items as written hold exactly these ranges.
    if ((req.itemsText.match(WHOLE_RANGE) ?? []).length !== bodies.length) return null;
    const key = this.key(uid);
    // The cache's copy, or the one this command's prefetch just made when the cache had no room for it:
    // chunks of a cleaned message must be cut from the cleaned copy, never relayed from the server.
    const cached = this.lookup(key);
    const usable = (e: CachedMessage | undefined) => !!e && e.size > 0 && e.bytes.length === e.size;
    const entry = usable(cached) ? cached! : fresh?.get(uid);
    if (!entry || !usable(entry)) return null;
    if (this.withholds(entry.verdict)) return null;
    if (entry !== cached) this.keepDownloadCopy(key, entry);
    return { key, entry };
  }

  /**
   * A chunk answered from the copy alone, as the server answers it (Dovecot's order: UID, the other
   * items as asked, then the ranges; a range past the end is `{0}`), when nothing the server would add
   * can be missed: nothing is in flight, the server was heard from within NEWS_INTERVAL_MS, the request
   * changes no flag (PEEK, or the message is \Seen already: Thunderbird's display fetches are not PEEK)
   * and asks only for UID, RFC822.SIZE and whole-message ranges, and the message's sequence number
   * and size are known from the server's own responses. A chunked download then costs the client's
   * round trips to the proxy only, as direct ones cost it to the server.
   */
  private answerFromCopy(tag: string, req: FetchRequest, copy: { key: MessageKey; entry: CachedMessage }): boolean {
    if (req.modifiers !== "" || this.modseqs || this.inflight.length > 0 || this.responding) return false;
    if (performance.now() - this.lastHeard > NEWS_INTERVAL_MS) return false;
    const uid = copy.key.uid;
    const placed = this.placed.get(uid);
    if (!placed || placed.size === null) return false;
    // A range that is not PEEK sets \Seen: answered here only once the server said the message has it,
    // when its own answer would carry no FLAGS either (it reports flags that changed).
    const seen = placed.seenIn === this.flagsEpoch;
    const ranges = req.names.filter((n) => n.kind !== "meta");
    if (!ranges.every((n) => (n.peek || seen) && n.section === "" && n.partial && Number.isFinite(n.partial.length))) return false;
    const meta = req.names.filter((n) => n.kind === "meta");
    if (!meta.every((n) => n.upper === "UID" || n.upper === "RFC822.SIZE")) return false;
    const { entry } = copy;
    let head = `* ${placed.seq} FETCH (UID ${uid}`;
    if (meta.some((n) => n.upper === "RFC822.SIZE")) head += ` RFC822.SIZE ${placed.size}`;
    const pieces: Uint8Array[] = [];
    let end = 0;
    for (const n of ranges) {
      const { origin, length } = n.partial!;
      const bytes = partialRange(entry.bytes, origin, length);
      pieces.push(latin1Bytes(`${head} BODY[]<${origin}> {${bytes.length}}\r\n`), bytes);
      head = "";
      end = Math.max(end, origin + length);
    }
    pieces.push(latin1Bytes(`)\r\n${tag} ${this.fetchDone}\r\n`));
    this.write(...pieces);
    this.releaseOriginal(copy, end);
    return true;
  }

  /**
   * Makes sure every message of the request is in the cache or known clean; returns the copies it
   * made (by UID), which the command may use even when the cache had no room to keep them.
   */
  private async prefetch(req: FetchRequest): Promise<Map<number, CachedMessage>> {
    const copies = new Map<number, CachedMessage>();
    await this.drained();
    const sel = this.selected;
    if (!sel || sel.uidValidity === null) return copies; // nothing to key a copy by: parts are scanned as they come
    let targets: { uid: number; size: number | null }[];
    const one = req.uid ? singleNumber(req.set) : null;
    // One message whose size a header sync already told: no command to ask for it again.
    const oneSize = one !== null ? this.placed.get(one)?.size ?? null : null;
    if (one !== null && this.known(this.key(one), oneSize)) {
      if (oneSize !== null && this.chunkingKnownClean(req, one, oneSize)) {
        if (this.fetchedWhole.size >= MAX_PLACED) this.fetchedWhole.clear();
        this.fetchedWhole.add(one);
        await this.own(`UID FETCH ${one} (UID RFC822.SIZE BODY.PEEK[])`, { kind: "original", copies });
      }
      return copies;
    }
    if (one !== null && oneSize !== null) targets = [{ uid: one, size: oneSize }];
    else {
      const found = await this.own(`${req.uid ? "UID " : ""}FETCH ${req.set} (UID RFC822.SIZE)`, { kind: "uids", found: [] });
      targets = found.kind === "uids" ? found.found : [];
    }
    const missing = targets.filter((t) => !this.known(this.key(t.uid), t.size));
    for (let i = 0; i < missing.length; i += PREFETCH_BATCH) {
      const batch = missing.slice(i, i + PREFETCH_BATCH);
      // Up to maxSpooledMessageSize: a body over maxMessageSize is spooled by the same command (oversize).
      const small = batch.filter((t) => (t.size ?? 0) <= this.o.limits.maxSpooledMessageSize);
      for (const t of batch) if (!small.includes(t)) this.rememberOversize(t.uid);
      // A range of one message is the first chunk of a chunked download: its original is kept with the
      // verdict, so the next chunks are cut from it (rangesFromCopy) until the last one drops it.
      const keepOriginal = one !== null && req.names.some((n) => n.section === "" && n.partial !== null);
      if (small.length) await this.own(`UID FETCH ${small.map((t) => t.uid).join(",")} (UID RFC822.SIZE BODY.PEEK[])`, { kind: "prefetch", keepOriginal, copies: one !== null ? copies : null });
    }
    return copies;
  }

  /**
   * A chunked download of a message known clean, with no copy to cut the chunks from (a re-sync: the
   * clean index, or a verdict whose original was let go) is relayed chunk by chunk, each a round
   * trip to the server. Once it is clearly a download (a later chunk, at least two more to come),
   * the message is fetched whole, once per session, and the rest is cut from it: the server sends
   * no more than the client was about to take (one chunk again), and a client that asks only for
   * a message's start still gets it from the server.
   */
  private chunkingKnownClean(req: FetchRequest, uid: number, size: number): boolean {
    // Worth it only when the original can be kept for the rest: by the cache, or else by this session.
    const keepable = size + CACHE_ENTRY_OVERHEAD <= this.o.cache.maxBytes || size <= this.downloadCopyRoom();
    if (this.fetchedWhole.has(uid) || size > this.o.limits.maxMessageSize || !keepable) return false;
    const ranges = req.names.filter((n) => n.kind !== "meta");
    const range = ranges.length === 1 ? ranges[0]!.partial : null;
    if (!range || ranges[0]!.section !== "" || range.origin === 0 || size - range.origin <= 2 * range.length) return false;
    const key = this.key(uid);
    const entry = this.lookup(key);
    return entry ? entry.verdict === "clean" && !entry.changed && entry.bytes.length === 0 : this.o.cleanIndex?.has({ ...key, size }) === true;
  }

  private rememberOversize(uid: number): void {
    this.o.cache.put(this.key(uid), { bytes: EMPTY, changed: false, size: 0, verdict: "unscanned (too-large)" });
  }

  /** Runs a command of the proxy's own through the pump; resolves with its state once it completed. */
  private async own(command: string, own: OwnCommand): Promise<OwnCommand> {
    const tag = this.o.server.tag();
    const f = this.track(tag, "OWN");
    f.own = own;
    this.o.server.send(`${tag} ${command}`);
    await f.done.promise;
    return own;
  }

  /** Resolves when no command is in flight. */
  private drained(): Promise<void> {
    if (this.inflight.length === 0) return Promise.resolve();
    const { promise, resolve } = Promise.withResolvers<void>();
    this.drainWaiters.push(resolve);
    return promise;
  }

  // ---- server side (the pump) -------------------------------------------------------------------

  /** Relays responses until LOGOUT completes or the relay stops; rejects on an upstream fault. */
  async run(): Promise<void> {
    try {
      await this.pump();
    } finally {
      this.dropDownloadCopy();
    }
  }

  /** run()'s loop: one response at a time, in the order the server sent them. */
  private async pump(): Promise<void> {
    const { server } = this.o;
    for (;;) {
      if (this.stopped && this.inflight.length === 0) return;
      // A client that reads slower than the server sends: stop reading the server until it catches up,
      // so responses wait in the kernel's buffers, not in the proxy's memory.
      if (this.o.client.out.isFull) await this.o.client.out.room();
      const seg = await server.readSegment(this.inflight.length ? server.limits.upstreamReadTimeout : 0);
      this.responding = true;
      try {
        if (await this.response(seg)) return;
      } finally {
        this.responding = false;
      }
    }
  }

  /** The mailbox now selected (null: none); what was known of the previous one's messages goes. */
  private select(mailbox: { mailbox: string; uidValidity: number | null } | null): void {
    this.selected = mailbox;
    this.dropDownloadCopy();
    this.placed.clear();
    this.fetchedWhole.clear();
  }

  /** One response from the server, relayed (or consumed); true when the relay is done. */
  private async response(seg: Segment): Promise<boolean> {
    const text = segmentText(seg);
    if (text.startsWith("+")) {
      const waiting = this.inflight.find((f) => f.literalWait);
      waiting?.literalWait?.resolve("go");
      await this.relaySegments(seg);
      return false;
    }
    if (text.startsWith("* ")) {
      await this.untagged(seg, text);
      return false;
    }
    return this.tagged(seg, text);
  }

  private current(): InFlight | undefined {
    return this.inflight[0];
  }

  private async untagged(seg: Segment, text: string): Promise<void> {
    if (isFetchResponse(text)) return this.fetchResponse(seg, text);
    const f = this.current();
    if (/^\* CAPABILITY /i.test(text) && !seg.literal) return this.write(latin1Bytes(filterCapabilityLine(text) + "\r\n"));
    if (/^\* (OK|NO|BAD|BYE|PREAUTH) \[CAPABILITY /i.test(text)) return this.write(latin1Bytes(filterCapabilityCode(text) + "\r\n"));
    const uv = /^\* OK \[UIDVALIDITY (\d+)\]/i.exec(text);
    if (uv && f?.mailbox !== undefined) f.uidValidity = Number(uv[1]);
    if (/^\* (\d+ EXPUNGE|VANISHED)\b/i.test(text)) this.placed.clear(); // sequence numbers moved
    return this.relaySegments(seg);
  }

  /** Tagged completion; true when the relay is done (LOGOUT completed). */
  private async tagged(seg: Segment, text: string): Promise<boolean> {
    const tag = text.slice(0, text.indexOf(" "));
    const i = this.inflight.findIndex((f) => f.tag === tag);
    if (i < 0) {
      // A BAD for a tag nobody used is the server refusing a line it could not parse (Dovecot answers
      // each line of a literal it did not take as a command so): nothing ran, it is passed on. An OK
      // or NO completes a command nobody sent: the server has lost step with the client (or lies),
      // and any later completion could land on the wrong command. The session ends here.
      if (/^\S+ BAD\b/i.test(text)) {
        await this.relaySegments(seg);
        return false;
      }
      throw new ImapProtocolError(`the server completed a command nobody sent: ${JSON.stringify(text.slice(0, 60))}`);
    }
    const f = this.inflight[i]!;
    this.inflight.splice(i, 1);
    f.literalWait?.resolve("stop");
    this.lastHeard = performance.now();
    const status = /^\S+ (OK|NO|BAD)\b/i.exec(text)?.[1]?.toUpperCase();
    if (f.mailbox !== undefined) this.select(status === "OK" ? { mailbox: f.mailbox, uidValidity: f.uidValidity ?? null } : null);
    else if ((f.verb === "CLOSE" || f.verb === "UNSELECT") && status === "OK") this.select(null);
    if ((f.fetch || f.own) && status === "OK" && !seg.literal) this.fetchDone = text.slice(tag.length + 1);
    if (!f.own) {
      if (f.withheld && f.fetch && status === "OK") {
        this.write(latin1Bytes(`${tag} NO [UNAVAILABLE] Some messages could not be scanned and were withheld; try again later.\r\n`));
      } else if (/\[CAPABILITY /i.test(text) && !seg.literal) this.write(latin1Bytes(filterCapabilityCode(text) + "\r\n"));
      else await this.relaySegments(seg);
    }
    // The response is written whole: what the completion wakes (a prefetch's chunk) may write next.
    this.responding = false;
    f.done.resolve(status ?? "BAD");
    if (this.inflight.length === 0) for (const w of this.drainWaiters.splice(0)) w();
    return f.verb === "LOGOUT";
  }

  /** A response that needs no change: its segments and literals go to the client as they come. */
  private async relaySegments(first: Segment): Promise<void> {
    const { server, client } = this.o;
    let seg = first;
    for (;;) {
      this.write(seg.text, CRLF);
      if (!seg.literal) return;
      try {
        await server.reader.readExact(seg.literal.size, async (c) => {
          this.write(c);
          if (client.out.isFull) await client.out.room();
        }, server.limits.upstreamReadTimeout);
        seg = await server.readSegment();
      } catch (e) {
        throw new RelayAbort(`upstream failed mid-literal: ${(e as Error).message}`);
      }
    }
  }

  private write(...pieces: Uint8Array[]): void {
    this.o.client.out.write(...pieces);
    this.o.touch();
  }

  // ---- FETCH responses --------------------------------------------------------------------------

  private async fetchResponse(first: Segment, text: string): Promise<void> {
    const hold: Hold = { release: null, buffers: [] };
    try {
      await this.fetchResponseHeld(first, text, hold);
    } finally {
      hold.release?.();
    }
    // The response went out as views of the held bodies: their buffers are reused once written.
    // (After a failure they are left to the collector: the connection is going, and with it the views.)
    if (hold.buffers.length > 0) void this.o.client.out.empty().then(() => hold.buffers.forEach(releaseMessageBuffer));
  }

  /** fetchResponse; hold.release is set once a body to be held whole has its share of the budget. */
  private async fetchResponseHeld(first: Segment, text: string, hold: Hold): Promise<void> {
    const { server, limits } = this.o;
    const f = this.current();
    const own = f?.own;
    const r = new FetchResponse(text);
    let headWritten = false;
    const flushPrefix = () => {
      this.write(...r.serialize({ head: !headWritten, tail: false }));
      headWritten = true;
      for (const it of r.items) it.written = true;
    };
    try {
      let seg = first;
      while (!r.complete) {
        const p = r.literalNeeded;
        if (!p) {
          seg = await server.readSegment();
          r.feedText(segmentText(seg));
          continue;
        }
        const kind = p.item.info.kind;
        const body = p.topLevel && (kind === "whole" || kind === "section" || kind === "binary");
        const passable = !body || this.o.filter === null || (kind !== "binary" && this.knownSafe(r));
        // Only a top-level literal (a body) can be streamed: one nested in ENVELOPE or BODYSTRUCTURE
        // belongs to an item that is written whole.
        if (!own && passable && p.topLevel && p.size > STREAM_THRESHOLD && r.items.every((it) => it === p.item || it.written || isSettled(it))) {
          // Streamed: nothing before it waits for a verdict, and it needs none.
          flushPrefix();
          await server.reader.readExact(p.size, async (c) => {
            this.write(c);
            if (this.o.client.out.isFull) await this.o.client.out.room();
          }, limits.upstreamReadTimeout);
          if (body) { this.o.stats.messages++; this.o.stats.bytes += p.size; }
          r.literalStreamed();
          continue;
        }
        if (body && p.size > limits.maxMessageSize && this.o.filter) {
          if (p.size <= limits.maxSpooledMessageSize && kind === "whole" && !p.item.info.partial) await this.spooledBody(r, p.item, p.size, flushPrefix, f, own);
          else await this.oversize(r, p.item, p.size, flushPrefix, f);
          continue;
        }
        if (!body && p.size > limits.maxMessageSize) throw new RelayAbort(`a ${p.size}-byte literal the proxy cannot relay in order`);
        // A body to be held whole (to be scanned, or the proxy's own fetch of an original) waits for its
        // share of the proxy's memory first (the first one of a response: waiting again while holding
        // could wait on itself).
        if (body && (!passable || own) && !hold.release) hold.release = await this.o.holdBudget.acquire(p.size);
        // A body that spans socket chunks is gathered into a reused buffer in shared memory (buffers.ts):
        // no fresh pages for each big message, and the scan worker reads it without a copy.
        const alloc = body ? (n: number) => { const b = messageBuffer(n); hold.buffers.push(b); return b; } : undefined;
        r.feedLiteral(await server.reader.readBytes(p.size, limits.upstreamReadTimeout, alloc));
      }
    } catch (e) {
      if (e instanceof RelayAbort) throw e;
      throw new RelayAbort(`upstream failed mid-FETCH: ${(e as Error).message}`);
    }
    this.place(r);
    if (own) return this.ownFetch(r, own);
    const keep = await this.settle(r, f);
    if (!keep) {
      if (headWritten) throw new RelayAbort("a withheld message was already partly written");
      return;
    }
    if (f?.stripUid) {
      const uid = r.items.find((it) => it.info.upper === "UID");
      if (uid && !uid.written) uid.replacement = null;
    }
    this.write(...r.serialize({ head: !headWritten }));
  }

  /** Remembers where a message is, how big and whether \Seen, as the server says (answerFromCopy, prefetch). */
  private place(r: FetchResponse): void {
    const uid = r.number("UID");
    if (r.items.some((it) => it.info.upper === "MODSEQ") && r.items.some((it) => it.literal !== null && it.info.kind !== "meta")) this.modseqs = true;
    const flags = r.items.find((it) => it.info.upper === "FLAGS");
    if (uid === null && flags) this.flagsEpoch++;
    if (uid === null || !this.selected) return;
    const was = this.placed.get(uid);
    const size = r.number("RFC822.SIZE") ?? was?.size ?? null;
    const seen = flags && /\\Seen\b/i.test(flags.value.filter((v) => typeof v === "string").join(""));
    const seenIn = flags ? (seen ? this.flagsEpoch : -1) : was?.seenIn ?? -1;
    this.placed.delete(uid);
    if (this.placed.size >= MAX_PLACED) this.placed.delete(this.placed.keys().next().value!);
    this.placed.set(uid, { seq: r.seq, size, seenIn });
  }

  /**
   * Decides every body and structure item of a response: passed as it is, answered from the scanned
   * copy, or withheld. Returns false when the whole response must be dropped (scanner failure).
   */
  private async settle(r: FetchResponse, f: InFlight | undefined): Promise<boolean> {
    if (this.o.filter === null) return true;
    const uid = r.number("UID");
    const key = uid !== null ? this.key(uid) : null;
    // Whole bodies first: their scan makes the copy that the structure and part items of the same
    // response are answered from, whatever order the server wrote them in.
    const items = [...r.items].sort((a, b) => Number(b.info.kind === "whole") - Number(a.info.kind === "whole"));
    for (const it of items) {
      const kind = it.info.kind;
      if (kind === "binary" && !it.written) {
        // Decoded content the proxy did not ask for and does not scan (BINARY is refused): never passed.
        it.replacement = [latin1Bytes(`${it.name} NIL`)];
        if (f) f.withheld = true;
        continue;
      }
      const envelope = kind === "meta" && it.info.upper === "ENVELOPE";
      if (it.written || (kind !== "whole" && kind !== "section" && kind !== "structure" && kind !== "header" && !envelope)) continue;
      // A body sent as a quoted string (allowed, if rare) is judged like a literal.
      const bytesItem = kind !== "structure" && !envelope;
      if (bytesItem && it.literal === null) it.literal = quotedValue(it);
      if (bytesItem && it.literal === null) continue; // NIL: nothing to judge
      if (f?.copy && it.info.section === "" && it.info.partial && uid === f.copy.key.uid) {
        it.replacement = literalItem(it.name, this.cut(f.copy.entry.bytes, it, f));
        this.releaseOriginal(f.copy, (it.info.partial?.origin ?? 0) + (this.askedLength(it, f) ?? 0));
        continue;
      }
      let entry = key ? this.lookup(key) : undefined;
      if (!entry && key && this.o.cleanIndex?.has({ ...key, size: r.number("RFC822.SIZE") ?? -1 })) entry = CLEAN;
      if (!entry && kind === "whole" && it.literal) {
        const got = await this.scanWhole(it.literal, uid, r.seq);
        if (got === null) { if (f) f.withheld = true; return false; }
        entry = got;
      }
      if (kind === "structure") {
        if (entry?.changed) this.describeCopy(it, entry);
        continue;
      }
      if (envelope) {
        // A notice message keeps From, To, Cc, Date, Subject and Message-ID, not Reply-To or Sender.
        if (entry?.changed) it.replacement = textItem(it.name, envelopeText(treeOf(entry.bytes)));
        continue;
      }
      // Header bytes carry nothing to scan; of a changed copy they are cut from the copy, so a part's
      // MIME header says what its body now is. A message not scanned yet keeps the server's header.
      if (kind === "header") {
        if (entry?.changed) it.replacement = literalItem(it.name, this.cut(entry.bytes, it, f));
        continue;
      }
      if (entry) {
        if (entry.changed) it.replacement = literalItem(it.name, this.cut(entry.bytes, it, f));
        else if (this.withholds(entry.verdict)) { it.replacement = [latin1Bytes(`${it.name} NIL`)]; if (f) f.withheld = true; }
        if (kind === "whole") this.o.stats.messages++;
        continue;
      }
      // Part of a message the proxy has no copy of (no mailbox selected, unsolicited): judged alone,
      // like POP3's TOP: an infected part is withheld, never cleaned into something that looks whole.
      const out = await this.o.filter(it.literal!, { msg: this.describe(uid, r.seq), partial: true, log: this.o.log.child({ mailbox: this.selected?.mailbox, uid }) });
      if (out.kind === "refuse") { it.replacement = [latin1Bytes(`${it.name} NIL`)]; if (f) f.withheld = true; }
      if (out.detected) this.o.stats.detections++;
    }
    return true;
  }

  /**
   * BODYSTRUCTURE / BODY of a changed copy: the server's value with the nodes that no longer fit
   * (the replaced parts, or all of a notice message) written anew from the copy.
   */
  private describeCopy(it: FetchItem, entry: CachedMessage): void {
    const serverValue = it.value.map((v) => (typeof v === "string" ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("latin1"))).join("");
    const text = structureText(entry.bytes, treeOf(entry.bytes), serverValue, it.info.upper === "BODYSTRUCTURE");
    if (text === null) {
      this.o.log.warn("server's body structure could not be read; passed on as it is", { item: it.name });
      return;
    }
    it.replacement = textItem(it.name, text);
  }

  /**
   * Scans a whole message from its literal; the copy (same size) is cached, and with keepOriginal an
   * unchanged original too (chunks will be cut from it). null: withheld.
   */
  private async scanWhole(raw: Uint8Array, uid: number | null, seq: number, keepOriginal = false): Promise<CachedMessage | null> {
    const key = uid !== null ? this.key(uid) : null;
    const load = async (): Promise<CachedMessage | null> => {
      const out = await this.o.filter!(raw, { msg: this.describe(uid, seq), partial: false, log: this.o.log.child({ mailbox: this.selected?.mailbox, uid }) });
      this.o.stats.bytes += raw.length;
      if (out.detected) this.o.stats.detections++;
      if (out.kind === "refuse") return null;
      const changed = out.bytes !== raw;
      if (out.clean && key) this.o.cleanIndex?.add({ ...key, size: raw.length });
      return { bytes: changed ? out.bytes : keepOriginal ? ownedBytes(raw) : EMPTY, changed, size: raw.length, verdict: out.clean ? "clean" : out.detected ? "infected" : "delivered" };
    };
    if (!key) return load();
    return this.o.cache.getOrLoad(key, load);
  }

  /** Responses to the proxy's own FETCH: remembered, never relayed. */
  private async ownFetch(r: FetchResponse, own: OwnCommand): Promise<void> {
    const uid = r.number("UID");
    if (uid === null) return;
    if (own.kind === "uids") { own.found.push({ uid, size: r.number("RFC822.SIZE") ?? 0 }); return; }
    const body = r.items.find((it) => it.info.kind === "whole" && it.literal);
    if (!body?.literal) return;
    if (own.kind === "original") {
      const entry: CachedMessage = { bytes: ownedBytes(body.literal), changed: false, size: body.literal.length, verdict: "clean" };
      this.o.cache.put(this.key(uid), entry);
      own.copies.set(uid, entry);
      return;
    }
    const copy = await this.scanWhole(body.literal, uid, r.seq, own.keepOriginal);
    if (copy) own.copies?.set(uid, copy);
  }

  /**
   * A whole body over maxMessageSize: spooled as it arrives, scanned from the file, then served from
   * it (or from the changed copy, the same size): the literal's announced length still holds. A
   * changed copy is kept mapped for this session's later chunk, section and structure fetches (the
   * shared cache is memory; a map's pages are the file's). For the proxy's own prefetch nothing is
   * relayed: the verdict (and copy) is recorded.
   */
  private async spooledBody(r: FetchResponse, item: FetchItem, size: number, flushPrefix: () => void, f: InFlight | undefined, own: OwnCommand | undefined): Promise<void> {
    const { server, limits, log } = this.o;
    const uid = r.number("UID");
    let spool: Spool | null = null;
    let failed: unknown = null;
    try {
      spool = Spool.create(this.o.spoolDir);
    } catch (e) {
      failed = e;
    }
    await server.reader.readExact(size, (c) => {
      if (failed) return;
      try {
        spool!.write(c);
      } catch (e) {
        failed = e;
      }
    }, limits.upstreamReadTimeout);
    log.info("message over maxMessageSize: spooled to disk to be scanned", { uid, size, maxMessageSize: limits.maxMessageSize });
    let copy: Spool | null = null;
    try {
      const out = failed ? null : await this.o.filter!(spool!, { msg: this.describe(uid, r.seq), partial: false, log: log.child({ mailbox: this.selected?.mailbox, uid }) });
      if (failed) log.error("message could not be spooled for scanning", { uid, error: failed });
      this.o.stats.bytes += size;
      if (out?.detected) this.o.stats.detections++;
      if (!out || out.kind === "refuse") {
        r.literalStreamed();
        if (!own) this.withhold(item, f);
        return;
      }
      copy = out.bytes;
      const changed = copy !== spool;
      const key = uid !== null && this.selected?.uidValidity != null ? this.key(uid) : null;
      // The copy's map outlives its file (removed below): its pages are read from the unlinked inode.
      const entry: CachedMessage = { bytes: changed ? copy.map() : EMPTY, changed, size, verdict: out.clean ? "clean" : out.detected ? "infected" : "delivered" };
      if (key) {
        if (out.clean) this.o.cleanIndex?.add({ ...key, size });
        if (changed) this.keepBigCopy(key, entry);
        else this.o.cache.put(key, entry);
      }
      if (own) {
        r.literalStreamed();
        if (own.kind === "prefetch" && uid !== null) own.copies?.set(uid, entry);
        return;
      }
      this.o.stats.messages++;
      // The response up to this literal's {size} goes now; the literal follows from the file.
      flushPrefix();
      for (let at = 0; at < copy.size;) {
        const slice = new Uint8Array(Math.min(SPOOL_SLICE, copy.size - at));
        const n = copy.read(at, slice);
        if (n === 0) throw new RelayAbort(`spooled message ended at ${at} of ${copy.size} bytes`);
        this.write(n === slice.length ? slice : slice.subarray(0, n));
        at += n;
        if (this.o.client.out.isFull) await this.o.client.out.room();
        if (this.o.client.isClosed) throw new RelayAbort("client went away");
      }
      if (copy.size !== size) throw new RelayAbort(`a copy of ${copy.size} bytes for a ${size}-byte literal`);
      r.literalStreamed();
    } finally {
      spool?.remove();
      copy?.remove();
    }
  }

  /** Changed copies of spooled messages this session keeps mapped, newest last; the oldest goes first. */
  private keepBigCopy(key: MessageKey, entry: CachedMessage): void {
    const id = messageKeyString(key);
    this.bigCopies.delete(id);
    this.bigCopies.set(id, entry);
    while (this.bigCopies.size > MAX_BIG_COPIES) this.bigCopies.delete(this.bigCopies.keys().next().value!);
  }

  private withhold(item: FetchItem, f: InFlight | undefined): void {
    item.written = false;
    item.replacement = [latin1Bytes(`${item.name} NIL`)];
    if (f) f.withheld = true;
  }

  /** A body over maxSpooledMessageSize: relayed unscanned when onUnscanned is "deliver", else withheld. */
  private async oversize(r: FetchResponse, item: FetchItem, size: number, flushPrefix: () => void, f: InFlight | undefined): Promise<void> {
    const { server, limits, log } = this.o;
    const uid = r.number("UID");
    if (this.o.onUnscanned["too-large"] === "deliver" && item.info.kind !== "binary") {
      log.warn("message too large to scan, delivered unscanned", { uid, size, maxMessageSize: limits.maxMessageSize });
      flushPrefix();
      await server.reader.readExact(size, async (c) => {
        this.write(c);
        if (this.o.client.out.isFull) await this.o.client.out.room();
      }, limits.upstreamReadTimeout);
      r.literalStreamed();
      return;
    }
    log.warn("message too large to scan, withheld", { uid, size, onUnscanned: this.o.onUnscanned["too-large"] });
    await server.reader.readExact(size, () => {}, limits.upstreamReadTimeout);
    r.literalStreamed();
    this.withhold(item, f);
  }

  /** The bytes a body item asks for, cut from the copy: section, then <origin.length>. */
  private cut(copy: Uint8Array, it: FetchItem, f: InFlight | undefined): Uint8Array {
    const section = it.info.section ?? "";
    const bytes = section === "" ? copy : sectionBytes(copy, section, treeOf(copy)) ?? EMPTY;
    if (!it.info.partial) return bytes;
    const origin = it.info.partial.origin;
    return partialRange(bytes, origin, this.askedLength(it, f) ?? it.literal?.length ?? bytes.length);
  }

  /** The length the client asked for in a range item: the response echoes only the origin. */
  private askedLength(it: FetchItem, f: InFlight | undefined): number | undefined {
    const section = it.info.section ?? "";
    const origin = it.info.partial?.origin;
    return f?.fetch?.names.find((n) => n.section === section && n.partial?.origin === origin)?.partial?.length;
  }

  /**
   * The last chunk of a kept original was served: the entry goes back to a bare verdict, so clean
   * originals do not crowd the cache once their download is done (a changed copy stays). The
   * session's download copy, changed or not, is given up then.
   */
  private releaseOriginal(copy: { key: MessageKey; entry: CachedMessage }, end: number): void {
    const { key, entry } = copy;
    if (this.downloadCopy?.entry === entry && end >= entry.size) this.dropDownloadCopy();
    if (entry.changed || entry.bytes.length === 0) return;
    if (end < entry.size || this.o.cache.get(key) !== entry) return;
    this.o.cache.put(key, { ...entry, bytes: EMPTY });
  }

  /** Whether a cached "unscanned (reason)" verdict means its body is withheld under onUnscanned. */
  private withholds(verdict: string): boolean {
    const m = /^unscanned \((.+)\)$/.exec(verdict);
    return m !== null && this.o.onUnscanned[m[1] as UnscannedReason] !== "deliver";
  }

  private knownSafe(r: FetchResponse): boolean {
    const uid = r.number("UID");
    if (uid === null) return false;
    const key = this.key(uid);
    const e = this.lookup(key);
    if (e) return !e.changed && !this.withholds(e.verdict);
    const size = r.number("RFC822.SIZE");
    return size !== null && (this.o.cleanIndex?.has({ ...key, size }) ?? false);
  }

  private known(key: MessageKey, size: number | null): boolean {
    if (this.lookup(key)) return true;
    return size !== null && (this.o.cleanIndex?.has({ ...key, size }) ?? false);
  }

  /** The shared cache's entry, else a changed copy of a spooled message this session holds, else its download copy. */
  private lookup(key: MessageKey): CachedMessage | undefined {
    const hit = this.o.cache.get(key);
    if (hit) return hit;
    const id = messageKeyString(key);
    const big = this.bigCopies.get(id);
    if (big) { this.bigCopies.delete(id); this.bigCopies.set(id, big); } // most recent last
    if (big || this.downloadCopy?.id !== id) return big;
    this.downloadCopy.timer.refresh();
    return this.downloadCopy.entry;
  }

  /** Keeps a copy the cache could not for this session's next chunks (ImapRelay.downloadCopy), if memory is to spare. */
  private keepDownloadCopy(key: MessageKey, entry: CachedMessage): void {
    const id = messageKeyString(key);
    if (this.downloadCopy?.id === id && this.downloadCopy.entry === entry) return;
    this.dropDownloadCopy();
    const release = this.o.holdBudget.tryAcquire(entry.bytes.length, this.downloadCopyLeave());
    if (!release) return;
    const timer = setTimeout(() => this.dropDownloadCopy(), DOWNLOAD_COPY_IDLE_MS);
    timer.unref();
    this.downloadCopy = { id, entry, release, timer };
  }

  /** What a download copy must leave of the hold budget for the bodies being scanned: half of it. */
  private downloadCopyLeave(): number {
    return this.o.holdBudget.limit / 2;
  }

  /** The biggest copy keepDownloadCopy() would keep now. */
  private downloadCopyRoom(): number {
    return this.o.holdBudget.spare(this.downloadCopyLeave());
  }

  private dropDownloadCopy(): void {
    if (!this.downloadCopy) return;
    clearTimeout(this.downloadCopy.timer);
    this.downloadCopy.release();
    this.downloadCopy = null;
  }

  private key(uid: number): MessageKey {
    const sel = this.selected!;
    return { ...this.o.account, mailbox: sel.mailbox, uidValidity: sel.uidValidity ?? 0, uid };
  }

  private describe(uid: number | null, seq: number): string {
    return `${this.selected?.mailbox ?? "?"} ${uid !== null ? `UID ${uid}` : `#${seq}`}`;
  }
}

// The MIME tree of each cached copy, parsed once: a Thunderbird download asks for a copy in 64 KiB
// chunks, and every chunk, part, structure and header item is cut from the same tree.
const trees = new WeakMap<Uint8Array, MimePart>();
function treeOf(copy: Uint8Array): MimePart {
  let t = trees.get(copy);
  if (!t) trees.set(copy, (t = parseMessage(copy)));
  return t;
}


const CLEAN: CachedMessage = { bytes: EMPTY, changed: false, size: 0, verdict: "clean" };

/** The bytes of a quoted-string value, or null (NIL, lists). */
function quotedValue(it: FetchItem): Uint8Array | null {
  const v = it.value.length === 1 ? it.value[0] : undefined;
  if (typeof v !== "string" || !v.startsWith('"')) return null;
  return latin1Bytes(v.slice(1, -1).replace(/\\(.)/g, "$1"));
}

/** Items whose value needs no decision (everything but body, binary and structure items). */
function isSettled(it: FetchItem): boolean {
  const k = it.info.kind;
  return k !== "whole" && k !== "section" && k !== "structure" && k !== "binary";
}

/** The mailbox argument of SELECT/EXAMINE (quoted or atom; literals are collected by the caller). */
function mailboxName(rest: string): string {
  const t = tokenize([rest])[0];
  const b = astringBytes(t);
  return b ? Buffer.from(b).toString("latin1") : rest;
}

export { lineText };
