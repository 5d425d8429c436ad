// Logging for the proxy and CLI: consola with our own reporters, everything on stderr (a server's
// stdout is not a log), text or one JSON object per line, child loggers carrying session fields.
// Secrets never reach a line: command lines are redacted, secret-looking fields are masked, and a
// session's own password is masked wherever it turns up (a server that echoes it in an error, say).
import { createConsola, type ConsolaInstance, type LogObject } from "consola/core";

export type LogFormat = "text" | "json";
export type LogLevelName = "error" | "warn" | "info" | "debug";
export type Fields = Record<string, unknown>;

export interface Logger {
  error(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  debug(msg: string, fields?: Fields): void;
  /** A logger whose every line carries these fields too (e.g. one per session). */
  child(fields: Fields): Logger;
  /**
   * From now on, this text is masked in every line of this logger and its children (those made
   * before too), in the message and in every field, whatever its source. For a session's password
   * and its base64 forms; texts shorter than MIN_SECRET are ignored, or they would mask words.
   */
  addSecret(text: string): void;
}

/** Shorter secrets are not masked in free text: a one-letter password would garble every line. */
export const MIN_SECRET = 3;

export interface LoggerOptions {
  format?: LogFormat;
  level?: LogLevelName;
  /** Where finished lines go (without newline); default: stderr. Tests collect lines here. */
  write?: (line: string) => void;
}

const LEVELS: Record<LogLevelName, number> = { error: 0, warn: 1, info: 3, debug: 4 };

// Field names whose values are never printed, whatever a caller passes.
const SECRET_KEY = /pass|secret|token|credential|authorization/i;
const MASK = "***";

/** Masks values of secret-looking keys; serialises errors to message/stack (JSON.stringify drops them). */
export function redactFields(fields: Fields): Fields {
  const out: Fields = {};
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined) continue;
    if (SECRET_KEY.test(key)) out[key] = MASK;
    else if (value instanceof Error) out[key] = { message: value.message, ...(value.stack ? { stack: value.stack } : {}) };
    else out[key] = value;
  }
  return out;
}

/**
 * A client or upstream command line as it may be logged: arguments of PASS, AUTH (and SASL
 * continuation lines, which the caller marks with isSaslData) and APOP digests are masked.
 */
export function redactCommand(line: string, isSaslData = false): string {
  if (isSaslData) return MASK;
  const m = /^(\s*)(\S+)(.*)$/s.exec(line);
  if (!m) return line;
  const verb = m[2]!.toUpperCase();
  if (verb === "PASS" || verb === "APOP") return m[3]!.trim() ? `${m[2]} ${MASK}` : m[2]!;
  if (verb === "AUTHENTICATE" || verb === "AUTH") {
    const parts = m[3]!.trim().split(/\s+/);
    return parts.length > 1 ? `${m[2]} ${parts[0]} ${MASK}` : line.trim();
  }
  if (verb === "LOGIN" || /^\S+\s+LOGIN\b/i.test(line)) return line.replace(/^(\s*(?:\S+\s+)?LOGIN\s+\S+).*$/is, `$1 ${MASK}`);
  return line;
}

function levelName(obj: LogObject): string {
  if (obj.level <= 0) return "error";
  if (obj.level === 1) return "warn";
  if (obj.level >= 4) return "debug";
  return "info";
}

function formatText(obj: LogObject): string {
  const [msg, fields] = obj.args as [string, Fields | undefined];
  const kv = fields
    ? Object.entries(fields).map(([k, v]) => `${k}=${typeof v === "string" && !/[\s"=]/.test(v) ? v : JSON.stringify(v)}`).join(" ")
    : "";
  return `${obj.date.toISOString()} ${levelName(obj).toUpperCase().padEnd(5)} ${msg}${kv ? " " + kv : ""}`;
}

function formatJson(obj: LogObject): string {
  const [msg, fields] = obj.args as [string, Fields | undefined];
  // Fields first: a field named like a core key (msg, level, time) must not overwrite it.
  return JSON.stringify({ ...(fields ?? {}), time: obj.date.toISOString(), level: levelName(obj), msg });
}

/** Secrets of one logger and, through parent, of the loggers it was made from. */
class Secrets {
  readonly own: string[] = [];
  constructor(readonly parent: Secrets | null) {}
  all(): string[] {
    const out: string[] = [];
    for (let s: Secrets | null = this; s; s = s.parent) out.push(...s.own);
    return out;
  }
}

/** Every secret in every string of value replaced by MASK, longest first (a secret inside another). */
function maskDeep(value: unknown, secrets: string[], depth = 0): unknown {
  if (typeof value === "string") {
    let v = value;
    for (const s of secrets) if (v.includes(s)) v = v.split(s).join(MASK);
    return v;
  }
  if (depth > 8 || value === null || typeof value !== "object") return value;
  if (Array.isArray(value)) return value.map((x) => maskDeep(x, secrets, depth + 1));
  const out: Fields = {};
  for (const [k, x] of Object.entries(value)) out[k] = maskDeep(x, secrets, depth + 1);
  return out;
}

class FieldLogger implements Logger {
  private readonly secrets: Secrets;
  constructor(private readonly c: ConsolaInstance, private readonly base: Fields, parentSecrets: Secrets | null = null) {
    this.secrets = new Secrets(parentSecrets);
  }
  private emit(kind: "error" | "warn" | "info" | "debug", msg: string, fields?: Fields): void {
    let merged = redactFields({ ...this.base, ...(fields ?? {}) });
    const secrets = this.secrets.all();
    if (secrets.length > 0) {
      secrets.sort((a, b) => b.length - a.length);
      merged = maskDeep(merged, secrets) as Fields;
      msg = maskDeep(msg, secrets) as string;
    }
    this.c[kind](msg, merged);
  }
  addSecret(text: string): void {
    if (text.length >= MIN_SECRET && !this.secrets.own.includes(text)) this.secrets.own.push(text);
  }
  error(msg: string, fields?: Fields): void { this.emit("error", msg, fields); }
  warn(msg: string, fields?: Fields): void { this.emit("warn", msg, fields); }
  info(msg: string, fields?: Fields): void { this.emit("info", msg, fields); }
  debug(msg: string, fields?: Fields): void { this.emit("debug", msg, fields); }
  child(fields: Fields): Logger { return new FieldLogger(this.c, { ...this.base, ...fields }, this.secrets); }
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  const format = opts.format ?? "text";
  const write = opts.write ?? ((line: string) => void process.stderr.write(line + "\n"));
  const c = createConsola({
    level: LEVELS[opts.level ?? "info"],
    // throttle 0: consola otherwise folds repeated identical lines, and a log must show every session.
    throttle: 0,
    reporters: [{ log: (obj) => write(format === "json" ? formatJson(obj) : formatText(obj)) }],
  });
  return new FieldLogger(c, {});
}
