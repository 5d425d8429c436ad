// Thunderbird's client module: prefs.js parsing and byte-exact edits, accounts and plans, profiles.ini,
// the profile lock, CA trust through certutil, and (when installed) real Thunderbird reading the result.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { planFor, prefString, profileDirOf, profileDirs, thunderbird, trustCa, untrustCa } from "../../../core/clients/thunderbird.ts";
import type { ClientAccount, ProxyTarget, Setting } from "../../../core/clients/types.ts";
import { applySettings, revertSettings } from "../../helpers/client-format.ts";
import { haveThunderbird, makeProfile, PREFS_HEADER, prefsJs, accountPrefs, startThunderbird, stopThunderbird, waitFor, type TbServer } from "../../helpers/thunderbird.ts";

const FILE = "/home/u/.thunderbird/x.default/prefs.js";
const target: ProxyTarget = { host: "127.0.0.1", dnsName: "localhost", ports: { pop3: 10110, pop3s: 10995, imap: 10143, imaps: 10993 }, caFile: "/tmp/ca.pem" };

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), "tb-test-"));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** A prefs.js of every kind of server Thunderbird has, written the way Thunderbird 153 writes it. */
const SERVERS: TbServer[] = [
  // 1: POP3 without TLS, no port (default 110)
  { type: "pop3", prefs: { hostname: "pop.plain.example", userName: "ann", socketType: 0 }, identity: { useremail: "ann@plain.example", fcc_folder: "mailbox://ann@pop.plain.example/Sent", draft_folder: "mailbox://ann@pop.plain.example/Drafts" } },
  // 2: POP3 with STARTTLS, a name and an explicit port
  { type: "pop3", prefs: { hostname: "pop.example.com", userName: "bob", socketType: 2, port: 110, name: "Work mail" } },
  // 3: POP3S, no port (default 995), a user name that needs escaping
  { type: "pop3", prefs: { hostname: "pop.example.org", userName: 'cé "q" \\x', socketType: 3, authMethod: 3 } },
  // 4: IMAPS, spam and identity folder URIs pointing at it (XALPHAS spelling of "@")
  {
    type: "imap",
    prefs: { hostname: "imap.example.net", userName: "dan@example.net", socketType: 3, port: 993, spamActionTargetAccount: "imap://dan%40example.net@imap.example.net", spamActionTargetFolder: "imap://dan%40example.net@imap.example.net/Junk" },
    identity: { useremail: "dan@example.net", fcc_folder: "imap://dan%40example.net@imap.example.net/Sent", archive_folder: "imap://dan%40example.net@imap.example.net.evil/Archives", stationery_folder: "imap://dan%40example.net@imap.example.net/Templates" },
  },
  // 5: Local Folders
  { type: "none", prefs: { hostname: "Local Folders", userName: "nobody" } },
  // 6: news
  { type: "nntp", prefs: { hostname: "news.example.com", userName: "" } },
  // 7: an old realhostname/realuserName pair (Thunderbird before 102 connected there)
  { type: "imap", prefs: { hostname: "old.example.com", realhostname: "new.example.com", userName: "eve", realuserName: "eve2", socketType: 2 } },
  // 8: OAuth2
  { type: "imap", prefs: { hostname: "imap.gmail.com", userName: "fay@gmail.com", socketType: 3, authMethod: 10 } },
  // 9: CRAM-MD5
  { type: "pop3", prefs: { hostname: "pop.cram.example", userName: "gus", socketType: 3, authMethod: 4 } },
  // 10: feeds
  { type: "rss", prefs: { hostname: "Feeds", userName: "nobody" } },
  // 11: already through mailsentry
  { type: "pop3", prefs: { hostname: "127.0.0.1", userName: "hal/pop.example.com:995", socketType: 3, port: 10995 } },
];

const REALISTIC = prefsJs({
  ...accountPrefs(SERVERS),
  "extensions.lastAppVersion": "153.8.0",
  "mail.server.server99.type": "pop3", // a server no account uses any more
  "mail.server.server99.hostname": "orphan.example",
});

function accountsOf(text = REALISTIC): ClientAccount[] {
  return thunderbird.accounts(text, FILE);
}

function byRef(ref: string, text = REALISTIC): ClientAccount {
  const a = accountsOf(text).find((x) => x.ref === ref);
  if (!a) throw new Error(`no account ${ref}`);
  return a;
}

const apply = (text: string, ref: string, settings: Setting[]) => applySettings(thunderbird, text, ref, settings);
const revert = (text: string, ref: string, old: Setting[]) => revertSettings(thunderbird, text, ref, old);

describe("prefs.js values", () => {
  const text = `${PREFS_HEADER}user_pref("a.str", "x \\"y\\" \\\\ \\u00e9");\nuser_pref("a.int", -5);\nuser_pref("a.bool", true);\nuser_pref('a.single', 'it\\'s');\n`;

  test("get returns the literal exactly as written, or null", () => {
    expect(thunderbird.get(text, "server1", "a.str")).toBe('"x \\"y\\" \\\\ \\u00e9"');
    expect(thunderbird.get(text, "server1", "a.int")).toBe("-5");
    expect(thunderbird.get(text, "server1", "a.bool")).toBe("true");
    expect(thunderbird.get(text, "server1", "a.single")).toBe("'it\\'s'");
    expect(thunderbird.get(text, "server1", "a.none")).toBeNull();
  });

  test("set replaces the value in place and leaves every other byte", () => {
    const changed = thunderbird.set(text, "server1", "a.int", "42");
    expect(changed).toBe(text.replace('"a.int", -5', '"a.int", 42'));
    expect(thunderbird.set(changed, "server1", "a.int", "-5")).toBe(text);
  });

  test("a later statement overrides an earlier one, as in Gecko, and is the one edited", () => {
    const dup = `user_pref("k", 1);\nuser_pref("k", 2);\n`;
    expect(thunderbird.get(dup, "s", "k")).toBe("2");
    expect(thunderbird.set(dup, "s", "k", "3")).toBe(`user_pref("k", 1);\nuser_pref("k", 3);\n`);
  });

  test("comments and malformed statements are skipped like Gecko's parser does", () => {
    const odd = `/* user_pref("k", 1); */\n# user_pref("k", 2);\n// user_pref("k", 3);\nuser_pref("bad", 12abc); user_pref("k" 4);\nuser_pref("k", 5);\nuser_pref("big", 2147483648);\n`;
    expect(thunderbird.get(odd, "s", "k")).toBe("5");
    expect(thunderbird.get(odd, "s", "bad")).toBeNull();
    expect(thunderbird.get(odd, "s", "big")).toBeNull();
  });

  test("set refuses anything but one value literal", () => {
    expect(() => thunderbird.set(text, "s", "a.int", '1); user_pref("evil", 2')).toThrow("not a pref value literal");
    expect(() => thunderbird.set(text, "s", "a.int", "1 /* c */")).toThrow();
    expect(() => thunderbird.set(text, "s", "a.int", '"unterminated')).toThrow();
    expect(() => thunderbird.set(text, "s", 'a"b', "1")).toThrow();
  });

  for (const [name, original] of [
    ["with a final newline", `${PREFS_HEADER}user_pref("a", 1);\n`],
    ["without a final newline", `${PREFS_HEADER}user_pref("a", 1);`],
    ["ending in a comment without newline", `user_pref("a", 1);\n// end`],
    ["with CRLF line ends", `// Mozilla User Preferences\r\n\r\nuser_pref("a", 1);\r\n`],
    ["with CRLF and no final newline", `user_pref("a", 1);\r\nuser_pref("b", 2);`],
    ["empty", ""],
  ] as const) {
    test(`adding an absent key and removing it again gives back the same bytes (${name})`, () => {
      const added = thunderbird.set(original, "s", "new.key", '"v"');
      expect(thunderbird.get(added, "s", "new.key")).toBe('"v"');
      expect(added.startsWith(original)).toBe(true);
      const eol = original.includes("\r\n") ? "\r\n" : "\n";
      expect(added.endsWith(`user_pref("new.key", "v");${original === "" || original.endsWith("\n") ? eol : ""}`)).toBe(true);
      expect(thunderbird.get(added, "s", "a")).toBe(original ? "1" : null); // the comment did not swallow it
      expect(thunderbird.set(added, "s", "new.key", null)).toBe(original);
    });
  }

  test("a removed key that comes back lands at the end: its value returns, not its place", () => {
    // plan() never removes a key that was there, so apply and revert stay byte-exact; this is the
    // case they cannot restore exactly (Thunderbird re-sorts the file at its next save anyway).
    const original = `user_pref("a", 1);\nuser_pref("b", 2);\n`;
    const removed = thunderbird.set(original, "s", "a", null);
    expect(removed).toBe(`user_pref("b", 2);\n`);
    expect(thunderbird.set(removed, "s", "a", "1")).toBe(`user_pref("b", 2);\nuser_pref("a", 1);\n`);
  });

  test("a statement sharing its line with others is removed alone", () => {
    expect(thunderbird.set(`user_pref("a", 1); user_pref("b", 2);\n`, "s", "a", null)).toBe(` user_pref("b", 2);\n`);
  });

  test("prefString writes what Thunderbird writes and reads back the same", () => {
    // Bytes as Thunderbird 153 wrote them for these values (only \\ \" \n \r escaped).
    expect(prefString('bob "q" \\ é')).toBe('"bob \\"q\\" \\\\ é"');
    expect(prefString("a\x01b\tc\nd\re")).toBe('"a\x01b\tc\\nd\\re"');
    expect(() => prefString("a\0b")).toThrow("NUL");
    expect(() => prefString("a\uD800b")).toThrow("surrogate");
    for (const user of ['quo"te', "back\\slash", "ünïcødé", "emoji 😀", "new\nline", "it's", "\\\"", "tab\there"]) {
      const text = prefsJs({ "mail.server.server1.type": "pop3", "mail.server.server1.hostname": "h.example", "mail.server.server1.userName": user });
      expect(thunderbird.accounts(text, FILE)[0]!.user).toBe(user);
    }
  });
});

describe("accounts", () => {
  test("POP3 and IMAP accounts in the account manager's order, other kinds and orphans left out", () => {
    expect(accountsOf().map((a) => a.ref)).toEqual(["server1", "server2", "server3", "server4", "server7", "server8", "server9", "server11"]);
  });

  test("server, port, security and label as Thunderbird resolves them", () => {
    const summary = accountsOf().map(({ ref, label, protocol, server, port, security, user, proxied }) => ({ ref, label, protocol, server, port, security, user, proxied }));
    expect(summary).toEqual([
      { ref: "server1", label: "ann@pop.plain.example", protocol: "pop3", server: "pop.plain.example", port: 110, security: "plain", user: "ann", proxied: false },
      { ref: "server2", label: "Work mail", protocol: "pop3", server: "pop.example.com", port: 110, security: "starttls", user: "bob", proxied: false },
      { ref: "server3", label: 'cé "q" \\x@pop.example.org', protocol: "pop3", server: "pop.example.org", port: 995, security: "tls", user: 'cé "q" \\x', proxied: false },
      { ref: "server4", label: "dan@example.net@imap.example.net", protocol: "imap", server: "imap.example.net", port: 993, security: "tls", user: "dan@example.net", proxied: false },
      { ref: "server7", label: "eve@old.example.com", protocol: "imap", server: "old.example.com", port: 143, security: "starttls", user: "eve", proxied: false },
      { ref: "server8", label: "fay@gmail.com@imap.gmail.com", protocol: "imap", server: "imap.gmail.com", port: 993, security: "tls", user: "fay@gmail.com", proxied: false },
      { ref: "server9", label: "gus@pop.cram.example", protocol: "pop3", server: "pop.cram.example", port: 995, security: "tls", user: "gus", proxied: false },
      { ref: "server11", label: "hal/pop.example.com:995@127.0.0.1", protocol: "pop3", server: "127.0.0.1", port: 10995, security: "tls", user: "hal/pop.example.com:995", proxied: true },
    ]);
    for (const a of accountsOf()) expect(a).toMatchObject({ client: "thunderbird", file: FILE });
  });

  test("sign-in methods a proxy cannot relay are unsupported, with a reason", () => {
    expect(byRef("server8").unsupported).toBe("uses OAuth2 sign-in, which a proxy cannot relay");
    expect(byRef("server9").unsupported).toContain("encrypted password sign-in (CRAM-MD5)");
    for (const ref of ["server1", "server2", "server3", "server4", "server7", "server11"]) expect(byRef(ref).unsupported).toBeNull();
    const one = (prefs: Record<string, string | number>) => thunderbird.accounts(prefsJs({ "mail.server.server1.type": "imap", "mail.server.server1.hostname": "h", "mail.server.server1.userName": "u", ...prefs }), FILE)[0]!;
    expect(one({ "mail.server.server1.authMethod": 5 }).unsupported).toContain("GSSAPI");
    expect(one({ "mail.server.server1.authMethod": 6 }).unsupported).toContain("NTLM");
    expect(one({ "mail.server.server1.authMethod": 7 }).unsupported).toContain("client certificate");
    expect(one({ "mail.server.server1.authMethod": 1 }).unsupported).toContain("without a password");
    expect(one({ "mail.server.server1.authMethod": 42 }).unsupported).toBe("uses an unknown sign-in method (authMethod 42)");
    expect(one({ "mail.server.server1.authMethod": 2 }).unsupported).toBeNull();
    expect(one({ "mail.server.server1.authMethod": 9 }).unsupported).toBeNull();
    // The default branch counts, as Thunderbird's getIntValue reads it.
    expect(one({ "mail.server.default.authMethod": 10 }).unsupported).toContain("OAuth2");
    expect(one({ "mail.server.server1.socketType": 7 }).unsupported).toContain("socketType 7");
    expect(one({ "mail.server.server1.userName": "" }).unsupported).toBe("has no user name");
  });

  test("proxied means a loopback server and a routed user name", () => {
    const one = (hostname: string, userName: string) =>
      thunderbird.accounts(prefsJs({ "mail.server.server1.type": "pop3", "mail.server.server1.hostname": hostname, "mail.server.server1.userName": userName }), FILE)[0]!.proxied;
    expect(one("127.0.0.1", "u/pop.example.com:995")).toBe(true);
    expect(one("localhost", "u#pop.example.com")).toBe(true);
    expect(one("::1", "u/h")).toBe(true);
    expect(one("127.5.6.7", "u/h")).toBe(true);
    expect(one("127.0.0.1", "u")).toBe(false); // a local server of its own, not the proxy
    expect(one("pop.example.com", "u/h")).toBe(false);
    expect(one("10.0.0.1", "u/h")).toBe(false);
  });

  test("socketType 1 (the old try-STARTTLS) counts as STARTTLS; isSecure=true without socketType as TLS", () => {
    const base = { "mail.server.server1.type": "pop3", "mail.server.server1.hostname": "h", "mail.server.server1.userName": "u" };
    expect(thunderbird.accounts(prefsJs({ ...base, "mail.server.server1.socketType": 1 }), FILE)[0]).toMatchObject({ security: "starttls", port: 110 });
    expect(thunderbird.accounts(prefsJs({ ...base, "mail.server.server1.isSecure": true }), FILE)[0]).toMatchObject({ security: "tls", port: 995 });
    expect(thunderbird.accounts(prefsJs({ ...base, "mail.server.server1.port": -1 }), FILE)[0]).toMatchObject({ port: 110 });
  });

  test("realhostname/realuserName count only for a profile Thunderbird before 102 wrote", () => {
    const old = REALISTIC.replace('"extensions.lastAppVersion", "153.8.0"', '"extensions.lastAppVersion", "91.13.1"');
    expect(byRef("server7", old)).toMatchObject({ server: "new.example.com", user: "eve2" });
    expect(byRef("server7")).toMatchObject({ server: "old.example.com", user: "eve" });
  });

  test("without an account list every typed server is an account", () => {
    const text = `user_pref("mail.server.server2.type", "imap");\nuser_pref("mail.server.server2.hostname", "i");\nuser_pref("mail.server.server2.userName", "u");\nuser_pref("mail.server.default.type", "pop3");\n`;
    expect(thunderbird.accounts(text, FILE).map((a) => a.ref)).toEqual(["server2"]);
  });
});

describe("plan", () => {
  test("each security keeps its kind and goes to the matching listener, on loopback", () => {
    const plans = Object.fromEntries(["server1", "server2", "server3", "server4", "server7"].map((ref) => [ref, thunderbird.plan(byRef(ref), target, REALISTIC)]));
    expect(plans.server1!.slice(0, 3)).toEqual([
      { key: "mail.server.server1.hostname", value: '"127.0.0.1"' },
      { key: "mail.server.server1.userName", value: '"ann/pop.plain.example:110"' },
      { key: "mail.server.server1.port", value: "10110" },
    ]);
    expect(plans.server2).toEqual([
      { key: "mail.server.server2.hostname", value: '"127.0.0.1"' },
      { key: "mail.server.server2.userName", value: '"bob/pop.example.com:110"' },
      { key: "mail.server.server2.port", value: "10110" },
    ]);
    expect(plans.server3).toEqual([
      { key: "mail.server.server3.hostname", value: '"127.0.0.1"' },
      { key: "mail.server.server3.userName", value: '"cé \\"q\\" \\\\x/pop.example.org:995"' },
      { key: "mail.server.server3.port", value: "10995" },
    ]);
    expect(plans.server4!.find((s) => s.key.endsWith("port"))!.value).toBe("10993");
    expect(plans.server7!.find((s) => s.key.endsWith("port"))!.value).toBe("10143");
    for (const p of Object.values(plans)) expect(p.some((s) => s.key.endsWith("socketType"))).toBe(false);
  });

  test("folder URIs naming the server move with it, in their own spelling, whole authorities only", () => {
    expect(thunderbird.plan(byRef("server1"), target, REALISTIC).slice(3)).toEqual([
      { key: "mail.identity.id1.draft_folder", value: '"mailbox://ann%2Fpop.plain.example%3A110@127.0.0.1/Drafts"' },
      { key: "mail.identity.id1.fcc_folder", value: '"mailbox://ann%2Fpop.plain.example%3A110@127.0.0.1/Sent"' },
    ]);
    const moves = thunderbird.plan(byRef("server4"), target, REALISTIC).slice(3);
    const newUri = "imap://dan%40example.net%2Fimap.example.net%3A993@127.0.0.1";
    expect(moves).toEqual([
      { key: "mail.identity.id4.fcc_folder", value: `"${newUri}/Sent"` },
      { key: "mail.identity.id4.stationery_folder", value: `"${newUri}/Templates"` },
      { key: "mail.server.server4.spamActionTargetAccount", value: `"${newUri}"` },
      { key: "mail.server.server4.spamActionTargetFolder", value: `"${newUri}/Junk"` },
    ]);
    // C++ servers escape ! ' ( ) ~ too (ESCAPE_XALPHAS); such a URI keeps that spelling.
    const text = prefsJs(accountPrefs([{ type: "imap", prefs: { hostname: "h.example", userName: "o'neil", socketType: 3 }, identity: { fcc_folder: "imap://o%27neil@h.example/Sent", draft_folder: "imap://o'neil@h.example/Drafts" } }]));
    const acct = thunderbird.accounts(text, FILE)[0]!;
    expect(thunderbird.plan(acct, target, text).slice(3)).toEqual([
      { key: "mail.identity.id1.draft_folder", value: `"imap://o'neil%2Fh.example%3A993@127.0.0.1/Drafts"` },
      { key: "mail.identity.id1.fcc_folder", value: `"imap://o%27neil%2Fh.example%3A993@127.0.0.1/Sent"` },
    ]);
  });

  test("leftover realhostname/realuserName get the same values, so no Thunderbird version goes elsewhere", () => {
    const p = thunderbird.plan(byRef("server7"), target, REALISTIC);
    expect(p).toContainEqual({ key: "mail.server.server7.realhostname", value: '"127.0.0.1"' });
    expect(p).toContainEqual({ key: "mail.server.server7.realuserName", value: '"eve/old.example.com:143"' });
    expect(p).toContainEqual({ key: "mail.server.server7.userName", value: '"eve/old.example.com:143"' });
  });

  test("an IPv6 server is bracketed in the routed name", () => {
    const text = prefsJs(accountPrefs([{ type: "imap", prefs: { hostname: "2001:db8::1", userName: "u", socketType: 3 } }]));
    expect(thunderbird.plan(thunderbird.accounts(text, FILE)[0]!, target, text)[1]).toEqual({ key: "mail.server.server1.userName", value: '"u/[2001:db8::1]:993"' });
  });

  test("a listener that is off is named", () => {
    const off: ProxyTarget = { ...target, ports: { pop3: 10110, imap: 10143 } };
    expect(() => thunderbird.plan(byRef("server4"), off, REALISTIC)).toThrow("dan@example.net@imap.example.net needs the imaps listener, which is off");
    expect(() => thunderbird.plan(byRef("server3"), off, REALISTIC)).toThrow("needs the pop3s listener, which is off");
    expect(() => thunderbird.plan(byRef("server2"), { ...target, ports: { imap: 1 } }, REALISTIC)).toThrow("needs the pop3 listener, which is off");
  });

  test("proxied accounts need nothing; unsupported ones are refused", () => {
    expect(thunderbird.plan(byRef("server11"), target, REALISTIC)).toEqual([]);
    expect(() => thunderbird.plan(byRef("server8"), target, REALISTIC)).toThrow("OAuth2");
    expect(planFor(REALISTIC, { ...byRef("server2") }, target)).toEqual(thunderbird.plan(byRef("server2"), target, REALISTIC));
  });

  for (const [name, variant] of [
    ["as Thunderbird writes it", (t: string) => t],
    ["without a final newline", (t: string) => t.replace(/\n$/, "")],
    ["with CRLF line ends", (t: string) => t.replace(/\n/g, "\r\n")],
  ] as const) {
    test(`applying every plan and reverting it gives back the same bytes (${name})`, () => {
      const original = variant(REALISTIC);
      let text = original;
      const journal: { ref: string; old: { key: string; value: string | null }[] }[] = [];
      for (const a of thunderbird.accounts(original, FILE)) {
        if (a.unsupported) continue;
        const r = apply(text, a.ref, thunderbird.plan(a, target, text));
        text = r.text;
        journal.push({ ref: a.ref, old: r.old });
      }
      expect(text).not.toBe(original);
      const after = thunderbird.accounts(text, FILE);
      for (const a of after.filter((x) => !x.unsupported)) expect(a).toMatchObject({ proxied: true, server: "127.0.0.1" });
      expect(after.find((a) => a.ref === "server3")).toMatchObject({ user: 'cé "q" \\x/pop.example.org:995', port: 10995, security: "tls" });
      for (const j of [...journal].reverse()) text = revert(text, j.ref, j.old);
      expect(text).toBe(original);
    });
  }

  test("a plan that adds the port pref and is reverted restores the file without it", () => {
    const original = REALISTIC;
    const { text, old } = apply(original, "server1", thunderbird.plan(byRef("server1"), target, REALISTIC));
    expect(old.find((o) => o.key === "mail.server.server1.port")!.value).toBeNull();
    expect(thunderbird.get(text, "server1", "mail.server.server1.port")).toBe("10110");
    expect(revert(text, "server1", old)).toBe(original);
  });
});

describe("busy", () => {
  async function profileWithLock(target: string | null): Promise<string> {
    const dir = await mkdtemp(join(tmp, "lock-"));
    await writeFile(join(dir, "prefs.js"), "");
    if (target !== null) await symlink(target, join(dir, "lock"));
    return join(dir, "prefs.js");
  }

  async function deadPid(): Promise<number> {
    const p = Bun.spawn(["true"]);
    await p.exited;
    return p.pid;
  }

  test("no lock: not busy", async () => {
    expect(await thunderbird.busy!(await profileWithLock(null))).toBeNull();
  });

  test("a lock naming a live process on this machine: busy, with the pid", async () => {
    const file = await profileWithLock(`127.0.1.1:+${process.pid}`);
    expect(await thunderbird.busy!(file)).toBe(`Thunderbird is running on profile ${profileDirOf(file)} (pid ${process.pid}); quit it first`);
    // The form without "+" (no fcntl lock held) means the same.
    expect(await thunderbird.busy!(await profileWithLock(`127.0.0.1:${process.pid}`))).toContain(`(pid ${process.pid})`);
  });

  test("a lock left by a process that is gone is stale", async () => {
    expect(await thunderbird.busy!(await profileWithLock(`127.0.1.1:+${await deadPid()}`))).toBeNull();
  });

  test("a lock from another machine counts, as Gecko counts it; an unreadable one does not", async () => {
    expect(await thunderbird.busy!(await profileWithLock("203.0.113.9:+4242"))).toContain("another machine (203.0.113.9)");
    expect(await thunderbird.busy!(await profileWithLock("garbage"))).toBeNull();
  });

  test("in a flatpak profile the lock's pid is the sandbox's own, so any running Thunderbird counts", async () => {
    const dir = join(tmp, "fp/.var/app/org.mozilla.Thunderbird/.thunderbird/x.default");
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, "prefs.js"), "");
    await symlink("127.0.0.1:+2", join(dir, "lock")); // pid 2 inside the sandbox
    const file = join(dir, "prefs.js");
    expect(await thunderbird.busy!(file)).toBeNull();
    // A program whose argv[0] is "thunderbird" (sleep under that name) stands in for it.
    const fake = join(tmp, "thunderbird");
    await symlink(Bun.which("sleep")!, fake);
    const proc = Bun.spawn([fake, "30"]);
    try {
      await waitFor("the stand-in to start", async () => (await readFile(`/proc/${proc.pid}/cmdline`, "latin1").catch(() => "")).startsWith(fake), 5_000);
      expect(await thunderbird.busy!(file)).toBe(`Thunderbird is running on profile ${dir} (pid 2); quit it first`);
    } finally {
      proc.kill();
      await proc.exited;
    }
  });

  test("a plain file named lock is not Thunderbird's", async () => {
    const file = await profileWithLock(null);
    await writeFile(join(profileDirOf(file), "lock"), `127.0.0.1:+${process.pid}`);
    expect(await thunderbird.busy!(file)).toBeNull();
  });
});

describe("findFiles", () => {
  test("profiles of every install location, relative and absolute, deduplicated and sorted", async () => {
    const home = await mkdtemp(join(tmp, "home-"));
    const elsewhere = await mkdtemp(join(tmp, "elsewhere-"));
    const tb = join(home, ".thunderbird");
    const snap = join(home, "snap/thunderbird/common/.thunderbird");
    for (const d of [join(tb, "r1.default"), join(tb, "noprefs"), join(elsewhere, "abs"), join(snap, "s1.default")]) await mkdir(d, { recursive: true });
    for (const d of [join(tb, "r1.default"), join(elsewhere, "abs"), join(snap, "s1.default")]) await writeFile(join(d, "prefs.js"), "");
    await writeFile(
      join(tb, "profiles.ini"),
      [
        "[Install4F96D1932A9F858E]", "Default=r1.default", "Locked=1", "",
        "[Profile2]", "Name=none", "IsRelative=1", "Path=noprefs", "",
        "[Profile1]", "Name=abs", "IsRelative=0", `Path=${join(elsewhere, "abs")}`, "",
        "[Profile0]", "Name=default", "IsRelative=1", "Path=r1.default", "Default=1", "",
        "[General]", "StartWithLastProfile=1", "Version=2", "",
      ].join("\n"),
    );
    await writeFile(join(snap, "profiles.ini"), "[Profile0]\r\nName=snap\r\nIsRelative=1\r\nPath=s1.default\r\n");
    // Debian once linked the old Icedove directory to the new one: the same profiles twice.
    await symlink(tb, join(home, ".mozilla-thunderbird"));
    const files = await thunderbird.findFiles({ HOME: home });
    expect(files).toEqual([join(elsewhere, "abs/prefs.js"), join(tb, "r1.default/prefs.js"), join(snap, "s1.default/prefs.js")].sort());
  });

  test("no HOME, no profiles", async () => {
    expect(await thunderbird.findFiles({})).toEqual([]);
    expect(await thunderbird.findFiles({ HOME: join(tmp, "nowhere") })).toEqual([]);
  });

  test("profileDirs resolves Path against the ini's directory unless IsRelative=0", () => {
    expect(profileDirs("[Profile0]\nPath=a.b\nIsRelative=1\n[Profile1]\nPath=/x/y\nIsRelative=0\n[Install1]\nDefault=/x/y\n[Profile2]\nIsRelative=1\n", "/h/.thunderbird")).toEqual(["/h/.thunderbird/a.b", "/x/y", "/x/y"]);
  });
});

const haveCertutil = Bun.which("certutil") !== null && Bun.which("openssl") !== null;

describe("CA trust", () => {
  async function makeCa(dir: string, cn: string): Promise<string> {
    const r = Bun.spawnSync(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", `/CN=${cn}`, "-days", "1", "-keyout", join(dir, `${cn}.key`), "-out", join(dir, `${cn}.pem`)], { stdout: "ignore", stderr: "pipe" });
    if (r.exitCode !== 0) throw new Error(r.stderr.toString());
    return join(dir, `${cn}.pem`);
  }

  function trustOf(dir: string, nickname: string): string | null {
    const r = Bun.spawnSync(["certutil", "-L", "-d", `sql:${dir}`], { stdout: "pipe", stderr: "pipe" });
    const line = r.stdout.toString().split("\n").find((l) => l.startsWith(`${nickname} `));
    return line ? line.trim().split(/\s+/).pop()! : null;
  }

  test.skipIf(!haveCertutil)("adds, finds, replaces and removes the CA in a real NSS database", async () => {
    const dir = await mkdtemp(join(tmp, "nss-"));
    expect(Bun.spawnSync(["certutil", "-N", "--empty-password", "-d", `sql:${dir}`]).exitCode).toBe(0);
    const ca = await makeCa(dir, "mailsentry-test");
    const other = await makeCa(dir, "other-test");
    const nick = "mailsentry local CA";
    expect(await untrustCa(dir, nick)).toBe("absent");
    expect(await trustCa(dir, ca, nick)).toBe("added");
    expect(trustOf(dir, nick)).toBe("C,,");
    expect(await trustCa(dir, ca, nick)).toBe("present");
    // Another certificate under the nickname (a CA made anew) is replaced.
    expect(await trustCa(dir, other, nick)).toBe("added");
    const listed = Bun.spawnSync(["certutil", "-L", "-n", nick, "-d", `sql:${dir}`]).stdout.toString();
    expect(listed).toContain("CN=other-test");
    expect(await untrustCa(dir, nick)).toBe("removed");
    expect(trustOf(dir, nick)).toBeNull();
    expect(await untrustCa(dir, nick)).toBe("absent");
  });

  test.skipIf(!haveCertutil)("a profile without a certificate database gets one", async () => {
    const dir = await mkdtemp(join(tmp, "nss-new-"));
    const ca = await makeCa(dir, "fresh-test");
    expect(await untrustCa(dir, "n")).toBe("absent");
    expect(await trustCa(dir, ca, "n")).toBe("added");
    expect(trustOf(dir, "n")).toBe("C,,");
  });

  test.skipIf(!haveCertutil)("a broken database is an error, not 'absent'", async () => {
    const dir = await mkdtemp(join(tmp, "nss-bad-"));
    await writeFile(join(dir, "cert9.db"), "not a database");
    await expect(untrustCa(dir, "n")).rejects.toThrow("certutil");
  });
});

describe("test profiles", () => {
  test("without Thunderbird, makeProfile lays out profiles.ini and prefs.js the way Thunderbird does", async () => {
    const home = await mkdtemp(join(tmp, "fakehome-"));
    const servers: TbServer[] = [{ type: "imap", prefs: { hostname: "imap.example.com", userName: "u", socketType: 3 } }];
    const prefsFile = await makeProfile(home, servers, { real: false });
    expect(await thunderbird.findFiles({ HOME: home })).toEqual([prefsFile]);
    const text = await readFile(prefsFile, "utf8");
    expect(text).toBe(prefsJs(accountPrefs(servers)));
    expect(text.startsWith(PREFS_HEADER)).toBe(true);
    expect(thunderbird.accounts(text, prefsFile).map((a) => a.server)).toEqual(["imap.example.com"]);
  });
});

describe.skipIf(!haveThunderbird)("real Thunderbird", () => {
  test(
    "a profile Thunderbird wrote: its accounts, its lock while it runs, and where it connects after a plan",
    async () => {
      // A mock POP3 server stands in for the proxy's listener and records what Thunderbird sends.
      const lines: string[] = [];
      const listener = Bun.listen<undefined>({
        hostname: "127.0.0.1",
        port: 0,
        socket: {
          open(s) {
            s.write("+OK ready\r\n");
          },
          data(s, data) {
            for (const line of data.toString().split("\r\n").filter(Boolean)) {
              lines.push(line);
              if (/^CAPA/i.test(line)) s.write("+OK\r\nUSER\r\n.\r\n");
              else if (/^QUIT/i.test(line)) s.end("+OK\r\n");
              else s.write("-ERR not here\r\n");
            }
          },
        },
      });
      const startup = { login_at_startup: true, check_new_mail: true };
      const servers: TbServer[] = [
        {
          type: "pop3",
          prefs: { hostname: "pop.example.com", userName: "alice", socketType: 0, ...startup },
          identity: { useremail: "alice@example.com", fullName: "Alice", fcc_folder: "mailbox://alice@pop.example.com/Sent" },
        },
        { type: "imap", prefs: { hostname: "imap.example.com", userName: 'bob "q" \\ é', socketType: 3 } },
        { type: "none", prefs: { hostname: "Local Folders", userName: "nobody" } },
        // What the old way (realhostname/realuserName) does today: nothing. Thunderbird must still log in
        // as "carol" at hostname, not as the routed name at 127.0.0.2.
        { type: "pop3", prefs: { hostname: "127.0.0.1", port: listener.port, userName: "carol", realhostname: "127.0.0.2", realuserName: "carol/pop.example.org:110", socketType: 0, ...startup } },
      ];
      try {
        const home = await mkdtemp(join(tmp, "tbhome-"));
        const prefsFile = await makeProfile(home, servers);
        expect(await thunderbird.findFiles({ HOME: home })).toEqual([prefsFile]);
        const original = await readFile(prefsFile, "utf8");
        // The fallback layout is Thunderbird's: every line it would write is there byte for byte.
        expect(original.startsWith(PREFS_HEADER)).toBe(true);
        for (const line of prefsJs(accountPrefs(servers)).slice(PREFS_HEADER.length).split("\n").filter(Boolean)) expect(original).toContain(`${line}\n`);
        const accounts = thunderbird.accounts(original, prefsFile);
        expect(accounts.map((a) => [a.ref, a.server, a.user, a.port, a.security])).toEqual([
          ["server1", "pop.example.com", "alice", 110, "plain"],
          ["server2", "imap.example.com", 'bob "q" \\ é', 993, "tls"],
          ["server4", "127.0.0.1", "carol", listener.port, "plain"],
        ]);

        const pop = accounts[0]!;
        const { text, old } = apply(original, pop.ref, thunderbird.plan(pop, { ...target, ports: { pop3: listener.port } }, original));
        await writeFile(prefsFile, text);

        const proc = startThunderbird(home, profileDirOf(prefsFile));
        try {
          await waitFor("the profile lock", async () => (await thunderbird.busy!(prefsFile)) !== null, 30_000);
          expect(await thunderbird.busy!(prefsFile)).toContain(`(pid ${proc.pid})`);
          await waitFor("both logins", async () => lines.filter((l) => l.startsWith("USER")).length >= 2, 30_000);
        } finally {
          await stopThunderbird(proc);
        }
        expect(lines.filter((l) => l.startsWith("USER")).sort()).toEqual(["USER alice/pop.example.com:110", "USER carol"]);
        expect(await thunderbird.busy!(prefsFile)).toBeNull(); // SIGTERM removed the lock

        // Thunderbird kept the routed values (it may have rewritten the file around them).
        const after = await readFile(prefsFile, "utf8");
        expect(thunderbird.accounts(after, prefsFile)[0]).toMatchObject({ server: "127.0.0.1", user: "alice/pop.example.com:110", port: listener.port, proxied: true });
        expect(thunderbird.get(after, "server1", "mail.identity.id1.fcc_folder")).toBe('"mailbox://alice%2Fpop.example.com%3A110@127.0.0.1/Sent"');
        const reverted = revert(after, pop.ref, old);
        for (const o of old) expect(thunderbird.get(reverted, pop.ref, o.key)).toBe(o.value);
      } finally {
        listener.stop(true);
      }
    },
    180_000,
  );
});
