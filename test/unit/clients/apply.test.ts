// The orchestration every client shares: values journalled and put back only where they are still
// ours, a file changed since it was read refused, symlinked dotfiles written through, modes kept,
// accounts chosen by id or name, reverting twice harmless.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { lstat, mkdir, mkdtemp, readFile, readlink, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { accountId, applyClients, detectClients, revertClients, unknownAccounts, writeChecked } from "../../../core/clients/apply.ts";
import { readJournal } from "../../../core/clients/journal.ts";
import type { ProxyTarget } from "../../../core/clients/types.ts";

let home: string;
let state: string;
const env = () => ({ HOME: home, XDG_CONFIG_HOME: join(home, ".config") });
const target = (): ProxyTarget => ({ host: "127.0.0.1", dnsName: "localhost", ports: { pop3: 1110, pop3s: 1995, imap: 1143, imaps: 1993 }, caFile: join(state, "ca.pem") });

const MBSYNCRC = "IMAPAccount work\nHost imap.example.com\nUser bob\nPass x\nSSLType IMAPS\n\nIMAPAccount home\nHost mail.example.net\nUser carol\nSSLType None\n\nIMAPStore work-remote\nAccount work\n";
const FETCHMAILRC = 'poll pop.example.com protocol pop3 user "ann" password "pw" keep\n';

beforeEach(async () => {
  home = await mkdtemp(join(tmpdir(), "mailsentry-apply-"));
  state = join(home, "state");
});
afterEach(() => rm(home, { recursive: true, force: true }));

describe("apply and revert", () => {
  test("journalled values go back exactly; a second revert does nothing", async () => {
    await writeFile(join(home, ".mbsyncrc"), MBSYNCRC, { mode: 0o640 });
    const out = await applyClients({ env: env(), stateDir: state, target: target() });
    expect(out.map((o) => [o.client, o.refused, o.changes.length > 0])).toEqual([["mbsync", null, true]]);
    const applied = await readFile(join(home, ".mbsyncrc"), "utf8");
    // TLS by the name the certificate carries (isync checks names only), plain by address.
    expect(applied).toContain("Host localhost\nPort 1993\nUser bob/imap.example.com:993\n");
    expect(applied).toContain("Host 127.0.0.1\nPort 1143\nUser carol/mail.example.net:143\n");
    expect((await stat(join(home, ".mbsyncrc"))).mode & 0o777).toBe(0o640);
    expect(await readFile(out[0]!.backup!, "utf8")).toBe(MBSYNCRC);
    expect((await readJournal(state)).changes.length).toBe(out[0]!.changes.length);

    await revertClients({ env: env(), stateDir: state });
    expect(await readFile(join(home, ".mbsyncrc"), "utf8")).toBe(MBSYNCRC);
    expect((await readJournal(state)).changes).toEqual([]);
    const again = await revertClients({ env: env(), stateDir: state });
    expect(again).toEqual([]);
    expect(await readFile(join(home, ".mbsyncrc"), "utf8")).toBe(MBSYNCRC);
  });

  test("a value the user changed after apply is left as it is, with a warning; the rest goes back", async () => {
    await writeFile(join(home, ".mbsyncrc"), MBSYNCRC);
    await applyClients({ env: env(), stateDir: state, target: target() });
    const applied = await readFile(join(home, ".mbsyncrc"), "utf8");
    await writeFile(join(home, ".mbsyncrc"), applied.replace("User carol/mail.example.net:143", "User carol2"));
    const [o] = await revertClients({ env: env(), stateDir: state });
    expect(o!.skipped).toEqual([expect.objectContaining({ reason: expect.stringContaining('is carol2 now, not the carol/mail.example.net:143 mailsentry wrote') })]);
    expect(await readFile(join(home, ".mbsyncrc"), "utf8")).toBe(MBSYNCRC.replace("User carol", "User carol2"));
  });

  test("a file removed since apply is reported and dropped from the journal", async () => {
    await writeFile(join(home, ".mbsyncrc"), MBSYNCRC);
    await applyClients({ env: env(), stateDir: state, target: target() });
    await rm(join(home, ".mbsyncrc"));
    const [o] = await revertClients({ env: env(), stateDir: state });
    expect([o!.refused, o!.skipped]).toEqual([null, [{ account: "(all)", reason: "the file is gone; nothing to put back" }]]);
    expect((await readJournal(state)).changes).toEqual([]);
  });

  test("--account chooses by id or by name; an unknown one is named", async () => {
    await writeFile(join(home, ".mbsyncrc"), MBSYNCRC);
    const found = await detectClients(env());
    const ids = found.flatMap((f) => f.accounts.map(accountId));
    expect(ids).toEqual(["mbsync:.mbsyncrc:IMAPAccount-work", "mbsync:.mbsyncrc:IMAPAccount-home"]);
    expect(unknownAccounts(found, ["home", "mbsync:.mbsyncrc:IMAPAccount-work", "nope"])).toEqual(["nope"]);
    await applyClients({ env: env(), stateDir: state, target: target(), accounts: ["home"] });
    const text = await readFile(join(home, ".mbsyncrc"), "utf8");
    expect(text).toContain("Host imap.example.com\nUser bob\n");
    expect(text).toContain("User carol/mail.example.net:143");
  });

  test("a dry run writes nothing and journals nothing", async () => {
    await writeFile(join(home, ".fetchmailrc"), FETCHMAILRC, { mode: 0o600 });
    const [o] = await applyClients({ env: env(), stateDir: state, target: target(), dryRun: true });
    expect(o!.changes.length).toBeGreaterThan(0);
    expect(await readFile(join(home, ".fetchmailrc"), "utf8")).toBe(FETCHMAILRC);
    expect((await readJournal(state)).changes).toEqual([]);
  });

  test("a dotfile symlinked from elsewhere stays a symlink; its target is written", async () => {
    await mkdir(join(home, "dotfiles"));
    await writeFile(join(home, "dotfiles", "fetchmailrc"), FETCHMAILRC, { mode: 0o600 });
    await symlink(join(home, "dotfiles", "fetchmailrc"), join(home, ".fetchmailrc"));
    await applyClients({ env: env(), stateDir: state, target: target() });
    expect((await lstat(join(home, ".fetchmailrc"))).isSymbolicLink()).toBe(true);
    expect(await readlink(join(home, ".fetchmailrc"))).toBe(join(home, "dotfiles", "fetchmailrc"));
    expect(await readFile(join(home, "dotfiles", "fetchmailrc"), "utf8")).toContain('"ann/pop.example.com:110"');
    expect((await stat(join(home, "dotfiles", "fetchmailrc"))).mode & 0o777).toBe(0o600);
  });

  test("a file that changed since it was read is not written", async () => {
    const file = join(home, ".fetchmailrc");
    await writeFile(file, FETCHMAILRC);
    await writeFile(file, FETCHMAILRC + "# edited meanwhile\n");
    await expect(writeChecked(file, FETCHMAILRC, "new text", state, new Date().toISOString(), "fetchmail")).rejects.toThrow("changed while mailsentry was reading it");
    expect(await readFile(file, "utf8")).toBe(FETCHMAILRC + "# edited meanwhile\n");
  });

  test("an account that needs a listener that is off is left alone with the reason", async () => {
    await writeFile(join(home, ".mbsyncrc"), MBSYNCRC);
    const t = target();
    delete t.ports.imaps;
    const [o] = await applyClients({ env: env(), stateDir: state, target: t });
    expect(o!.skipped).toEqual([{ account: "mbsync:.mbsyncrc:IMAPAccount-work", reason: expect.stringContaining("imaps listener") }]);
    expect(await readFile(join(home, ".mbsyncrc"), "utf8")).toContain("User carol/mail.example.net:143");
  });
});

describe("targetOf", () => {
  test("the first loopback routing listener of each protocol; wildcard binds are reached on 127.0.0.1", async () => {
    const { targetOf } = await import("../../../core/clients/target.ts");
    const t = targetOf([
      { protocol: "pop3", host: "127.0.0.1", port: 40001, fixed: true },
      { protocol: "pop3", host: "127.0.0.1", port: 40002, fixed: false },
      { protocol: "pop3s", host: "192.0.2.7", port: 40003, fixed: false },
      { protocol: "imaps", host: "0.0.0.0", port: 40004, fixed: false },
    ], "/ca.pem");
    expect(t).toEqual({ host: "127.0.0.1", dnsName: "localhost", ports: { pop3: 40002, imaps: 40004 }, caFile: "/ca.pem" });
  });
});

describe("Thunderbird folder URIs outside prefs.js", () => {
  test("filter targets and saved searches move with the account and come back byte for byte", async () => {
    const { makeProfile } = await import("../../helpers/thunderbird.ts");
    const prefs = await makeProfile(home, [
      { type: "imap", prefs: { hostname: "imap.example.com", userName: "bob", socketType: 3, "directory-rel": "[ProfD]ImapMail/imap.example.com" }, identity: { fcc_folder: "imap://bob@imap.example.com/Sent" } },
    ], { real: false });
    const profile = join(prefs, "..");
    await mkdir(join(profile, "ImapMail", "imap.example.com"), { recursive: true });
    const filters = join(profile, "ImapMail", "imap.example.com", "msgFilterRules.dat");
    const rules = 'version="9"\nlogging="no"\nname="Lists"\nenabled="yes"\ntype="17"\naction="Move to folder"\nactionValue="imap://bob@imap.example.com/INBOX/Lists"\ncondition="AND (from,contains,list@example.org)"\nname="Other"\nenabled="yes"\ntype="17"\naction="Move to folder"\nactionValue="imap://bob@imap.example.com.evil/x"\ncondition="ALL"\n';
    await writeFile(filters, rules);
    const virtual = join(profile, "virtualFolders.dat");
    const searches = "version=1\nuri=mailbox://nobody@Local%20Folders/Unread\nscope=imap://bob@imap.example.com/INBOX|mailbox://nobody@Local%20Folders/Inbox\nterms=AND (has attachment status,is,true)\n";
    await writeFile(virtual, searches);

    const { ensureCa } = await import("../../../core/tls/ca.ts");
    const ca = await ensureCa(state);
    const [o] = await applyClients({ env: env(), stateDir: state, target: { ...target(), caFile: ca.paths.caCert } });
    expect(o!.refused).toBeNull();
    const moved = "imap://bob%2Fimap.example.com%3A993@127.0.0.1";
    expect(await readFile(filters, "utf8")).toBe(rules.replace("imap://bob@imap.example.com/INBOX/Lists", `${moved}/INBOX/Lists`));
    expect(await readFile(virtual, "utf8")).toBe(searches.replace("imap://bob@imap.example.com/INBOX", `${moved}/INBOX`));
    expect(await readFile(prefs, "utf8")).toContain(`"${moved}/Sent"`);

    await revertClients({ env: env(), stateDir: state });
    expect(await readFile(filters, "utf8")).toBe(rules);
    expect(await readFile(virtual, "utf8")).toBe(searches);
  });
});
