// The engine chain a configuration names: the built-in engine is the pipeline's own; clamd and
// ICAP are network engines, built here (they talk to sockets, which core/scan never does).
import type { Config, EngineConfig } from "../../config/types.ts";
import type { ScanLimits } from "../../limits.ts";
import type { Chain } from "../../scan/chain.ts";
import type { MessageEngine } from "../../scan/engine.ts";
import { CLAMD_DEFAULTS, ClamdEngine } from "./clamd.ts";
import { IcapEngine } from "./icap.ts";

/** The message engines a configuration names, in order (the built-in one is the pipeline's). */
export function chainFromConfig(c: Pick<Config, "engines" | "engineMode" | "limits">): Chain {
  const engines: MessageEngine[] = [];
  for (const e of c.engines) {
    if (e === "builtin") continue;
    engines.push(messageEngine(e, c.limits));
  }
  return { builtin: c.engines.includes("builtin"), engines, mode: c.engineMode };
}

function messageEngine(e: Exclude<EngineConfig, "builtin">, limits: ScanLimits): MessageEngine {
  // An engine gets at least the pipeline's own time per message, as clamd's MaxScanTime would.
  const timeoutMs = e.timeout ?? Math.max(CLAMD_DEFAULTS.timeoutMs, limits.maxScanTime + 5000);
  const connections = e.connections ?? CLAMD_DEFAULTS.connections;
  if ("clamd" in e) return new ClamdEngine({ addresses: e.clamd, timeoutMs, connections });
  return new IcapEngine({ urls: e.icap, timeoutMs, connections });
}
