// Keeps the dependency direction of DESIGN.md: cli → service → pop3 | imap → net, tls, scan,
// rewrite, quarantine → mime, limits, log. Reads every import line under core/.
import { describe, expect, test } from "bun:test";
import { Glob } from "bun";
import { readFileSync } from "node:fs";
import { dirname, join, normalize, relative } from "node:path";

const root = join(import.meta.dir, "../..");

function importsOf(file: string): string[] {
  const src = readFileSync(join(root, file), "utf8");
  const out: string[] = [];
  for (const m of src.matchAll(/^\s*(?:import|export)\s[^;]*?from\s+["']([^"']+)["']|^\s*import\s+["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/gm)) {
    const spec = m[1] ?? m[2] ?? m[3]!;
    out.push(spec.startsWith(".") ? relative(root, normalize(join(dirname(join(root, file)), spec))) : spec);
  }
  return out;
}

const coreFiles = [...new Glob("core/**/*.ts").scanSync(root)];
const room = (path: string) => path.startsWith("core/") ? path.split("/")[1]!.replace(/\.ts$/, "") : path.split("/")[0]!;

/** Rooms each room may not import. */
const forbidden: Record<string, string[]> = {
  mime: ["scan", "rewrite", "quarantine", "net", "tls", "pop3", "imap", "service", "config", "cli"],
  scan: ["rewrite", "quarantine", "net", "tls", "pop3", "imap", "service", "cli"],
  rewrite: ["quarantine", "net", "tls", "pop3", "imap", "service", "cli"],
  quarantine: ["net", "tls", "pop3", "imap", "service", "cli"],
  pop3: ["imap", "service", "cli"],
  imap: ["pop3", "service", "cli"],
  net: ["pop3", "imap", "service", "cli"],
  tls: ["pop3", "imap", "service", "cli"],
  // The scan → action → quarantine step both protocols share: it must not know either of them.
  filter: ["net", "tls", "pop3", "imap", "service", "cli"],
  mbox: ["scan", "rewrite", "quarantine", "net", "tls", "pop3", "imap", "service", "cli"],
  config: ["scan", "rewrite", "quarantine", "net", "tls", "pop3", "imap", "service", "cli"],
  // Client set-up edits files; it learns the listeners from the config or the control socket.
  clients: ["mime", "scan", "rewrite", "quarantine", "filter", "net", "pop3", "imap", "service", "cli"],
  log: ["mime", "scan", "rewrite", "quarantine", "net", "tls", "pop3", "imap", "service", "config", "cli"],
  limits: ["mime", "scan", "rewrite", "quarantine", "net", "tls", "pop3", "imap", "service", "config", "cli"],
};
const noSockets = new Set(["mime", "scan", "rewrite", "quarantine", "filter", "mbox"]);

describe("layering", () => {
  test("there are core modules to check", () => expect(coreFiles.length).toBeGreaterThan(5));
  test("core rooms import only downward", () => {
    const violations: string[] = [];
    for (const f of coreFiles) {
      const r = room(f);
      for (const dep of importsOf(f)) {
        if (forbidden[r]?.includes(room(dep))) violations.push(`${f} imports ${dep}`);
        if (noSockets.has(r) && ["node:net", "node:tls", "net", "tls"].includes(dep)) violations.push(`${f} reaches for sockets (${dep})`);
      }
      if (noSockets.has(r) && /Bun\.(listen|connect)\(/.test(readFileSync(join(root, f), "utf8"))) violations.push(`${f} opens sockets`);
    }
    expect(violations).toEqual([]);
  });
});
