// `mailsentry config engines`: checks every engine of the configured chain and prints what each
// is: the built-in engine's signature count and newest database file, each clamd (or ICAP)
// address's version, database and latency. Exit 0 when every engine answers, 1 when one does not.
import { defineCommand } from "citty";
import { stat } from "node:fs/promises";
import { loadConfig } from "../../core/config/index.ts";
import type { EngineCheck } from "../../core/scan/engine.ts";
import { chainFromConfig } from "../../core/net/engines/index.ts";
import { BuiltinEngine } from "../../core/scan/engines/builtin.ts";
import { PRODUCT } from "../report.ts";
import { withClamdFlag } from "./scan-file.ts";

async function builtinCheck(dir: string | null): Promise<EngineCheck & { signatures?: number }> {
  const t0 = performance.now();
  try {
    const { engine, report } = await BuiltinEngine.load(dir);
    const loadMs = performance.now() - t0;
    const times = await Promise.all(report.files.map((f) => stat(f.path).then((s) => s.mtime, () => null)));
    const newest = times.filter((t): t is Date => t !== null).sort((a, b) => b.getTime() - a.getTime())[0];
    const s0 = performance.now();
    engine.scan(new Uint8Array(1024));
    return {
      engine: "builtin",
      address: dir ?? "(EICAR only)",
      ok: true,
      version: PRODUCT,
      database: `${engine.signatureCount} signature${engine.signatureCount === 1 ? "" : "s"}${newest ? `, newest file ${newest.toISOString()}` : ""}, loaded in ${Math.round(loadMs)} ms`,
      latencyMs: performance.now() - s0,
      signatures: engine.signatureCount,
    };
  } catch (e) {
    return { engine: "builtin", address: dir ?? "(EICAR only)", ok: false, error: (e as Error).message, latencyMs: performance.now() - t0 };
  }
}

export default defineCommand({
  meta: { name: "engines", description: "Check every configured engine: version, database and latency (exit 1 if one does not answer)" },
  args: {
    config: { type: "string", description: "Config file (default $XDG_CONFIG_HOME/mailsentry/config.json)", valueHint: "file" },
    json: { type: "boolean", description: "Print JSON" },
    sigs: { type: "string", description: "Signature directory (overrides the config's `signatures`)", valueHint: "dir" },
    clamd: { type: "string", description: "Add clamd to the engines: unix:/path or tcp:host:port (comma-separated)", valueHint: "addr" },
  },
  async run({ args }) {
    const { config } = await loadConfig({ file: args.config });
    withClamdFlag(config, args.clamd);
    const chain = chainFromConfig(config);
    const checks: EngineCheck[] = [];
    if (chain.builtin) checks.push(await builtinCheck(args.sigs ?? config.signatures));
    for (const e of chain.engines) checks.push(...(await e.check()));
    if (args.json) process.stdout.write(`${JSON.stringify({ mode: chain.mode, engines: checks }, null, 2)}\n`);
    else {
      for (const c of checks) {
        const ms = `${c.latencyMs.toFixed(1)} ms`;
        process.stdout.write(c.ok
          ? `${c.engine} ${c.address}: ${c.version}${c.database ? `, database ${c.database}` : ""} (${ms})\n`
          : `${c.engine} ${c.address}: NOT ANSWERING: ${c.error}\n`);
      }
    }
    process.exitCode = checks.every((c) => c.ok) ? 0 : 1;
  },
});
