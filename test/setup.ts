// Loaded before every test file (bunfig.toml [test] preload), so a plain `bun test` runs with the
// same per-test timeout as `npm test`: bun ignores a timeout in bunfig.toml, and its 5 s default is
// less than what the tests that start Dovecot or push millions of lines need on a loaded machine.
import { setDefaultTimeout } from "bun:test";

setDefaultTimeout(60_000);
