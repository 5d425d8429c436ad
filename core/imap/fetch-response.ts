// An untagged FETCH response ("* 12 FETCH (UID 5 BODY[] {1234}<bytes> FLAGS (\Seen))") taken apart
// into its items while its segments arrive, so the relay can replace one item's value (a body from
// the scanned copy, a BODYSTRUCTURE of it) and write everything else exactly as the server sent it,
// in the server's order. Literals nested in lists (ENVELOPE, BODYSTRUCTURE) stay inside their item.
import { classifyItem, type ItemName } from "./fetch-items.ts";
import { latin1Bytes } from "./wire.ts";

export interface FetchItem {
  /** The item's name as the server wrote it, e.g. "BODY[]<0>". */
  name: string;
  info: ItemName;
  /** The value exactly as received: text, and for literals "{n}\r\n" followed by the bytes. */
  value: (string | Uint8Array)[];
  /** The value when it is one top-level literal (body items). */
  literal: Uint8Array | null;
  /** Set by the relay: what to write instead of value (a whole "NAME VALUE" replacement), or null to drop the item. */
  replacement?: Uint8Array[] | null;
  /** Already written to the client (streamed). */
  written?: boolean;
}

/** What the parser needs next after a segment that announced a literal. */
export interface PendingLiteral {
  size: number;
  /** The literal is the whole value of a top-level item (a body item), not nested in a list. */
  topLevel: boolean;
  item: FetchItem;
}

/** A FETCH response the parser cannot follow (the session ends: guessing would desynchronise). */
export class FetchSyntaxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "FetchSyntaxError";
  }
}

const HEAD = /^\* (\d+) FETCH \(/i;

export function isFetchResponse(text: string): boolean {
  return HEAD.test(text);
}

type State = "name" | "value" | "list" | "literal" | "end";

export class FetchResponse {
  readonly seq: number;
  readonly head: string;
  readonly items: FetchItem[] = [];
  private state: State = "name";
  private cur: FetchItem | null = null;
  private depth = 0;
  private pending: PendingLiteral | null = null;

  constructor(firstText: string) {
    const m = HEAD.exec(firstText);
    if (!m) throw new FetchSyntaxError("not a FETCH response");
    this.seq = Number(m[1]);
    this.head = m[0];
    this.scan(firstText.slice(m[0].length));
  }

  get complete(): boolean { return this.state === "end"; }
  get literalNeeded(): PendingLiteral | null { return this.pending; }

  /** UID and RFC822.SIZE when present. */
  number(name: "UID" | "RFC822.SIZE"): number | null {
    const it = this.items.find((i) => i.info.upper === name);
    const v = it?.value[0];
    return typeof v === "string" && /^\d+$/.test(v) ? Number(v) : null;
  }

  /** Feeds the literal announced by the last segment. */
  feedLiteral(bytes: Uint8Array): void {
    const p = this.pending;
    if (!p) throw new FetchSyntaxError("literal without announcement");
    if (bytes.length !== p.size) throw new FetchSyntaxError("literal size mismatch");
    this.pending = null;
    p.item.value.push(bytes);
    if (p.topLevel) {
      p.item.literal = bytes;
      this.finishItem();
    } else this.state = "list";
  }

  /** The literal was streamed to the client instead of fed: the item is complete and written. */
  literalStreamed(): void {
    const p = this.pending;
    if (!p || !p.topLevel) throw new FetchSyntaxError("no top-level literal to stream");
    this.pending = null;
    p.item.written = true;
    this.finishItem();
  }

  /** Feeds the text of the next segment (after a literal). */
  feedText(text: string): void {
    if (this.pending) throw new FetchSyntaxError("text while a literal is due");
    this.scan(text);
  }

  /** The bytes of items not yet written, from the head on (head only when nothing was written yet). */
  serialize(opts: { from?: number; head?: boolean; tail?: boolean } = {}): Uint8Array[] {
    const out: Uint8Array[] = [];
    let text = opts.head ?? true ? this.head : "";
    let first = opts.head ?? true;
    const flushText = () => { if (text) { out.push(latin1Bytes(text)); text = ""; } };
    for (let i = opts.from ?? 0; i < this.items.length; i++) {
      const it = this.items[i]!;
      if (it.written) { first = false; continue; }
      if (it.replacement === null) continue;
      if (!first) text += " ";
      first = false;
      if (it.replacement) { flushText(); out.push(...it.replacement); continue; }
      text += `${it.name} `;
      for (const v of it.value) {
        if (typeof v === "string") text += v;
        else { flushText(); out.push(v); }
      }
    }
    if (opts.tail ?? true) text += ")\r\n";
    flushText();
    return out;
  }

  private finishItem(): void {
    this.cur = null;
    this.state = "name";
  }

  private scan(text: string): void {
    let i = 0;
    const n = text.length;
    while (i < n) {
      const c = text[i]!;
      switch (this.state) {
        case "end":
          throw new FetchSyntaxError("text after the end of a FETCH response");
        case "name": {
          if (c === " ") { i++; continue; }
          if (c === ")") { this.state = "end"; i++; continue; }
          const end = nameEnd(text, i);
          if (end === i || text[end] !== " ") throw new FetchSyntaxError(`bad FETCH item at ${JSON.stringify(text.slice(i, i + 40))}`);
          const name = text.slice(i, end);
          this.cur = { name, info: classifyItem(name), value: [], literal: null };
          this.items.push(this.cur);
          this.state = "value";
          i = end + 1;
          continue;
        }
        case "value": {
          const item = this.cur!;
          if (c === "(") { this.state = "list"; this.depth = 0; continue; }
          const size = announced(text.slice(i));
          if (size !== null) {
            item.value.push(`${text.slice(i)}\r\n`);
            this.pending = { size, topLevel: true, item };
            this.state = "literal";
            return;
          }
          if (c === '"') {
            const end = quotedEnd(text, i);
            item.value.push(text.slice(i, end));
            i = end;
          } else {
            let j = i;
            while (j < n && text[j] !== " " && text[j] !== ")") j++;
            item.value.push(text.slice(i, j));
            i = j;
          }
          this.finishItem();
          continue;
        }
        case "list": {
          const item = this.cur!;
          const start = i;
          while (i < n) {
            const d = text[i]!;
            if (d === '"') { i = quotedEnd(text, i); continue; }
            if (d === "(") this.depth++;
            else if (d === ")") {
              this.depth--;
              if (this.depth === 0) { i++; break; }
            } else if (d === "{" || d === "~") {
              const size = announced(text.slice(i));
              if (size !== null) {
                item.value.push(`${text.slice(start)}\r\n`);
                this.pending = { size, topLevel: false, item };
                this.state = "literal";
                return;
              }
            }
            i++;
          }
          item.value.push(text.slice(start, i));
          if (this.depth === 0) this.finishItem();
          continue;
        }
        case "literal":
          throw new FetchSyntaxError("text while a literal is due");
      }
    }
    if (this.state === "value") throw new FetchSyntaxError("FETCH item without a value");
    // The reader takes a line ending in an announcement as one ("x{5}" too): bytes it holds back as a literal must not be read as the next line here.
    if (text.endsWith("}") && /\{\d{1,15}[+-]?\}$/.test(text.slice(-20))) throw new FetchSyntaxError("literal announced where no value can take one");
  }
}

/** End of an item name: an atom that may hold a bracketed section (with spaces and parens) and <origin>. */
function nameEnd(s: string, from: number): number {
  let bracket = 0;
  let i = from;
  for (; i < s.length; i++) {
    const c = s[i];
    if (c === "[") bracket++;
    else if (c === "]") bracket--;
    else if (bracket === 0 && (c === " " || c === "(" || c === ")")) break;
  }
  return i;
}

/**
 * The size of the literal that rest announces (all of rest: the announcement ends its line), or null.
 * Read as the wire reader reads it (literalAtEnd): what one waits for, the other must wait for too.
 */
function announced(rest: string): number | null {
  const m = /^~?\{(\d+)[+-]?\}$/.exec(rest);
  if (!m) return null;
  // The reader takes no literal of more than 15 digits: a response announcing one cannot be followed.
  if (m[1]!.length > 15) throw new FetchSyntaxError("literal announcement too large");
  return Number(m[1]);
}

function quotedEnd(s: string, open: number): number {
  let i = open + 1;
  while (i < s.length) {
    if (s[i] === "\\") { i += 2; continue; }
    if (s[i] === '"') return i + 1;
    i++;
  }
  throw new FetchSyntaxError("unterminated quoted string in FETCH response");
}

/** "NAME {n}\r\n<bytes>" for a replacement body item. */
export function literalItem(name: string, bytes: Uint8Array): Uint8Array[] {
  return [latin1Bytes(`${name} {${bytes.length}}\r\n`), bytes];
}

/** "NAME VALUE" for a replacement with a textual value (BODYSTRUCTURE), literals inside already in text. */
export function textItem(name: string, value: string): Uint8Array[] {
  return [latin1Bytes(`${name} ${value}`)];
}
