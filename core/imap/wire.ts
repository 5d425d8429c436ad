// The IMAP wire layer (RFC 9051 §4, RFC 3501 §4): one direction of a connection as segments — a
// line up to CRLF, and when that line ends in a literal announcement, exactly the literal's bytes —
// plus the tokenizer and string quoting the session needs. It decides nothing about commands.
import { ByteReader, lineText, type ByteReaderOptions } from "../net/reader.ts";

export { ReadError, lineText, latin1Bytes } from "../net/reader.ts";

/** A literal announced at the end of a line: `{n}`, `{n+}` (LITERAL+), `{n-}` (LITERAL-), `~{n}` (literal8). */
export interface Literal {
  size: number;
  /** `{n}`: the sender waits for a "+" continuation before the bytes (client→server only). */
  sync: boolean;
  /** `~{n}`: may hold NUL (BINARY, UTF8 APPEND). */
  binary: boolean;
}

/** One line and the literal it announces, if any. text excludes CRLF but includes the announcement. */
export interface Segment {
  text: Uint8Array;
  literal: Literal | null;
}

const CLOSE_BRACE = 0x7d;
const OPEN_BRACE = 0x7b;
const TILDE = 0x7e;
// Largest literal size accepted in an announcement: 2^53 is exact in a double; any real literal is far smaller.
const MAX_DIGITS = 15;

/** The literal announced at the end of a line, or null. */
export function literalAtEnd(line: Uint8Array): Literal | null {
  const n = line.length;
  if (n < 3 || line[n - 1] !== CLOSE_BRACE) return null;
  let i = n - 2;
  let mark = 0;
  if (line[i] === 0x2b || line[i] === 0x2d) { mark = line[i]!; i--; }
  const end = i + 1;
  while (i >= 0 && line[i]! >= 0x30 && line[i]! <= 0x39) i--;
  const digits = end - (i + 1);
  if (digits === 0 || digits > MAX_DIGITS || i < 0 || line[i] !== OPEN_BRACE) return null;
  let size = 0;
  for (let k = i + 1; k < end; k++) size = size * 10 + (line[k]! - 0x30);
  return { size, sync: mark === 0, binary: i > 0 && line[i - 1] === TILDE };
}

/** ByteReader with IMAP's unit: a segment (line, then its literal is read separately). */
export class ImapReader extends ByteReader {
  constructor(opts: ByteReaderOptions = {}) {
    super(opts);
  }

  async readSegment(maxLine: number, timeoutMs = 0): Promise<Segment> {
    const text = await this.readLine(maxLine, timeoutMs);
    return { text, literal: literalAtEnd(text) };
  }
}

// ---- tokens -------------------------------------------------------------------------------------

export type Token =
  | { kind: "atom"; value: string }
  | { kind: "string"; value: Uint8Array }
  | { kind: "open" }
  | { kind: "close" };

/** Something that could not be parsed: the session answers BAD. */
export class SyntaxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ImapSyntaxError";
  }
}

/**
 * Tokenizes command arguments given as segments and their literals (literals[i] follows segment i).
 * Atoms keep brackets and their content together, so `BODY.PEEK[HEADER.FIELDS (From)]<0.10>` is one
 * atom; quoted strings are unescaped; literals become strings.
 */
export function tokenize(texts: string[], literals: Uint8Array[] = []): Token[] {
  const out: Token[] = [];
  texts.forEach((raw, seg) => {
    const lit = literals[seg];
    let text = raw;
    if (lit !== undefined) text = text.replace(/~?\{\d+[+-]?\}$/, "");
    let i = 0;
    while (i < text.length) {
      const c = text[i]!;
      if (c === " ") { i++; continue; }
      if (c === "(") { out.push({ kind: "open" }); i++; continue; }
      if (c === ")") { out.push({ kind: "close" }); i++; continue; }
      if (c === '"') {
        let v = "";
        i++;
        for (;;) {
          if (i >= text.length) throw new SyntaxError("unterminated quoted string");
          const d = text[i]!;
          if (d === "\\") { v += text[i + 1] ?? ""; i += 2; continue; }
          if (d === '"') { i++; break; }
          v += d;
          i++;
        }
        out.push({ kind: "string", value: Buffer.from(v, "latin1") });
        continue;
      }
      let j = i;
      let depth = 0;
      while (j < text.length) {
        const d = text[j]!;
        if (d === "[") depth++;
        else if (d === "]") depth = Math.max(0, depth - 1);
        else if (depth === 0 && (d === " " || d === "(" || d === ")")) break;
        j++;
      }
      out.push({ kind: "atom", value: text.slice(i, j) });
      i = j;
    }
    if (lit !== undefined) out.push({ kind: "string", value: lit });
  });
  return out;
}

/** An astring token's bytes (atom text or string); null for lists. */
export function astringBytes(t: Token | undefined): Uint8Array | null {
  if (!t) return null;
  if (t.kind === "atom") return Buffer.from(t.value, "latin1");
  if (t.kind === "string") return t.value;
  return null;
}

/** Text of an astring token, UTF-8 decoded (passwords and names may be non-ASCII). */
export function astringText(t: Token | undefined): string | null {
  const b = astringBytes(t);
  return b === null ? null : Buffer.from(b).toString("utf8");
}

// ---- writing strings ----------------------------------------------------------------------------

const QUOTABLE = /^[\x20-\x7e]*$/;

/**
 * An IMAP string for a command argument: quoted when every byte may be quoted, otherwise a literal;
 * `{n+}` when the server has LITERAL+, else a synchronizing `{n}` (the caller then waits for "+").
 */
export function imapString(value: Uint8Array, literalPlus: boolean): { text: string; literal: Uint8Array | null } {
  const s = Buffer.from(value).toString("latin1");
  if (QUOTABLE.test(s) && value.length < 1024) return { text: `"${s.replace(/[\\"]/g, "\\$&")}"`, literal: null };
  return { text: `{${value.length}${literalPlus ? "+" : ""}}`, literal: value };
}

/** A quoted string for a response (ASCII text we write ourselves). */
export function quoted(s: string): string {
  return `"${s.replace(/[\\"]/g, "\\$&").replace(/[\r\n]/g, " ")}"`;
}

/** The first segment's tag and command name, upper-cased ("UID FETCH" for UID commands). */
export function commandHead(text: string): { tag: string; verb: string; rest: string } | null {
  const m = /^([^\s(){%*"\\\]+]+) ([A-Za-z]+)(?: (.*))?$/s.exec(text);
  if (!m) return null;
  let verb = m[2]!.toUpperCase();
  let rest = m[3] ?? "";
  if (verb === "UID") {
    const n = /^([A-Za-z]+)(?: (.*))?$/s.exec(rest);
    if (!n) return null;
    verb = `UID ${n[1]!.toUpperCase()}`;
    rest = n[2] ?? "";
  }
  return { tag: m[1]!, verb, rest };
}

/** Text of a segment for parsing (latin1: byte for byte). */
export function segmentText(s: Segment): string {
  return lineText(s.text);
}
