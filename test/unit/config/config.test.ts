import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  canonicalKey, ConfigError, DEFAULT_CONFIG, loadConfig, parseValueText, readConfigFile, resolvePaths, setPath, unsetPath,
  validateConfig, writeConfigFile,
} from "../../../core/config/index.ts";

const dir = mkdtempSync(join(tmpdir(), "mailsentry-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
function file(content: unknown): string {
  const p = join(dir, `c${n++}`, "config.json");
  mkdirSync(join(p, ".."), { recursive: true });
  writeFileSync(p, typeof content === "string" ? content : JSON.stringify(content));
  return p;
}
const env = (extra: Record<string, string> = {}) => ({ HOME: join(dir, "home"), ...extra });

async function loadError(f: string | null, e: Record<string, string> = {}): Promise<ConfigError> {
  try {
    await loadConfig({ file: f, env: env(e) });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error("expected a ConfigError");
}

describe("paths", () => {
  test("XDG dirs with fallbacks; relative XDG values are ignored", () => {
    expect(resolvePaths(null, { HOME: "/h" })).toEqual({ configFile: "/h/.config/mailsentry/config.json", configDir: "/h/.config/mailsentry", stateDir: "/h/.local/state/mailsentry" });
    expect(resolvePaths(null, { HOME: "/h", XDG_CONFIG_HOME: "/c", XDG_STATE_HOME: "/s" })).toEqual({ configFile: "/c/mailsentry/config.json", configDir: "/c/mailsentry", stateDir: "/s/mailsentry" });
    expect(resolvePaths(null, { HOME: "/h", XDG_CONFIG_HOME: "rel" }).configDir).toBe("/h/.config/mailsentry");
    expect(resolvePaths("/x.json", { HOME: "/h", MAILSENTRY_CONFIG: "/y.json" }).configFile).toBe("/x.json");
    expect(resolvePaths(null, { HOME: "/h", MAILSENTRY_CONFIG: "/y.json" }).configFile).toBe("/y.json");
  });
});

describe("loading", () => {
  test("no file: the defaults", async () => {
    const l = await loadConfig({ env: env() });
    expect(l.config).toEqual(DEFAULT_CONFIG);
    expect(l.fileFound).toBe(false);
  });

  test("a partial file merges over the defaults, limits and listeners key by key", async () => {
    const f = file({ action: "delete", limits: { maxFileSize: 1000 }, listeners: { imap: { enabled: true } } });
    const { config, fileFound } = await loadConfig({ file: f, env: env() });
    expect(fileFound).toBe(true);
    expect(config.action).toBe("delete");
    expect(config.limits).toEqual({ ...DEFAULT_CONFIG.limits, maxFileSize: 1000 });
    expect(config.listeners.imap).toEqual({ enabled: true, addresses: ["127.0.0.1:1143"] });
    expect(config.listeners.pop3).toEqual(DEFAULT_CONFIG.listeners.pop3);
    expect(DEFAULT_CONFIG.limits.maxFileSize).toBe(30 * 1024 * 1024); // defaults untouched
  });

  test("MAILSENTRY_* overrides file values, matched case-insensitively, nested keys joined by _", async () => {
    const f = file({ action: "delete", limits: { maxFileSize: 1000 } });
    const { config } = await loadConfig({
      file: f,
      env: env({ MAILSENTRY_ACTION: "ignore", MAILSENTRY_LIMITS_MAXFILESIZE: "2000", MAILSENTRY_LISTENERS_IMAP_ENABLED: "true", MAILSENTRY_EXCLUDEDAPPS: "fetchmail,mutt", MAILSENTRY_SIGNATURES: "/sigs" }),
    });
    expect([config.action, config.limits.maxFileSize, config.listeners.imap.enabled, config.excludedApps, config.signatures]).toEqual(["ignore", 2000, true, ["fetchmail", "mutt"], "/sigs"]);
  });

  test("onUnscanned: one action for all reasons, or some reasons over the defaults, from a file or the environment", async () => {
    const all = await loadConfig({ file: file({ onUnscanned: "tempfail" }), env: env({}) });
    expect(new Set(Object.values(all.config.onUnscanned))).toEqual(new Set(["tempfail"]));
    const some = await loadConfig({ file: file({ onUnscanned: { "too-deep": "deliver" } }), env: env({ MAILSENTRY_ONUNSCANNED_TOO_MANY_FILES: "delete" }) });
    expect(some.config.onUnscanned).toEqual({ ...DEFAULT_CONFIG.onUnscanned, "too-deep": "deliver", "too-many-files": "delete" });
    expect(DEFAULT_CONFIG.onUnscanned).toMatchObject({ encrypted: "deliver", "too-large": "deliver", "too-deep": "quarantine", bomb: "quarantine", corrupt: "quarantine" });
    expect((await loadError(file({ onUnscanned: { deep: "deliver" } }))).message).toContain("onUnscanned.deep: unknown reason");
    expect((await loadError(file({ onUnscanned: { corrupt: "pass" } }))).message).toContain("onUnscanned.corrupt: must be one of deliver, delete, quarantine, tempfail");
  });

  test("the file named by MAILSENTRY_CONFIG is used; a missing explicit file is an error", async () => {
    const f = file({ tagClean: true });
    expect((await loadConfig({ env: env({ MAILSENTRY_CONFIG: f }) })).config.tagClean).toBe(true);
    const e = await loadError(join(dir, "missing.json"));
    expect(e.message).toBe(`${join(dir, "missing.json")}: no such file`);
  });

  test("errors name the file and the key", async () => {
    const cases: [unknown, string][] = [
      [{ limits: { maxFileSize: -1 } }, "limits.maxFileSize: must not be negative (got -1)"],
      [{ limits: { maxFilesize: 1 } }, "limits.maxFilesize: not a known limit"],
      [{ actoin: "delete" }, "actoin: unknown key"],
      [{ Action: "delete" }, "Action: unknown key (did you mean action?)"],
      [{ action: "explode" }, "action: must be one of ignore, clean, delete, rename, quarantine, auto-clean (got \"explode\")"],
      [{ listeners: { pop3: { addresses: ["nope"] } } }, "listeners.pop3.addresses[0]: expected \"host:port\" (or \"[v6]:port\"), got \"nope\""],
      [{ listeners: { smtp: {} } }, "listeners.smtp: unknown key (protocols: pop3, pop3s, imap, imaps)"],
      [{ allowedUpstreamPorts: [110, 70000] }, "allowedUpstreamPorts[1]: expected a port number 1-65535, got 70000"],
      [{ excludedServers: ["10.0.0.0/33"] }, "excludedServers[0]: expected an IP address or CIDR, got \"10.0.0.0/33\""],
      [{ listeners: { pop3: { addresses: ["0.0.0.0:110"] } } }, "upstreamAllowlist: must not be empty while listeners.pop3 binds 0.0.0.0:110 beyond loopback"],
      [[1], "expected a JSON object"],
    ];
    for (const [content, problem] of cases) {
      const f = file(content);
      expect((await loadError(f)).message).toBe(`${f}: ${problem}`);
    }
    const bad = file("{ nope");
    expect((await loadError(bad)).message).toStartWith(`${bad}: invalid JSON`);
  });

  test("environment errors name the variable and the key; unknown variables are warnings", async () => {
    const e = await loadError(null, { MAILSENTRY_LIMITS_MAXFILESIZE: "-5" });
    expect(e.message).toBe("environment MAILSENTRY_LIMITS_MAXFILESIZE: limits.maxFileSize: must not be negative (got -5)");
    const l = await loadConfig({ env: env({ MAILSENTRY_NOPE: "1", MAILSENTRY_BIN: "/x" }) });
    expect(l.warnings).toEqual(["environment MAILSENTRY_NOPE: names no configuration key (ignored)"]);
  });

  test("a limit of \"Infinity\" in a file means no cap", () => {
    expect(validateConfig({ limits: { maxScanSize: "Infinity" } }, "f").limits.maxScanSize).toBe(Infinity);
  });
});

describe("keys and values", () => {
  test("canonicalKey resolves case-insensitively; unknown keys are null", () => {
    expect(canonicalKey(["LIMITS", "MAXFILESIZE"])).toEqual(["limits", "maxFileSize"]);
    expect(canonicalKey(["listeners", "IMAPS", "addresses"])).toEqual(["listeners", "imaps", "addresses"]);
    expect(canonicalKey(["limits", "nope"])).toBeNull();
    expect(canonicalKey(["action", "x"])).toBeNull();
  });

  test("values are JSON when they parse, else strings; lists take a,b", () => {
    expect(parseValueText(["limits", "maxFileSize"], "30")).toBe(30);
    expect(parseValueText(["tagClean"], "true")).toBe(true);
    expect(parseValueText(["signatures"], "null")).toBeNull();
    expect(parseValueText(["action"], "delete")).toBe("delete");
    expect(parseValueText(["excludedApps"], "thunderbird, mutt")).toEqual(["thunderbird", "mutt"]);
    expect(parseValueText(["allowedUpstreamPorts"], "110,995")).toEqual([110, 995]);
    expect(parseValueText(["excludedApps"], "[\"a\"]")).toEqual(["a"]);
  });

  test("setPath/unsetPath edit nested objects and prune empty parents", () => {
    const o: Record<string, unknown> = {};
    setPath(o, ["limits", "maxFileSize"], 5);
    expect(o).toEqual({ limits: { maxFileSize: 5 } });
    expect(unsetPath(o, ["limits", "maxFileSize"])).toBe(true);
    expect(o).toEqual({});
    expect(unsetPath(o, ["action"])).toBe(false);
  });

  test("writeConfigFile writes atomically and leaves no temporary file", async () => {
    const f = join(dir, "w", "sub", "config.json");
    await writeConfigFile(f, { action: "delete" });
    expect(await readConfigFile(f)).toEqual({ action: "delete" });
    expect(readdirSync(join(dir, "w", "sub"))).toEqual(["config.json"]);
  });
});
