// The configuration room's public face: shape and defaults, validation, loading, paths.
export * from "./types.ts";
export { ConfigError, validateConfig, canonicalKey, knownKey, parseValueText, getPath, setPath, unsetPath, splitHostPort, isLoopbackHost } from "./schema.ts";
export { loadConfig, readConfigFile, writeConfigFile, envOverrides, signaturesOrigin, signaturesProblem, type LoadedConfig, type LoadOptions } from "./load.ts";
export { configDir, configFile, stateDir, quarantineDir, resolvePaths, type Env, type Paths } from "./paths.ts";
