// excludedServers matching and excludedApps lookup: a real child process connects over loopback and
// the server side finds the child's pid, executable and name through /proc.
import { describe, expect, test } from "bun:test";
import { realpathSync } from "node:fs";
import { findLocalProcess, makeServerExclusion, matchApp } from "../../../core/net/exclusions.ts";
import { have } from "../../helpers/clients.ts";

describe("makeServerExclusion", () => {
  const match = makeServerExclusion(["10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "::1"]);

  test("returns the rule that covers an address, as written", () => {
    expect(["10.200.1.1", "192.0.2.7", "2001:db8:1::5", "::1", "192.0.2.8", "11.0.0.1", "2001:db9::1"].map(match))
      .toEqual(["10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "::1", null, null, null]);
  });

  test("IPv4-mapped IPv6 peers match IPv4 rules", () => {
    expect(match("::ffff:10.1.2.3")).toBe("10.0.0.0/8");
    expect(match("[2001:db8::9]")).toBe("2001:db8::/32");
  });

  test("anything that is not an address matches nothing", () => {
    expect(match("mail.example.test")).toBeNull();
    expect(match("")).toBeNull();
  });

  test("an empty list excludes nothing", () => {
    expect(makeServerExclusion([])("10.0.0.1")).toBeNull();
  });

  test("an invalid entry throws an error naming it", () => {
    for (const bad of ["10.0.0.0/33", "mail.example.test", "1.2.3.4/", "1.2.3.4/x", "2001:db8::/129", ""]) {
      expect(() => makeServerExclusion(["10.0.0.0/8", bad])).toThrow(`"${bad}"`);
    }
  });
});

describe("matchApp", () => {
  const proc = { pid: 1, exe: "/usr/bin/fetchmail", name: "fetchmail" };
  test("a rule with a slash is an exact executable path", () => {
    expect(matchApp(["/usr/bin/fetchmail"], proc)).toBe("/usr/bin/fetchmail");
    expect(matchApp(["/usr/local/bin/fetchmail"], proc)).toBeNull();
  });
  test("a bare rule matches the executable's basename or the process name", () => {
    expect(matchApp(["thunderbird", "fetchmail"], proc)).toBe("fetchmail");
    expect(matchApp(["thunderbird-bin"], { pid: 2, exe: "/usr/lib/thunderbird/thunderbird-bin", name: "thunderbird" })).toBe("thunderbird-bin");
    expect(matchApp(["MainThread"], { pid: 3, exe: "/opt/x/app", name: "MainThread" })).toBe("MainThread");
    expect(matchApp(["fetch"], proc)).toBeNull();
    expect(matchApp([""], { pid: 4, exe: "", name: "" })).toBeNull();
  });
});

/** Listens on `hostname`, starts `cmd` (which connects to the port given as its last argument and waits),
 * and looks the client up from the server's side of the accepted socket. */
async function lookupChild(hostname: string, cmd: string[]) {
  const accepted = Promise.withResolvers<{ remotePort: number; remoteAddress: string; end: () => void }>();
  using server = Bun.listen({
    hostname,
    port: 0,
    socket: {
      open(s) { accepted.resolve({ remotePort: s.remotePort, remoteAddress: s.remoteAddress, end: () => s.end() }); },
      data() {},
    },
  });
  const child = Bun.spawn([...cmd, String(server.port)], { stdout: "ignore", stderr: "inherit" });
  const conn = await Promise.race([accepted.promise, child.exited.then((c) => { throw new Error(`child exited ${c}`); })]);
  const localAddr = hostname === "::" && conn.remoteAddress.startsWith("::ffff:") ? "::ffff:127.0.0.1" : hostname;
  const t = performance.now();
  const found = await findLocalProcess(server.port, conn.remotePort, localAddr, conn.remoteAddress);
  const ms = performance.now() - t;
  conn.end();
  await child.exited;
  return { found, child, ms, remoteAddress: conn.remoteAddress };
}

const BUN_CLIENT = `const port = Number(process.argv.at(-1));
await Bun.connect({ hostname: process.env.CONNECT_HOST ?? "127.0.0.1", port, socket: { data() {}, close() { process.exit(0); } } });`;

describe.skipIf(process.platform !== "linux")("findLocalProcess", () => {
  test("finds a bun child connected over 127.0.0.1: its pid, executable and name", async () => {
    const { found, child, ms } = await lookupChild("127.0.0.1", [process.execPath, "-e", BUN_CLIENT]);
    expect(found).toEqual({ pid: child.pid, exe: realpathSync(process.execPath), name: expect.any(String) });
    expect(found!.name.length).toBeGreaterThan(0);
    console.log(`findLocalProcess: ${ms.toFixed(1)} ms`);
  });

  test.skipIf(!have("python3"))("finds a python3 child through a dual-stack listener (IPv4-mapped peer)", async () => {
    const script = "import socket,sys,os\ns=socket.create_connection(('127.0.0.1',int(sys.argv[-1])))\ns.recv(1)";
    const { found, child, remoteAddress } = await lookupChild("::", ["python3", "-c", script]);
    expect(remoteAddress).toBe("::ffff:127.0.0.1");
    expect(found?.pid).toBe(child.pid);
    expect(found?.name).toStartWith("python3");
    expect(matchApp(["python3"], found!) ?? matchApp([found!.exe], found!)).not.toBeNull();
  });

  test.skipIf(!have("python3"))("finds a python3 child connected over ::1", async () => {
    const script = "import socket,sys\ns=socket.create_connection(('::1',int(sys.argv[-1])))\ns.recv(1)";
    const { found, child } = await lookupChild("::1", ["python3", "-c", script]);
    expect(found?.pid).toBe(child.pid);
  });

  test("returns null for a connection that does not exist", async () => {
    expect(await findLocalProcess(1, 2, "127.0.0.1", "127.0.0.1")).toBeNull();
  });
});
