import { describe, expect, test } from "bun:test";
import { authPlainResponse, parseAuthPlain, parseRoutedName } from "../../../core/pop3/login.ts";
import { filterCapa, parseCapa, proxyCapa } from "../../../core/pop3/capa.ts";
import { redactCommand } from "../../../core/log.ts";

describe("routed login names", () => {
  test.each([
    ["alice/mail.example.org", { user: "alice", host: "mail.example.org" }],
    ["alice#mail.example.org", { user: "alice", host: "mail.example.org" }],
    ["alice/mail.example.org:995", { user: "alice", host: "mail.example.org", port: 995 }],
    ["alice@example.org#10.0.0.1:110", { user: "alice@example.org", host: "10.0.0.1", port: 110 }],
    ["bob/[2001:db8::1]:1110", { user: "bob", host: "2001:db8::1", port: 1110 }],
    ["bob/[::1]", { user: "bob", host: "::1" }],
    ["bob/2001:db8::1", { user: "bob", host: "2001:db8::1" }],
    ["dept/alice/mail.example.org", { user: "dept/alice", host: "mail.example.org" }],
  ])("%s", (input, expected) => {
    expect(parseRoutedName(input)).toEqual(expected);
  });

  test.each([
    "alice", "alice/", "/mail.example.org", "alice/mail.example.org:0", "alice/mail.example.org:70000",
    "alice/mail.example.org:x", "alice/mail\r\nexample.org", "alice\0/mail.example.org", "alice/bad host", "alice/a_b..c",
    // A line break in the user part would end the upstream USER line and start a command.
    "alice\r\nLIST/mail.example.org", "alice\r/mail.example.org", "alice\nDELE 1/mail.example.org",
  ])("refuses %j", (input) => {
    expect(typeof parseRoutedName(input)).toBe("string");
  });
});

describe("AUTH PLAIN", () => {
  test("round trip", () => {
    expect(parseAuthPlain(authPlainResponse("alice/mail.example.org", "pä ss"))).toEqual({ authzid: "", authcid: "alice/mail.example.org", password: "pä ss" });
  });
  test("with authzid", () => {
    const b64 = Buffer.from("admin\0alice/h\0pw").toString("base64");
    expect(parseAuthPlain(b64)).toEqual({ authzid: "admin", authcid: "alice/h", password: "pw" });
  });
  test.each(["=", "not base64!", Buffer.from("no-nul").toString("base64"), Buffer.from("\0\0pw").toString("base64")])("refuses %j", (b64) => {
    expect(typeof parseAuthPlain(b64)).toBe("string");
  });
});

describe("CAPA", () => {
  test("the proxy's own list offers STLS only when asked", () => {
    expect(proxyCapa({ stls: true })).toContain("STLS");
    expect(proxyCapa({ stls: false })).not.toContain("STLS");
    expect(proxyCapa({ stls: false })).toContain("SASL PLAIN");
  });
  test("after login: server list minus STLS, SASL and unknown capabilities", () => {
    const server = ["USER", "TOP", "UIDL", "STLS", "SASL PLAIN LOGIN", "PIPELINING", "RESP-CODES", "UTF8", "LANG", "X-SOMETHING"];
    expect(filterCapa(server, { loggedIn: true, offerStls: false })).toEqual(["TOP", "UIDL", "PIPELINING", "RESP-CODES", "IMPLEMENTATION mailsentry"]);
  });
  test("before login on a fixed listener: relayable SASL only, STLS of the proxy", () => {
    const server = ["USER", "STLS", "SASL PLAIN GSSAPI SCRAM-SHA-256-PLUS CRAM-MD5"];
    expect(filterCapa(server, { loggedIn: false, offerStls: true })).toEqual(["USER", "SASL PLAIN CRAM-MD5", "STLS", "IMPLEMENTATION mailsentry"]);
  });
  test("parseCapa", () => {
    expect(parseCapa(["USER", "stls", "SASL LOGIN PLAIN"])).toMatchObject({ stls: true, saslPlain: true, user: true });
  });
});

describe("redaction", () => {
  test.each([
    ["PASS hunter2", "PASS ***"],
    ["pass hunter2 with spaces", "pass ***"],
    ["AUTH PLAIN AGFsaWNlAHNlY3JldA==", "AUTH PLAIN ***"],
    ["APOP alice c4c9334bac560ecc979e58001b3e22fb", "APOP ***"],
    ["USER alice/host", "USER alice/host"],
    ["RETR 1", "RETR 1"],
  ])("%s", (line, shown) => expect(redactCommand(line)).toBe(shown));
});

import { createLogger } from "../../../core/log.ts";

describe("log lines", () => {
  test("json: one object per line, fields kept, secret-looking fields masked, errors serialised", () => {
    const lines: string[] = [];
    const log = createLogger({ format: "json", level: "debug", write: (l) => lines.push(l) }).child({ session: 7 });
    log.info("logged in", { user: "alice", password: "hunter2" });
    log.error("failed", { error: new Error("boom") });
    log.debug("client", { msg: "not the message" });
    const objs = lines.map((l) => JSON.parse(l));
    expect(objs[0]).toMatchObject({ level: "info", msg: "logged in", session: 7, user: "alice", password: "***" });
    expect(objs[1].error.message).toBe("boom");
    expect(objs[1].error.stack).toContain("boom");
    expect(objs[2].msg).toBe("client");
    expect(lines.join("\n")).not.toContain("hunter2");
  });

  test("text: a readable line; level filter applies", () => {
    const lines: string[] = [];
    const log = createLogger({ format: "text", level: "warn", write: (l) => lines.push(l) });
    log.info("hidden");
    log.warn("shown", { server: "mail.example.org:995", note: "two words" });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^\S+Z WARN  shown server=mail.example.org:995 note="two words"$/);
  });
});
