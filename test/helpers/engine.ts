// A fake engine for fault-injection tests only: it fails the way a broken engine would.
import type { Detection, Engine } from "../../core/scan/engine.ts";

/** An engine whose scan always throws (sync) or rejects (async). */
export function throwingEngine(mode: "sync" | "async" = "sync", message = "engine exploded"): Engine {
  return {
    name: "throwing",
    scan(): Detection | null | Promise<Detection | null> {
      if (mode === "async") return Promise.reject(new Error(message));
      throw new Error(message);
    },
  };
}
