// ENVELOPE (RFC 3501 §7.4.2) of a message the proxy holds, for an attached message/rfc822 part whose
// envelope the server's own structure does not give. Values stay raw, as servers send them: encoded
// words are not decoded, display names lose only their quotes; Sender and Reply-To default to From.
import { headerValue } from "../mime/parse.ts";
import type { MimePart } from "../mime/types.ts";
import { nstringText } from "./sexp.ts";

/** The envelope of entity (its header fields), as IMAP text. */
export function envelopeText(entity: MimePart): string {
  const field = (name: string): string | undefined => headerValue(entity, name)?.trim();
  const from = addressesText(field("from"));
  const fields = [
    nstringText(field("date") || null),
    nstringText(field("subject") ?? null),
    from,
    field("sender") ? addressesText(field("sender")) : from,
    field("reply-to") ? addressesText(field("reply-to")) : from,
    addressesText(field("to")),
    addressesText(field("cc")),
    addressesText(field("bcc")),
    nstringText(field("in-reply-to") || null),
    nstringText(field("message-id") || null),
  ];
  return `(${fields.join(" ")})`;
}

type Token = { k: "word"; v: string } | { k: "quoted"; v: string } | { k: "comment"; v: string } | { k: "special"; v: string };

/** RFC 5322 tokens: atoms (dots included), quoted strings, comments (nested), and the specials that shape an address list. */
function tokens(s: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < s.length) {
    const c = s[i]!;
    if (c === " " || c === "\t" || c === "\r" || c === "\n") { i++; continue; }
    if (c === '"') {
      let v = "";
      i++;
      while (i < s.length && s[i] !== '"') { if (s[i] === "\\") i++; v += s[i] ?? ""; i++; }
      i++;
      out.push({ k: "quoted", v });
      continue;
    }
    if (c === "(") {
      let depth = 0;
      let v = "";
      for (; i < s.length; i++) {
        const d = s[i]!;
        if (d === "\\") { v += s[++i] ?? ""; continue; }
        if (d === "(") { if (depth++ > 0) v += d; continue; }
        if (d === ")") { if (--depth === 0) { i++; break; } v += d; continue; }
        v += d;
      }
      out.push({ k: "comment", v });
      continue;
    }
    if ("<>@,;:".includes(c)) { out.push({ k: "special", v: c }); i++; continue; }
    let j = i;
    while (j < s.length && !' \t\r\n"(<>@,;:'.includes(s[j]!)) j++;
    out.push({ k: "word", v: s.slice(i, j) });
    i = j;
  }
  return out;
}

interface Address { name: string | null; mailbox: string | null; host: string | null }

/** An address list as IMAP text: NIL when absent or empty; groups as start and end markers. */
function addressesText(value: string | undefined): string {
  if (value === undefined) return "NIL";
  const list: Address[] = [];
  const ts = tokens(value);
  let phrase: string[] = [];
  let comment: string | null = null;
  let spec: Token[] = [];
  let inGroup = false;
  const flush = () => {
    if (spec.length || phrase.length) {
      const words = spec.length ? spec : []; // an addr-spec without angle brackets is in phrase
      const addr = words.length ? words : phrase.map((v) => ({ k: "word", v }) as Token);
      list.push({ ...splitSpec(addr), name: spec.length ? (phrase.join(" ") || comment) : comment });
    }
    phrase = []; spec = []; comment = null;
  };
  for (let i = 0; i < ts.length; i++) {
    const t = ts[i]!;
    if (t.k === "comment") { comment ??= t.v; continue; }
    if (t.k === "special" && t.v === "<") {
      const close = ts.findIndex((x, j) => j > i && x.k === "special" && x.v === ">");
      spec = ts.slice(i + 1, close < 0 ? ts.length : close).filter((x) => x.k !== "comment");
      // A source route (<@a,@b:user@host>) is dropped: clients ignore it and modern mail has none.
      const colon = spec.findIndex((x) => x.k === "special" && x.v === ":");
      if (colon >= 0) spec = spec.slice(colon + 1);
      if (!spec.length) spec = [{ k: "word", v: "" }];
      i = close < 0 ? ts.length : close;
      continue;
    }
    if (t.k === "special" && t.v === ":" && !inGroup && !spec.length) {
      list.push({ name: null, mailbox: phrase.join(" "), host: null });
      phrase = []; comment = null; inGroup = true;
      continue;
    }
    if (t.k === "special" && t.v === ";" && inGroup) {
      flush();
      list.push({ name: null, mailbox: null, host: null });
      inGroup = false;
      continue;
    }
    if (t.k === "special" && t.v === ",") { flush(); continue; }
    if (t.k === "special" && t.v === "@" && !spec.length) { phrase.push("@"); continue; }
    phrase.push(t.v);
  }
  flush();
  if (inGroup) list.push({ name: null, mailbox: null, host: null });
  if (!list.length) return "NIL";
  return `(${list.map((a) => `(${nstringText(a.name)} NIL ${nstringText(a.mailbox)} ${nstringText(a.host)})`).join("")})`;
}

/** local@domain from the tokens of an addr-spec. */
function splitSpec(ts: Token[]): { mailbox: string | null; host: string | null } {
  const text = ts.map((t) => t.v).join("");
  // What is missing is named, as Dovecot does: a client shows "MISSING_DOMAIN", not an empty host.
  const at = text.lastIndexOf("@");
  const mailbox = (at < 0 ? text : text.slice(0, at)) || "MISSING_MAILBOX";
  const host = (at < 0 ? "" : text.slice(at + 1)) || "MISSING_DOMAIN";
  return { mailbox, host };
}
