// The addresses of one network engine (clamd, ICAP) used as a farm: round robin, a bounded number
// of requests in flight per address, and failover. An address that fails rests with a growing
// backoff (1 s doubling to 30 s) and must answer a probe (PING, OPTIONS) before it gets work again;
// with every address resting or failing, the request fails with each address's reason.

const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 30_000;

export interface Member<A> {
  address: A;
  text: string;
  active: number;
  /** In flight at once at most (ICAP's Max-Connections may lower it). */
  limit: number;
  waiters: (() => void)[];
  failures: number;
  downUntil: number;
  lastError: string | null;
}

export class Farm<A> {
  readonly members: Member<A>[];
  private next = 0;

  constructor(addresses: { address: A; text: string }[], limit: number, private readonly probe: (m: Member<A>) => Promise<void>) {
    if (addresses.length === 0) throw new Error("no address given");
    this.members = addresses.map((a) => ({ ...a, active: 0, limit, waiters: [], failures: 0, downUntil: 0, lastError: null }));
  }

  /** Members from the round-robin position on, resting ones last (a live one is tried first). */
  order(): Member<A>[] {
    const start = this.next++ % this.members.length;
    const ring = [...this.members.slice(start), ...this.members.slice(0, start)];
    const now = Date.now();
    return [...ring.filter((m) => m.downUntil <= now), ...ring.filter((m) => m.downUntil > now)];
  }

  /** Runs work on the first member that takes it; throws naming every member's failure. */
  async run<T>(what: string, work: (m: Member<A>) => Promise<T>): Promise<T> {
    const errors: string[] = [];
    for (const m of this.order()) {
      if (m.failures > 0 && !(await this.revive(m))) {
        errors.push(`${m.text}: resting after ${m.lastError ?? "a failure"}`);
        continue;
      }
      const release = await this.slot(m);
      try {
        const out = await work(m);
        m.failures = 0;
        m.downUntil = 0;
        return out;
      } catch (e) {
        const msg = (e as Error).message;
        errors.push(msg.startsWith(m.text) ? msg : `${m.text}: ${msg}`);
        this.rest(m, msg);
      } finally {
        release();
      }
    }
    throw new Error(`every ${what} address failed: ${errors.join("; ")}`);
  }

  private rest(m: Member<A>, why: string): void {
    m.failures++;
    m.lastError = why;
    m.downUntil = Date.now() + Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** (m.failures - 1));
  }

  /** A resting member whose backoff is over gets work again once its probe succeeds. */
  private async revive(m: Member<A>): Promise<boolean> {
    if (m.downUntil > Date.now()) return false;
    try {
      await this.probe(m);
      m.failures = 0;
      return true;
    } catch (e) {
      this.rest(m, (e as Error).message);
      return false;
    }
  }

  private async slot(m: Member<A>): Promise<() => void> {
    while (m.active >= m.limit) {
      const { promise, resolve } = Promise.withResolvers<void>();
      m.waiters.push(resolve);
      await promise;
    }
    m.active++;
    return () => {
      m.active--;
      m.waiters.shift()?.();
    };
  }
}
