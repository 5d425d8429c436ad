// Body sections (RFC 3501 §6.4.5) cut from a message the proxy holds — its scanned, possibly cleaned
// copy — exactly as a server would cut them from its own: numbered parts, TEXT, HEADER, MIME,
// HEADER.FIELDS, and partial ranges clamped at the end.
import { parseMessage } from "../mime/parse.ts";
import type { MimePart } from "../mime/types.ts";

/** The bytes of section (upper-cased text between the brackets) of raw; null when the part does not exist. */
export function sectionBytes(raw: Uint8Array, section: string, tree: MimePart = parseMessage(raw)): Uint8Array | null {
  if (section === "") return raw;
  const m = /^((?:\d+\.)*\d+)?(?:\.?(TEXT|HEADER|MIME|HEADER\.FIELDS(?:\.NOT)? \((.*)\)))?$/s.exec(section);
  if (!m) return null;
  const [, numbers, what, fieldList] = m;
  let entity: MimePart = tree; // the message (or part) the rest of the section applies to
  if (numbers) {
    const part = findPart(tree, numbers.split(".").map(Number));
    if (!part) return null;
    if (!what) return partBody(raw, part);
    if (what === "MIME") return raw.subarray(part.start, part.headerEnd);
    if (!part.message) return null; // TEXT/HEADER of a part exist only for message/rfc822 parts
    entity = part.message;
  } else if (what === "MIME") return null;
  switch (what) {
    case "TEXT": return raw.subarray(entity.bodyStart, entity.bodyEnd);
    case "HEADER": return raw.subarray(entity.start, entity.headerEnd);
    default: return headerFields(raw, entity, fieldList ?? "", what!.includes(".NOT"));
  }
}

/** Applies <origin.length>: clamped at the end, empty beyond it. */
export function partialRange(bytes: Uint8Array, origin: number, length: number): Uint8Array {
  if (origin >= bytes.length) return bytes.subarray(0, 0);
  return bytes.subarray(origin, Number.isFinite(length) ? Math.min(bytes.length, origin + length) : bytes.length);
}

/**
 * Part n of an entity: children of a multipart; part 1 of a non-multipart is its body; the parts of a
 * message/rfc822 part are those of the message inside it.
 */
function findPart(root: MimePart, path: number[]): MimePart | null {
  let cur = root;
  for (let i = 0; i < path.length; i++) {
    const n = path[i]!;
    const entity = i === 0 ? root : (cur.message ?? cur);
    if (entity.contentType.startsWith("multipart/")) {
      const child = entity.children[n - 1];
      if (!child) return null;
      cur = child;
    } else if (n === 1 && (i === 0 || entity !== cur)) cur = entity; // a single-part message: part 1 is its body
    else return null;
  }
  return cur;
}

function partBody(raw: Uint8Array, part: MimePart): Uint8Array {
  // A message/rfc822 part's body is the whole inner message, header included.
  return raw.subarray(part.bodyStart, part.bodyEnd);
}

function headerFields(raw: Uint8Array, entity: MimePart, list: string, not: boolean): Uint8Array {
  const names = new Set(list.match(/"(?:[^"\\]|\\.)*"|[^\s"]+/g)?.map((n) => n.replace(/^"|"$/g, "").toLowerCase()) ?? []);
  const keep = entity.headers.filter((f) => names.has(f.name.toLowerCase()) !== not);
  const pieces = keep.map((f) => raw.subarray(f.start, f.end));
  const eol = new Uint8Array([0x0d, 0x0a]);
  let n = eol.length;
  for (const p of pieces) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of pieces) { out.set(p, at); at += p.length; }
  out.set(eol, at);
  return out;
}
