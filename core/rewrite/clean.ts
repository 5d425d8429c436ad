// Cleaning: which parts to replace for a set of findings, and the edits that replace each by a
// text/plain notice. The part keeps its place and its other headers; its neighbours keep every byte.
import type { MimePart } from "../mime/types.ts";
import type { Finding } from "../scan/verdict.ts";
import { filenameParam } from "./headers.ts";
import { encodeNotice, noticeLines, transferEncodingField, type Detail, type NoticeItem, type NoticeText } from "./notice.ts";
import { textPlainType } from "./padding.ts";
import { bytes, concat, type Edit } from "./splice.ts";
import { describeFinding, detectionNames } from "./describe.ts";

export interface CleanTarget {
  part: MimePart;
  findings: Finding[];
}

/** Parts from the root down to the part with this id (the outer message/rfc822 part before its inner message); null when absent. */
export function pathTo(root: MimePart, id: string): MimePart[] | null {
  const walk = (p: MimePart, trail: MimePart[]): MimePart[] | null => {
    const here = [...trail, p];
    if (p.id === id) return here;
    for (const c of p.children) {
      if (c.id === id || id.startsWith(`${c.id}.`)) {
        const r = walk(c, here);
        if (r) return r;
      }
    }
    return p.message ? walk(p.message, here) : null;
  };
  return walk(root, []);
}

/**
 * The parts to replace so that no infected finding remains, or null when the message is not
 * cleanable: an infection in the root body (partId ""), a part the tree does not show (parsing
 * stopped early), or one inside a message/rfc822 at the root. A finding inside an attached
 * message replaces the whole attached message (the outermost message/rfc822 part on the path):
 * its inner structure is the sender's, and half a forwarded message is worse than a notice.
 */
export function cleanTargets(root: MimePart, findings: readonly Finding[]): CleanTarget[] | null {
  const infected = findings.filter((f) => f.verdict.kind === "infected");
  if (infected.length === 0 || root.message) return null;
  const targets = new Map<MimePart, Finding[]>();
  for (const f of infected) {
    if (f.partId === "") return null;
    const path = pathTo(root, f.partId);
    if (!path || path.length < 2) return null;
    const target = path.slice(1).find((p) => p.message !== undefined) ?? path[path.length - 1]!;
    let list = targets.get(target);
    if (!list) targets.set(target, (list = []));
    list.push(f);
  }
  // A target inside another goes away with it: outer parts sort first, then absorb what they contain.
  const sorted = [...targets].sort(([a], [b]) => a.start - b.start || b.bodyEnd - a.bodyEnd || a.depth - b.depth);
  const out: CleanTarget[] = [];
  for (const [part, fs] of sorted) {
    const last = out[out.length - 1];
    if (last && part.start < last.part.bodyEnd) last.findings.push(...fs);
    else out.push({ part, findings: fs });
  }
  return out;
}

/** Part headers dropped on replacement: they describe the removed content and would now lie. */
const DROPPED = new Set(["content-type", "content-transfer-encoding", "content-disposition", "content-description", "content-md5", "content-length"]);

export function noticeItem(t: CleanTarget): NoticeItem {
  return {
    filename: t.part.filename ?? null,
    contentType: t.part.contentType,
    partId: t.part.id,
    detections: t.findings.map(describeFinding),
    names: detectionNames(t.findings, t.findings[0]!.verdict),
  };
}

/**
 * The edit replacing one part by its notice (text, see partNotice): its kept header fields, then
 * Content-Type text/plain utf-8, an inline disposition named "<original>.removed.txt" (so the
 * client shows the notice where the attachment was and the name still says which file it was),
 * and the notice body. From detail "stripped" on, only the Content-Type is left. slack: see
 * textPlainType.
 */
export function replacePartEdit(raw: Uint8Array, t: CleanTarget, eol: string, text: NoticeText, detail: Detail, slack = 0): Edit {
  const { part } = t;
  const stripped = detail === "stripped" || detail === "stripped-unkept" || detail === "minimal-kept" || detail === "minimal";
  const chunks: Uint8Array[] = [];
  for (const f of stripped ? [] : part.headers) {
    if (DROPPED.has(f.name.toLowerCase())) continue;
    const field = raw.subarray(f.start, f.end);
    chunks.push(field);
    if (field[field.length - 1] !== 0x0a) chunks.push(bytes(eol));
  }
  const body = encodeNotice(noticeLines(text, detail), eol);
  const name = part.filename ? `${part.filename}.removed.txt` : "removed.txt";
  const disposition = stripped ? "" : `Content-Disposition: inline; ${filenameParam(name)}${eol}`;
  chunks.push(bytes(`${textPlainType(slack, eol)}${transferEncodingField(body, detail, eol)}${disposition}${eol}${body.body}`));
  return { start: part.start, end: part.bodyEnd, bytes: concat(chunks) };
}
