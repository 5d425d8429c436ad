// Validation of configuration input (file, environment, `config set`) against the shape in types.ts.
// Every error names the source and the dotted key; unknown keys are errors; partial input merges over defaults.
import { isIP } from "node:net";
import { LimitError, resolveLimits, UNSCANNED_REASONS, type UnscannedReason } from "../limits.ts";
import { parseClamdAddress } from "./engine-address.ts";
import { DEFAULT_CONFIG, type Config, type ListenerAddress, type ListenerConfig, type Protocol, type UnscannedAction, type UnscannedPolicy } from "./types.ts";

export class ConfigError extends Error {
  constructor(readonly source: string, readonly key: string, readonly problem: string) {
    super(`${source}: ${key ? `${key}: ` : ""}${problem}`);
    this.name = "ConfigError";
  }
}

type Check = (value: unknown, key: string) => unknown;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const show = (v: unknown) => JSON.stringify(v) ?? String(v);

class Problem extends Error {
  constructor(readonly key: string, message: string) { super(message); }
}

const oneOf = (...values: string[]): Check => (v, key) => {
  if (typeof v !== "string" || !values.includes(v)) throw new Problem(key, `must be one of ${values.join(", ")} (got ${show(v)})`);
  return v;
};
const bool: Check = (v, key) => {
  if (typeof v !== "boolean") throw new Problem(key, `expected true or false, got ${show(v)}`);
  return v;
};
const str: Check = (v, key) => {
  if (typeof v !== "string") throw new Problem(key, `expected a string, got ${show(v)}`);
  if (/[\0\r\n]/.test(v)) throw new Problem(key, "must not contain NUL, CR or LF");
  return v;
};
const nullableStr: Check = (v, key) => (v === null ? null : str(v, key));
const nonEmpty = (c: Check): Check => (v, key) => {
  const s = c(v, key) as string;
  if (s === "") throw new Problem(key, "must not be empty");
  return s;
};
const arrayOf = (item: Check): Check => (v, key) => {
  if (!Array.isArray(v)) throw new Problem(key, `expected an array, got ${show(v)}`);
  return v.map((x, i) => item(x, `${key}[${i}]`));
};
const port: Check = (v, key) => {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > 65535) throw new Problem(key, `expected a port number 1-65535, got ${show(v)}`);
  return v;
};
const ipOrCidr: Check = (v, key) => {
  const s = nonEmpty(str)(v, key) as string;
  const [ip, bits, extra] = s.split("/");
  const family = isIP(ip!);
  const max = family === 4 ? 32 : 128;
  if (!family || extra !== undefined || (bits !== undefined && !(/^\d+$/.test(bits) && Number(bits) <= max))) {
    throw new Problem(key, `expected an IP address or CIDR, got ${show(v)}`);
  }
  return s;
};

/** "host:port" or "[v6]:port" → parts, or null when malformed. */
export function splitHostPort(s: string): { host: string; port: number } | null {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^\s:[\]]+)):(\d{1,5})$/.exec(s);
  if (!m) return null;
  const p = Number(m[3]);
  if (p < 1 || p > 65535) return null;
  return { host: m[1] ?? m[2]!, port: p };
}

const hostPort: Check = (v, key) => {
  const s = str(v, key) as string;
  if (!splitHostPort(s)) throw new Problem(key, `expected "host:port" (or "[v6]:port"), got ${show(v)}`);
  return s;
};

const listenerAddress: Check = (v, key) => {
  if (typeof v === "string") return hostPort(v, key);
  if (!isObject(v)) throw new Problem(key, `expected "host:port" or { address, upstream }, got ${show(v)}`);
  for (const k of Object.keys(v)) if (k !== "address" && k !== "upstream") throw new Problem(`${key}.${k}`, "unknown key");
  const out: ListenerAddress = { address: hostPort(v.address, `${key}.address`) as string };
  if (v.upstream !== undefined) out.upstream = hostPort(v.upstream, `${key}.upstream`) as string;
  return out;
};

const PROTOCOLS: Protocol[] = ["pop3", "pop3s", "imap", "imaps"];

function listeners(v: unknown, key: string, base: Config["listeners"]): Config["listeners"] {
  if (!isObject(v)) throw new Problem(key, `expected an object, got ${show(v)}`);
  const out = { ...base };
  for (const [proto, lv] of Object.entries(v)) {
    const k = `${key}.${proto}`;
    if (!PROTOCOLS.includes(proto as Protocol)) throw new Problem(k, `unknown key (protocols: ${PROTOCOLS.join(", ")})`);
    if (!isObject(lv)) throw new Problem(k, `expected an object, got ${show(lv)}`);
    const l: ListenerConfig = { ...base[proto as Protocol] };
    for (const [field, fv] of Object.entries(lv)) {
      if (field === "enabled") l.enabled = bool(fv, `${k}.enabled`) as boolean;
      else if (field === "addresses") l.addresses = arrayOf(listenerAddress)(fv, `${k}.addresses`) as ListenerConfig["addresses"];
      else throw new Problem(`${k}.${field}`, "unknown key");
    }
    out[proto as Protocol] = l;
  }
  return out;
}

const implicitTlsPorts: Check = (v, key) => {
  if (!isObject(v)) throw new Problem(key, `expected { "pop3": [ports], "imap": [ports] }, got ${show(v)}`);
  const out = { ...DEFAULT_CONFIG.upstreamImplicitTlsPorts };
  for (const [proto, list] of Object.entries(v)) {
    if (proto !== "pop3" && proto !== "imap") throw new Problem(`${key}.${proto}`, "unknown key (pop3, imap)");
    out[proto] = arrayOf(port)(list, `${key}.${proto}`) as number[];
  }
  return out;
};

const unscannedAction = oneOf("deliver", "delete", "quarantine", "tempfail");

/** onUnscanned: one action for every reason, or some reasons named, merged over base. */
function unscannedPolicy(v: unknown, key: string, base: UnscannedPolicy): UnscannedPolicy {
  if (typeof v === "string") {
    const action = unscannedAction(v, key) as UnscannedAction;
    return Object.fromEntries(UNSCANNED_REASONS.map((r) => [r, action])) as UnscannedPolicy;
  }
  if (!isObject(v)) throw new Problem(key, `expected an action or { "<reason>": action } (reasons: ${UNSCANNED_REASONS.join(", ")}), got ${show(v)}`);
  const out = { ...base };
  for (const [reason, action] of Object.entries(v)) {
    if (!(UNSCANNED_REASONS as readonly string[]).includes(reason)) throw new Problem(`${key}.${reason}`, `unknown reason (${UNSCANNED_REASONS.join(", ")})`);
    out[reason as UnscannedReason] = unscannedAction(action, `${key}.${reason}`) as UnscannedAction;
  }
  return out;
}

const positiveInt = (v: unknown, key: string): number => {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1) throw new Problem(key, `expected a whole number of at least 1, got ${show(v)}`);
  return v;
};

/** "builtin", {"clamd": [addresses…]} or {"icap": [URLs…]}, with optional timeout (ms) and connections. */
const engine: Check = (v, key) => {
  if (v === "builtin") return v;
  if (!isObject(v)) throw new Problem(key, `expected "builtin", {"clamd": [...]} or {"icap": [...]}, got ${show(v)}`);
  const kind = "clamd" in v ? "clamd" : "icap" in v ? "icap" : null;
  if (!kind) throw new Problem(key, `expected a "clamd" or "icap" list of addresses, got ${show(v)}`);
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) {
    if (k === kind) {
      const list = arrayOf(nonEmpty(str))(x, `${key}.${k}`) as string[];
      if (list.length === 0) throw new Problem(`${key}.${k}`, "needs at least one address");
      list.forEach((a, i) => checkEngineAddress(kind, a, `${key}.${k}[${i}]`));
      out[k] = list;
    } else if (k === "timeout" || k === "connections") out[k] = positiveInt(x, `${key}.${k}`);
    else throw new Problem(`${key}.${k}`, "unknown key");
  }
  return out;
};

function checkEngineAddress(kind: "clamd" | "icap", a: string, key: string): void {
  if (kind === "clamd") {
    try {
      parseClamdAddress(a);
    } catch (e) {
      throw new Problem(key, (e as Error).message);
    }
  } else if (!/^icaps?:\/\/[^/\s]+(\/\S*)?$/i.test(a)) {
    throw new Problem(key, `expected an ICAP URL such as icap://127.0.0.1:1344/avscan, got ${show(a)}`);
  }
}

const engines: Check = (v, key) => {
  const list = arrayOf(engine)(v, key) as unknown[];
  if (list.length === 0) throw new Problem(key, "needs at least one engine");
  return list;
};

/** quarantine.maxAge (whole days) and quarantine.maxSize (bytes); 0 is no limit. Merged field by field. */
function quarantineLimits(v: unknown, key: string, base: Config["quarantine"]): Config["quarantine"] {
  if (!isObject(v)) throw new Problem(key, `expected { "maxAge": days, "maxSize": bytes }, got ${show(v)}`);
  const out = { ...base };
  for (const [k, x] of Object.entries(v)) {
    if (k !== "maxAge" && k !== "maxSize") throw new Problem(`${key}.${k}`, "unknown key (maxAge, maxSize)");
    if (typeof x !== "number" || !Number.isSafeInteger(x) || x < 0) throw new Problem(`${key}.${k}`, `expected a whole number of ${k === "maxAge" ? "days" : "bytes"} (0: no limit), got ${show(x)}`);
    out[k] = x;
  }
  return out;
}

/** One checker per top-level key (limits, listeners and onUnscanned merge field by field instead). */
const FIELDS: Record<Exclude<keyof Config, "limits" | "listeners" | "onUnscanned" | "quarantine">, Check> = {
  signatures: nullableStr,
  engines,
  engineMode: oneOf("all", "first-detection"),
  action: oneOf("ignore", "clean", "delete", "rename", "quarantine", "auto-clean"),
  onError: oneOf("tempfail", "deliver", "delete"),
  tagClean: bool,
  subjectTag: str,
  quarantineDir: nullableStr,
  upstreamTls: oneOf("required", "opportunistic", "off"),
  upstreamImplicitTlsPorts: implicitTlsPorts,
  upstreamCompress: (v, key) => (v === "always" ? v : bool(v, key)),
  upstreamCaFile: nullableStr,
  insecureUpstreamHosts: arrayOf(nonEmpty(str)),
  upstreamAllowlist: arrayOf(nonEmpty(str)),
  allowedUpstreamPorts: arrayOf(port),
  excludedServers: arrayOf(ipOrCidr),
  excludedApps: arrayOf(nonEmpty(str)),
  tlsNames: arrayOf(nonEmpty(str)),
  logFormat: oneOf("text", "json"),
  logLevel: oneOf("error", "warn", "info", "debug"),
};

/** Loopback literals (bracketed or not, IPv4-mapped too) and "localhost". */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, "");
  if (h === "localhost" || h === "::1" || h === "0:0:0:0:0:0:0:1") return true;
  const v4 = h.startsWith("::ffff:") ? h.slice(7) : h;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4);
}

/** Listeners beyond loopback make an open relay unless clients may only reach listed servers (DESIGN.md, Security). */
function checkExposure(c: Config): void {
  for (const proto of PROTOCOLS) {
    const l = c.listeners[proto];
    if (!l.enabled) continue;
    for (const a of l.addresses) {
      const addr = typeof a === "string" ? a : a.address;
      const fixedUpstream = typeof a !== "string" && a.upstream !== undefined;
      const host = splitHostPort(addr)?.host ?? "";
      if (!isLoopbackHost(host) && !fixedUpstream && c.upstreamAllowlist.length === 0) {
        throw new Problem("upstreamAllowlist", `must not be empty while listeners.${proto} binds ${addr} beyond loopback`);
      }
    }
  }
}

function clone(c: Readonly<Config>): Config {
  return structuredClone(c) as Config;
}

/**
 * Validates input and merges it over base (the defaults unless given). source names where the
 * input came from ("/home/a/.config/mailsentry/config.json", "environment"); it starts every error.
 */
export function validateConfig(input: unknown, source: string, base: Readonly<Config> = DEFAULT_CONFIG): Config {
  try {
    if (!isObject(input)) throw new Problem("", `expected a JSON object, got ${show(input)}`);
    const out = clone(base);
    for (const [key, value] of Object.entries(input)) {
      if (key === "limits") {
        if (!isObject(value)) throw new Problem("limits", `expected an object, got ${show(value)}`);
        // JSON has no Infinity: the string "Infinity" spells "no cap" in a file.
        for (const [k, x] of Object.entries(value)) {
          // 1e400 reads as Infinity: a typo, not a choice; "no cap" is written "Infinity".
          if (typeof x === "number" && !Number.isFinite(x)) throw new Problem(`limits.${k}`, `expected a whole number, got ${x} (write "Infinity" for no cap)`);
        }
        const limits = Object.fromEntries(Object.entries(value).map(([k, x]) => [k, x === "Infinity" ? Infinity : x]));
        try {
          out.limits = resolveLimits({ ...out.limits, ...limits });
        } catch (e) {
          if (e instanceof LimitError) throw new Problem(`limits.${e.key}`, e.message.replace(`${e.key}: `, ""));
          throw e;
        }
      } else if (key === "quarantine") {
        out.quarantine = quarantineLimits(value, key, out.quarantine);
      } else if (key === "onUnscanned") {
        out.onUnscanned = unscannedPolicy(value, key, out.onUnscanned);
      } else if (key === "listeners") {
        out.listeners = listeners(value, "listeners", out.listeners);
      } else if (key in FIELDS) {
        (out as unknown as Record<string, unknown>)[key] = FIELDS[key as keyof typeof FIELDS](value, key);
      } else {
        throw new Problem(key, `unknown key${suggest(key)}`);
      }
    }
    checkExposure(out);
    return out;
  } catch (e) {
    if (e instanceof Problem) throw new ConfigError(source, e.key, e.message);
    throw e;
  }
}

function suggest(key: string): string {
  const k = key.toLowerCase();
  const near = [...Object.keys(DEFAULT_CONFIG)].find((c) => c.toLowerCase() === k);
  return near ? ` (did you mean ${near}?)` : "";
}

/** The dotted key paths a user may get/set/unset or name in MAILSENTRY_*: every leaf of the defaults' objects. */
export function knownKey(path: string[]): boolean {
  let node: unknown = DEFAULT_CONFIG;
  for (const seg of path) {
    if (!isObject(node) || !(seg in node)) return false;
    node = node[seg];
  }
  return path.length > 0;
}

/**
 * Resolves segments case-insensitively against the schema (e.g. ["LIMITS","MAXFILESIZE"] →
 * ["limits","maxFileSize"]); null when they name no key.
 */
export function canonicalKey(segments: string[]): string[] | null {
  let node: unknown = DEFAULT_CONFIG;
  const out: string[] = [];
  for (let i = 0; i < segments.length; i++) {
    if (!isObject(node)) return null;
    const keys = Object.keys(node);
    const find = (seg: string) => keys.find((k) => k.toLowerCase() === seg.toLowerCase());
    let seg = segments[i]!;
    let match = find(seg);
    // A key with dashes ("too-deep") reaches us from the environment split at "_": join it back.
    for (let j = i + 1; !match && j < segments.length; j++) {
      seg += "-" + segments[j];
      match = find(seg);
      if (match) i = j;
    }
    if (!match) return null;
    out.push(match);
    node = node[match];
  }
  return out.length ? out : null;
}

/** Kind of value at a key, so text from the environment or `config set` can be coerced sensibly. */
export function valueKind(path: string[]): "string-list" | "number-list" | "other" {
  let node: unknown = DEFAULT_CONFIG;
  for (const seg of path) node = isObject(node) ? node[seg] : undefined;
  if (path[path.length - 1] === "allowedUpstreamPorts" || path[0] === "upstreamImplicitTlsPorts") return "number-list";
  if (Array.isArray(node) || path[path.length - 1] === "addresses") return "string-list";
  return "other";
}

/**
 * Parses a value given as text: JSON when it parses (true, 30, null, ["a"]), else the string itself;
 * for list keys a plain "a,b" becomes ["a","b"].
 */
export function parseValueText(path: string[], text: string): unknown {
  let v: unknown;
  try { v = JSON.parse(text); } catch { v = text; }
  const kind = valueKind(path);
  if (kind !== "other" && (typeof v === "string" || typeof v === "number")) {
    const items = String(v).split(",").map((s) => s.trim()).filter(Boolean);
    return kind === "number-list" ? items.map((s) => (/^\d+$/.test(s) ? Number(s) : s)) : items;
  }
  return v;
}

/** Sets a dotted key inside a plain object tree, creating objects on the way. */
export function setPath(obj: Record<string, unknown>, path: string[], value: unknown): void {
  let node = obj;
  for (const seg of path.slice(0, -1)) {
    if (!isObject(node[seg])) node[seg] = {};
    node = node[seg] as Record<string, unknown>;
  }
  node[path[path.length - 1]!] = value;
}

/** Removes a dotted key; empty parent objects are removed too. Returns whether something was removed. */
export function unsetPath(obj: Record<string, unknown>, path: string[]): boolean {
  const [head, ...rest] = path;
  if (head === undefined || !(head in obj)) return false;
  if (rest.length === 0) { delete obj[head]; return true; }
  const child = obj[head];
  if (!isObject(child)) return false;
  const removed = unsetPath(child, rest);
  if (removed && Object.keys(child).length === 0) delete obj[head];
  return removed;
}

export function getPath(obj: unknown, path: string[]): unknown {
  let node = obj;
  for (const seg of path) node = isObject(node) ? node[seg] : undefined;
  return node;
}
