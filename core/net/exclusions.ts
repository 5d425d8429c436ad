// Exclusions: upstream servers (IPs/CIDRs) and local client applications whose sessions are relayed
// without scanning. The application is found from the loopback socket through /proc (Linux only).
import { readdir, readFile, readlink } from "node:fs/promises";
import { BlockList, isIP } from "node:net";
import { basename } from "node:path";

/** "::ffff:1.2.3.4" → "1.2.3.4": dual-stack listeners report IPv4 peers this way. */
export function unmapIPv4(ip: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  return m ? m[1] : ip;
}

function parseRule(rule: string): BlockList {
  const list = new BlockList();
  const text = rule.trim();
  const slash = text.indexOf("/");
  const addr = unmapIPv4(slash < 0 ? text : text.slice(0, slash));
  const family = isIP(addr);
  const prefix = slash < 0 ? null : text.slice(slash + 1);
  const max = family === 4 ? 32 : 128;
  const bits = prefix === null ? max : Number(prefix);
  if (!family || (prefix !== null && !/^\d{1,3}$/.test(prefix)) || bits > max) {
    throw new Error(`excludedServers: "${rule}" is not an IP address or CIDR (e.g. 192.0.2.10, 10.0.0.0/8, 2001:db8::/32)`);
  }
  list.addSubnet(addr, bits, family === 4 ? "ipv4" : "ipv6");
  return list;
}

/**
 * Compiles excludedServers into a matcher: returns the first rule (as written) that covers `ip`,
 * or null. Throws on an invalid entry, naming it, so config validation can report it.
 */
export function makeServerExclusion(cidrs: string[]): (ip: string) => string | null {
  const rules = cidrs.map((rule) => ({ rule, list: parseRule(rule) }));
  return (ip) => {
    const addr = unmapIPv4(ip.replace(/^\[(.*)\]$/, "$1").replace(/%.*$/, ""));
    const family = isIP(addr);
    if (!family) return null;
    const type = family === 4 ? "ipv4" : "ipv6";
    for (const r of rules) if (r.list.check(addr, type)) return r.rule;
    return null;
  };
}

export interface LocalProcess { pid: number; exe: string; name: string }

/** /proc/net/tcp* addresses: IPv4 as one host-order (little-endian here) word, IPv6 as four of them. */
function procAddr(hex: string): string {
  const words = hex.match(/.{8}/g) ?? [];
  const bytes = words.flatMap((w) => [6, 4, 2, 0].map((i) => parseInt(w.slice(i, i + 2), 16)));
  if (bytes.length === 4) return bytes.join(".");
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] << 8) | bytes[i + 1]).toString(16));
  return canonicalIp(groups.join(":"));
}

/** One spelling per address, so /proc's and the socket's forms compare; IPv4-mapped becomes IPv4. */
function canonicalIp(ip: string): string {
  const a = unmapIPv4(ip);
  if (isIP(a) !== 6) return a;
  const c = new URL(`http://[${a}]/`).hostname.slice(1, -1);
  const m = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(c);
  if (!m) return c;
  const hi = parseInt(m[1], 16), lo = parseInt(m[2], 16);
  return [hi >> 8, hi & 255, lo >> 8, lo & 255].join(".");
}

/** Inode of the socket whose local end is (addr, port) and remote end is (raddr, rport), or null. */
async function findSocketInode(addr: string, port: number, raddr: string, rport: number): Promise<number | null> {
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    const text = await readFile(file, "utf8").catch(() => "");
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      const [la, lp] = f[1].split(":");
      const [ra, rp] = f[2].split(":");
      if (parseInt(lp, 16) !== port || parseInt(rp, 16) !== rport) continue;
      if (procAddr(la) !== addr || procAddr(ra) !== raddr) continue;
      const inode = Number(f[9]);
      if (inode > 0) return inode; // 0: TIME_WAIT and friends, owned by nobody any more
    }
  }
  return null;
}

async function processOwning(inode: number): Promise<number | null> {
  const target = `socket:[${inode}]`;
  const pids = (await readdir("/proc").catch(() => [] as string[])).filter((n) => /^\d+$/.test(n));
  for (const pid of pids) {
    // Other users' fd tables are unreadable unless we are root; those processes are skipped.
    const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
    for (const fd of fds) {
      if ((await readlink(`/proc/${pid}/fd/${fd}`).catch(() => "")) === target) return Number(pid);
    }
  }
  return null;
}

/**
 * For a client connected to us over loopback, the process holding the client's end of the TCP
 * connection. Arguments are from OUR side of the accepted socket: our local port/address and the
 * client's (remote) port/address. Null when not found (not Linux, gone, not permitted).
 */
export async function findLocalProcess(
  localPort: number,
  remotePort: number,
  localAddr: string,
  remoteAddr: string,
): Promise<LocalProcess | null> {
  // The client's socket sees the mirror image: its local end is our remote end.
  const inode = await findSocketInode(canonicalIp(remoteAddr), remotePort, canonicalIp(localAddr), localPort);
  if (inode === null) return null;
  const pid = await processOwning(inode);
  if (pid === null) return null;
  const exe = (await readlink(`/proc/${pid}/exe`).catch(() => "")).replace(/ \(deleted\)$/, "");
  const name = (await readFile(`/proc/${pid}/comm`, "utf8").catch(() => "")).trim();
  return { pid, exe, name };
}

/**
 * excludedApps matching: a rule containing "/" must equal the executable path; any other rule
 * matches the executable's basename or the process name (comm). Returns the matching rule or null.
 */
export function matchApp(rules: string[], proc: LocalProcess): string | null {
  for (const rule of rules) {
    if (rule.includes("/")) {
      if (proc.exe !== "" && rule === proc.exe) return rule;
    } else if (rule !== "" && (rule === basename(proc.exe) || rule === proc.name)) {
      return rule;
    }
  }
  return null;
}
