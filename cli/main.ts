#!/usr/bin/env bun
// mailsentry's command line: a citty root with lazily loaded subcommands. This file also owns the
// CLI's contract for mistakes: unknown flags or commands are one line on stderr and exit 2, never a stack.
// @peculiar/x509 (local CA) needs the Reflect metadata polyfill installed before it loads; in the
// compiled bundle the lazily loaded chunk can evaluate it too late, so the entry point installs it.
import "reflect-metadata";
import type { ArgDef, ArgsDef, CommandDef } from "citty";
import { keepFreedMemory } from "./allocator.ts";
import { EXIT_ERROR, UsageError, VERSION } from "./report.ts";

// The commands that move a lot of bytes through memory restart themselves with the allocator set
// to keep freed pages (cli/allocator.ts); the subcommand is the first word that is not an option.
{
  const words = process.argv.slice(2);
  let i = 0;
  while (words[i]?.startsWith("-")) i += words[i] === "--config" ? 2 : 1;
  if (words[i] === "serve" || words[i] === "scan-mbox") keepFreedMemory();
}

// citty decides on colours when it loads: none when the help goes to a pipe or file.
if (!process.stdout.isTTY) process.env.NO_COLOR = "1";
const { defineCommand, renderUsage, runCommand } = await import("citty");

/** A subcommand loaded only when it runs, so `scan-file` never pays for the proxy's modules. */
const lazy = (load: () => Promise<{ default: CommandDef<any> }>) => () => load().then((m) => m.default);

const main = defineCommand({
  meta: { name: "mailsentry", version: VERSION, description: "Antivirus proxy for POP3/IMAP and scanner for .eml and mbox files" },
  args: {
    config: { type: "string", description: "Config file for every command (default $XDG_CONFIG_HOME/mailsentry/config.json)", valueHint: "file" },
  },
  setup({ args }) {
    // Passed on through the environment so every subcommand (including serve) reads the same file.
    if (args.config) process.env.MAILSENTRY_CONFIG = args.config;
  },
  subCommands: {
    serve: lazy(() => import("./commands/serve.ts")),
    "scan-file": lazy(() => import("./commands/scan-file.ts")),
    "scan-mbox": lazy(() => import("./commands/scan-mbox.ts")),
    config: lazy(() => import("./commands/config.ts")),
    unload: lazy(() => import("./commands/unload.ts")),
    quarantine: lazy(() => import("./commands/quarantine.ts")),
    service: lazy(() => import("./commands/service.ts")),
    clients: lazy(() => import("./commands/clients.ts")),
  },
});

type Cmd = CommandDef<any>;
const resolve = async <T>(v: unknown): Promise<T> => (typeof v === "function" ? await v() : await v) as T;
const camel = (s: string) => s.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/** Finds the flag definition for --name / -x; returns its type or null when unknown. */
function flagType(def: ArgsDef, name: string, short: boolean): "boolean" | "string" | null {
  for (const [key, d] of Object.entries(def)) {
    if (d.type === "positional") continue;
    const alias = (d as { alias?: string | string[] }).alias;
    const aliases = alias === undefined ? [] : Array.isArray(alias) ? alias : [alias];
    const hit = short ? aliases.includes(name) : camel(key) === camel(name) || aliases.includes(name);
    if (hit) return d.type === "boolean" ? "boolean" : "string";
  }
  return null;
}

/**
 * Checks the flags in args against def up to the first positional that names a subcommand.
 * Returns the index of that positional, or -1.
 */
function checkFlags(def: ArgsDef, args: string[], hasSubs: boolean, isRoot: boolean): number {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--") return -1;
    if (a === "-" || !a.startsWith("-") || /^-\d/.test(a)) {
      if (hasSubs) return i;
      continue;
    }
    if (a === "--help" || a === "-h" || (isRoot && (a === "--version" || a === "-v"))) continue;
    const long = a.startsWith("--");
    const [rawName, inline] = long ? [a.slice(2).split("=")[0]!, a.includes("=")] : [a.slice(1), false];
    let type = flagType(def, rawName, !long);
    if (!type && long && rawName.startsWith("no-") && flagType(def, rawName.slice(3), false) === "boolean") type = "boolean";
    if (!type && !long && rawName.length > 1 && [...rawName].every((c) => flagType(def, c, true) === "boolean")) type = "boolean";
    if (!type) throw new UsageError(`unknown option ${long ? `--${rawName}` : a}`);
    if (type === "string" && !inline) {
      if (i + 1 >= args.length) throw new UsageError(`option ${a} needs a value`);
      i++;
    }
  }
  return -1;
}

/** Walks to the command the arguments name, validating flags on the way. */
async function resolveChain(root: Cmd, argv: string[]): Promise<{ cmd: Cmd; parent?: Cmd; help: boolean }> {
  let cmd = root;
  let parent: Cmd | undefined;
  let rest = argv;
  // The words that lead to the command ("mailsentry config"): help shows the whole command line.
  const path: string[] = ["mailsentry"];
  for (;;) {
    const def = await resolve<ArgsDef>(cmd.args ?? {});
    const subs = await resolve<Record<string, unknown> | undefined>(cmd.subCommands);
    const hasSubs = Boolean(subs && Object.keys(subs).length);
    const help = rest.includes("--help") || rest.includes("-h");
    let idx: number;
    try {
      idx = checkFlags(def, rest, hasSubs, cmd === root);
    } catch (e) {
      if (help) return { cmd, parent, help };
      throw e;
    }
    if (!hasSubs || idx < 0) {
      if (help) return { cmd, parent, help };
      if (hasSubs && !cmd.run) throw new UsageError(`missing command (one of: ${Object.keys(subs!).join(", ")})`);
      return { cmd, parent, help: false };
    }
    const name = rest[idx]!;
    if (!(name in subs!)) throw new UsageError(`unknown command ${JSON.stringify(name)} (one of: ${Object.keys(subs!).join(", ")})`);
    let next: Cmd;
    try {
      next = await resolve<Cmd>(subs![name]);
    } catch (e) {
      throw new UsageError(`command ${name} is not available in this build (${(e as Error).message})`);
    }
    const parentMeta = await resolve<Record<string, unknown>>(cmd.meta ?? {});
    parent = { ...cmd, meta: { ...parentMeta, name: path.join(" ") } };
    path.push(name);
    cmd = next;
    rest = rest.slice(idx + 1);
  }
}

/**
 * A positional marked rawPositional is read by its command from rawArgs (so "-1" is a value, not a
 * flag) and so is optional to citty's parser; it is required all the same, and the usage says so.
 */
function forUsage(cmd: Cmd): Cmd {
  const args = cmd.args as Record<string, ArgDef & { rawPositional?: boolean }> | undefined;
  if (!args || !Object.values(args).some((a) => a.rawPositional)) return cmd;
  return { ...cmd, args: Object.fromEntries(Object.entries(args).map(([k, a]) => [k, a.rawPositional ? { ...a, required: true } : a])) } as Cmd;
}

const stripAnsi = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, "");

async function run(argv: string[]): Promise<void> {
  try {
    if (argv.length === 1 && (argv[0] === "--version" || argv[0] === "-v")) {
      process.stdout.write(`${VERSION}\n`);
      return;
    }
    if (argv.length === 0) {
      process.stderr.write(`${await renderUsage(main)}\n`);
      process.exitCode = EXIT_ERROR;
      return;
    }
    const { cmd, parent, help } = await resolveChain(main, argv);
    if (help) {
      process.stdout.write(`${await renderUsage(forUsage(cmd), parent)}\n`);
      return;
    }
    await runCommand(main, { rawArgs: argv });
  } catch (e) {
    const err = e as Error;
    // CLIError is citty's usage error (missing positional, bad enum); ConfigError names file and key.
    const known = err?.name === "UsageError" || err?.name === "CLIError" || err?.name === "ConfigError";
    const message = stripAnsi(known ? err.message : `error: ${err?.message ?? String(e)}`);
    process.stderr.write(`mailsentry: ${message}\n`);
    // A script asked for JSON: it gets a document even when the command could not start.
    const flags = argv.includes("--") ? argv.slice(0, argv.indexOf("--")) : argv;
    if (flags.includes("--json")) process.stdout.write(`${JSON.stringify({ version: VERSION, error: message, exitCode: EXIT_ERROR }, null, 2)}\n`);
    if (!known && process.env.MAILSENTRY_DEBUG) process.stderr.write(`${err?.stack}\n`);
    process.exitCode = EXIT_ERROR;
  }
}

await run(process.argv.slice(2));
