// BODYSTRUCTURE and BODY (RFC 3501 §7.4.2) of the copy the proxy serves, so a client that reads the
// structure of a cleaned message sees the notice part it will get, with the notice's type and size.
// Every node that describes the copy as the server's own answer does (the parts cleaning left alone)
// keeps the server's text byte for byte; only the nodes that differ are written here, in the form
// Dovecot writes (raw type and parameter case, charset us-ascii for text without one, an empty text
// part for a multipart without parts). Envelopes of attached messages come from the server too.
import { headerValue } from "../mime/parse.ts";
import type { MimePart } from "../mime/types.ts";
import { envelopeText } from "./envelope.ts";
import { canonical, nstringText, parseSexp, type Sexp } from "./sexp.ts";

/**
 * The structure of copy (tree: parseMessage(copy)) as BODYSTRUCTURE (extended) or BODY, reusing the
 * server's value (its text, literals inline) wherever it still fits. null when the server's value
 * cannot be read: the caller then keeps it, which is what the server said.
 */
export function structureText(copy: Uint8Array, tree: MimePart, serverValue: string, extended: boolean): string | null {
  let server: Sexp;
  try {
    server = parseSexp(serverValue);
  } catch {
    return null;
  }
  const b = new Writer(Buffer.from(copy.buffer, copy.byteOffset, copy.byteLength), serverValue, extended);
  return b.node(tree, server, "text/plain");
}

class Writer {
  constructor(private readonly copy: Buffer, private readonly serverText: string, private readonly ext: boolean) {}

  node(part: MimePart, server: Sexp | undefined, defaultType: string): string {
    const out = part.contentType.startsWith("multipart/") ? this.multipart(part, server) : this.single(part, server, defaultType);
    return server && sameValue(out, server) ? this.source(server) : out;
  }

  private source(s: Sexp): string {
    return this.serverText.slice(s.start, s.end);
  }

  private multipart(part: MimePart, server: Sexp | undefined): string {
    const sItems = server?.t === "list" ? server.items : [];
    const firstTail = sItems.findIndex((x) => x.t !== "list");
    const sKids = firstTail < 0 ? [] : sItems.slice(0, firstTail);
    // A digest's parts are messages unless they say otherwise (RFC 2046 §5.1.5).
    const kidDefault = part.contentType === "multipart/digest" ? "message/rfc822" : "text/plain";
    const kids = part.children.length
      ? part.children.map((c, i) => this.node(c, sKids[i], kidDefault))
      : [this.emptyText()]; // no boundary found: one empty text part, as Dovecot answers
    const ct = contentType(part);
    const tail = [nstringText(ct.subtype)];
    if (this.ext) tail.push(paramsText(ct.params), ...this.extension(part));
    let tailText = tail.join(" ");
    if (firstTail >= 0 && server?.t === "list") {
      const serverTail = sItems.slice(firstTail);
      if (sameValue(`(${tailText})`, { t: "list", items: serverTail, start: 0, end: 0 })) {
        tailText = this.serverText.slice(serverTail[0]!.start, server.end - 1);
      }
    }
    return `(${kids.join("")} ${tailText})`;
  }

  private single(part: MimePart, server: Sexp | undefined, defaultType: string): string {
    const ct = contentType(part, defaultType);
    const body = this.copy.subarray(part.bodyStart, part.bodyEnd);
    const fields = [
      nstringText(ct.type),
      nstringText(ct.subtype),
      paramsText(ct.params),
      nstringText(rawHeader(part, "content-id")),
      nstringText(rawHeader(part, "content-description")),
      nstringText(rawHeader(part, "content-transfer-encoding") ?? "7bit"),
      String(body.length),
    ];
    const type = ct.type.toLowerCase();
    const subtype = ct.subtype.toLowerCase();
    if (type === "message" && subtype === "rfc822" && part.message) {
      const sItems = server?.t === "list" ? server.items : [];
      const serverIsMessage = sItems[0]?.t === "string" && sItems[0].v.toLowerCase() === "message" && sItems[1]?.t === "string" && sItems[1].v.toLowerCase() === "rfc822";
      const env = serverIsMessage && sItems[7] ? this.source(sItems[7]) : envelopeText(part.message);
      fields.push(env, this.node(part.message, serverIsMessage ? sItems[8] : undefined, "text/plain"), String(countLf(body)));
    } else if (type === "text") fields.push(String(countLf(body)));
    if (this.ext) fields.push(nstringText(rawHeader(part, "content-md5")), ...this.extension(part));
    return `(${fields.join(" ")})`;
  }

  /** disposition, language, location (the md5 of a single part comes before them). */
  private extension(part: MimePart): string[] {
    const disp = rawHeader(part, "content-disposition");
    let dispText = "NIL";
    if (disp !== undefined) {
      const d = splitParams(disp);
      dispText = `(${nstringText(d.value)} ${paramsText(d.params)})`;
    }
    const lang = rawHeader(part, "content-language");
    const langs = lang?.split(/[\s,]+/).filter(Boolean) ?? [];
    const langText = langs.length ? `(${langs.map(nstringText).join(" ")})` : "NIL";
    return [dispText, langText, nstringText(rawHeader(part, "content-location"))];
  }

  private emptyText(): string {
    const base = `("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0`;
    return this.ext ? `${base} NIL NIL NIL NIL)` : `${base})`;
  }
}

/** Whether a value we wrote says the same as the server's node (case aside where IMAP ignores it). */
function sameValue(ours: string, server: Sexp): boolean {
  try {
    return canonical(parseSexp(ours)) === canonical(server);
  } catch {
    return false;
  }
}

/** The first field called name, unfolded and trimmed; undefined when absent. */
function rawHeader(part: MimePart, name: string): string | undefined {
  return headerValue(part, name)?.trim();
}

interface RawContentType { type: string; subtype: string; params: [string, string][] }

/** Content-Type as written (case kept); the parent's default when the field is absent. */
function contentType(part: MimePart, defaultType = "text/plain"): RawContentType {
  const raw = rawHeader(part, "content-type");
  const { value, params } = raw === undefined ? { value: defaultType, params: [] as [string, string][] } : splitParams(raw);
  const slash = value.indexOf("/");
  const type = (slash < 0 ? value : value.slice(0, slash)).trim();
  const subtype = slash < 0 ? "" : value.slice(slash + 1).trim();
  // Text without a charset is us-ascii (RFC 2045 §5.2); servers say so in the structure.
  if (type.toLowerCase() === "text" && !params.some(([n]) => n.toLowerCase() === "charset")) params.push(["charset", "us-ascii"]);
  return { type, subtype, params };
}

/**
 * `value; a=1; b="two"` with names and values as written (quotes and escapes removed). RFC 2231
 * continuations (name*0, name*1*) are joined after the plain parameters, still encoded, under
 * "name" or, when a piece is encoded, "name*" — the form Dovecot gives.
 */
function splitParams(field: string): { value: string; params: [string, string][] } {
  const pieces: string[] = [];
  let cur = "";
  let quoted = false;
  for (let i = 0; i < field.length; i++) {
    const c = field[i]!;
    if (quoted) {
      if (c === "\\" && i + 1 < field.length) { cur += c + field[++i]; continue; }
      if (c === '"') quoted = false;
      cur += c;
      continue;
    }
    if (c === '"') quoted = true;
    if (c === ";") { pieces.push(cur); cur = ""; continue; }
    cur += c;
  }
  pieces.push(cur);
  const params: [string, string][] = [];
  const continued = new Map<string, { index: number; encoded: boolean; value: string }[]>();
  for (const piece of pieces.slice(1)) {
    const eq = piece.indexOf("=");
    if (eq < 0) continue;
    const name = piece.slice(0, eq).trim();
    let value = piece.slice(eq + 1).trim();
    if (!name) continue;
    if (value.startsWith('"')) value = value.slice(1, value.endsWith('"') && value.length > 1 ? -1 : undefined).replace(/\\(.)/g, "$1");
    const m = /^(.+)\*(\d+)(\*)?$/.exec(name);
    if (!m) { params.push([name, value]); continue; }
    const list = continued.get(m[1]!) ?? [];
    list.push({ index: Number(m[2]), encoded: m[3] === "*", value });
    continued.set(m[1]!, list);
  }
  for (const [name, list] of continued) {
    list.sort((a, b) => a.index - b.index);
    params.push([list.some((p) => p.encoded) ? `${name}*` : name, list.map((p) => p.value).join("")]);
  }
  return { value: pieces[0]!.trim(), params };
}

function paramsText(params: [string, string][]): string {
  if (!params.length) return "NIL";
  return `(${params.map(([n, v]) => `${nstringText(n)} ${nstringText(v)}`).join(" ")})`;
}

function countLf(b: Uint8Array): number {
  let n = 0;
  let at = -1;
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  while ((at = buf.indexOf(0x0a, at + 1)) !== -1) n++;
  return n;
}
