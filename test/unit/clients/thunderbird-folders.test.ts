// Folder URIs outside prefs.js: which files (msgFilterRules.dat of every server, virtualFolders.dat),
// the line edits that move one server's folder URIs, and byte-exact get/set of those lines.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { authorityMoves, folderFiles, folderMoves, getValue, setValue } from "../../../core/clients/thunderbird-folders.ts";

const FROM = "imap://bob@imap.example.com";
const TO = "imap://bob%2Fimap.example.com%3A993@127.0.0.1";
const MOVES = [{ from: FROM, to: TO }];

/** The way Thunderbird writes msgFilterRules.dat (nsMsgFilterList::SaveTextFilters). */
const FILTERS = [
  'version="9"',
  'logging="no"',
  'name="Lists to IMAP"',
  'enabled="yes"',
  'type="17"',
  'action="Move to folder"',
  `actionValue="${FROM}/INBOX/Lists"`,
  'condition="AND (to or cc,contains,list@example.org)"',
  'name="Copy \\"boss\\" mail"',
  'enabled="yes"',
  'type="1"',
  'action="Copy to folder"',
  `actionValue="${FROM}/Boss \\"VIP\\""`,
  'action="AddTag"',
  'actionValue="$label1"',
  'condition="AND (from,contains,\\"Boss\\" <boss@example.com>)"',
  'name="Not ours"',
  'enabled="yes"',
  'type="17"',
  'action="Move to folder"',
  `actionValue="${FROM}.evil/INBOX"`,
  'action="Move to folder"',
  'actionValue="mailbox://ann@pop.example.com/Inbox"',
  'action="Move to folder"',
  `actionValue="${FROM}"`,
  'condition="ALL"',
  "",
].join("\n");

/** The way Thunderbird writes virtualFolders.dat (nsMsgAccountManager::SaveVirtualFolders). */
const VIRTUAL = [
  "version=1",
  `uri=${FROM}/Unread`,
  "searchFolderFlag=1",
  `scope=${FROM}/INBOX|mailbox://nobody@Local%20Folders/Inbox|${FROM}/INBOX/Lists|${FROM}.evil/INBOX`,
  `terms=AND (subject,contains,${FROM}/INBOX)`,
  "searchOnline=false",
  "uri=mailbox://nobody@Local%20Folders/Archive",
  `scope=${FROM}.evil/INBOX|mailbox://nobody@Local%20Folders/Inbox`,
  "terms=AND (from,contains,x)",
  "searchOnline=true",
  "",
].join("\n");

function apply(text: string, edits: { key: string; value: string | null }[]): { text: string; before: { key: string; value: string | null }[] } {
  const before = edits.map((e) => ({ key: e.key, value: getValue(text, e.key) }));
  for (const e of edits) text = setValue(text, e.key, e.value);
  return { text, before };
}

function revert(text: string, before: { key: string; value: string | null }[]): string {
  for (const e of [...before].reverse()) text = setValue(text, e.key, e.value);
  return text;
}

describe("folderMoves in msgFilterRules.dat", () => {
  test("moves move/copy targets and the server root, leaves tags, other servers and .evil alone", () => {
    const edits = folderMoves(FILTERS, MOVES);
    expect(edits).toEqual([
      { key: "line 7", value: `actionValue="${TO}/INBOX/Lists"` },
      { key: "line 13", value: `actionValue="${TO}/Boss \\"VIP\\""` },
      { key: "line 25", value: `actionValue="${TO}"` },
    ]);
    const { text, before } = apply(FILTERS, edits);
    expect(text).toBe(FILTERS.replace(`"${FROM}/INBOX/Lists"`, `"${TO}/INBOX/Lists"`).replace(`"${FROM}/Boss`, `"${TO}/Boss`).replace(`"${FROM}"`, `"${TO}"`));
    expect(text).toContain(`actionValue="${FROM}.evil/INBOX"`);
    expect(text).toContain('actionValue="$label1"');
    expect(folderMoves(text, MOVES)).toEqual([]);
    expect(revert(text, before)).toBe(FILTERS);
  });

  test("the .evil host alone gives no edits", () => {
    const text = `version="9"\nlogging="no"\nactionValue="${FROM}.evil/INBOX"\nactionValue="${FROM}x"\n`;
    expect(folderMoves(text, MOVES)).toEqual([]);
  });

  test("attribute names in any case, whitespace before the value, an unterminated value", () => {
    const text = `  ACTIONVALUE = "${FROM}/A"\nactionValue="${FROM}`;
    expect(folderMoves(text, MOVES)).toEqual([
      { key: "line 1", value: `  ACTIONVALUE = "${TO}/A"` },
      { key: "line 2", value: `actionValue="${TO}` },
    ]);
  });

  test("the URI must start the value", () => {
    expect(folderMoves(`actionValue="x${FROM}/A"\ncondition="AND (subject,contains,${FROM}/A)"\n`, MOVES)).toEqual([]);
  });
});

describe("folderMoves in virtualFolders.dat", () => {
  test("moves uri= and every matching scope entry, not terms=", () => {
    const edits = folderMoves(VIRTUAL, MOVES);
    expect(edits).toEqual([
      { key: "line 2", value: `uri=${TO}/Unread` },
      { key: "line 4", value: `scope=${TO}/INBOX|mailbox://nobody@Local%20Folders/Inbox|${TO}/INBOX/Lists|${FROM}.evil/INBOX` },
    ]);
    const { text, before } = apply(VIRTUAL, edits);
    expect(text).toContain(`terms=AND (subject,contains,${FROM}/INBOX)`);
    expect(revert(text, before)).toBe(VIRTUAL);
  });

  test("a scope entry that is the server root alone", () => {
    expect(folderMoves(`scope=${FROM}|${FROM}`, MOVES)).toEqual([{ key: "line 1", value: `scope=${TO}|${TO}` }]);
  });
});

describe("authorityMoves", () => {
  test("both spellings of the user part; each URI keeps its own", () => {
    const moves = authorityMoves("imap", { user: "o'neil", host: "imap.example.com" }, { user: "o'neil/imap.example.com:993", host: "127.0.0.1" });
    expect(moves).toEqual([
      { from: "imap://o'neil@imap.example.com", to: "imap://o'neil%2Fimap.example.com%3A993@127.0.0.1" },
      { from: "imap://o%27neil@imap.example.com", to: "imap://o%27neil%2Fimap.example.com%3A993@127.0.0.1" },
    ]);
    const text = 'actionValue="imap://o%27neil@imap.example.com/INBOX"\nactionValue="imap://o\'neil@imap.example.com/INBOX"\n';
    expect(folderMoves(text, moves).map((e) => e.value)).toEqual([
      'actionValue="imap://o%27neil%2Fimap.example.com%3A993@127.0.0.1/INBOX"',
      'actionValue="imap://o\'neil%2Fimap.example.com%3A993@127.0.0.1/INBOX"',
    ]);
  });

  test("one move when both spellings agree; POP3 servers are mailbox://", () => {
    expect(authorityMoves("pop3", { user: "ann", host: "pop.example.com" }, { user: "ann/pop.example.com:995", host: "127.0.0.1" })).toEqual([
      { from: "mailbox://ann@pop.example.com", to: "mailbox://ann%2Fpop.example.com%3A995@127.0.0.1" },
    ]);
  });

  test("folderMoves refuses moves that are not authorities", () => {
    expect(() => folderMoves("", [{ from: FROM, to: 'imap://a"b@h' }])).toThrow();
    expect(() => folderMoves("", [{ from: `${FROM}/INBOX`, to: TO }])).toThrow();
  });
});

describe("getValue / setValue", () => {
  const crlf = FILTERS.replace(/\n/g, "\r\n");
  const noFinal = VIRTUAL.slice(0, -1);
  for (const [name, text] of [
    ["LF", FILTERS],
    ["CRLF", crlf],
    ["no final newline", noFinal],
    ["CRLF, no final newline", crlf.slice(0, -2)],
  ] as const) {
    test(`moves and reverts byte for byte (${name})`, () => {
      const edits = folderMoves(text, MOVES);
      expect(edits.length).toBeGreaterThan(0);
      const { text: moved, before } = apply(text, edits);
      expect(moved).not.toBe(text);
      expect(moved.split("\n").length).toBe(text.split("\n").length);
      for (const e of edits) expect(getValue(moved, e.key)).toBe(e.value);
      expect(revert(moved, before)).toBe(text);
    });
  }

  test("the line end is not part of the value and stays", () => {
    const text = "a\r\nb\nc";
    expect([1, 2, 3, 4].map((n) => getValue(text, `line ${n}`))).toEqual(["a", "b", "c", null]);
    expect(setValue(text, "line 1", "x")).toBe("x\r\nb\nc");
    expect(setValue(text, "line 2", "y")).toBe("a\r\ny\nc");
    expect(setValue(text, "line 3", "z")).toBe("a\r\nb\nz");
    expect(getValue("a\n", "line 2")).toBeNull();
    expect(getValue("", "line 1")).toBeNull();
    expect(getValue("a\n\nb", "line 2")).toBe("");
  });

  test("lines are never added or removed", () => {
    expect(setValue("a\n", "line 2", null)).toBe("a\n");
    expect(() => setValue("a\n", "line 1", null)).toThrow();
    expect(() => setValue("a\n", "line 2", "b")).toThrow();
    expect(() => setValue("a\n", "line 1", "b\nc")).toThrow();
    expect(() => setValue("a\nb", "line 1", "x\r")).toThrow();
    expect(() => setValue("a\n", "a", "x")).toThrow();
  });
});

describe("folderFiles", () => {
  let profile: string;
  let elsewhere: string;
  beforeAll(async () => {
    profile = await mkdtemp(join(tmpdir(), "tb-folders-"));
    elsewhere = await mkdtemp(join(tmpdir(), "tb-folders-abs-"));
  });
  afterAll(async () => {
    await rm(profile, { recursive: true, force: true });
    await rm(elsewhere, { recursive: true, force: true });
  });

  test("every server's msgFilterRules.dat and virtualFolders.dat, only those that exist", async () => {
    await mkdir(join(profile, "ImapMail", "imap.example.com"), { recursive: true });
    await mkdir(join(profile, "Mail", "Local Folders"), { recursive: true });
    await mkdir(join(profile, "Mail", "pop.example.com"), { recursive: true });
    // The stale absolute directory exists too: directory-rel wins (NS_GetPersistentFile reads it first).
    await mkdir(join(profile, "ImapMail", "stale"), { recursive: true });
    await writeFile(join(profile, "ImapMail", "stale", "msgFilterRules.dat"), "");
    await writeFile(join(profile, "ImapMail", "imap.example.com", "msgFilterRules.dat"), FILTERS);
    await writeFile(join(profile, "Mail", "Local Folders", "msgFilterRules.dat"), 'version="9"\nlogging="no"\n');
    await writeFile(join(elsewhere, "msgFilterRules.dat"), 'version="9"\nlogging="no"\n');
    await writeFile(join(profile, "virtualFolders.dat"), VIRTUAL);
    const prefs = [
      '// Mozilla User Preferences',
      `user_pref("mail.server.server1.directory", "${join(profile, "ImapMail", "stale")}");`,
      'user_pref("mail.server.server1.directory-rel", "[ProfD]ImapMail/imap.example.com");',
      `user_pref("mail.server.server2.directory", "${join(elsewhere)}");`,
      'user_pref("mail.server.server3.directory-rel", "[ProfD]Mail/Local Folders");',
      // no msgFilterRules.dat there
      'user_pref("mail.server.server4.directory-rel", "[ProfD]Mail/pop.example.com");',
      // commented out: not a pref
      '// user_pref("mail.server.server5.directory-rel", "[ProfD]ImapMail/stale");',
      `/* user_pref("mail.server.server6.directory", "${join(profile, "ImapMail", "stale")}"); */`,
      "",
    ].join("\n");
    expect((await folderFiles(profile, prefs)).sort()).toEqual(
      [
        join(profile, "ImapMail", "imap.example.com", "msgFilterRules.dat"),
        join(elsewhere, "msgFilterRules.dat"),
        join(profile, "Mail", "Local Folders", "msgFilterRules.dat"),
        join(profile, "virtualFolders.dat"),
      ].sort(),
    );
  });

  test("nothing when there are no such files", async () => {
    const empty = await mkdtemp(join(tmpdir(), "tb-folders-empty-"));
    try {
      expect(await folderFiles(empty, 'user_pref("mail.server.server1.directory-rel", "[ProfD]ImapMail/x");\n')).toEqual([]);
    } finally {
      await rm(empty, { recursive: true, force: true });
    }
  });

  test("escapes in the pref literal are decoded", async () => {
    const dir = join(profile, "Mail", 'q"uote');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, "msgFilterRules.dat"), "");
    const files = await folderFiles(profile, 'user_pref("mail.server.server9.directory-rel", "[ProfD]Mail/q\\"uote");\n');
    expect(files).toContain(join(dir, "msgFilterRules.dat"));
  });
});
