// Small helpers the client formats share: byte-exact text splices, the file's own line end, and
// whether a config file exists.
import { stat } from "node:fs/promises";

/** text with [from, to) replaced by insert. */
export function splice(text: string, from: number, to: number, insert: string): string {
  return text.slice(0, from) + insert + text.slice(to);
}

/** The line end a file uses: an edit that adds a line writes the same. */
export function eolOf(text: string): string {
  return text.includes("\r\n") ? "\r\n" : "\n";
}

export async function isFile(path: string): Promise<boolean> {
  return (await stat(path).catch(() => null))?.isFile() ?? false;
}
