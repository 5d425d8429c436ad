// `mailsentry serve`: runs the proxy in the foreground. SIGTERM/SIGINT (or `unload`) stop accepting
// and let sessions finish up to limits.drainTimeout; SIGHUP (or the control socket's "reload")
// reloads config and signatures for new sessions without dropping the ones in flight.
import { defineCommand } from "citty";
import { loadConfig, signaturesOrigin, signaturesProblem, stateDir } from "../../core/config/index.ts";
import { AlreadyRunning, Control } from "../../core/control.ts";
import { createLogger, type LogFormat, type LogLevelName } from "../../core/log.ts";
import { Service } from "../../core/service.ts";
import { UsageError } from "../report.ts";
import { withClamdFlag } from "./scan-file.ts";

export default defineCommand({
  meta: { name: "serve", description: "Run the POP3/POP3S proxy in the foreground (SIGTERM drains, SIGHUP reloads)" },
  args: {
    config: { type: "string", description: "Config file (default $XDG_CONFIG_HOME/mailsentry/config.json)", valueHint: "file" },
    "log-format": { type: "string", description: "text or json (one object per line); default: config logFormat", valueHint: "text|json" },
    "log-level": { type: "string", description: "error, warn, info or debug; default: config logLevel", valueHint: "level" },
    sigs: { type: "string", description: "Signature directory (overrides the config's `signatures`)", valueHint: "dir" },
    clamd: { type: "string", description: "Add clamd to the engines: unix:/path or tcp:host:port (comma-separated for several)", valueHint: "addr" },
  },
  async run({ args }) {
    const format = args["log-format"];
    if (format !== undefined && format !== "text" && format !== "json") throw new UsageError(`--log-format must be text or json (got ${JSON.stringify(format)})`);
    const level = args["log-level"];
    if (level !== undefined && !["error", "warn", "info", "debug"].includes(level)) throw new UsageError(`--log-level must be error, warn, info or debug (got ${JSON.stringify(level)})`);
    // --clamd holds across reloads: it is added to every configuration read.
    const load = async () => {
      const l = await loadConfig({ file: args.config });
      withClamdFlag(l.config, args.clamd);
      return l;
    };
    const first = await load();
    const log = createLogger({
      format: (format as LogFormat | undefined) ?? first.config.logFormat,
      level: (level as LogLevelName | undefined) ?? first.config.logLevel,
    });
    for (const w of first.warnings) log.warn(w);
    const state = stateDir();
    const signatures = args.sigs;
    const sigProblem = await signaturesProblem(signatures ?? first.config.signatures, signaturesOrigin(first, signatures));
    if (sigProblem) throw new UsageError(sigProblem);

    let service: Service | null = null;
    let stopping = false;
    const stop = async (why: string) => {
      if (stopping || !service) return;
      stopping = true;
      log.info("stop requested", { by: why });
      await service.stop();
    };
    const reload = async () => {
      if (!service) return;
      log.info("reloading configuration and signatures");
      const next = await load();
      for (const w of next.warnings) log.warn(w);
      await service.reload(next.config);
    };

    let control: Control;
    try {
      control = await Control.start(state, {
        stop: () => stop("control socket"),
        reload,
        status: () => {
          const cache = service?.messageCache;
          const cacheText = cache ? `, message cache ${cache.bytes} of ${cache.maxBytes} bytes (peak ${cache.peakBytes}, ${cache.entries} messages)` : "";
          return `pid ${process.pid}, ${service?.activeSessions ?? 0} session(s)${cacheText}`;
        },
        listeners: () => JSON.stringify(service?.listeners ?? []),
      }, (why) => log.warn("control socket: command refused", { reason: why }));
    } catch (e) {
      if (e instanceof AlreadyRunning) throw new UsageError(`${e.message}; stop it with \`mailsentry unload\``);
      throw e;
    }
    try {
      service = await Service.start({ config: first.config, stateDir: state, log, signatures });
    } catch (e) {
      await control.close();
      log.error((e as Error).message);
      process.exitCode = 2;
      return;
    }

    const onTerm = (sig: string) => () => void stop(sig).catch((e) => log.error("stop failed", { error: e }));
    process.on("SIGTERM", onTerm("SIGTERM"));
    process.on("SIGINT", onTerm("SIGINT"));
    process.on("SIGHUP", () => void reload().catch((e) => log.error("reload failed; the previous configuration stays in force", { error: (e as Error).message })));

    // Started by `npm start`: when npm goes away (killed, its terminal closed) the proxy goes too,
    // instead of living on as an orphan nobody started. The start script execs us, so npm is the parent.
    if (process.env.npm_lifecycle_event === "start") {
      const parent = process.ppid;
      setInterval(() => {
        if (process.ppid !== parent) void stop("the npm process that started it ended").catch(() => {});
      }, 1000).unref();
    }

    // Logged only once the signal handlers are in place: scripts may signal as soon as they see it.
    log.info("mailsentry proxy running", { pid: process.pid, stateDir: state, config: first.file });

    await service.done;
    await control.close();
    // Everything is closed; exit explicitly so no stray handle keeps a stopped proxy alive.
    process.exit(0);
  },
});
