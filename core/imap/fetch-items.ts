// FETCH data items (RFC 3501 §6.4.5, §7.4.2) as the proxy sees them: what a client asks for and what a
// server answers, sorted by what they carry. Only items with body bytes need the scanned copy; header
// items, flags and sizes pass through as the server wrote them.

/**
 * whole: the complete message (BODY[], RFC822) · section: part of the body (numbered parts, TEXT, a
 * partial range) · header: header bytes only · structure: BODYSTRUCTURE / BODY · binary: BINARY and
 * other decoded-content items the proxy cannot serve from its copy · meta: everything else.
 */
export type ItemKind = "whole" | "section" | "header" | "structure" | "binary" | "meta";

export interface ItemName {
  /** Upper-cased name as written, e.g. "BODY.PEEK[1.2]<0.100>". */
  upper: string;
  kind: ItemKind;
  /** Upper-cased section text between the brackets ("" for BODY[]); null for items without one. */
  section: string | null;
  peek: boolean;
  /** Request: <origin.length>; response: <origin> with length NaN. */
  partial: { origin: number; length: number } | null;
}

const HEADER_SECTION = /(^|\.)(HEADER|HEADER\.FIELDS(\.NOT)? \(.*\)|MIME)$/;
// Items whose values quote message content in other forms than the bytes (RFC 8970 PREVIEW; Dovecot's
// SNIPPET): they would leak what a cleaned copy removed.
const CONTENT_ITEMS = new Set(["PREVIEW", "SNIPPET"]);

export function classifyItem(text: string): ItemName {
  const upper = text.toUpperCase();
  const m = /^(BODY|BODY\.PEEK|BINARY|BINARY\.PEEK|BINARY\.SIZE)\[(.*)\](?:<(\d+)(?:\.(\d+))?>)?$/s.exec(upper);
  if (m) {
    const [, base, section, origin, length] = m as unknown as [string, string, string, string | undefined, string | undefined];
    const partial = origin === undefined ? null : { origin: Number(origin), length: length === undefined ? NaN : Number(length) };
    const peek = base.endsWith(".PEEK");
    if (base.startsWith("BINARY")) return { upper, kind: "binary", section, peek, partial };
    let kind: ItemKind;
    if (section === "" && !partial) kind = "whole";
    else if (HEADER_SECTION.test(section)) kind = "header";
    else kind = "section";
    return { upper, kind, section, peek, partial };
  }
  switch (upper) {
    case "RFC822": return { upper, kind: "whole", section: "", peek: false, partial: null };
    case "RFC822.PEEK": return { upper, kind: "whole", section: "", peek: true, partial: null };
    case "RFC822.TEXT": return { upper, kind: "section", section: "TEXT", peek: false, partial: null };
    case "RFC822.HEADER": return { upper, kind: "header", section: "HEADER", peek: true, partial: null };
    case "BODYSTRUCTURE":
    case "BODY": return { upper, kind: "structure", section: null, peek: true, partial: null };
  }
  const base = upper.replace(/[[< ].*$/s, ""); // "PREVIEW (LAZY)" is PREVIEW
  if (CONTENT_ITEMS.has(base)) return { upper, kind: "binary", section: null, peek: true, partial: null };
  return { upper, kind: "meta", section: null, peek: true, partial: null };
}

const MACROS: Record<string, string[]> = {
  ALL: ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"],
  FAST: ["FLAGS", "INTERNALDATE", "RFC822.SIZE"],
  FULL: ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"],
};

export interface FetchRequest {
  uid: boolean;
  /** The sequence set as written. */
  set: string;
  /** Items as written (macros expanded only in `names`). */
  itemsText: string;
  names: ItemName[];
  /** What follows the items (modifiers such as "(CHANGEDSINCE 12 VANISHED)"), with its leading space. */
  modifiers: string;
}

/** Parses the arguments of FETCH / UID FETCH (no literals); null when they do not parse. */
export function parseFetch(args: string, uid: boolean): FetchRequest | null {
  const m = /^([0-9:*,$]+) (.*)$/s.exec(args);
  if (!m) return null;
  const set = m[1]!;
  const rest = m[2]!;
  let itemsText: string;
  let after: string;
  if (rest.startsWith("(")) {
    const close = matchingParen(rest, 0);
    if (close < 0) return null;
    itemsText = rest.slice(0, close + 1);
    after = rest.slice(close + 1);
  } else {
    const end = atomEnd(rest, 0);
    itemsText = rest.slice(0, end);
    after = rest.slice(end);
  }
  if (after !== "" && !after.startsWith(" ")) return null;
  const inner = itemsText.startsWith("(") ? itemsText.slice(1, -1) : itemsText;
  const words = splitItems(inner);
  if (words === null || words.length === 0) return null;
  const names: ItemName[] = [];
  for (const w of words) {
    const macro = MACROS[w.toUpperCase()];
    if (macro && !itemsText.startsWith("(")) names.push(...macro.map(classifyItem));
    else names.push(classifyItem(w));
  }
  return { uid, set, itemsText, names, modifiers: after };
}

/** Index of the ")" matching the "(" at open, skipping bracketed sections and quoted strings; -1 if none. */
export function matchingParen(s: string, open: number): number {
  let depth = 0;
  let bracket = 0;
  for (let i = open; i < s.length; i++) {
    const c = s[i];
    if (c === '"') {
      for (i++; i < s.length && s[i] !== '"'; i++) if (s[i] === "\\") i++;
      continue;
    }
    if (c === "[") bracket++;
    else if (c === "]") bracket--;
    else if (bracket === 0 && c === "(") depth++;
    else if (bracket === 0 && c === ")" && --depth === 0) return i;
  }
  return -1;
}

/** End of an atom that may hold a bracketed section and a <partial>. */
function atomEnd(s: string, from: number): number {
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

function splitItems(s: string): string[] | null {
  const out: string[] = [];
  let i = 0;
  let last = 0;
  while (i < s.length) {
    if (s[i] === " ") { i++; continue; }
    // A list after an item holds that item's modifiers (RFC 8970 "PREVIEW (LAZY)"): one item, not a parse failure.
    if (s[i] === "(" && out.length > 0) {
      const close = matchingParen(s, i);
      if (close < 0) return null;
      out[out.length - 1] = s.slice(last, close + 1);
      i = close + 1;
      continue;
    }
    last = i;
    const end = atomEnd(s, i);
    if (end === i) return null;
    out.push(s.slice(i, end));
    i = end;
  }
  return out;
}

/** A sequence set naming exactly one number (no range, no "*"): the common "UID FETCH 1234 (...)". */
export function singleNumber(set: string): number | null {
  return /^\d+$/.test(set) ? Number(set) : null;
}
