// fetchmail's rc file: the accounts read from it, the plan that routes one through mailsentry, and
// byte-exact edits (apply then revert gives the file back), checked with the real fetchmail's
// --configdump, which parses a file and prints what it understood without connecting anywhere.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fetchidsFile, fetchidsKeys, fetchmail, planFor, rekeyFetchids } from "../../../core/clients/fetchmail.ts";
import type { ProxyTarget, Setting } from "../../../core/clients/types.ts";
import { applySettings, onlyAccount, revertSettings } from "../../helpers/client-format.ts";
import { have, run } from "../../helpers/clients.ts";

const FILE = "/home/u/.fetchmailrc";
const TARGET: ProxyTarget = { host: "127.0.0.1", dnsName: "localhost", ports: { pop3: 10110, pop3s: 10995, imap: 10143, imaps: 10993 }, caFile: "/state/ca/ca.pem" };

const RC = `# ~/.fetchmailrc, polled every five minutes
set daemon 300
set logfile "~/.fetchmail.log"
set no bouncemail

defaults
  proto pop3
  fetchall

# Work: POP3S, two mailboxes on one server
poll pop.work.example with proto pop3 port 995:
    user "jsmith" there with password "s3cret" is js here, ssl sslcertck sslfingerprint "AA:BB:CC" keep;
    user jones with pass "x\\x22y" is jj here ssl

skip imap.example.org via mail.example.org protocol IMAP
\tusername 'bob@example.org' there with pass 'p' is bob here sslproto tls1.2+ sslcertfile "/etc/ssl/old.pem"

server plain.example.net proto pop3 service "pop3"
  user alice pass secret no sslcertck nokeep

poll quoted.example.com proto pop3 user "keep" pass "a b" # a comment with poll in it
poll local.example proto imap user esr here is eric there ssl
`;

function accounts(text: string) {
  return fetchmail.accounts(text, FILE);
}

const only = (text: string) => onlyAccount(fetchmail, text, FILE);
const applyPlan = (text: string, ref: string, plan: Setting[]) => applySettings(fetchmail, text, ref, plan);

describe("fetchmail accounts", () => {
  test("one account per poll/skip/server entry, with defaults merged in", () => {
    const found = accounts(RC).map(({ file, ...a }) => a);
    expect(found).toEqual([
      { client: "fetchmail", ref: "poll 1", label: "pop.work.example", protocol: "pop3", server: "pop.work.example", port: 995, security: "tls", user: "jsmith", proxied: false, unsupported: null },
      { client: "fetchmail", ref: "poll 2", label: "imap.example.org", protocol: "imap", server: "mail.example.org", port: 143, security: "starttls", user: "bob@example.org", proxied: false, unsupported: null },
      { client: "fetchmail", ref: "poll 3", label: "plain.example.net", protocol: "pop3", server: "plain.example.net", port: 110, security: "plain", user: "alice", proxied: false, unsupported: null },
      { client: "fetchmail", ref: "poll 4", label: "quoted.example.com", protocol: "pop3", server: "quoted.example.com", port: 110, security: "starttls", user: "keep", proxied: false, unsupported: null },
      { client: "fetchmail", ref: "poll 5", label: "local.example", protocol: "imap", server: "local.example", port: 993, security: "tls", user: "eric", proxied: false, unsupported: null },
    ]);
    expect(accounts(RC).every((a) => a.file === FILE)).toBe(true);
  });

  test.each([
    ["ssl", "poll h proto pop3 user u ssl", "tls", 995],
    ["sslproto with a TLS version and no ssl: STARTTLS required", "poll h proto imap user u sslproto tls1.2+", "starttls", 143],
    ["sslproto '': STARTTLS off", "poll h proto pop3 user u sslproto ''", "plain", 110],
    ["neither: 6.4 requires STARTTLS, since sslcertck is on by default", "poll h proto pop3 user u", "starttls", 110],
    ["no sslcertck and neither: opportunistic, which is not required", "poll h proto pop3 user u no sslcertck", "plain", 110],
    ["an sslfingerprint requires TLS even with no sslcertck", 'poll h proto pop3 user u no sslcertck sslfingerprint "AA"', "starttls", 110],
    ["ssl with sslproto '' is still TLS", "poll h proto imap user u ssl sslproto ''", "tls", 993],
    ["the last of ssl / no ssl counts", "poll h proto imap user u ssl no ssl", "starttls", 143],
    ["ssl from defaults", "defaults ssl\npoll h proto imap user u", "tls", 993],
    ["the entry's own option wins over defaults", "defaults ssl\npoll h proto imap user u no ssl", "starttls", 143],
  ])("security: %s", (_, text, security, port) => {
    expect(only(text)).toMatchObject({ security, port });
  });

  test.each([
    ["port", "poll h proto pop3 port 1110 user u", 1110],
    ["service number", "poll h proto pop3 service 2110 user u", 2110],
    ["quoted service name", 'poll h proto imap service "imaps" user u ssl', 993],
    ["the last of port and service", "poll h proto pop3 port 1 service 3110 user u", 3110],
    ["from defaults", "defaults port 4110\npoll h proto pop3 user u", 4110],
  ])("port: %s", (_, text, port) => {
    expect(only(text).port).toBe(port);
  });

  test("server is via when given, else the poll name; the label is the poll name", () => {
    expect(only("poll label via real.example proto pop3 user u")).toMatchObject({ label: "label", server: "real.example" });
    expect(only("poll real.example proto pop3 user u")).toMatchObject({ label: "real.example", server: "real.example" });
  });

  test("lexer: keywords are lower case, strings take escapes, and the longest match wins", () => {
    // POLL is a string, not a new entry: fetchmail would stop at it, and here it is no account.
    expect(accounts("poll a proto pop3 user u POLL b proto pop3 user v")).toHaveLength(1);
    // After user the next run is a string even when it spells a keyword; "nokeep" is no + keep.
    expect(only("poll a proto pop3 user keep nokeep").user).toBe("keep");
    expect(only('poll a proto pop3 user "x\\x41\\t\\\\y"').user).toBe("xA\t\\y");
    expect(only("poll a proto pop3 user 'it''s'").user).toBe("'it''s'");
    expect(only('poll a proto pop3 user "ab"cd').user).toBe('"ab"cd');
    expect(only("poll a proto pop3 user a\\\\b").user).toBe("a\\b");
    // Noise words and , ; : are ignored; # starts a comment only where a token starts.
    expect(only("poll a with proto pop3: and user u, has wants options; # user v\n").user).toBe("u");
    expect(only("poll a#b proto pop3 user u").label).toBe("a#b");
    expect(only("poll a proto pop3\\\n user u").user).toBe("u");
  });

  test("several users: the account covers them all, and is unsupported if their TLS differs", () => {
    const text = "poll h proto pop3 user a ssl user b ssl user c there ssl";
    expect(only(text)).toMatchObject({ user: "a", unsupported: null });
    expect(fetchmail.plan(only(text), TARGET, text).filter((s) => s.key.includes("/user#")).map((s) => s.value)).toEqual(['"a/h:995"', '"b/h:995"', '"c/h:995"']);
    expect(only("poll h proto pop3 user a ssl user b").unsupported).toBe("has users with different TLS settings");
  });

  test("the remote name: user NAME [there], or is NAME there after local names", () => {
    expect(only("poll h proto pop3 user esr here is eric there").user).toBe("eric");
    expect(only("poll h proto pop3 user eric there is esr here").user).toBe("eric");
    expect(only("poll h proto pop3 user a b here").unsupported).toBe("has a user description with local names only (user … here)");
  });

  test("protocols other than POP3 and IMAP are left out; POP3 variants are unsupported", () => {
    expect(accounts("poll a proto pop2 user u\npoll b proto etrn user u\npoll c proto ODMR user u\npoll d proto POP3 user u").map((a) => a.ref)).toEqual(["poll 4"]);
    expect(only("poll h proto apop user u").unsupported).toMatch(/APOP/);
    expect(only("poll h proto kpop user u")).toMatchObject({ protocol: "pop3", port: 1109, unsupported: expect.stringMatching(/KPOP/) });
    expect(only("poll h proto rpop user u").unsupported).toMatch(/RPOP/);
    expect(only("poll h user u").unsupported).toMatch(/has no protocol/);
    expect(only("poll h proto auto port 995 user u").protocol).toBe("pop3");
  });

  test.each([
    ["kerberos", "poll h proto imap auth kerberos_v5 user u", /authenticates with kerberos_v5/],
    ["gssapi", "poll h proto imap authenticate gssapi user u", /gssapi/],
    ["otp", "poll h proto pop3 auth otp user u", /otp/],
    ["ntlm", "poll h proto imap auth ntlm user u", /ntlm/],
    ["external", "poll h proto imap auth external user u", /external/],
    ["plugin", 'poll h proto imap plugin "ssh %h imapd" user u', /plugin/],
    ["no user", "poll h proto pop3 pass x", /names no user/],
    ["the user from defaults", 'defaults user "jsmith"\npoll h proto pop3 pass x', /defaults entry/],
    ["a client certificate", 'poll h proto pop3 user u ssl sslcert "/c.pem" sslkey "/k.pem"', /client certificate/],
    ["sslfingerprint from defaults", 'defaults sslfingerprint "AA"\npoll h proto pop3 user u', /sslfingerprint from the defaults/],
    ["an unknown service name", 'poll h proto pop3 service "pop-alt" user u', /service/],
  ])("unsupported: %s", (_, text, reason) => {
    expect(only(text).unsupported).toMatch(reason);
  });

  test("auth password and any are fine", () => {
    expect(only("poll h proto imap auth password user u").unsupported).toBeNull();
    expect(only("poll h proto imap auth any user u").unsupported).toBeNull();
  });

  test("a defaults entry counts only first; refs count poll/skip/server entries", () => {
    expect(only("poll a user u\ndefaults proto pop3").unsupported).toMatch(/has no protocol/);
    expect(accounts("defaults proto pop3\nskip a user u\nserver b user v").map((a) => [a.ref, a.label])).toEqual([["poll 1", "a"], ["poll 2", "b"]]);
  });

  test("proxied: a loopback server and routed user names", () => {
    expect(only('poll work via 127.0.0.1 proto pop3 port 10110 user "a/pop.example:110"').proxied).toBe(true);
    expect(only('poll work via localhost proto pop3 user "a#pop.example"').proxied).toBe(true);
    expect(only('poll work via 127.0.0.1 proto pop3 user "a"').proxied).toBe(false);
    expect(only('poll work via 127.0.0.1 proto pop3 user "a/x:1" user b').proxied).toBe(false);
    expect(only('poll pop.example proto pop3 user "a/x"').proxied).toBe(false);
  });
});

describe("fetchmail plan", () => {
  test("TLS: the POP3S listener, the routed user for each user description, trust in the CA", () => {
    const a = accounts(RC)[0]!;
    expect(fetchmail.plan(a, TARGET, RC)).toEqual([
      { key: "poll 1/via", value: "127.0.0.1" },
      { key: "poll 1/port", value: "10995" },
      { key: "poll 1/user#1", value: '"jsmith/pop.work.example:995"' },
      { key: "poll 1/sslcertfile#1", value: '"/state/ca/ca.pem"' },
      { key: "poll 1/sslcertck#1", value: "sslcertck" },
      { key: "poll 1/sslcommonname#1", value: "localhost" },
      { key: "poll 1/sslfingerprint#1", value: null },
      { key: "poll 1/user#2", value: '"jones/pop.work.example:995"' },
      { key: "poll 1/sslcertfile#2", value: '"/state/ca/ca.pem"' },
      { key: "poll 1/sslcertck#2", value: "sslcertck" },
      { key: "poll 1/sslcommonname#2", value: "localhost" },
      { key: "poll 1/sslfingerprint#2", value: null },
    ]);
  });

  test("STARTTLS goes to the plain listener and keeps TLS required; single quotes stay single", () => {
    const plan = fetchmail.plan(accounts(RC)[1]!, TARGET, RC);
    expect(plan.find((s) => s.key === "poll 2/port")!.value).toBe("10143");
    expect(plan.find((s) => s.key === "poll 2/user#1")!.value).toBe("'bob@example.org/mail.example.org:143'");
    expect(plan.find((s) => s.key === "poll 2/sslcertck#1")!.value).toBe("sslcertck");
  });

  test("plain goes to the plain listener and needs no CA", () => {
    expect(fetchmail.plan(accounts(RC)[2]!, TARGET, RC)).toEqual([
      { key: "poll 3/via", value: "127.0.0.1" },
      { key: "poll 3/port", value: "10110" },
      { key: "poll 3/user#1", value: '"alice/plain.example.net:110"' },
    ]);
  });

  test("IPv6: the routed server in brackets, a ::1 via quoted, a CA path with blanks quoted", () => {
    const text = 'poll h via "2001:db8::1" proto imap user u ssl';
    const plan = fetchmail.plan(only(text), { ...TARGET, host: "::1", caFile: "/my state/ca.pem" }, text);
    expect(plan).toContainEqual({ key: "poll 1/via", value: '"::1"' });
    expect(plan).toContainEqual({ key: "poll 1/user#1", value: '"u/[2001:db8::1]:993"' });
    expect(plan).toContainEqual({ key: "poll 1/sslcertfile#1", value: '"/my state/ca.pem"' });
  });

  test("a listener that is off, an unsupported account", () => {
    const noTls = { ...TARGET, ports: { pop3: 10110, imap: 10143 } };
    expect(() => fetchmail.plan(accounts(RC)[0]!, noTls, RC)).toThrow("pop.work.example needs the pop3s listener, which is off");
    const apop = "poll h proto apop user u";
    expect(() => fetchmail.plan(only(apop), TARGET, apop)).toThrow(/h uses APOP/);
  });

  test("an account already proxied needs nothing", () => {
    const text = 'poll w via 127.0.0.1 proto pop3 port 10110 user "a/pop.example:110"';
    expect(fetchmail.plan(only(text), { ...TARGET, ports: {} }, text)).toEqual([]);
  });
});

describe("fetchmail get/set", () => {
  const supported = (text: string) => accounts(text).filter((a) => !a.unsupported);
  const fixtures = [
    RC,
    RC.replace(/\n/g, "\r\n"),
    "poll a proto pop3 user u",
    "poll a proto pop3 user u\n",
    "defaults ssl\npoll a proto pop3 user u sslfingerprint\n  'F1'\n\tpoll b via x proto imap service imaps user 'v' ssl sslcertck",
    "poll a proto imap port 143 user u sslcommonname imap.example sslcertck sslcertfile /old.pem sslfingerprint \"F\"",
    "poll a proto pop3 user u ssl sslfingerprint \"F\" # trailing\npoll b proto pop3 user v",
  ];

  test("every plan, applied then reverted newest first or oldest first, gives back the same bytes", () => {
    for (const text of fixtures) {
      for (const a of supported(text)) {
        const plan = planFor(text, a, TARGET);
        const { text: applied, old } = applyPlan(text, a.ref, plan);
        expect(applied).not.toBe(text);
        for (const s of plan) expect(fetchmail.get(applied, a.ref, s.key)).toBe(s.value);
        expect(revertSettings(fetchmail, applied, a.ref, old)).toBe(text);
        expect(revertSettings(fetchmail, applied, a.ref, old, old.map((_, i) => i))).toBe(text);
        // The accounts read back routed, and the file around the entry is untouched.
        expect(accounts(applied).find((x) => x.ref === a.ref)!.proxied).toBe(true);
      }
    }
  });

  test("values are replaced in place, everything else byte for byte", () => {
    const text = 'poll a via "old.example" proto pop3 service "pop3s"   user  "u"  ssl sslcertfile /old.pem # keep this\n';
    let t = fetchmail.set(text, "poll 1", "poll 1/via", "127.0.0.1");
    t = fetchmail.set(t, "poll 1", "poll 1/port", "10995");
    t = fetchmail.set(t, "poll 1", "poll 1/user#1", '"u/old.example:995"');
    t = fetchmail.set(t, "poll 1", "poll 1/sslcertfile#1", '"/ca.pem"');
    expect(t).toBe('poll a via 127.0.0.1 proto pop3 service 10995   user  "u/old.example:995"  ssl sslcertfile "/ca.pem" # keep this\n');
  });

  test("absent options go right after the poll name or the user option, in a fixed order whatever order they are set in", () => {
    const text = "poll a proto pop3\n  user u pass p # c\n";
    const set = (t: string, keys: string[]) => keys.reduce((x, k) => fetchmail.set(x, "poll 1", k, k.endsWith("via") ? "h" : "1"), t);
    const one = set(text, ["poll 1/port", "poll 1/via"]);
    expect(one).toBe("poll a via h port 1 proto pop3\n  user u pass p # c\n");
    expect(set(text, ["poll 1/via", "poll 1/port"])).toBe(one);
    const user = fetchmail.set(fetchmail.set(text, "poll 1", "poll 1/sslcertfile#1", '"/ca"'), "poll 1", "poll 1/sslcertck#1", "sslcertck");
    expect(user).toBe('poll a proto pop3\n  user u sslcertck sslcertfile "/ca" pass p # c\n');
    expect(fetchmail.set(fetchmail.set(user, "poll 1", "poll 1/sslcertck#1", null), "poll 1", "poll 1/sslcertfile#1", null)).toBe(text);
    // A value coming back for another key goes after the last option.
    expect(fetchmail.set(text, "poll 1", "poll 1/sslproto#1", "tls1.2+")).toBe("poll a proto pop3\n  user u pass p sslproto tls1.2+ # c\n");
  });

  test("reverted in any order, a plan gives back the same bytes", () => {
    const text = 'poll a proto pop3 port 995 user u ssl sslfingerprint "F" keep\n  user v ssl sslcertck sslfingerprint \'G\'\n';
    const a = accounts(text)[0]!;
    const plan = planFor(text, a, TARGET);
    const { text: applied, old } = applyPlan(text, a.ref, plan);
    for (let seed = 1; seed <= 50; seed++) {
      const order = plan.map((_, i) => i).sort((x, y) => ((x * 7919 + seed * 104729) % 97) - ((y * 7919 + seed * 104729) % 97));
      expect(revertSettings(fetchmail, applied, a.ref, old, order)).toBe(text);
    }
  });

  test("removing an option written elsewhere leaves a comment that setting it again restores from", () => {
    const text = 'poll a proto pop3 user u ssl sslfingerprint "AA:BB" keep\n';
    const removed = fetchmail.set(text, "poll 1", "poll 1/sslfingerprint#1", null);
    expect(removed).toBe('poll a proto pop3 user u ssl\n# mailsentry removed this while proxied; revert puts it back: " sslfingerprint \\"AA:BB\\""\n keep\n');
    expect(fetchmail.get(removed, "poll 1", "poll 1/sslfingerprint#1")).toBeNull();
    expect(accounts(removed)[0]!.security).toBe("tls");
    expect(fetchmail.set(removed, "poll 1", "poll 1/sslfingerprint#1", '"AA:BB"')).toBe(text);
    expect(fetchmail.set(removed, "poll 1", "poll 1/sslfingerprint#1", '"CC"')).toBe('poll a proto pop3 user u ssl sslfingerprint "CC" keep\n');
    // Setting something else leaves the comment alone, and null on an absent key changes nothing.
    expect(fetchmail.set(removed, "poll 1", "poll 1/sslcommonname#1", null)).toBe(removed);
  });

  test("a flag's value is its words: no sslcertck becomes sslcertck and back", () => {
    const text = "poll a proto pop3 user u no  sslcertck keep\n";
    expect(fetchmail.get(text, "poll 1", "poll 1/sslcertck#1")).toBe("no  sslcertck");
    const on = fetchmail.set(text, "poll 1", "poll 1/sslcertck#1", "sslcertck");
    expect(on).toBe("poll a proto pop3 user u sslcertck keep\n");
    expect(fetchmail.set(on, "poll 1", "poll 1/sslcertck#1", "no  sslcertck")).toBe(text);
  });

  test("each user description has its own options", () => {
    const text = "poll a proto pop3 user u ssl\n user v ssl sslcertfile /v.pem\n";
    expect(fetchmail.get(text, "poll 1", "poll 1/sslcertfile#1")).toBeNull();
    expect(fetchmail.get(text, "poll 1", "poll 1/sslcertfile#2")).toBe("/v.pem");
    expect(fetchmail.get(text, "poll 1", "poll 1/user#2")).toBe("v");
  });

  test("bad keys and refs throw", () => {
    expect(() => fetchmail.get(RC, "poll 1", "poll 1/mda#1")).toThrow(/unknown key/);
    expect(() => fetchmail.get(RC, "poll 1", "poll 2/via")).toThrow(/not one of poll 1/);
    expect(() => fetchmail.get(RC, "poll 9", "poll 9/via")).toThrow(/no entry poll 9/);
    expect(() => fetchmail.get(RC, "poll 1", "poll 1/sslcertfile#3")).toThrow(/no user description 3/);
    expect(() => fetchmail.get(RC, "poll 1", "poll 1/via#1")).toThrow(/server option/);
    expect(() => fetchmail.set(RC, "poll 1", "poll 1/user#1", null)).toThrow(/can only be replaced/);
  });
});

describe("fetchmail UID list", () => {
  test("keys are the remote user at via or else the poll name", () => {
    expect(fetchidsKeys(RC, "poll 1")).toEqual(["jsmith@pop.work.example", "jones@pop.work.example"]);
    expect(fetchidsKeys(RC, "poll 2")).toEqual(["bob@example.org@mail.example.org"]);
  });

  test("rekeying renames matching lines (case-insensitively, as fetchmail compares) and nothing else", () => {
    const ids = "jsmith@pop.work.example uid-1\nJSmith@POP.work.example\tuid-2\nother@pop.work.example uid-3\nnot a key line\n";
    const out = rekeyFetchids(ids, [["jsmith@pop.work.example", "jsmith/pop.work.example:995@127.0.0.1"]]);
    expect(out).toBe("jsmith/pop.work.example:995@127.0.0.1 uid-1\nJSmith@POP.work.example\tuid-2\nother@pop.work.example uid-3\nnot a key line\n");
    expect(rekeyFetchids(out, [["jsmith/pop.work.example:995@127.0.0.1", "jsmith@pop.work.example"]])).toBe(ids);
  });

  test("the idfile: set idfile (relative to the rc file), else beside the home fetchmail uses", () => {
    expect(fetchidsFile("set idfile ids\n", "/home/u/.fetchmailrc", { HOME: "/home/u" })).toBe("/home/u/ids");
    expect(fetchidsFile('set idfile = "/var/ids"\n', "/home/u/.fetchmailrc", { HOME: "/home/u" })).toBe("/var/ids");
    expect(fetchidsFile(RC, "/home/u/.fetchmailrc", { HOME: "/home/u" })).toBe("/home/u/.fetchids");
    expect(fetchidsFile(RC, "/fm/fetchmailrc", { HOME: "/home/u", FETCHMAILHOME: "/fm" })).toBe("/fm/.fetchids");
  });
});

describe("fetchmail files", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "fetchmail-files-"));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  test("~/.fetchmailrc, or only $FETCHMAILHOME/fetchmailrc when FETCHMAILHOME is set", async () => {
    const home = join(dir, "home");
    const fmhome = join(dir, "fm");
    await mkdir(home);
    await mkdir(fmhome);
    expect(await fetchmail.findFiles({ HOME: home })).toEqual([]);
    await writeFile(join(home, ".fetchmailrc"), RC, { mode: 0o600 });
    expect(await fetchmail.findFiles({ HOME: home })).toEqual([join(home, ".fetchmailrc")]);
    expect(await fetchmail.findFiles({ HOME: home, FETCHMAILHOME: fmhome })).toEqual([]);
    await symlink(join(home, ".fetchmailrc"), join(fmhome, "fetchmailrc"));
    expect(await fetchmail.findFiles({ HOME: home, FETCHMAILHOME: fmhome })).toEqual([join(fmhome, "fetchmailrc")]);
  });
});

// ---------------------------------------------------------------------------------------------
// The real fetchmail. --configdump prints the parsed configuration as a Python literal and exits.

/** The configdump's Python literal as JSON (the dumps here hold no quotes or # inside strings). */
function dumpJson(out: string): { servers: Array<Record<string, unknown> & { users: Array<Record<string, unknown>> }> } {
  const body = out.slice(out.indexOf("fetchmailrc = ") + "fetchmailrc = ".length, out.lastIndexOf("}") + 1);
  const json = body
    .replace(/^\s*#.*$/gm, "")
    .replace(/'([^'\n]*)'/g, '"$1"')
    .replace(/\bTRUE\b/g, "true")
    .replace(/\bFALSE\b/g, "false")
    .replace(/\bNone\b/g, "null")
    .replace(/,(\s*[\]}])/g, "$1");
  return JSON.parse(json);
}

describe.skipIf(!have("fetchmail"))("with fetchmail --configdump", () => {
  let dir: string;
  let caFile: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "fetchmail-dump-"));
    caFile = join(dir, "mailsentry state", "ca.pem");
    await mkdir(join(dir, "mailsentry state"));
    await writeFile(caFile, "not read by --configdump\n");
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  async function dump(text: string, mode = 0o600): Promise<{ code: number; json: ReturnType<typeof dumpJson> | null; err: string }> {
    const file = join(dir, "rc");
    await writeFile(file, text);
    await chmod(file, mode);
    const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: dir };
    const r = await run(["fetchmail", "-f", file, "--configdump"], { env });
    const out = new TextDecoder().decode(r.out);
    return { code: r.code, json: r.code === 0 ? dumpJson(out) : null, err: r.err };
  }

  test("the applied file parses to the routed values, and the reverted one to the original", async () => {
    const target = { ...TARGET, caFile };
    const before = await dump(RC);
    expect(before.code).toBe(0);
    let text = RC;
    const undo: Array<() => void> = [];
    for (const a of accounts(RC).filter((x) => !x.unsupported)) {
      const plan = planFor(text, a, target);
      const r = applyPlan(text, a.ref, plan);
      text = r.text;
      undo.unshift(() => (text = revertSettings(fetchmail, text, a.ref, r.old)));
    }
    const after = await dump(text);
    expect(after.err).not.toMatch(/syntax error/);
    const [work, imap, plain, quoted, local] = after.json!.servers;
    for (const s of [work, imap, plain, quoted, local]) expect(s!.via).toBe("127.0.0.1");
    expect([work, imap, plain, quoted, local].map((s) => s!.service)).toEqual(["10995", "10143", "10110", "10110", "10993"]);
    expect(work!.pollname).toBe("pop.work.example");
    expect(work!.users.map((u) => [u.remote, u.ssl, u.sslcertfile, u.sslcertck, u.sslcommonname, u.sslfingerprint, u.keep])).toEqual([
      ["jsmith/pop.work.example:995", true, caFile, true, "localhost", null, true],
      ["jones/pop.work.example:995", true, caFile, true, "localhost", null, false],
    ]);
    expect(imap!.users.map((u) => [u.remote, u.ssl, u.sslproto, u.sslcertfile, u.sslcertck, u.sslcommonname, u.localnames])).toEqual([
      ["bob@example.org/mail.example.org:143", false, "tls1.2+", caFile, true, "localhost", ["bob"]],
    ]);
    // Plain stays plain: no CA, and no sslcertck that would demand STARTTLS.
    expect(plain!.users.map((u) => [u.remote, u.sslcertfile, u.sslcertck])).toEqual([["alice/plain.example.net:110", null, false]]);
    expect(quoted!.users.map((u) => [u.remote, u.password, u.sslcertck])).toEqual([["keep/quoted.example.com:110", "a b", true]]);
    expect(local!.users.map((u) => [u.remote, u.localnames, u.sslcertfile])).toEqual([["eric/local.example:993", ["esr"], caFile]]);
    for (const f of undo) f();
    expect(text).toBe(RC);
    expect((await dump(text)).json).toEqual(before.json);
  });

  test("fetchmail refuses an rc file others can read: a rewrite must keep the mode", async () => {
    const r = await dump(RC, 0o644);
    expect(r.code).not.toBe(0);
    expect(r.err).toMatch(/must have no more than -rwx------ \(0700\) permissions/);
  });
});
