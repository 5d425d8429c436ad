// mbsync's configuration: the accounts read from it, the plan that routes one through mailsentry, and
// byte-exact line edits (apply then revert gives the file back), checked with the real mbsync. mbsync
// has no parse-only mode: naming a channel that does not exist makes it read the whole file, report
// what it rejects and stop before connecting; and -l against a closed loopback port shows the Host and
// Port it read, without a server.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mbsync, planFor } from "../../../core/clients/mbsync.ts";
import type { ProxyTarget, Setting } from "../../../core/clients/types.ts";
import { applySettings, onlyAccount, revertSettings } from "../../helpers/client-format.ts";
import { have, run } from "../../helpers/clients.ts";

const FILE = "/home/u/.mbsyncrc";
const TARGET: ProxyTarget = { host: "127.0.0.1", dnsName: "localhost", ports: { imap: 10143, imaps: 10993 }, caFile: "/state/ca/ca.pem" };

const RC = `# ~/.mbsyncrc
Create Near
SyncState *

IMAPAccount work
    Host imap.work.example
    User "me@work.example"
    PassCmd "pass show mail/work"
    SSLType IMAPS
    # trust the company CA
    CertificateFile ~/.certs/work.pem

IMAPStore work-remote
    Account work

imapstore inline
host imaps:mail.example.org
USER bob
pass "sec ret"

IMAPAccount home
\tHost imap.home.example
\tPort 1143
\tUser alice\\"s
\tAuthMechs LOGIN PLAIN

MaildirStore local
    Path ~/Mail/
    Inbox ~/Mail/INBOX
    SubFolders Verbatim

Channel work
    Far :work-remote:
    Near :local:work/
    Patterns *

Group all
Channel work
`;

function accounts(text: string) {
  return mbsync.accounts(text, FILE);
}

const only = (text: string) => onlyAccount(mbsync, text, FILE);
const applyPlan = (text: string, ref: string, plan: Setting[]) => applySettings(mbsync, text, ref, plan);

describe("mbsync accounts", () => {
  test("IMAPAccount sections, and IMAPStore sections with their own Host and User", () => {
    expect(accounts(RC).map(({ file, ...a }) => a)).toEqual([
      { client: "mbsync", ref: "IMAPAccount work", label: "work", protocol: "imap", server: "imap.work.example", port: 993, security: "tls", user: "me@work.example", proxied: false, unsupported: null },
      { client: "mbsync", ref: "IMAPStore inline", label: "inline", protocol: "imap", server: "mail.example.org", port: 993, security: "tls", user: "bob", proxied: false, unsupported: null },
      { client: "mbsync", ref: "IMAPAccount home", label: "home", protocol: "imap", server: "imap.home.example", port: 1143, security: "starttls", user: 'alice"s', proxied: false, unsupported: null },
    ]);
  });

  test.each([
    ["SSLType IMAPS", "IMAPAccount a\nHost h\nUser u\nSSLType IMAPS\n", "tls", 993],
    ["SSLType STARTTLS", "IMAPAccount a\nHost h\nUser u\nSSLType starttls\n", "starttls", 143],
    ["SSLType None", "IMAPAccount a\nHost h\nUser u\nSSLType None\n", "plain", 143],
    ["TLSType (isync 1.5)", "IMAPAccount a\nHost h\nUser u\nTLSType IMAPS\n", "tls", 993],
    ["no SSLType: STARTTLS", "IMAPAccount a\nHost h\nUser u\n", "starttls", 143],
    ["Host imaps:", "IMAPAccount a\nHost imaps://h\nUser u\n", "tls", 993],
    ["a later SSLType over Host imaps:", "IMAPAccount a\nHost imaps:h\nUser u\nSSLType STARTTLS\n", "starttls", 143],
    ["UseIMAPS yes", "IMAPAccount a\nHost h\nUser u\nUseIMAPS yes\n", "tls", 993],
    ["RequireSSL no alone is ignored", "IMAPAccount a\nHost h\nUser u\nRequireSSL no\n", "starttls", 143],
    ["RequireSSL no without TLS versions", "IMAPAccount a\nHost h\nUser u\nRequireSSL no\nUseTLSv1 no\n", "plain", 143],
  ])("security: %s", (_, text, security, port) => {
    expect(only(text)).toMatchObject({ security, port });
  });

  test("a section ends at a blank line, not at a comment; keywords are case-insensitive, the last line counts", () => {
    const a = only("IMAPACCOUNT a\n  host first\n# comment\n  HOST second\n  User u\n   \nHost third\n");
    expect(a.server).toBe("second");
    expect(only('IMAPAccount a\nHost h # a comment\nUser "x y"z\\\\w\n').user).toBe("x yz\\w");
    expect(only("IMAPAccount a\nHost h#x\nUser u\n").server).toBe("h#x");
  });

  test("an IMAPStore with Account is not an account; the first section of a name counts", () => {
    expect(accounts("IMAPAccount a\nHost h\nUser u\n\nIMAPStore s\nAccount a\n\nIMAPAccount a\nHost other\nUser v\n").map((a) => a.server)).toEqual(["h"]);
  });

  test.each([
    ["Tunnel", 'IMAPAccount a\nTunnel "ssh host imapd"\nUser u\n', /Tunnel/],
    ["UserCmd", 'IMAPAccount a\nHost h\nUserCmd "pass user"\n', /UserCmd/],
    ["no Host", "IMAPAccount a\nUser u\n", /no Host/],
    ["no User", "IMAPAccount a\nHost h\n", /no User/],
    ["AuthMechs without LOGIN or PLAIN", "IMAPAccount a\nHost h\nUser u\nAuthMechs XOAUTH2\n", /AuthMechs XOAUTH2/],
    ["RequireCRAM", "IMAPAccount a\nHost h\nUser u\nRequireCRAM yes\n", /CRAM-MD5/],
    ["a client certificate", "IMAPAccount a\nHost h\nUser u\nClientCertificate /c.pem\n", /client certificate/],
    ["the macOS Keychain", "IMAPAccount a\nHost h\nUser u\nUseKeychain yes\n", /Keychain/],
    ["a bad Port", "IMAPAccount a\nHost h\nUser u\nPort imaps\n", /Port/],
  ])("unsupported: %s", (_, text, reason) => {
    expect(only(text).unsupported).toMatch(reason);
  });

  test("AuthMechs * or one naming LOGIN or PLAIN is fine", () => {
    expect(only("IMAPAccount a\nHost h\nUser u\nAuthMechs *\n").unsupported).toBeNull();
    expect(only("IMAPAccount a\nHost h\nUser u\nAuthMech CRAM-MD5\nAuthMech plain\n").unsupported).toBeNull();
  });

  test("proxied: a loopback Host and a routed User", () => {
    expect(only("IMAPAccount a\nHost localhost\nPort 10993\nUser u/imap.example:993\nSSLType IMAPS\n").proxied).toBe(true);
    expect(only("IMAPAccount a\nHost 127.0.0.1\nUser u#imap.example\n").proxied).toBe(true);
    expect(only("IMAPAccount a\nHost 127.0.0.1\nUser u\n").proxied).toBe(false);
  });
});

describe("mbsync plan", () => {
  test("IMAPS: the imaps listener at localhost (mbsync matches certificate names, not addresses), the CA", () => {
    expect(mbsync.plan(accounts(RC)[0]!, TARGET, RC)).toEqual([
      { key: "IMAPAccount work/Host", value: "localhost" },
      { key: "IMAPAccount work/Port", value: "10993" },
      { key: "IMAPAccount work/User", value: '"me@work.example/imap.work.example:993"' },
      { key: "IMAPAccount work/CertificateFile", value: "/state/ca/ca.pem" },
    ]);
  });

  test("Host imaps: keeps its prefix (it is what makes the account IMAPS)", () => {
    expect(mbsync.plan(accounts(RC)[1]!, TARGET, RC)[0]).toEqual({ key: "IMAPStore inline/Host", value: "imaps:localhost" });
  });

  test("STARTTLS goes to the plain listener with the CA; plain to the listener's own address", () => {
    expect(mbsync.plan(accounts(RC)[2]!, { ...TARGET, caFile: "/my state/ca.pem" }, RC)).toEqual([
      { key: "IMAPAccount home/Host", value: "localhost" },
      { key: "IMAPAccount home/Port", value: "10143" },
      { key: "IMAPAccount home/User", value: '"alice\\"s/imap.home.example:1143"' },
      { key: "IMAPAccount home/CertificateFile", value: '"/my state/ca.pem"' },
    ]);
    const plain = "IMAPAccount p\nHost h\nUser u\nSSLType None\n";
    expect(mbsync.plan(only(plain), TARGET, plain)).toEqual([
      { key: "IMAPAccount p/Host", value: "127.0.0.1" },
      { key: "IMAPAccount p/Port", value: "10143" },
      { key: "IMAPAccount p/User", value: "u/h:143" },
    ]);
  });

  test("TLS accounts connect by the certificate's name, plain ones to the listener's address", () => {
    const target = { ...TARGET, host: "127.0.0.2", dnsName: "mailsentry.local" };
    expect(mbsync.plan(accounts(RC)[0]!, target, RC)[0]!.value).toBe("mailsentry.local");
    const plain = "IMAPAccount p\nHost h\nUser u\nSSLType None\n";
    expect(mbsync.plan(only(plain), target, plain)[0]!.value).toBe("127.0.0.2");
  });

  test("no listener, unsupported, proxied", () => {
    expect(() => mbsync.plan(accounts(RC)[0]!, { ...TARGET, ports: { imap: 10143 } }, RC)).toThrow("work needs the imaps listener, which is off");
    const tunnel = "IMAPAccount a\nTunnel x\nUser u\n";
    expect(() => mbsync.plan(only(tunnel), TARGET, tunnel)).toThrow(/a connects through a Tunnel/);
    const proxied = "IMAPAccount a\nHost localhost\nUser u/x:993\n";
    expect(mbsync.plan(only(proxied), { ...TARGET, ports: {} }, proxied)).toEqual([]);
  });
});

describe("mbsync get/set", () => {
  const fixtures = [
    RC,
    RC.replace(/\n/g, "\r\n"),
    "IMAPAccount a\nHost h\nUser u",
    "IMAPAccount a\n  User u\n  Host h\n",
    "  IMAPAccount a # header comment\n\t\tPass p\n\t\tHost h\n\t\tUser u\n\t\tPort 993\n\t\tSSLType IMAPS\n\nChannel c\n",
  ];

  test("every plan, reverted in any order, gives back the same bytes", () => {
    for (const text of fixtures) {
      for (const a of accounts(text).filter((x) => !x.unsupported)) {
        const plan = planFor(text, a, TARGET);
        const { text: applied, old } = applyPlan(text, a.ref, plan);
        expect(applied).not.toBe(text);
        for (const s of plan) expect(mbsync.get(applied, a.ref, s.key)).toBe(s.value);
        expect(accounts(applied).find((x) => x.ref === a.ref)!.proxied).toBe(true);
        const idx = plan.map((_, i) => i);
        for (const order of [[...idx].reverse(), idx, [1, 3, 0, 2].filter((i) => i < plan.length)]) expect(revertSettings(mbsync, applied, a.ref, old, order)).toBe(text);
      }
    }
  });

  test("values are replaced in place, quoting as given, the rest byte for byte", () => {
    const text = 'IMAPAccount a\n  Host   "old.example"   # was here\n  User u\n';
    expect(mbsync.set(text, "IMAPAccount a", "IMAPAccount a/host", "localhost")).toBe("IMAPAccount a\n  Host   localhost   # was here\n  User u\n");
  });

  test("missing keys go on new lines after the header, indented like the section, in a fixed order", () => {
    const text = "IMAPAccount a\n\tPass p\n\tUser u\n";
    const one = ["Port", "CertificateFile", "Host"].reduce((t, k) => mbsync.set(t, "IMAPAccount a", `IMAPAccount a/${k}`, k.toLowerCase()), text);
    const two = ["Host", "CertificateFile", "Port"].reduce((t, k) => mbsync.set(t, "IMAPAccount a", `IMAPAccount a/${k}`, k.toLowerCase()), text);
    expect(one).toBe("IMAPAccount a\n\tHost host\n\tPort port\n\tCertificateFile certificatefile\n\tPass p\n\tUser u\n");
    expect(two).toBe(one);
    expect(mbsync.set("IMAPAccount a", "IMAPAccount a", "IMAPAccount a/Host", "h")).toBe("IMAPAccount a\nHost h");
    expect(mbsync.set("IMAPAccount a\r\nUser u\r\n", "IMAPAccount a", "IMAPAccount a/Host", "h")).toBe("IMAPAccount a\r\nHost h\r\nUser u\r\n");
  });

  test("removing a line from elsewhere leaves a comment that setting it again restores from", () => {
    const text = "IMAPAccount a\n  Pass p\n  User u # me\n\nChannel c\n";
    const removed = mbsync.set(text, "IMAPAccount a", "IMAPAccount a/User", null);
    expect(removed).toBe('IMAPAccount a\n  Pass p\n  # mailsentry removed this while proxied; revert puts it back: "  User u # me"\n\nChannel c\n');
    expect(mbsync.get(removed, "IMAPAccount a", "IMAPAccount a/User")).toBeNull();
    expect(mbsync.set(removed, "IMAPAccount a", "IMAPAccount a/User", "u")).toBe(text);
    expect(mbsync.set(removed, "IMAPAccount a", "IMAPAccount a/User", "v")).toBe("IMAPAccount a\n  Pass p\n  User v # me\n\nChannel c\n");
    expect(mbsync.set(text, "IMAPAccount a", "IMAPAccount a/Port", null)).toBe(text);
  });

  test("bad keys and refs throw", () => {
    expect(() => mbsync.get(RC, "IMAPAccount work", "IMAPAccount home/Host")).toThrow(/not one of/);
    expect(() => mbsync.get(RC, "IMAPAccount nope", "IMAPAccount nope/Host")).toThrow(/no IMAPAccount nope/);
    expect(() => mbsync.get(RC, "IMAPStore work-remote", "IMAPStore work-remote/Host")).toThrow(/no IMAPStore work-remote/);
  });
});

describe("mbsync files", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "mbsync-files-"));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  test("$XDG_CONFIG_HOME/isyncrc (default ~/.config) and ~/.mbsyncrc, one linked to the other counted once", async () => {
    const home = join(dir, "home");
    await mkdir(join(home, ".config"), { recursive: true });
    expect(await mbsync.findFiles({ HOME: home })).toEqual([]);
    await writeFile(join(home, ".mbsyncrc"), RC);
    expect(await mbsync.findFiles({ HOME: home })).toEqual([join(home, ".mbsyncrc")]);
    await writeFile(join(home, ".config", "isyncrc"), RC);
    expect(await mbsync.findFiles({ HOME: home })).toEqual([join(home, ".config", "isyncrc"), join(home, ".mbsyncrc")]);
    const xdg = join(dir, "xdg");
    await mkdir(xdg);
    await symlink(join(home, ".mbsyncrc"), join(xdg, "isyncrc"));
    expect(await mbsync.findFiles({ HOME: home, XDG_CONFIG_HOME: xdg })).toEqual([join(xdg, "isyncrc")]);
    expect(await mbsync.findFiles({ HOME: home, XDG_CONFIG_HOME: "relative" })).toEqual([join(home, ".config", "isyncrc"), join(home, ".mbsyncrc")]);
  });
});

// ---------------------------------------------------------------------------------------------
// The real mbsync.

describe.skipIf(!have("mbsync"))("with mbsync", () => {
  let dir: string;
  let caFile: string;
  let closedPort: number;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "mbsync-parse-"));
    caFile = join(dir, "mailsentry state", "ca.pem");
    await mkdir(join(dir, "mailsentry state"));
    await mkdir(join(dir, "Mail", "INBOX"), { recursive: true });
    await writeFile(caFile, "mbsync only checks that the file is readable while parsing\n");
    // A port nothing listens on: mbsync's connection is refused at once, after printing where it went.
    const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    closedPort = l.port;
    l.stop(true);
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  /** The file as mbsync's tests see it: paths under the test directory. */
  const local = (text: string) => text.replaceAll("~/", `${dir}/`);

  async function mbsyncRun(text: string, args: string[]): Promise<string> {
    const file = join(dir, "mbsyncrc");
    await writeFile(file, text);
    const r = await run(["timeout", "20", "mbsync", "-c", file, ...args], { env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: dir } });
    return r.err + new TextDecoder().decode(r.out);
  }

  /** What mbsync says about the file when asked for a channel it does not have: errors, else only that. */
  const parse = (text: string) => mbsyncRun(text, ["no-such-channel"]);

  test("the applied file is accepted as the original is, and reverting gives the original back", async () => {
    const text = local(RC);
    await writeFile(join(dir, ".certs-work.pem"), "x\n");
    const original = text.replace(`${dir}/.certs/work.pem`, join(dir, ".certs-work.pem"));
    const clean = "No channel or group named 'no-such-channel' defined.";
    const notice = /Notice: URL notation is deprecated/;
    const before = await parse(original);
    expect(before).toContain(clean);
    expect(before.replace(notice, "")).not.toMatch(/error|not recognized|unknown|missing/i);
    let applied = original;
    const undo: Array<() => void> = [];
    for (const a of accounts(original).filter((x) => !x.unsupported)) {
      const plan = planFor(applied, a, { ...TARGET, caFile, ports: { imap: closedPort, imaps: closedPort } });
      const r = applyPlan(applied, a.ref, plan);
      applied = r.text;
      undo.unshift(() => (applied = revertSettings(mbsync, applied, a.ref, r.old)));
    }
    const after = await parse(applied);
    expect(after).toContain(clean);
    expect(after.replace(notice, "")).not.toMatch(/error|not recognized|unknown|missing/i);
    for (const f of undo) f();
    expect(applied).toBe(original);
  });

  test("mbsync reads the Host and Port the plan wrote (a closed loopback port: no server is reached)", async () => {
    const text = local(RC);
    const a = accounts(text)[0]!;
    const { text: applied } = applyPlan(text, a.ref, planFor(text, a, { ...TARGET, caFile, ports: { imap: closedPort, imaps: closedPort } }));
    const out = await mbsyncRun(applied, ["-V", "-l", "work"]);
    expect(out).toMatch(new RegExp(`Connecting to localhost \\((127\\.0\\.0\\.1|\\[?::1\\]?):${closedPort}\\)`));
  });
});
