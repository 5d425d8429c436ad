// `mailsentry clients apply` and `revert` on config files as users write them, then the real
// programs run: fetchmail and mbsync fetch from a real Dovecot through the proxy after apply (the
// infected message arrives cleaned), and directly again after revert, with files byte-identical to
// before. Thunderbird's profile is made by Thunderbird itself where it is installed.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { have, infectedMessage, run, cleanCorpus } from "../helpers/clients.ts";
import { startDovecot, type Dovecot } from "../helpers/dovecot.ts";
import { eicar, EICAR_TEXT } from "../helpers/eicar.ts";
import { cliCommand, cliEnv, freePort, startProxyProcess, type ProxyProcess } from "../helpers/proxy.ts";
import { haveThunderbird, makeProfile, startThunderbird, stopThunderbird, waitFor } from "../helpers/thunderbird.ts";

const ready = have("dovecot") && have("fetchmail") && have("mbsync");
const PW = "pw-clients";
const EICAR_B64 = Buffer.from(EICAR_TEXT).toString("base64");
const hasEicar = (s: string) => s.includes(EICAR_TEXT) || s.replace(/\r?\n/g, "").includes(EICAR_B64);

describe.skipIf(!ready)("clients apply and revert, then the real clients run", () => {
  let dc: Dovecot;
  let home: string;
  let proxy: ProxyProcess;
  const ports = { pop3: 0, pop3s: 0, imap: 0, imaps: 0 };
  const env = () => ({ ...cliEnv(home), HOME: home });

  async function cli(args: string[]) {
    const proc = Bun.spawn([...cliCommand(), ...args], { env: env(), stdout: "pipe", stderr: "pipe", stdin: "ignore" });
    const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    return { code, stdout, stderr };
  }

  beforeAll(async () => {
    dc = await startDovecot({ users: [{ name: "alice", password: PW }, { name: "bob", password: PW }] });
    const clean = cleanCorpus()[0]!.bytes;
    await dc.seed("alice", [clean]);
    await dc.seed("bob", [clean, infectedMessage(eicar())]);
    home = await mkdtemp(join(tmpdir(), "mailsentry-clients-"));
    for (const k of Object.keys(ports) as (keyof typeof ports)[]) ports[k] = await freePort();
    const config = join(home, "mailsentry.json");
    await writeFile(config, JSON.stringify({
      action: "clean",
      listeners: Object.fromEntries(Object.entries(ports).map(([p, n]) => [p, { enabled: true, addresses: [`127.0.0.1:${n}`] }])),
      allowedUpstreamPorts: Object.values(dc.ports),
      upstreamCaFile: dc.caFile,
      // Dovecot's implicit-TLS ports here are not 995/993.
      upstreamImplicitTlsPorts: { pop3: [dc.ports.pop3s], imap: [dc.ports.imaps] },
    }));
    proxy = await startProxyProcess({ config, home });
  }, 60_000);

  afterAll(async () => {
    proxy?.proc.kill();
    await proxy?.proc.exited;
    await dc?.stop();
    if (home) await rm(home, { recursive: true, force: true });
  });

  test("fetchmail: apply routes it through the proxy and carries its seen-list over; revert puts the rc file back byte for byte", async () => {
    const mbox = join(home, "fetched.mbox");
    const mda = join(home, "mda.sh");
    await writeFile(mda, `#!/bin/sh\n{ echo "From fetchmail"; cat; echo; } >> "$1"\n`, { mode: 0o755 });
    const rcFile = join(home, ".fetchmailrc");
    // As a user writes it: POP3S straight to the server, the server's CA checked.
    // As a user writes it: POP3S straight to the server, its CA checked, mail kept on the server
    // (fetchmail then remembers the UIDs it has seen and fetches only new mail).
    const rc = `# my mail\nset no syslog\n\npoll localhost protocol POP3 port ${dc.ports.pop3s}\n  user "alice" there with password "${PW}" is "me" here\n  ssl sslcertfile "${dc.caFile}" sslcertck\n  keep mda "${mda} ${mbox}"\n`;
    await writeFile(rcFile, rc, { mode: 0o600 });
    /** The messages this run delivered. */
    const fetch = async () => {
      await rm(mbox, { force: true });
      const r = await run(["fetchmail", "-f", rcFile, "--nosyslog", "--pidfile", join(home, "fetchmail.pid")], { env: { ...(process.env as Record<string, string>), HOME: home } });
      expect([r.code, Buffer.from(r.err).toString()]).toEqual([0, expect.any(String)]);
      return (await readFile(mbox, "latin1")).split("From fetchmail\n").slice(1);
    };
    expect((await fetch()).length).toBe(1); // direct: the one clean message

    const listed = await cli(["clients", "list", "fetchmail", "--json"]);
    const account = JSON.parse(listed.stdout).clients[0].accounts[0];
    expect(account).toMatchObject({ protocol: "pop3", server: "localhost", port: dc.ports.pop3s, security: "tls", user: "alice", proxied: false });

    const applied = await cli(["clients", "apply", "fetchmail"]);
    expect([applied.code, applied.stderr]).toEqual([0, ""]);
    // The running proxy says where it listens (the control socket), not the config file.
    expect(applied.stdout).toContain(`mailsentry listeners (from the running proxy): 127.0.0.1: pop3 ${ports.pop3}, pop3s ${ports.pop3s}`);
    expect((await stat(rcFile)).mode & 0o777).toBe(0o600); // fetchmail refuses anything wider
    const after = JSON.parse((await cli(["clients", "list", "fetchmail", "--json"])).stdout).clients[0].accounts[0];
    expect(after).toMatchObject({ port: ports.pop3s, security: "tls", user: `alice/localhost:${dc.ports.pop3s}`, proxied: true });
    // Only the new message comes, cleaned: the kept one is still known under the routed name.
    await dc.seed("alice", [infectedMessage(eicar())]);
    const proxied = await fetch();
    expect(proxied.length).toBe(1);
    expect(proxied[0]).toContain("X-Virus-Status: Cleaned");
    expect(hasEicar(proxied[0]!)).toBe(false);
    // Applying again changes nothing.
    expect((await cli(["clients", "apply", "fetchmail"])).stdout).toContain("nothing changed");

    const reverted = await cli(["clients", "revert"]);
    expect(reverted.code).toBe(0);
    expect(await readFile(rcFile, "utf8")).toBe(rc);
    // Direct again: only the next new message, the server's copy as it is.
    await dc.seed("alice", [infectedMessage(eicar(), "direct.com", "direct")]);
    const direct = await fetch();
    expect([direct.length, hasEicar(direct[0]!)]).toEqual([1, true]);
    expect((await cli(["clients", "revert"])).stdout).toContain("no client set-up to put back");
  }, 60_000);

  test("mbsync: apply routes it through the proxy, revert puts the rc file back byte for byte", async () => {
    const local = join(home, "Mail");
    const rcFile = join(home, ".mbsyncrc");
    const rc = [
      "IMAPAccount work",
      "Host localhost",
      `Port ${dc.ports.imaps}`,
      "User bob",
      `Pass ${PW}`,
      "SSLType IMAPS",
      `CertificateFile ${dc.caFile}`,
      "",
      "IMAPStore work-remote",
      "Account work",
      "",
      "MaildirStore work-local",
      `Path ${local}/`,
      `Inbox ${local}/INBOX`,
      "",
      "Channel work",
      "Far :work-remote:",
      "Near :work-local:",
      "Patterns INBOX",
      "Sync Pull",
      "Create Near",
      "",
    ].join("\n");
    await writeFile(rcFile, rc, { mode: 0o600 });
    const sync = async () => {
      // A fresh copy each time (mail and mbsync's sync state), so every run fetches everything.
      await rm(local, { recursive: true, force: true });
      await rm(join(home, ".mbsync"), { recursive: true, force: true });
      await mkdir(local); // mbsync creates mailboxes, not the store's directory
      const r = await run(["mbsync", "-a"], { env: { ...(process.env as Record<string, string>), HOME: home, XDG_CONFIG_HOME: join(home, "no-xdg") } });
      expect([r.code, Buffer.from(r.err).toString()]).toEqual([0, expect.any(String)]);
      const out: string[] = [];
      for (const sub of ["cur", "new"]) for (const f of await readdir(join(local, "INBOX", sub))) out.push(await readFile(join(local, "INBOX", sub, f), "latin1"));
      return out;
    };
    const direct = await sync();
    expect([direct.length, direct.some(hasEicar)]).toEqual([2, true]);

    const applied = await cli(["clients", "apply", "mbsync"]);
    expect([applied.code, applied.stderr]).toEqual([0, ""]);
    const after = JSON.parse((await cli(["clients", "list", "mbsync", "--json"])).stdout).clients[0].accounts[0];
    expect(after).toMatchObject({ protocol: "imap", port: ports.imaps, security: "tls", user: `bob/localhost:${dc.ports.imaps}`, proxied: true });
    const proxied = await sync();
    expect(proxied.length).toBe(2);
    expect(proxied.some(hasEicar)).toBe(false);
    expect(proxied.some((m) => m.includes("X-Virus-Status: Cleaned"))).toBe(true);

    expect((await cli(["unload", "--restore-clients"])).stdout).toContain("put back");
    expect(await readFile(rcFile, "utf8")).toBe(rc);
    // unload stopped the proxy too; mbsync runs directly again.
    const again = await sync();
    expect([again.length, again.some(hasEicar)]).toEqual([2, true]);
  }, 60_000);
});

describe.skipIf(!haveThunderbird)("Thunderbird, with a profile Thunderbird wrote itself", () => {
  let home: string;
  beforeAll(async () => {
    home = await mkdtemp(join(tmpdir(), "mailsentry-tb-"));
  });
  afterAll(async () => {
    if (home) await rm(home, { recursive: true, force: true });
  });

  const env = () => ({ ...cliEnv(home), HOME: home });
  async function cli(args: string[]) {
    const proc = Bun.spawn([...cliCommand(), ...args], { env: env(), stdout: "pipe", stderr: "pipe", stdin: "ignore" });
    const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    return { code, stdout, stderr };
  }

  test("apply changes each account's server, port and user, trusts the CA, refuses while Thunderbird runs; revert is byte-identical", async () => {
    const prefs = await makeProfile(home, [
      { type: "pop3", prefs: { hostname: "pop.example.com", userName: "alice", socketType: 3, port: 995 } },
      { type: "imap", prefs: { hostname: "imap.example.com", userName: "bob", socketType: 2 } },
      { type: "imap", prefs: { hostname: "plain.example.com", userName: "carol", socketType: 0 } },
    ], { real: true });
    const before = await readFile(prefs, "utf8");
    const profile = join(prefs, "..");

    /** Runs the command while Thunderbird has the profile open: it must be refused. */
    const refusedWhileRunning = async (args: string[]) => {
      const tb = startThunderbird(home, profile);
      try {
        await waitFor("Thunderbird's profile lock", async () => Boolean(await lstat(join(profile, "lock")).catch(() => null)));
        const r = await cli(args);
        expect([r.code, r.stdout]).toEqual([2, expect.stringContaining("Thunderbird is running")]);
      } finally {
        await stopThunderbird(tb);
      }
    };
    await refusedWhileRunning(["clients", "apply", "thunderbird"]);
    expect(await readFile(prefs, "utf8")).toBe(before);

    const applied = await cli(["clients", "apply", "thunderbird", "--json"]);
    expect(applied.code).toBe(0);
    const accounts = JSON.parse((await cli(["clients", "list", "thunderbird", "--json"])).stdout).clients[0].accounts;
    expect(accounts.map((a: { server: string; port: number; security: string; user: string; proxied: boolean }) => [a.server, a.port, a.security, a.user, a.proxied])).toEqual([
      ["127.0.0.1", 1995, "tls", "alice/pop.example.com:995", true],
      ["127.0.0.1", 1143, "starttls", "bob/imap.example.com:143", true],
      ["127.0.0.1", 1143, "plain", "carol/plain.example.com:143", true],
    ]);
    if (have("certutil")) {
      const listed = await run(["certutil", "-L", "-d", `sql:${profile}`]);
      expect(Buffer.from(listed.out).toString()).toContain("mailsentry local CA");
    }
    const doc = JSON.parse(applied.stdout);
    expect(doc.files[0].backup).toBeTruthy();
    expect(await readFile(doc.files[0].backup, "utf8")).toBe(before);

    // Revert waits for Thunderbird too: refused while it runs, the journal kept for later.
    await refusedWhileRunning(["clients", "revert", "thunderbird"]);
    const reverted = await cli(["clients", "revert", "thunderbird"]);
    expect(reverted.code).toBe(0);
    expect(await readFile(prefs, "utf8")).toBe(before);
    if (have("certutil")) {
      const listed = await run(["certutil", "-L", "-d", `sql:${profile}`]);
      expect(Buffer.from(listed.out).toString()).not.toContain("mailsentry local CA");
    }
  }, 90_000);
});
