// `mailsentry quarantine list|show|export|restore|delete|purge`: the originals the proxy kept, for
// the people whose mail they are. export writes the original exactly as received (never over a
// file); restore delivers it into an mbox (appended, mboxrd-quoted) or a maildir (tmp, then new).
import { defineCommand } from "citty";
import { link, open, stat, unlink, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { loadConfig, quarantineDir } from "../../core/config/index.ts";
import { defaultFromLine, quoteMboxrd } from "../../core/mbox/writer.ts";
import { QuarantineError, QuarantineStore, type QuarantineEntry } from "../../core/quarantine/store.ts";
import { describeVerdict } from "../../core/scan/verdict.ts";
import { findingsJson, formatBytes, UsageError } from "../report.ts";

const configArg = { config: { type: "string", description: "Config file (default $XDG_CONFIG_HOME/mailsentry/config.json)", valueHint: "file" } } as const;
const print = (s: string) => process.stdout.write(`${s}\n`);

async function store(config?: string): Promise<QuarantineStore> {
  const { config: c } = await loadConfig({ file: config });
  return new QuarantineStore(quarantineDir(c.quarantineDir));
}

/** The entry and its bytes, or a clear error (exit 2) naming the id. */
async function entryOf(q: QuarantineStore, id: string | undefined) {
  if (!id) throw new UsageError("missing ID (see `mailsentry quarantine list`)");
  try {
    const got = await q.get(id);
    if (!got) throw new UsageError(`no quarantine entry ${id} in ${q.dir}`);
    return got;
  } catch (e) {
    if (e instanceof QuarantineError) throw new UsageError(e.message);
    throw e;
  }
}

function entryJson(e: QuarantineEntry) {
  const { findings, path: _p, ...rest } = e;
  return { ...rest, detail: describeVerdict(e.verdict), ...(findings ? { findings: findingsJson(findings) } : {}) };
}

const list = defineCommand({
  meta: { name: "list", description: "The quarantined messages, newest first: id, time, verdict, from, subject, size, source" },
  args: { ...configArg, json: { type: "boolean", description: "Print JSON" } },
  async run({ args }) {
    const q = await store(args.config);
    const entries = (await q.list()).reverse();
    if (args.json) { print(JSON.stringify(entries.map(entryJson), null, 2)); return; }
    if (entries.length === 0) { print(`the quarantine is empty (${q.dir})`); return; }
    for (const e of entries) {
      print(`${e.id}  ${e.time.replace("T", " ").replace(/\.\d+Z$/, "Z")}  ${describeVerdict(e.verdict)}`);
      print(`    from ${e.from ?? "(none)"}, subject ${e.subject ?? "(none)"}, ${formatBytes(e.size)}, via ${e.source}`);
    }
    print(`${entries.length} message${entries.length === 1 ? "" : "s"}, ${formatBytes(entries.reduce((n, e) => n + e.size, 0))} in ${q.dir}`);
  },
});

const show = defineCommand({
  meta: { name: "show", description: "One entry: its metadata and what the scan found" },
  args: { ...configArg, id: { type: "positional", description: "Quarantine id", required: true }, json: { type: "boolean", description: "Print JSON" } },
  async run({ args }) {
    const { entry } = await entryOf(await store(args.config), args.id);
    if (args.json) { print(JSON.stringify(entryJson(entry), null, 2)); return; }
    const lines = [
      `id:         ${entry.id}`,
      `time:       ${entry.time}`,
      `verdict:    ${describeVerdict(entry.verdict)}`,
      `from:       ${entry.from ?? "(none)"}`,
      `subject:    ${entry.subject ?? "(none)"}`,
      `message-id: ${entry.messageId ?? "(none)"}`,
      `size:       ${entry.size} bytes`,
      `source:     ${entry.source}`,
      `sha256:     ${entry.sha256}`,
      `file:       ${entry.path}`,
    ];
    for (const l of lines) print(l);
    for (const f of entry.findings ?? []) print(`finding:    ${describeVerdict(f.verdict)}${f.engine ? ` [${f.engine}]` : ""}`);
  },
});

const exportCmd = defineCommand({
  meta: { name: "export", description: "Write the original, exactly as received, to FILE (or into a directory); never over an existing file" },
  args: { ...configArg, id: { type: "positional", description: "Quarantine id", required: true }, file: { type: "positional", description: "File or directory to write", required: true } },
  async run({ args }) {
    const q = await store(args.config);
    await entryOf(q, args.id);
    try {
      print(`written: ${await q.restore(args.id, args.file)}`);
    } catch (e) {
      if (e instanceof QuarantineError) throw new UsageError(e.message);
      throw e;
    }
  },
});

/** Appends the message to an mbox (created 0600 when missing): a From_ line, mboxrd quoting, a blank line. */
async function appendToMbox(path: string, bytes: Uint8Array): Promise<void> {
  const body = quoteMboxrd(bytes);
  const eol = body.includes(0x0d) ? "\r\n" : "\n";
  const ends = body.length > 0 && body[body.length - 1] === 0x0a;
  const h = await open(path, "a", 0o600);
  try {
    // One write, so a concurrent appender (a delivery agent) cannot land in the middle.
    const st = await h.stat();
    const sep = st.size > 0 ? await lastBytesNeedSeparator(path, st.size) : "";
    await h.write(Buffer.concat([Buffer.from(`${sep}${defaultFromLine()}${eol}`, "latin1"), body, Buffer.from(ends ? eol : eol + eol, "latin1")]));
    await h.sync();
  } finally {
    await h.close();
  }
}

/** An mbox that does not end in a blank line gets one before the new From_ line. */
async function lastBytesNeedSeparator(path: string, size: number): Promise<string> {
  const h = await open(path, "r");
  try {
    const buf = Buffer.alloc(Math.min(4, size));
    await h.read(buf, 0, buf.length, size - buf.length);
    const tail = buf.toString("latin1");
    if (tail.endsWith("\n\n") || tail.endsWith("\r\n\r\n")) return "";
    const eol = tail.endsWith("\r\n") ? "\r\n" : "\n";
    return tail.endsWith("\n") ? eol : eol + eol;
  } finally {
    await h.close();
  }
}

/** Delivers into a maildir as its spec says: written in tmp/, then linked into new/ under a unique name. */
async function deliverToMaildir(dir: string, bytes: Uint8Array): Promise<string> {
  const name = `${Math.floor(Date.now() / 1000)}.M${process.hrtime.bigint() % 1_000_000n}P${process.pid}.${hostname().replace(/[/:]/g, "_")}`;
  const tmp = join(dir, "tmp", name);
  await writeFile(tmp, bytes, { mode: 0o600, flag: "wx" });
  const target = join(dir, "new", name);
  try {
    await link(tmp, target);
  } finally {
    await unlink(tmp).catch(() => {});
  }
  return target;
}

async function isMaildir(path: string): Promise<boolean> {
  const dirs = await Promise.all(["cur", "new", "tmp"].map((d) => stat(join(path, d)).then((s) => s.isDirectory(), () => false)));
  return dirs.every(Boolean);
}

const restore = defineCommand({
  meta: { name: "restore", description: "Deliver the original into an mbox (appended) or a maildir (a directory with cur/, new/, tmp/)" },
  args: { ...configArg, id: { type: "positional", description: "Quarantine id", required: true }, target: { type: "positional", description: "mbox file or maildir", required: true } },
  async run({ args }) {
    const { bytes } = await entryOf(await store(args.config), args.id);
    const st = await stat(args.target).catch(() => null);
    if (st?.isDirectory()) {
      if (!(await isMaildir(args.target))) throw new UsageError(`${args.target} is a directory but not a maildir (it needs cur/, new/ and tmp/)`);
      print(`restored into the maildir: ${await deliverToMaildir(args.target, bytes)}`);
    } else {
      await appendToMbox(args.target, bytes);
      print(`restored: appended to the mbox ${args.target}`);
    }
  },
});

const del = defineCommand({
  meta: { name: "delete", description: "Remove entries by id" },
  args: { ...configArg, ids: { type: "positional", description: "Quarantine ids", required: true } },
  async run({ args }) {
    const ids = (args as unknown as { _: string[] })._.map(String);
    if (ids.length === 0) throw new UsageError("missing ID");
    const q = await store(args.config);
    let missing = 0;
    for (const id of ids) {
      try {
        if (await q.delete(id)) print(`deleted ${id}`);
        else { missing++; process.stderr.write(`mailsentry: no quarantine entry ${id}\n`); }
      } catch (e) {
        if (!(e instanceof QuarantineError)) throw e;
        missing++;
        process.stderr.write(`mailsentry: ${e.message}\n`);
      }
    }
    if (missing) process.exitCode = 2;
  },
});

/** "30d", "12h", "90m", "45s" (or a number of days) → milliseconds. */
export function parseAge(text: string): number {
  const m = /^(\d+)\s*([dhms]?)$/.exec(text.trim());
  if (!m) throw new UsageError(`--older-than: expected a number and d, h, m or s (e.g. 30d), got ${JSON.stringify(text)}`);
  const unit = { d: 86_400_000, h: 3_600_000, m: 60_000, s: 1000, "": 86_400_000 }[m[2] as "d" | "h" | "m" | "s" | ""];
  return Number(m[1]) * unit;
}

const purge = defineCommand({
  meta: { name: "purge", description: "Remove entries older than a given age" },
  args: { ...configArg, "older-than": { type: "string", description: "Age, e.g. 30d, 12h", valueHint: "age", required: true } },
  async run({ args }) {
    if (!args["older-than"]) throw new UsageError("--older-than is required (e.g. --older-than 30d)");
    const age = parseAge(args["older-than"]);
    const q = await store(args.config);
    const cutoff = Date.now() - age;
    let n = 0;
    let bytes = 0;
    for (const e of await q.list()) {
      if (Date.parse(e.time) >= cutoff) continue;
      if (await q.delete(e.id)) { n++; bytes += e.size; }
    }
    print(`removed ${n} entr${n === 1 ? "y" : "ies"} (${formatBytes(bytes)}) older than ${args["older-than"]}`);
  },
});

export default defineCommand({
  meta: { name: "quarantine", description: "List, show, export, restore, delete and purge quarantined messages" },
  subCommands: { list, show, export: exportCmd, restore, delete: del, purge },
});
