// Who may try to log in, shared by every listener of one proxy, as Dovecot's login processes do it:
// a client address holds only so many connections that have not logged in yet (slow-drip clients
// cannot pile up), a connection gets a few failed logins before it is closed, and a login name that
// keeps failing from one address is refused for a while without asking the server (no password
// guessing through the proxy). Names are per address so one client's typo never locks out another.

export interface LoginGuardLimits {
  /** Connections from one client address that have not logged in yet. */
  maxUnauthenticatedPerClient: number;
  /** Failed logins on one connection before it is closed. */
  maxLoginFailures: number;
}

/** Failed logins of one name from one address within FAILURE_WINDOW_MS before that name is refused there. */
export const MAX_NAME_FAILURES = 10;
export const FAILURE_WINDOW_MS = 15 * 60_000;
/** Names tracked at most, so a flood of made-up names costs bounded memory (oldest forgotten first). */
const MAX_TRACKED = 10_000;

/** One connection's standing with the guard, from accept to login (or close). */
export interface Admission {
  /** Counts a failed login; true when the connection has used up its failures and must close. */
  failed(name: string): boolean;
  /** True while this name has failed too often from this address: refuse it without asking the server. */
  blocked(name: string): boolean;
  /** Logged in: the connection no longer counts against the address's unauthenticated cap. */
  loggedIn(): void;
  /** The connection ended (idempotent). */
  release(): void;
}

export class LoginGuard {
  private readonly pending = new Map<string, number>();
  private readonly failures = new Map<string, number[]>();

  /** limits: read at each use, so a reload's new limits apply to the next connection. */
  constructor(private readonly limitsNow: () => LoginGuardLimits, private readonly now: () => number = () => performance.now()) {}

  private get limits(): LoginGuardLimits {
    return this.limitsNow();
  }

  /** Admits a new connection from address, or null when it already holds the most unauthenticated connections. */
  admit(address: string): Admission | null {
    const held = this.pending.get(address) ?? 0;
    if (held >= this.limits.maxUnauthenticatedPerClient) return null;
    this.pending.set(address, held + 1);
    let counted = true;
    let failures = 0;
    const uncount = () => {
      if (!counted) return;
      counted = false;
      const n = (this.pending.get(address) ?? 1) - 1;
      if (n <= 0) this.pending.delete(address);
      else this.pending.set(address, n);
    };
    return {
      failed: (name) => {
        this.recordFailure(address, name);
        return ++failures >= this.limits.maxLoginFailures;
      },
      blocked: (name) => this.recentFailures(address, name) >= MAX_NAME_FAILURES,
      loggedIn: uncount,
      release: uncount,
    };
  }

  /** Unauthenticated connections an address holds now (for tests and status). */
  unauthenticated(address: string): number {
    return this.pending.get(address) ?? 0;
  }

  private key(address: string, name: string): string {
    return `${address}\0${name.toLowerCase()}`;
  }

  private recentFailures(address: string, name: string): number {
    const list = this.failures.get(this.key(address, name));
    if (!list) return 0;
    const since = this.now() - FAILURE_WINDOW_MS;
    while (list.length > 0 && list[0]! < since) list.shift();
    return list.length;
  }

  private recordFailure(address: string, name: string): void {
    const key = this.key(address, name);
    let list = this.failures.get(key);
    if (!list) {
      if (this.failures.size >= MAX_TRACKED) this.failures.delete(this.failures.keys().next().value!);
      this.failures.set(key, (list = []));
    }
    list.push(this.now());
    if (list.length > MAX_NAME_FAILURES) list.shift();
  }
}
