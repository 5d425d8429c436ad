// Where mailsentry keeps its files, per the XDG base directory spec: config in
// $XDG_CONFIG_HOME/mailsentry (fallback ~/.config), state (pid, socket, CA, quarantine) in
// $XDG_STATE_HOME/mailsentry (fallback ~/.local/state). Relative XDG values are ignored, as the spec says.
import { homedir } from "node:os";
import { isAbsolute, join } from "node:path";

export type Env = Record<string, string | undefined>;

export interface Paths {
  /** The config file read when no --config / MAILSENTRY_CONFIG is given. */
  configFile: string;
  configDir: string;
  stateDir: string;
}

function xdg(env: Env, name: string, fallback: string[]): string {
  const v = env[name];
  if (v && isAbsolute(v)) return v;
  return join(env.HOME || homedir(), ...fallback);
}

export function configDir(env: Env = process.env): string {
  return join(xdg(env, "XDG_CONFIG_HOME", [".config"]), "mailsentry");
}

export function stateDir(env: Env = process.env): string {
  return join(xdg(env, "XDG_STATE_HOME", [".local", "state"]), "mailsentry");
}

/** The config file in use: an explicit file wins, then MAILSENTRY_CONFIG, then the XDG default. */
export function configFile(explicit?: string | null, env: Env = process.env): string {
  return explicit || env.MAILSENTRY_CONFIG || join(configDir(env), "config.json");
}

export function resolvePaths(explicit?: string | null, env: Env = process.env): Paths {
  return { configFile: configFile(explicit, env), configDir: configDir(env), stateDir: stateDir(env) };
}

/** The quarantine directory: the configured one, or <state>/quarantine. */
export function quarantineDir(configured: string | null, env: Env = process.env): string {
  return configured ?? join(stateDir(env), "quarantine");
}
