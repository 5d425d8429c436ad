// The parenthesized values of IMAP responses (BODYSTRUCTURE, ENVELOPE) as a tree that remembers where
// each node came from, so a value the proxy rewrites can keep the server's own text for every node it
// leaves alone; and the writing of IMAP strings (quoted when that is safe, a literal otherwise).

export type Sexp =
  | { t: "atom"; v: string; start: number; end: number }
  | { t: "string"; v: string; start: number; end: number }
  | { t: "list"; items: Sexp[]; start: number; end: number };

/** Thrown when a value is not well-formed; callers keep the server's value then. */
export class SexpError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SexpError";
  }
}

/**
 * Parses one value from text (latin1: one character per byte, literals inline as "{n}\r\n" and their
 * bytes). Nesting is bounded: a server's BODYSTRUCTURE is as deep as the message's MIME tree.
 */
export function parseSexp(text: string, maxDepth = 200): Sexp {
  let i = 0;
  const skipSpace = () => { while (text[i] === " ") i++; };
  const value = (depth: number): Sexp => {
    skipSpace();
    const start = i;
    const c = text[i];
    if (c === undefined) throw new SexpError("value ends early");
    if (c === "(") {
      if (depth >= maxDepth) throw new SexpError("value nested too deep");
      i++;
      const items: Sexp[] = [];
      for (;;) {
        skipSpace();
        if (text[i] === ")") { i++; return { t: "list", items, start, end: i }; }
        if (i >= text.length) throw new SexpError("unterminated list");
        items.push(value(depth + 1));
      }
    }
    if (c === '"') {
      let v = "";
      i++;
      for (;;) {
        const d = text[i];
        if (d === undefined) throw new SexpError("unterminated quoted string");
        if (d === "\\") { v += text[i + 1] ?? ""; i += 2; continue; }
        i++;
        if (d === '"') return { t: "string", v, start, end: i };
        v += d;
      }
    }
    const lit = /^~?\{(\d+)\+?\}\r\n/.exec(text.slice(i, i + 24));
    if (lit) {
      const from = i + lit[0].length;
      const to = from + Number(lit[1]);
      if (to > text.length) throw new SexpError("literal runs past the value");
      i = to;
      return { t: "string", v: text.slice(from, to), start, end: i };
    }
    while (i < text.length && text[i] !== " " && text[i] !== "(" && text[i] !== ")") i++;
    if (i === start) throw new SexpError(`unexpected ${JSON.stringify(c)}`);
    return { t: "atom", v: text.slice(start, i), start, end: i };
  };
  const v = value(0);
  skipSpace();
  if (i !== text.length) throw new SexpError("text after the value");
  return v;
}

/** A string as IMAP writes it: quoted when it holds only safe characters, else a literal (latin1 text). */
export function imapStringText(v: string): string {
  // CR, LF, NUL and 8-bit bytes cannot be quoted (RFC 3501 QUOTED-CHAR); a literal carries anything.
  if (/[\x00\r\n\x80-\xff]/.test(v)) return `{${v.length}}\r\n${v}`;
  return `"${v.replace(/[\\"]/g, "\\$&")}"`;
}

/** NIL for null, else imapStringText. */
export function nstringText(v: string | null | undefined): string {
  return v === null || v === undefined ? "NIL" : imapStringText(v);
}

/** A comparable form: atoms upper-cased, strings lower-cased (type, subtype, encoding and parameter names are case-insensitive). */
export function canonical(s: Sexp): string {
  switch (s.t) {
    case "atom": return s.v.toUpperCase();
    case "string": return JSON.stringify(s.v.toLowerCase());
    case "list": return `(${s.items.map(canonical).join(" ")})`;
  }
}
