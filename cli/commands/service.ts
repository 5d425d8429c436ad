// `mailsentry service install|uninstall`: a systemd user unit that starts the proxy at login and
// restarts it when it fails; `unload` stops it. The unit names this very program by its absolute
// path (the compiled binary, or bun with cli/main.ts), so it keeps working from any directory.
import { defineCommand } from "citty";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { UsageError } from "../report.ts";
import { revertAndReport } from "./clients.ts";

export function unitPath(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CONFIG_HOME && isAbsolute(env.XDG_CONFIG_HOME) ? env.XDG_CONFIG_HOME : join(env.HOME || homedir(), ".config");
  return join(base, "systemd", "user", "mailsentry.service");
}

/** The command line that runs this program: the compiled binary, or the runtime with the entry script. */
export function selfCommand(): string[] {
  const compiled = import.meta.url.includes("/$bunfs/");
  return compiled ? [process.execPath] : [process.execPath, resolve(import.meta.dir, "../main.ts")];
}

/** systemd's quoting: words with blanks or specials in double quotes, backslash and quote escaped. */
function quote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `"${word.replace(/(["\\])/g, "\\$1")}"`;
}

export function unitText(command: string[], config: string | null): string {
  const exec = command.map(quote).join(" ");
  return [
    "# Written by `mailsentry service install`; `mailsentry service uninstall` removes it.",
    "[Unit]",
    "Description=mailsentry antivirus proxy for POP3 and IMAP",
    "",
    "[Service]",
    "Type=simple",
    `ExecStart=${exec} serve`,
    `ExecStop=${exec} unload`,
    `ExecReload=/bin/kill -HUP $MAINPID`,
    ...(config ? [`Environment=${quote(`MAILSENTRY_CONFIG=${config}`)}`] : []),
    "Restart=on-failure",
    "RestartSec=5",
    "",
    "[Install]",
    "WantedBy=default.target",
    "",
  ].join("\n");
}

const install = defineCommand({
  meta: { name: "install", description: "Write a systemd user unit that runs the proxy (and say how to enable it)" },
  args: {
    config: { type: "string", description: "Config file the service uses (default: the usual one)", valueHint: "file" },
    force: { type: "boolean", description: "Replace a unit that differs from the one this would write" },
  },
  async run({ args }) {
    const path = unitPath();
    const config = args.config ? resolve(args.config) : (process.env.MAILSENTRY_CONFIG ? resolve(process.env.MAILSENTRY_CONFIG) : null);
    const text = unitText(selfCommand(), config);
    const old = await readFile(path, "utf8").catch(() => null);
    if (old !== null && old !== text && !args.force) throw new UsageError(`${path} exists and differs; --force replaces it`);
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, text);
    process.stdout.write([
      `wrote ${path}`,
      "enable and start it (it then starts at every login):",
      "  systemctl --user daemon-reload && systemctl --user enable --now mailsentry",
      "to keep it running while you are logged out, once: loginctl enable-linger $USER",
      "logs: journalctl --user -u mailsentry",
      "",
    ].join("\n"));
  },
});

const uninstall = defineCommand({
  meta: { name: "uninstall", description: "Remove the systemd user unit and put the mail clients back (stop and disable it first)" },
  args: { "keep-clients": { type: "boolean", description: "Leave the client set-up of `mailsentry clients apply` in place" } },
  async run({ args }) {
    const path = unitPath();
    const old = await readFile(path, "utf8").catch(() => null);
    if (old !== null && !old.startsWith("# Written by `mailsentry service install`")) throw new UsageError(`${path} was not written by mailsentry; left alone`);
    // Without the service the clients would point at a proxy that no longer starts.
    if (!args["keep-clients"] && !(await revertAndReport())) process.exitCode = 2;
    if (old === null) { process.stdout.write(`no unit at ${path}: nothing to remove\n`); return; }
    await rm(path);
    process.stdout.write([
      `removed ${path}`,
      "if it was enabled: systemctl --user disable --now mailsentry; systemctl --user daemon-reload",
      "",
    ].join("\n"));
  },
});

export default defineCommand({
  meta: { name: "service", description: "Run the proxy as a systemd user service: install or uninstall its unit" },
  subCommands: { install, uninstall },
});
