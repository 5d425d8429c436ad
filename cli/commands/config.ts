// `mailsentry config show|path|get|set|unset|validate|ca|engines`: the effective configuration and the file
// behind it. set/unset edit only what the user wrote in the file, validate before writing, and
// write atomically; show/get print defaults ← file ← MAILSENTRY_* environment.
import { defineCommand, type ArgDef } from "citty";
import {
  canonicalKey, getPath, loadConfig, parseValueText, quarantineDir, readConfigFile, resolvePaths, setPath, signaturesOrigin, signaturesProblem, unsetPath,
  validateConfig, writeConfigFile, ConfigError,
} from "../../core/config/index.ts";
import { UsageError } from "../report.ts";

const configArg = { config: { type: "string", description: "Config file (default $XDG_CONFIG_HOME/mailsentry/config.json)", valueHint: "file" } } as const;

const print = (s: string) => process.stdout.write(`${s}\n`);

/** JSON with Infinity spelled out (JSON has no Infinity; a limit of Infinity means "no cap"). */
export function toJson(v: unknown): string {
  return JSON.stringify(v, (_k, x) => (x === Infinity ? "Infinity" : x), 2);
}

function keyPath(key: string | undefined): string[] {
  if (!key) throw new UsageError("missing KEY (dotted, e.g. limits.maxFileSize)");
  const path = canonicalKey(key.split("."));
  if (!path) throw new UsageError(`unknown key ${JSON.stringify(key)} (see \`mailsentry config show\`)`);
  return path;
}

/** Positionals from the raw arguments, so values like -1 are not taken for flags. */
function positionals(rawArgs: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < rawArgs.length; i++) {
    const a = rawArgs[i]!;
    if (a === "--") { out.push(...rawArgs.slice(i + 1)); break; }
    if (a === "--config") { i++; continue; }
    if (a.startsWith("--config=")) continue;
    out.push(a);
  }
  return out;
}

async function loadWithWarnings(file?: string) {
  const loaded = await loadConfig({ file });
  for (const w of loaded.warnings) process.stderr.write(`mailsentry: ${w}\n`);
  return loaded;
}

const show = defineCommand({
  meta: { name: "show", description: "Print the effective configuration as JSON (defaults + file + environment)" },
  args: { ...configArg },
  async run({ args }) {
    print(toJson((await loadWithWarnings(args.config)).config));
  },
});

const path = defineCommand({
  meta: { name: "path", description: "Print the config file, state directory and quarantine directory" },
  args: { ...configArg },
  async run({ args }) {
    const p = resolvePaths(args.config);
    let q = quarantineDir(null);
    try { q = quarantineDir((await loadConfig({ file: args.config })).config.quarantineDir); } catch {}
    const exists = await Bun.file(p.configFile).exists();
    print(`config      ${p.configFile}${exists ? "" : " (not created yet: defaults apply)"}`);
    print(`state       ${p.stateDir}`);
    print(`quarantine  ${q}`);
  },
});

const get = defineCommand({
  meta: { name: "get", description: "Print one effective value (strings as is, the rest as JSON)" },
  args: { ...configArg, key: { type: "positional", description: "Dotted key, e.g. limits.maxFileSize" } },
  async run({ args }) {
    const p = keyPath(args.key);
    const v = getPath((await loadWithWarnings(args.config)).config, p);
    print(typeof v === "string" ? v : toJson(v));
  },
});

/** Edits the file's own JSON, validates the result over the defaults, then writes it atomically. */
async function edit(fileArg: string | undefined, change: (raw: Record<string, unknown>) => string): Promise<void> {
  const file = resolvePaths(fileArg).configFile;
  const raw = (await readConfigFile(file)) ?? {};
  const message = change(raw);
  validateConfig(raw, file);
  await writeConfigFile(file, raw);
  print(message);
}

const set = defineCommand({
  meta: { name: "set", description: "Set KEY to VALUE in the config file (VALUE is JSON when it parses, else a string)" },
  args: {
    ...configArg,
    key: { type: "positional", description: "Dotted key, e.g. limits.maxFileSize", required: false, rawPositional: true } as ArgDef,
    value: { type: "positional", description: "true, 30, null, [\"a\"], or plain text", required: false, rawPositional: true } as ArgDef,
  },
  async run({ args, rawArgs }) {
    const [key, text, extra] = positionals(rawArgs);
    const p = keyPath(key);
    if (text === undefined) throw new UsageError("missing VALUE");
    if (extra !== undefined) throw new UsageError(`unexpected argument ${JSON.stringify(extra)} (quote VALUE if it has spaces)`);
    const value = parseValueText(p, text);
    if (p.join(".") === "signatures") {
      const problem = await signaturesProblem(value as string | null, "signatures");
      if (problem) throw new UsageError(`${problem} (not written)`);
    }
    await edit(args.config, (raw) => {
      setPath(raw, p, value);
      return `${p.join(".")} = ${toJson(value)}`;
    });
  },
});

const unset = defineCommand({
  meta: { name: "unset", description: "Remove KEY from the config file (its default applies again)" },
  args: { ...configArg, key: { type: "positional", description: "Dotted key" } },
  async run({ args }) {
    const p = keyPath(args.key);
    await edit(args.config, (raw) => (unsetPath(raw, p) ? `${p.join(".")} removed` : `${p.join(".")} was not set`));
  },
});

const validate = defineCommand({
  meta: { name: "validate", description: "Check the config file (or FILE) and the MAILSENTRY_* environment" },
  args: { ...configArg, file: { type: "positional", description: "File to check instead of the one in use", required: false } },
  async run({ args }) {
    const loaded = await loadWithWarnings(args.file || args.config);
    const problem = await signaturesProblem(loaded.config.signatures, signaturesOrigin(loaded, undefined));
    if (problem) throw new UsageError(problem);
    print(`${loaded.file}: ${loaded.fileFound ? "ok" : "ok (no file: defaults apply)"}`);
  },
});

export default defineCommand({
  meta: { name: "config", description: "Show, change and check the configuration; manage the local CA" },
  subCommands: {
    show, path, get, set, unset, validate,
    ca: () => import("./config-ca.ts").then((m) => m.default),
    engines: () => import("./config-engines.ts").then((m) => m.default),
  },
});

export { ConfigError };
