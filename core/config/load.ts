// Builds the effective configuration: defaults ← config file ← MAILSENTRY_* environment. Also reads
// and atomically rewrites the raw file for `config set/unset` (only what the user wrote is kept there).
import { chmod, mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { jsonErrorOffset, lineColumn } from "./json-error.ts";
import { canonicalKey, ConfigError, parseValueText, setPath, validateConfig } from "./schema.ts";
import { configFile, type Env } from "./paths.ts";
import { DEFAULT_CONFIG, type Config } from "./types.ts";

export interface LoadedConfig {
  config: Config;
  /** The config file consulted (whether or not it exists). */
  file: string;
  fileFound: boolean;
  /** Non-fatal notes, e.g. a MAILSENTRY_* variable that names no key. */
  warnings: string[];
}

export interface LoadOptions {
  /** --config FILE; when given the file must exist. */
  file?: string | null;
  env?: Env;
  /** Apply MAILSENTRY_* overrides (default true). */
  useEnv?: boolean;
}

/** MAILSENTRY_* names that are not configuration keys. */
const RESERVED_ENV = new Set(["CONFIG", "BIN", "DEBUG"]);

/**
 * Reads a config file as raw JSON. Returns null when it does not exist and missingOk; every other
 * problem is a ConfigError naming the file.
 */
export async function readConfigFile(file: string, missingOk = true): Promise<Record<string, unknown> | null> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT" && missingOk) return null;
    throw new ConfigError(file, "", code === "ENOENT" ? "no such file" : `cannot read (${code ?? (e as Error).message})`);
  }
  // An empty file (touch config.json) means "nothing set": the defaults.
  if (text.trim() === "") return {};
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    const at = jsonErrorOffset(text);
    const where = at >= 0 ? ` at ${lineColumn(text, at)}` : "";
    throw new ConfigError(file, "", `invalid JSON${where} (${(e as Error).message.replace(/^JSON Parse error: /, "")})`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new ConfigError(file, "", "expected a JSON object");
  return raw as Record<string, unknown>;
}

/**
 * The environment mapping: MAILSENTRY_<KEY> where KEY is the dotted key with "." replaced by "_",
 * matched case-insensitively (MAILSENTRY_ACTION → action, MAILSENTRY_LIMITS_MAXFILESIZE →
 * limits.maxFileSize, MAILSENTRY_LISTENERS_IMAP_ENABLED → listeners.imap.enabled). Values are JSON
 * when they parse, else strings; list keys also take "a,b,c".
 */
export function envOverrides(env: Env): { values: Record<string, unknown>; vars: Map<string, string>; warnings: string[] } {
  const values: Record<string, unknown> = {};
  const vars = new Map<string, string>();
  const warnings: string[] = [];
  for (const [name, text] of Object.entries(env)) {
    if (!name.startsWith("MAILSENTRY_") || text === undefined) continue;
    const rest = name.slice("MAILSENTRY_".length);
    if (RESERVED_ENV.has(rest)) continue;
    const path = canonicalKey(rest.split("_"));
    if (!path) {
      warnings.push(`environment ${name}: names no configuration key (ignored)`);
      continue;
    }
    setPath(values, path, parseValueText(path, text));
    vars.set(path.join("."), name);
  }
  return { values, vars, warnings };
}

export async function loadConfig(opts: LoadOptions = {}): Promise<LoadedConfig> {
  const env = opts.env ?? process.env;
  const explicit = opts.file || env.MAILSENTRY_CONFIG || null;
  const file = configFile(explicit, env);
  const raw = await readConfigFile(file, !explicit);
  let config: Config = raw ? validateConfig(raw, file) : structuredClone(DEFAULT_CONFIG as Config);
  const warnings: string[] = [];
  if (opts.useEnv !== false) {
    const o = envOverrides(env);
    warnings.push(...o.warnings);
    if (Object.keys(o.values).length) {
      try {
        config = validateConfig(o.values, "environment", config);
      } catch (e) {
        if (!(e instanceof ConfigError)) throw e;
        const v = [...o.vars].find(([k]) => e.key === k || e.key.startsWith(`${k}.`) || e.key.startsWith(`${k}[`));
        throw new ConfigError(v ? `environment ${v[1]}` : "environment", e.key, e.problem);
      }
    }
  }
  return { config, file, fileFound: raw !== null, warnings };
}

/**
 * The signature directory must be a readable directory: named with where it was set (the flag, the
 * environment variable or the file's key), or null when it is fine or not set.
 */
export async function signaturesProblem(dir: string | null, origin: string): Promise<string | null> {
  if (dir === null) return null;
  try {
    const st = await stat(dir);
    if (!st.isDirectory()) return `${origin}: ${dir} is not a directory`;
    await readdir(dir);
    return null;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return `${origin}: ${dir}: ${code === "ENOENT" ? "no such directory" : code === "EACCES" ? "permission denied" : (e as Error).message}`;
  }
}

/** Where the signatures setting came from, for messages: the flag, the variable, or the file's key. */
export function signaturesOrigin(loaded: { file: string }, flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  if (flag !== undefined) return "--sigs";
  if (env.MAILSENTRY_SIGNATURES !== undefined) return "environment MAILSENTRY_SIGNATURES";
  return `${loaded.file}: signatures`;
}

/** Writes JSON via a temporary file and rename, so a reader never sees half a file; keeps the old mode. */
export async function writeConfigFile(file: string, data: Record<string, unknown>): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  let mode = 0o644;
  try { mode = (await stat(file)).mode & 0o777; } catch {}
  try {
    await writeFile(tmp, `${JSON.stringify(data, null, 2)}\n`, { mode });
    await chmod(tmp, mode);
    await rename(tmp, file);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}
