import { describe, expect, test } from "bun:test";
import { DEFAULT_CONFIG, type Config } from "../../../core/config/types.ts";
import { hasControlBytes, isLoopback, listenerProblems, makeHostMatcher, parseHostPort, routedHostProblem, upstreamProblem } from "../../../core/net/security.ts";

const cfg = (o: Partial<Config>): Config => ({ ...structuredClone(DEFAULT_CONFIG), ...o }) as Config;

describe("security", () => {
  test("loopback", () => {
    for (const h of ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "::ffff:127.0.0.1"]) expect(isLoopback(h)).toBe(true);
    for (const h of ["0.0.0.0", "::", "10.0.0.1", "128.0.0.1", "example.org"]) expect(isLoopback(h)).toBe(false);
  });

  test("host:port", () => {
    expect(parseHostPort("[::1]:110")).toEqual({ host: "::1", port: 110 });
    expect(parseHostPort("a.b:0")).toBeNull();
    expect(parseHostPort("a.b:0", true)).toEqual({ host: "a.b", port: 0 });
    expect(parseHostPort("a.b")).toBeNull();
  });

  test("a non-loopback listener needs an allowlist", () => {
    const open = cfg({ listeners: { ...DEFAULT_CONFIG.listeners, pop3: { enabled: true, addresses: ["0.0.0.0:1110"] } } });
    expect(listenerProblems(open)).toHaveLength(1);
    expect(listenerProblems(open)[0]).toContain("upstreamAllowlist");
    expect(listenerProblems({ ...open, upstreamAllowlist: ["mail.example.org"] })).toEqual([]);
    const fixed = cfg({ listeners: { ...DEFAULT_CONFIG.listeners, pop3: { enabled: true, addresses: [{ address: "0.0.0.0:1110", upstream: "mail.example.org:110" }] } } });
    expect(listenerProblems(fixed)).toEqual([]);
    expect(listenerProblems(cfg({}))).toEqual([]);
  });

  test("routed names: control bytes and non-host names are refused", () => {
    expect(hasControlBytes("a\rb")).toBe(true);
    expect(hasControlBytes("a\0b")).toBe(true);
    expect(routedHostProblem("mail.example.org")).toBeNull();
    expect(routedHostProblem("10.1.2.3")).toBeNull();
    expect(routedHostProblem("2001:db8::1")).toBeNull();
    expect(routedHostProblem("mail\nexample")).not.toBeNull();
    expect(routedHostProblem("-bad.example")).not.toBeNull();
    expect(routedHostProblem("a b")).not.toBeNull();
  });

  test("upstream ports and allowlist", () => {
    const c = { allowedUpstreamPorts: [110, 995], upstreamAllowlist: [] as string[] };
    expect(upstreamProblem(c, { host: "x.org", ip: "192.0.2.1", port: 110 })).toBeNull();
    expect(upstreamProblem(c, { host: "x.org", ip: "192.0.2.1", port: 25 })).toContain("allowedUpstreamPorts");
    const a = { ...c, upstreamAllowlist: ["mail.example.org", "*.corp.example", "192.0.2.0/24", "2001:db8::/32"] };
    expect(upstreamProblem(a, { host: "mail.example.org", ip: "203.0.113.5", port: 110 })).toBeNull();
    expect(upstreamProblem(a, { host: "pop.corp.example", ip: "203.0.113.5", port: 110 })).toBeNull();
    expect(upstreamProblem(a, { host: "evil.org", ip: "192.0.2.77", port: 110 })).toBeNull();
    expect(upstreamProblem(a, { host: "evil.org", ip: "::ffff:192.0.2.77", port: 110 })).toBeNull();
    expect(upstreamProblem(a, { host: "v6.org", ip: "2001:db8::5", port: 110 })).toBeNull();
    expect(upstreamProblem(a, { host: "evil.org", ip: "198.51.100.1", port: 110 })).toContain("upstreamAllowlist");
    expect(makeHostMatcher(["corp.example"])("notcorp.example", "1.1.1.1")).toBe(false);
  });
});
