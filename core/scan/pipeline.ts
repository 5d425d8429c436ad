// The scan pipeline: message → parts (decoded, uuencode blocks, nested messages) → archive members,
// each handed to the engine under the ScanLimits. It reports what it found as a ScanResult; it never
// decides an action. Awaits happen only when the engine is async or an archive is opened.
import { overLimit, type ScanLimits } from "../limits.ts";
import { asBuffer } from "../mime/bytes.ts";
import { decodeBase64, decodePartBody, findUuencoded, hasUrlAlphabet } from "../mime/decode.ts";
import { decodeBase64Runs, findDataUris, guessBoundary } from "../mime/embedded.ts";
import { headerValue, otherReadings, parseMessage, splitWithBoundary } from "../mime/parse.ts";
import type { MimePart, Reading } from "../mime/types.ts";
import { readArchive, sniffArchive, type ArchiveKind } from "./archive/index.ts";
import { leaseDecodeBuffer, REUSE_FROM, type DecodeLease } from "./decode-buffers.ts";
import type { Detection, Engine } from "./engine.ts";
import { worse, type Finding, type ScanResult, type UnscannedReason, type Verdict } from "./verdict.ts";

export interface ScanContext {
  engine: Engine;
  limits: ScanLimits;
}

const SEP = " › ";

/** Scans a whole message: every decoded leaf, uuencoded blocks, nested messages, archives, and the raw bytes. */
export async function scanMessage(
  raw: Uint8Array,
  ctx: ScanContext,
  tree?: MimePart,
): Promise<{ result: ScanResult; tree: MimePart }> {
  const run = new Run(ctx);
  const root = tree ?? parseTree(raw, ctx.limits);
  const walked = run.scanMessageTree(raw, root, "", null, 0);
  if (walked) await walked;
  const pending = run.scanRaw(raw);
  if (pending) await pending;
  return { result: run.result(), tree: root };
}

/** The tree scanMessage would walk, for a result made elsewhere (the chain's merged one). */
export function messageTree(raw: Uint8Array, limits: ScanLimits): MimePart {
  return parseTree(raw, limits);
}

/** An engine that finds nothing: the pipeline without the built-in engine still decodes and reports its limits. */
export const NO_ENGINE: Engine = { name: "none", scan: () => null };

/** Scans one file that is not a message: its bytes, and, when it is an archive, its members recursively. */
export async function scanObject(data: Uint8Array, name: string, ctx: ScanContext): Promise<ScanResult> {
  const run = new Run(ctx);
  const pending = run.scanItem(data, name, baseName(name), "", 0, false);
  if (pending) await pending;
  return run.result();
}

/**
 * True when the first lines look like a mail header block (or an mbox "From " line before one), read
 * as leniently as mail clients read it: a NUL or an 8-bit byte in a field does not make it something
 * else (a client still opens it as a message, so it must be scanned as one), and a malformed line
 * after real fields ends the block the way a lenient parser ends it. Text that merely has a colon in
 * its first line, a zip or a bare EICAR file stays an object.
 */
export function looksLikeMessage(data: Uint8Array): boolean {
  const head = Buffer.from(data.buffer, data.byteOffset, Math.min(data.length, 8192));
  const lines = head.toString("latin1").split(/\r\n|\r|\n/);
  if (lines.length < 2) return false; // a header block needs its terminating blank line (or more fields)
  let i = lines[0].startsWith("From ") ? 1 : 0;
  let fields = 0;
  let known = false;
  for (; i < lines.length - 1; i++) {
    const line = lines[i];
    if (line === "") break;
    if ((line[0] === " " || line[0] === "\t") && fields > 0) continue; // folded continuation
    // A field name is printable ASCII without ":" (RFC 5322); 8-bit bytes there are tolerated too.
    const m = /^([!-9;-~\x80-\xff]+)[ \t]*:/.exec(line);
    if (!m) {
      if (fields === 0) return false;
      break; // a lenient reader takes what came before as the header
    }
    fields++;
    if (KNOWN_FIELDS.has(m[1].toLowerCase())) known = true;
  }
  return fields > 0 && (known || fields >= 3);
}

const KNOWN_FIELDS = new Set([
  "from", "to", "cc", "subject", "date", "message-id", "mime-version", "content-type", "received",
  "return-path", "delivered-to", "reply-to", "sender", "x-mailer", "dkim-signature", "authentication-results",
]);

interface Leaf {
  /** The buffer the part's offsets index: the message, or a decoded message found inside it. */
  buf: Uint8Array;
  part: MimePart;
  /** Human-readable location, e.g. `message "fwd.eml" › attachment "x.exe"`. */
  path: string;
  /** The part whose removal cleans the message (the outermost attached message for nested ones). */
  partId: string;
  depth: number;
  /** A message/rfc822 part the parser left closed (e.g. base64-encoded): decode, then walk it. */
  encodedMessage: boolean;
  /** A multipart without parts (its boundary never occurs): readers show its body as text. */
  unsplit: boolean;
}

/** Flattens the tree into leaves in document order; truncated and too-deep nodes become findings. */
function collectLeaves(
  buf: Uint8Array, part: MimePart, prefix: string, heldBy: string | null, isRoot: boolean, depth: number, maxDepth: number,
  out: Leaf[], run: Run,
): void {
  const partId = heldBy ?? part.id;
  if (part.truncated) run.unscanned(part.truncated, prefix + label(part, isRoot), partId);
  if (part.message) {
    const path = prefix + messageLabel(part);
    if (depth + 1 > maxDepth) run.unscanned("too-deep", path, partId);
    else collectLeaves(buf, part.message, path + SEP, partId, true, depth + 1, maxDepth, out, run);
    return;
  }
  if (part.children.length > 0) {
    for (const child of part.children) collectLeaves(buf, child, prefix, heldBy, false, depth, maxDepth, out, run);
    return;
  }
  const unsplit = part.contentType.startsWith("multipart/");
  const encodedMessage = !isRoot && isMessageType(part);
  out.push({ buf, part, path: prefix + (encodedMessage ? messageLabel(part) : label(part, isRoot)), partId, depth, encodedMessage, unsplit });
}

/**
 * Types whose body is a whole message: RFC 2046's and RFC 6532's, and those older software sends
 * (news, forwards). Readers that drop blanks inside the type also open "message/rfc 822".
 */
const MESSAGE_TYPES = new Set(["message/rfc822", "message/global", "message/news", "message/x-forwarded"]);

function isMessageType(part: MimePart): boolean {
  if (MESSAGE_TYPES.has(part.contentType)) return true;
  const raw = headerValue(part, "content-type");
  if (raw === undefined) return false;
  const semi = raw.indexOf(";");
  return MESSAGE_TYPES.has((semi === -1 ? raw : raw.slice(0, semi)).replace(/[\s\0]+/g, "").toLowerCase());
}

/** Encodings whose body is the bytes as written. */
const IDENTITY = new Set(["7bit", "8bit", "binary"]);

/** A part a browser renders as HTML, where data: URIs become objects. */
function isHtml(part: MimePart): boolean {
  return part.contentType === "text/html" || part.contentType === "application/xhtml+xml" ||
    part.contentType === "image/svg+xml" || /\.(x?html?|svg)$/i.test(part.filename ?? "");
}

function describeReading(r: Reading): string {
  const how = [r.bareCr ? "a lone CR ending header lines" : "", r.last ? "the last of repeated header fields" : ""].filter(Boolean);
  return `read with ${how.join(" and ")}`;
}

function label(part: MimePart, isRoot: boolean): string {
  if (part.filename) return `attachment "${part.filename}"`;
  return isRoot ? `body (${part.contentType})` : `part ${part.id} (${part.contentType})`;
}

function messageLabel(part: MimePart): string {
  return part.filename ? `message "${part.filename}"` : `message (part ${part.id})`;
}

function baseName(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

/**
 * The tree of a message (outer, or one found encoded or archived inside it) under the scan limits.
 * The parser never throws; its part cap is maxFiles, so "no cap" (Infinity) really has none, and
 * its nesting cap rises with maxRecursion (the one depth limit an administrator sets) but never
 * drops below the parser's own 16 levels: attached messages and archives are counted here, and a
 * low maxRecursion must not also cut the plain multipart structure of the message itself.
 */
function parseTree(raw: Uint8Array, limits: ScanLimits, reading?: Reading): MimePart {
  return parseMessage(raw, { maxParts: limits.maxFiles, maxDepth: Math.max(16, limits.maxRecursion + 1), reading });
}

const BEGIN = Buffer.from("begin");

/** Runs steps in order, staying synchronous while they are; stops when the run has stopped. */
function sequence(run: Run, steps: Array<() => void | Promise<void>>, from = 0): void | Promise<void> {
  for (let i = from; i < steps.length; i++) {
    if (run.stopped) return;
    const pending = steps[i]!();
    if (pending) return pending.then(() => sequence(run, steps, i + 1));
  }
}

/** What identifies a leaf's scan within one buffer: the same bytes decoded the same way give the same verdict. */
function leafKey(leaf: Leaf): string {
  const p = leaf.part;
  return `${p.bodyStart}:${p.bodyEnd}:${p.transferEncoding}:${p.contentType}:${p.filename ?? ""}:${leaf.encodedMessage}:${leaf.unsplit}`;
}

/** The state of one scan: findings, budgets and the deadline. One per message or file. */
class Run {
  readonly findings: Finding[] = [];
  bytesScanned = 0;
  objects = 0;
  /** Objects admitted so far (parts + archive members) against maxFiles. */
  private files = 0;
  /** Set once scanning must stop altogether (time-limit, too-many-files); reported once. */
  stopped: UnscannedReason | null = null;
  private engineFailed = false;
  private readonly deadline: number;
  private readonly engine: Engine;
  private readonly limits: ScanLimits;

  constructor(ctx: ScanContext) {
    this.engine = ctx.engine;
    this.limits = ctx.limits;
    this.deadline = performance.now() + ctx.limits.maxScanTime;
  }

  unscanned(reason: UnscannedReason, path: string, partId: string, detail?: string): void {
    this.findings.push({ verdict: detail ? { kind: "unscanned", reason, path, detail } : { kind: "unscanned", reason, path }, partId });
  }

  /**
   * A message tree as parsed, then under every other reading its parse found ambiguous (repeated
   * Content-* fields, lone CRs): different clients take different readings, so all are scanned and
   * the worst verdict wins. A finding only another reading shows cannot be cleaned by part (the
   * parts differ between readings), so it is held by the whole message (or the part holding it).
   * Leaves every reading shares are scanned once.
   */
  scanMessageTree(buf: Uint8Array, root: MimePart, prefix: string, heldBy: string | null, depth: number): void | Promise<void> {
    const readings = otherReadings(root);
    if (readings.length === 0) return this.scanTree(buf, root, prefix, heldBy, depth, null);
    const seen = new Set<string>();
    return sequence(this, [
      () => this.scanTree(buf, root, prefix, heldBy, depth, seen),
      ...readings.map((r) => () => this.scanTree(buf, parseTree(buf, this.limits, r), prefix + describeReading(r) + SEP, heldBy ?? "", depth, seen)),
    ]);
  }

  /** Every leaf of a (possibly nested) message tree, in document order; awaits only when something is async. */
  scanTree(buf: Uint8Array, root: MimePart, prefix: string, heldBy: string | null, depth: number, seen: Set<string> | null): void | Promise<void> {
    const leaves: Leaf[] = [];
    collectLeaves(buf, root, prefix, heldBy, true, depth, this.limits.maxRecursion, leaves, this);
    const todo = seen ? leaves.filter((leaf) => {
      const key = leafKey(leaf);
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    }) : leaves;
    return sequence(this, todo.map((leaf) => () => this.scanLeaf(leaf)));
  }

  /**
   * A big base64 body is decoded into memory this thread keeps for the next scan (decode-buffers.ts),
   * leased until every step of the leaf is done, since they all read the body or views of it. A lease
   * is the only holder of its buffer: a body decoded meanwhile (an attached message inside this one,
   * another scan at an await) gets another.
   */
  private scanLeaf(leaf: Leaf): void | Promise<void> {
    const { part } = leaf;
    if (part.transferEncoding !== "base64" || part.bodyEnd - part.bodyStart < REUSE_FROM) return this.scanLeafWith(leaf, null);
    const lease = leaseDecodeBuffer();
    let pending: void | Promise<void>;
    try {
      pending = this.scanLeafWith(leaf, lease);
    } catch (e) {
      lease.release();
      throw e;
    }
    if (!pending) lease.release();
    else return pending.finally(() => lease.release());
  }

  private scanLeafWith(leaf: Leaf, lease: DecodeLease | null): void | Promise<void> {
    let body: Uint8Array;
    try {
      // Never more than maxFileSize (and a byte) is decoded: a bigger part is too-large either way,
      // and a spooled message's 500 MB attachment must not become 375 MB of heap.
      body = decodePartBody(leaf.buf, leaf.part, this.limits.maxFileSize, lease?.alloc);
    } catch {
      this.unscanned("corrupt", leaf.path, leaf.partId);
      return;
    }
    const name = leaf.part.filename ?? "";
    const hidden = this.hiddenObjects(leaf, body);
    const main = () => this.scanItem(body, leaf.path, name, leaf.partId, leaf.depth, leaf.encodedMessage);
    return hidden.length === 0 ? main() : sequence(this, [main, ...hidden]);
  }

  /**
   * What a reader can take out of a leaf beyond its decoded body, each as a scan step: uuencoded
   * files (clients decode them from text and from unlabelled binary parts alike), base64 runs in
   * text (a multipart whose boundary never occurs is text to most readers, its parts still
   * readable), data: URIs in HTML, an encoded message's body as written (when it is a message
   * as it stands), and the parts an unsplit multipart's own delimiter lines give.
   */
  private hiddenObjects(leaf: Leaf, body: Uint8Array): Array<() => void | Promise<void>> {
    const { part, path, partId, depth } = leaf;
    const steps: Array<() => void | Promise<void>> = [];
    const add = (data: Uint8Array, where: string, name: string, asMessage = false) =>
      steps.push(() => this.scanItem(data, path + SEP + where, name, partId, depth, asMessage));
    const text = leaf.unsplit || part.contentType.startsWith("text/");
    const identity = IDENTITY.has(part.transferEncoding);
    if ((text || identity) && asBuffer(body).indexOf(BEGIN) >= 0) {
      for (const block of findUuencoded(body)) add(block.data, `uuencoded "${block.filename}"`, block.filename);
    }
    if (text) decodeBase64Runs(body).forEach((data, i) => add(data, `base64 block ${i + 1}`, ""));
    // Not only HTML: a reader that sniffs a text/plain body as HTML (some webmails do) opens them too.
    if (text || isHtml(part)) findDataUris(body).forEach((data, i) => add(data, `data: URI ${i + 1}`, ""));
    if (part.transferEncoding === "base64") {
      const encoded = leaf.buf.subarray(part.bodyStart, part.bodyEnd);
      if (hasUrlAlphabet(encoded)) add(decodeBase64(encoded, true, this.limits.maxFileSize), "decoded with the URL-safe alphabet", part.filename ?? "", leaf.encodedMessage);
    }
    if (leaf.encodedMessage && !identity) {
      const asWritten = leaf.buf.subarray(part.bodyStart, part.bodyEnd);
      if (looksLikeMessage(asWritten)) add(asWritten, "as written", "", true);
    }
    if (leaf.unsplit) {
      const guess = guessBoundary(body, part.params.boundary ?? "");
      if (guess !== null) {
        const children = splitWithBoundary(leaf.buf, part, guess, { maxParts: this.limits.maxFiles, maxDepth: Math.max(16, this.limits.maxRecursion + 1) });
        const split: MimePart = { ...part, children };
        if (children.length > 0) steps.push(() => this.scanTree(leaf.buf, split, `${path}${SEP}split at "--${guess}"${SEP}`, partId, depth, null));
      }
    }
    return steps;
  }

  /**
   * The raw message as a whole catches what decoders drop. It is bounded by the message size, so it
   * is not charged against the decoding budget, only refused when it alone exceeds maxScanSize.
   */
  scanRaw(raw: Uint8Array): void | Promise<void> {
    if (this.stopped === "time-limit") return;
    if (raw.length > this.limits.maxScanSize) {
      this.unscanned("too-large", "message", "", overLimit("maxScanSize", this.limits.maxScanSize));
      return;
    }
    if (this.timeUp("message", "")) return;
    const explained = (hit: Detection | null) => {
      if (!hit) return;
      // Already explained by a part finding: the raw hit is the same object seen through its encoding.
      if (this.findings.some((f) => f.verdict.kind === "infected" && f.verdict.name === hit.name)) return;
      this.findings.push({ verdict: { kind: "infected", name: hit.name, path: "message" }, partId: "", engine: this.engine.name });
    };
    return this.callEngine(raw, explained);
  }

  /**
   * One object: limits, engine, then (when the engine found nothing) its contents: archive members,
   * or the parts of a message that was encoded or archived (asMessage).
   */
  scanItem(data: Uint8Array, path: string, name: string, partId: string, depth: number, asMessage: boolean): void | Promise<void> {
    if (data.length === 0) return;
    if (!this.admit(path, partId)) return;
    if (data.length > this.limits.maxFileSize) {
      this.unscanned("too-large", path, partId, overLimit("maxFileSize", this.limits.maxFileSize));
      return;
    }
    if (this.bytesScanned + data.length > this.limits.maxScanSize) {
      // The message's budget is spent: nothing after this could be scanned either, so stop here.
      this.stop("too-large", path, partId, overLimit("maxScanSize", this.limits.maxScanSize));
      return;
    }
    return this.callEngine(data, (hit) => {
      if (hit) {
        this.findings.push({ verdict: { kind: "infected", name: hit.name, path }, partId, engine: this.engine.name });
        return;
      }
      if (asMessage) return this.scanInnerMessage(data, path, partId, depth);
      const kind = sniffArchive(data);
      if (kind) return this.scanArchive(kind, data, path, name, partId, depth);
    });
  }

  private scanInnerMessage(data: Uint8Array, path: string, partId: string, depth: number): void | Promise<void> {
    if (depth + 1 > this.limits.maxRecursion) {
      this.unscanned("too-deep", path, partId);
      return;
    }
    return this.scanMessageTree(data, parseTree(data, this.limits), path + SEP, partId, depth + 1);
  }

  /** Runs the engine; stays synchronous when the engine is. A failing engine becomes one error finding. */
  private callEngine(data: Uint8Array, then: (hit: Detection | null) => void | Promise<void>): void | Promise<void> {
    this.bytesScanned += data.length;
    this.objects++;
    let hit: Detection | null | Promise<Detection | null>;
    try {
      hit = this.engine.scan(data);
    } catch (err) {
      this.engineError(err);
      return then(null);
    }
    if (hit instanceof Promise) {
      return hit.then(then, (err) => {
        this.engineError(err);
        return then(null);
      });
    }
    return then(hit);
  }

  private async scanArchive(kind: ArchiveKind, data: Uint8Array, path: string, name: string, partId: string, depth: number): Promise<void> {
    if (depth + 1 > this.limits.maxRecursion) {
      this.unscanned("too-deep", path, partId);
      return;
    }
    // Inflation is capped by what is left of the message's budget too, so a storm of small archives
    // that each inflate to just under maxFileSize stops once maxScanSize bytes came out, not after.
    const left = () => this.limits.maxScanSize - this.bytesScanned;
    const members = readArchive(kind, data, name, { maxFileSize: this.limits.maxFileSize, budget: left });
    for await (const member of members) {
      if (!member.name && "unscanned" in member) {
        this.unscanned(member.unscanned, path, partId); // the archive as a whole
        continue;
      }
      const memberPath = path + SEP + (member.name || "(unnamed)");
      if ("unscanned" in member) {
        if (!this.admit(memberPath, partId)) return;
        if (left() < this.limits.maxFileSize && (member.unscanned === "too-large" || member.unscanned === "bomb")) {
          // the budget, not the member, ran out
          this.stop(member.unscanned, memberPath, partId, member.unscanned === "too-large" ? overLimit("maxScanSize", this.limits.maxScanSize) : undefined);
          return;
        }
        const detail = member.detail ?? (member.unscanned === "too-large" ? overLimit("maxFileSize", this.limits.maxFileSize) : undefined);
        this.unscanned(member.unscanned, memberPath, partId, detail);
      } else {
        const asMessage = /\.eml$/i.test(member.name) && looksLikeMessage(member.data);
        const pending = this.scanItem(member.data, memberPath, baseName(member.name), partId, depth + 1, asMessage);
        if (pending) await pending;
      }
      if (this.stopped) return; // leaving the loop closes the reader
    }
  }

  /** Counts one object against maxFiles and checks the clock; false means skip it (already reported). */
  private admit(path: string, partId: string): boolean {
    if (this.stopped) return false;
    if (this.timeUp(path, partId)) return false;
    if (this.files >= this.limits.maxFiles) {
      this.stop("too-many-files", path, partId);
      return false;
    }
    this.files++;
    return true;
  }

  private timeUp(path: string, partId: string): boolean {
    if (performance.now() < this.deadline) return false;
    this.stop("time-limit", path, partId);
    return true;
  }

  private stop(reason: UnscannedReason, path: string, partId: string, detail?: string): void {
    if (!this.stopped) this.unscanned(reason, path, partId, detail);
    this.stopped = reason;
  }

  private engineError(err: unknown): void {
    if (this.engineFailed) return; // a broken engine fails every object; one finding says it
    this.engineFailed = true;
    const detail = err instanceof Error ? err.message : String(err);
    this.findings.push({ verdict: { kind: "error", reason: `engine ${this.engine.name} failed: ${detail}` }, partId: "", engine: this.engine.name });
  }

  result(): ScanResult {
    const findings = [
      ...this.findings.filter((f) => f.verdict.kind === "infected"),
      ...this.findings.filter((f) => f.verdict.kind !== "infected"),
    ];
    let verdict: Verdict = { kind: "clean" };
    for (const f of findings) verdict = worse(verdict, f.verdict);
    return { verdict, findings, bytesScanned: this.bytesScanned, objects: this.objects };
  }
}
