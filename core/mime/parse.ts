// The byte-offset MIME tree: splits a message into parts by walking boundary lines with native
// Buffer.indexOf, decoding nothing. Every offset indexes the caller's buffer; limits stop parsing
// (marking the part truncated) instead of throwing, so hostile input costs bounded time.
import { asBuffer } from "./bytes.ts";
import { decodeEncodedWords, decodeWords, hasBareCr, headerLineEnd, parseHeaderBlock, parseParams } from "./headers.ts";
import type { HeaderField, MimePart, Reading } from "./types.ts";

export interface ParseOptions {
  /** Deepest part that may still have children or an inner message (root is 0). Default 16. */
  maxDepth?: number;
  /** Most multipart children in the whole tree. Default 10,000. */
  maxParts?: number;
  /**
   * How to read what readers disagree on. The default is the first occurrence of a repeated
   * Content-* field or parameter (RFC 2231 form before plain) and LF line ends; the root's
   * `ambiguities` says which other readings would give a different tree.
   */
  reading?: Reading;
}

const LF = 0x0a;
const CR = 0x0d;
const SP = 0x20;
const TAB = 0x09;
const DASH = 0x2d;
/** Parsing recurses once per nesting level; this keeps the JS stack safe whatever maxDepth says. */
const HARD_MAX_DEPTH = 2000;
const TYPE_RE = /^[a-z0-9!#$&^_.+-]+\/[a-z0-9!#$&^_.+-]+$/;

interface Ctx {
  buf: Buffer;
  maxDepth: number;
  maxParts: number;
  parts: number;
  last: boolean;
  bareCr: boolean;
  /** Repeated fields or parameters with different values were seen. */
  repeated: boolean;
  /** A header block held a CR without LF. */
  sawBareCr: boolean;
}

/** Parses a whole message. Never throws on malformed input. */
export function parseMessage(buf: Uint8Array, opts: ParseOptions = {}): MimePart {
  const b = asBuffer(buf);
  const ctx = newCtx(b, opts);
  const root = parseEntity(ctx, 0, b.length, "", 0, "text/plain");
  if (ctx.repeated || ctx.sawBareCr) root.ambiguities = { repeated: ctx.repeated, bareCr: ctx.sawBareCr };
  return root;
}

/**
 * The readings other than the default that give a different tree for this message (see
 * ParseOptions.reading), from the ambiguities its default parse found; empty for most mail.
 */
export function otherReadings(root: MimePart): Reading[] {
  const a = root.ambiguities;
  if (!a) return [];
  const out: Reading[] = [];
  if (a.repeated) out.push({ last: true });
  if (a.bareCr) out.push({ bareCr: true }, { bareCr: true, last: true });
  return out;
}

/**
 * A multipart body split with a boundary given by the caller rather than by its header: for a
 * multipart whose own boundary never occurs, with the one its delimiter lines suggest. Ids are
 * under parent.id; offsets index buf.
 */
export function splitWithBoundary(buf: Uint8Array, parent: MimePart, boundary: string, opts: ParseOptions = {}): MimePart[] {
  const b = asBuffer(buf);
  const ctx = newCtx(b, opts);
  const copy: MimePart = { ...parent, params: { ...parent.params, boundary }, children: [] };
  splitMultipart(ctx, copy);
  return copy.children;
}

function newCtx(buf: Buffer, opts: ParseOptions): Ctx {
  return {
    buf,
    maxDepth: Math.min(opts.maxDepth ?? 16, HARD_MAX_DEPTH),
    maxParts: opts.maxParts ?? 10_000,
    parts: 0,
    last: opts.reading?.last ?? false,
    bareCr: opts.reading?.bareCr ?? false,
    repeated: false,
    sawBareCr: false,
  };
}

/** Depth-first, parents before children; a message/rfc822 part is followed by its inner message. */
export function* walkParts(root: MimePart): Iterable<MimePart> {
  const stack: MimePart[] = [root];
  while (stack.length > 0) {
    const part = stack.pop()!;
    yield part;
    for (let i = part.children.length - 1; i >= 0; i--) stack.push(part.children[i]!);
    if (part.message) stack.push(part.message);
  }
}

/** The first field called name (case-insensitive). */
export function headerField(part: MimePart, name: string): HeaderField | undefined {
  const lower = name.toLowerCase();
  for (const h of part.headers) if (h.name.toLowerCase() === lower) return h;
  return undefined;
}

/** The unfolded raw value of the first field called name (case-insensitive). */
export function headerValue(part: MimePart, name: string): string | undefined {
  return headerField(part, name)?.value;
}

/** The Message-ID of a parsed message, trimmed; null when absent or empty. */
export function messageId(root: MimePart): string | null {
  return headerValue(root, "message-id")?.trim() || null;
}

/** A filename parameter as text: RFC 2231 values are decoded already; plain ones may hold RFC 2047 words or raw UTF-8. */
function fileParam(p: ReturnType<typeof parseParams>, name: string): string | undefined {
  const v = p.params[name];
  if (v === undefined) return undefined;
  return p.extended.has(name) ? decodeWords(v, false) : decodeEncodedWords(v);
}

/** Offset just past the blank line ending the header block at start, or end when there is none. */
function findHeaderEnd(view: Buffer, start: number, end: number, bareCr: boolean): number {
  let pos = start;
  while (pos < end) {
    const c = view[pos];
    if (c === LF) return pos + 1;
    if (c === CR) {
      if (view[pos + 1] === LF) return pos + 2;
      if (bareCr) return pos + 1;
    }
    if (bareCr) {
      pos = headerLineEnd(view, pos, true);
      continue;
    }
    const nl = view.indexOf(LF, pos);
    if (nl === -1) return end;
    pos = nl + 1;
  }
  return end;
}

/**
 * A Content-Transfer-Encoding value as readers act on it: RFC 822 comments ("base64 (fast)"),
 * quotes, NULs and blanks removed, lower-cased; base64 or quoted-printable anywhere in it wins,
 * else the first word counts.
 */
export function normalizeEncoding(raw: string): string {
  let v = raw.replace(/\0/g, "");
  for (let prev = ""; prev !== v; ) {
    prev = v;
    v = v.replace(/\([^()]*\)/g, " "); // innermost comments first, so nested ones go too
  }
  v = v.replace(/["\s]+/g, " ").trim().toLowerCase();
  // Readers that look for the name anywhere in the value (postal-mime does) decode "`base64" or
  // "7bit base64" too; decoding is the reading that can hide something, the bytes as written are
  // scanned whole anyway.
  if (v.includes("base64")) return "base64";
  if (v.includes("quoted-printable")) return "quoted-printable";
  const space = v.indexOf(" ");
  return (space === -1 ? v : v.slice(0, space)) || "7bit";
}


function parseEntity(ctx: Ctx, start: number, end: number, id: string, depth: number, defaultType: string): MimePart {
  const b = ctx.buf;
  // A view of exactly this entity, so no search runs past its end.
  const view = b.subarray(start, end);
  const headerEnd = start + findHeaderEnd(view, 0, view.length, ctx.bareCr);
  const headers = parseHeaderBlock(b, start, headerEnd, ctx.bareCr);
  if (!ctx.sawBareCr && hasBareCr(b, start, headerEnd)) ctx.sawBareCr = true;
  const part: MimePart = {
    id,
    start,
    headerEnd,
    bodyStart: headerEnd,
    bodyEnd: end,
    headers,
    contentType: defaultType,
    params: {},
    transferEncoding: "7bit",
    disposition: "",
    children: [],
    depth,
  };
  // A repeated field is read as its first occurrence, or its last in the other reading; a repeat
  // with another value makes the message ambiguous, so the scanner reads it both ways.
  let ctRaw: string | undefined, cteRaw: string | undefined, cdRaw: string | undefined;
  const last = ctx.last;
  for (const h of headers) {
    const n = h.name.toLowerCase();
    if (n === "content-type") {
      if (ctRaw !== undefined && ctRaw !== h.value) ctx.repeated = true;
      if (last || ctRaw === undefined) ctRaw = h.value;
    } else if (n === "content-transfer-encoding") {
      if (cteRaw !== undefined && normalizeEncoding(cteRaw) !== normalizeEncoding(h.value)) ctx.repeated = true;
      if (last || cteRaw === undefined) cteRaw = h.value;
    } else if (n === "content-disposition") {
      if (cdRaw !== undefined && cdRaw !== h.value) ctx.repeated = true;
      if (last || cdRaw === undefined) cdRaw = h.value;
    }
  }
  const ct = ctRaw === undefined ? undefined : parseParams(ctRaw, last);
  if (ct) {
    const type = ct.value.toLowerCase();
    // RFC 2045 §5.2: an unreadable type is text/plain; but a multipart with a bent subtype
    // ("multipart/m(xed") is still split by readers, as RFC 2046 §5.1.3 has unknown subtypes read as mixed.
    part.contentType = TYPE_RE.test(type) ? type : /^multipart\//.test(type) ? "multipart/mixed" : "text/plain";
    part.params = ct.params;
    if (ct.conflicting.has("boundary")) ctx.repeated = true;
  }
  if (cteRaw !== undefined) part.transferEncoding = normalizeEncoding(cteRaw);
  let filename: string | undefined;
  if (cdRaw !== undefined) {
    const cd = parseParams(cdRaw, last);
    part.disposition = cd.value.toLowerCase();
    filename = fileParam(cd, "filename");
  }
  filename ??= ct ? fileParam(ct, "name") : undefined;
  if (filename !== undefined) part.filename = filename;

  const isMultipart = part.contentType.startsWith("multipart/") && !!part.params.boundary;
  const isMessage =
    (part.contentType === "message/rfc822" || part.contentType === "message/global") &&
    // A base64 or QP wrapped message does not index this buffer; the pipeline decodes and parses it.
    (part.transferEncoding === "7bit" || part.transferEncoding === "8bit" || part.transferEncoding === "binary");
  if (!isMultipart && !isMessage) return part;
  if (depth >= ctx.maxDepth) {
    part.truncated = "too-deep";
    return part;
  }
  if (isMessage) {
    part.message = parseEntity(ctx, part.bodyStart, part.bodyEnd, id, depth + 1, "text/plain");
  } else {
    splitMultipart(ctx, part);
  }
  return part;
}

/** Length of the line break ending just before offset i in view (0, 1 for LF, 2 for CRLF), not crossing floor. */
function breakBefore(view: Buffer, i: number, floor: number): number {
  if (i - 1 < floor || view[i - 1] !== LF) return 0;
  return i - 2 >= floor && view[i - 2] === CR ? 2 : 1;
}

/**
 * RFC 2046 §5.1.1: a delimiter is "--boundary" at a line start, optionally "--" (close), optional
 * blanks, then the line end. The line break before it belongs to it, so a child body ends before
 * that break. An outer boundary closes inner parts because each child is parsed only inside its
 * own range. A missing close delimiter ends the last child at the end of the parent's body.
 */
function splitMultipart(ctx: Ctx, part: MimePart): void {
  const bound = part.params.boundary!;
  const delim = Buffer.from("--" + bound, /[^\x00-\xff]/.test(bound) ? "utf8" : "latin1");
  const base = part.bodyStart;
  const view = ctx.buf.subarray(base, part.bodyEnd);
  const len = view.length;
  let childStart = -1; // offset in view where the current child begins, -1 while in the preamble
  let pos = 0;
  while (pos < len) {
    const i = view.indexOf(delim, pos);
    if (i === -1) break;
    pos = i + 1;
    if (i > 0 && view[i - 1] !== LF) continue;
    let j = i + delim.length;
    const close = view[j] === DASH && view[j + 1] === DASH;
    if (close) j += 2;
    while (j < len && (view[j] === SP || view[j] === TAB)) j++;
    let lineEnd: number;
    if (j >= len) lineEnd = len;
    else if (view[j] === LF) lineEnd = j + 1;
    else if (view[j] === CR && (j + 1 >= len || view[j + 1] === LF)) lineEnd = Math.min(j + 2, len);
    else continue; // "--boundaryX…": a longer boundary or text, not ours
    if (childStart >= 0) {
      const cut = i - breakBefore(view, i, childStart);
      if (!addChild(ctx, part, base + childStart, base + cut)) return;
    }
    if (close) return; // the rest is epilogue
    childStart = lineEnd;
    pos = lineEnd;
  }
  if (childStart >= 0) addChild(ctx, part, base + childStart, base + len);
}

function addChild(ctx: Ctx, parent: MimePart, start: number, end: number): boolean {
  if (ctx.parts >= ctx.maxParts) {
    parent.truncated = "too-many-files";
    return false;
  }
  ctx.parts++;
  const n = parent.children.length + 1;
  const id = parent.id ? `${parent.id}.${n}` : String(n);
  const childType = parent.contentType === "multipart/digest" ? "message/rfc822" : "text/plain"; // RFC 2046 §5.1.5
  parent.children.push(parseEntity(ctx, start, end, id, parent.depth + 1, childType));
  return true;
}
