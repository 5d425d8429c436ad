// `mailsentry clients [list|apply|revert]`: finds the Thunderbird, fetchmail and mbsync accounts of
// this user, points them at the proxy's listeners (server, port, name/server user, the local CA
// trusted) and puts them back from the journal. The work is in core/clients; this file prints it.
import { defineCommand } from "citty";
import { accountId, applyClients, detectClients, revertClients, unknownAccounts, type FileOutcome, type FoundFile } from "../../core/clients/apply.ts";
import { CLIENT_KINDS } from "../../core/clients/index.ts";
import { proxyTarget } from "../../core/clients/target.ts";
import type { ClientKind, ProxyTarget } from "../../core/clients/types.ts";
import { loadConfig, stateDir } from "../../core/config/index.ts";
import { EXIT_ERROR, UsageError, VERSION } from "../report.ts";

const print = (s: string) => process.stdout.write(`${s}\n`);

const configArg = { config: { type: "string", description: "Config file (default $XDG_CONFIG_HOME/mailsentry/config.json)", valueHint: "file" } } as const;
const clientArg = { client: { type: "positional", description: `Only this client: ${CLIENT_KINDS.join(", ")}`, required: false } } as const;
const jsonArg = { json: { type: "boolean", description: "Print JSON" } } as const;

const NAMES: Record<ClientKind, string> = { thunderbird: "Thunderbird", fetchmail: "fetchmail", mbsync: "mbsync" };

function kindsOf(client: unknown): ClientKind[] {
  if (client === undefined || client === "") return [...CLIENT_KINDS];
  const c = String(client).toLowerCase();
  if (!(CLIENT_KINDS as readonly string[]).includes(c)) throw new UsageError(`unknown client ${JSON.stringify(client)} (one of: ${CLIENT_KINDS.join(", ")})`);
  return [c as ClientKind];
}

/** citty gives a repeated string flag as an array, a single one as a string. */
function listOf(v: unknown): string[] {
  if (v === undefined || v === false) return [];
  return (Array.isArray(v) ? v : [v]).flatMap((x) => String(x).split(",")).filter(Boolean);
}

function accountsJson(found: FoundFile[]) {
  return found.map((f) => ({
    client: f.client,
    file: f.file,
    error: f.error,
    accounts: f.accounts.map((a) => ({ id: accountId(a), label: a.label, protocol: a.protocol, server: a.server, port: a.port, security: a.security, user: a.user, proxied: a.proxied, unsupported: a.unsupported })),
  }));
}

function printFound(found: FoundFile[]): void {
  if (found.length === 0) {
    print("no Thunderbird profile, ~/.fetchmailrc or mbsync config found");
    return;
  }
  for (const f of found) {
    print(`${NAMES[f.client]}  ${f.file}`);
    if (f.error) print(`  cannot read it: ${f.error}`);
    else if (f.accounts.length === 0) print("  no POP3 or IMAP account");
    for (const a of f.accounts) {
      const status = a.unsupported ? `cannot be set up: ${a.unsupported}` : a.proxied ? "through mailsentry" : "direct";
      print(`  ${accountId(a)}  ${a.label}`);
      print(`      ${a.protocol} ${a.server}:${a.port} ${a.security}, user ${a.user || "(none)"}: ${status}`);
    }
  }
}

function describeTarget(t: ProxyTarget, from: string): string {
  const ports = Object.entries(t.ports).map(([p, n]) => `${p} ${n}`).join(", ");
  return `mailsentry listeners (from the ${from}): ${t.host}: ${ports || "none"}`;
}

const show = (v: string | null) => (v === null ? "(unset)" : v);

/** Prints what apply or revert did; returns whether every file was handled. */
export function printOutcomes(outcomes: FileOutcome[], verb: "changed" | "would change" | "put back"): boolean {
  let ok = true;
  for (const o of outcomes) {
    if (o.changes.length === 0 && o.skipped.length === 0 && !o.refused && !o.trust && o.notes.length === 0) continue;
    print(`${NAMES[o.client]}  ${o.file}`);
    if (o.refused) {
      ok = false;
      print(`  not written: ${o.refused}`);
    }
    for (const c of o.changes) print(`  ${verb} ${c.key}: ${show(c.from)} → ${show(c.to)}`);
    for (const s of o.skipped) print(`  left alone ${s.account}: ${s.reason}`);
    if (o.trust) print(`  CA: ${o.trust}`);
    for (const n of o.notes) print(`  ${n}`);
    if (o.backup) print(`  backup of the file before: ${o.backup}`);
  }
  return ok;
}

/** What the user will meet in each client after apply. */
function afterApplyNotes(outcomes: FileOutcome[]): string[] {
  const touched = new Set(outcomes.filter((o) => o.changes.length > 0).map((o) => o.client));
  const notes: string[] = [];
  if (touched.has("thunderbird")) notes.push("Thunderbird keeps saved passwords per server and user name: it asks once for the password of each changed account (the same password as before).");
  if (touched.size) notes.push("`mailsentry clients revert` puts every changed value back.");
  return notes;
}

/** Reverts the journalled client set-up and prints it (also used by `unload --restore-clients` and `service uninstall`). */
export async function revertAndReport(kinds: ClientKind[] = [...CLIENT_KINDS]): Promise<boolean> {
  const outcomes = await revertClients({ env: process.env, stateDir: stateDir(), kinds });
  if (outcomes.every((o) => o.changes.length === 0 && o.skipped.length === 0 && !o.refused && !o.trust)) {
    print("no client set-up to put back");
    return true;
  }
  return printOutcomes(outcomes, "put back");
}

const list = defineCommand({
  meta: { name: "list", description: "The POP3 and IMAP accounts of Thunderbird, fetchmail and mbsync, and whether they go through mailsentry" },
  args: { ...clientArg, ...jsonArg },
  async run({ args }) {
    const found = await detectClients(process.env, kindsOf(args.client));
    if (args.json) print(JSON.stringify({ version: VERSION, clients: accountsJson(found) }, null, 2));
    else printFound(found);
  },
});

const apply = defineCommand({
  meta: { name: "apply", description: "Point accounts at mailsentry (server, port, name/server user, the local CA trusted); keeps a backup and a journal" },
  args: {
    ...clientArg,
    account: { type: "string", description: "Only this account (id from `mailsentry clients`, or its name); may be repeated", valueHint: "id" },
    "dry-run": { type: "boolean", description: "Say what would change, write nothing" },
    ...jsonArg,
    ...configArg,
  },
  async run({ args }) {
    const kinds = kindsOf(args.client);
    const wanted = listOf(args.account);
    if (wanted.length) {
      const unknown = unknownAccounts(await detectClients(process.env, kinds), wanted);
      if (unknown.length) throw new UsageError(`no account ${unknown.map((u) => JSON.stringify(u)).join(", ")} (see \`mailsentry clients\`)`);
    }
    const { config } = await loadConfig({ file: args.config });
    const { target, from } = await proxyTarget(config, stateDir());
    const dryRun = Boolean(args["dry-run"]);
    const outcomes = await applyClients({ env: process.env, stateDir: stateDir(), target, kinds, accounts: wanted, dryRun });
    const ok = outcomes.every((o) => !o.refused);
    if (args.json) {
      print(JSON.stringify({ version: VERSION, target, dryRun, files: outcomes, exitCode: ok ? 0 : EXIT_ERROR }, null, 2));
    } else {
      print(describeTarget(target, from));
      if (outcomes.length === 0) print("no Thunderbird profile, ~/.fetchmailrc or mbsync config found");
      printOutcomes(outcomes, dryRun ? "would change" : "changed");
      if (!outcomes.some((o) => o.changes.length)) print(dryRun ? "nothing would change" : "nothing changed");
      else if (!dryRun) for (const n of afterApplyNotes(outcomes)) print(n);
    }
    if (!ok) process.exitCode = EXIT_ERROR;
  },
});

const revert = defineCommand({
  meta: { name: "revert", description: "Put back every value `clients apply` changed, where it is still the value mailsentry wrote" },
  args: { ...clientArg, ...jsonArg },
  async run({ args }) {
    const kinds = kindsOf(args.client);
    if (args.json) {
      const outcomes = await revertClients({ env: process.env, stateDir: stateDir(), kinds });
      const ok = outcomes.every((o) => !o.refused);
      print(JSON.stringify({ version: VERSION, files: outcomes, exitCode: ok ? 0 : EXIT_ERROR }, null, 2));
      if (!ok) process.exitCode = EXIT_ERROR;
      return;
    }
    if (!(await revertAndReport(kinds))) process.exitCode = EXIT_ERROR;
  },
});

const SUBCOMMANDS = new Set(["list", "apply", "revert"]);

export default defineCommand({
  meta: { name: "clients", description: "Set up Thunderbird, fetchmail and mbsync to go through mailsentry, and put them back" },
  args: { ...jsonArg },
  subCommands: { list, apply, revert },
  // `mailsentry clients` alone lists (citty runs this after a subcommand too: only when there was none).
  run: (ctx) => (ctx.rawArgs.some((a) => SUBCOMMANDS.has(a)) ? undefined : list.run!(ctx as never)),
});
