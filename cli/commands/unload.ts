// `mailsentry unload`: stops the running proxy (the seed's unload command). Asks over the control
// socket so sessions in flight may finish, falls back to SIGTERM, and waits until the process is
// gone. Exit codes: 0 stopped, 1 no proxy was running (a stale pidfile is removed), 2 failure.
import { defineCommand } from "citty";
import { rm } from "node:fs/promises";
import { loadConfig, stateDir } from "../../core/config/index.ts";
import { controlPaths, processAlive, readPid, sendControl } from "../../core/control.ts";

export default defineCommand({
  meta: { name: "unload", description: "Stop the running proxy (exit 0 stopped, 1 none was running, 2 failed)" },
  args: {
    config: { type: "string", description: "Config file (for the drain deadline)", valueHint: "file" },
    "restore-clients": { type: "boolean", description: "Also put back the mail-client set-up of `mailsentry clients apply`" },
  },
  async run({ args }) {
    // Clients first: they stop pointing at the proxy before it goes, whether or not it runs.
    if (args["restore-clients"]) {
      const { revertAndReport } = await import("./clients.ts");
      if (!(await revertAndReport())) process.exitCode = 2;
    }
    const state = stateDir();
    const paths = controlPaths(state);
    const found = await readPid(state);
    if (!found) {
      process.stderr.write(`mailsentry: no proxy is running (no pidfile at ${paths.pidFile})\n`);
      process.exitCode ??= 1;
      return;
    }
    if (!found.alive) {
      await rm(paths.pidFile, { force: true });
      await rm(paths.socket, { force: true });
      process.stderr.write(`mailsentry: no proxy is running (removed a stale pidfile for pid ${found.pid})\n`);
      process.exitCode ??= 1;
      return;
    }
    let drain = 30_000;
    try {
      drain = (await loadConfig({ file: args.config })).config.limits.drainTimeout;
    } catch { /* the default deadline will do */ }
    try {
      await sendControl(state, "stop", 5_000);
    } catch {
      // No control socket (or no answer): a signal does the same.
      process.kill(found.pid, "SIGTERM");
    }
    const deadline = Date.now() + drain + 5_000;
    while (processAlive(found.pid) && Date.now() < deadline) await Bun.sleep(100);
    if (processAlive(found.pid)) {
      process.stderr.write(`mailsentry: the proxy (pid ${found.pid}) did not stop within ${Math.round((drain + 5_000) / 1000)} s\n`);
      process.exitCode = 2;
      return;
    }
    process.stdout.write(`mailsentry proxy (pid ${found.pid}) stopped\n`);
  },
});
