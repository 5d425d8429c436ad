// A byte budget shared by every session of the proxy: memory for messages held whole while they are
// scanned. A session waits for its share before it reads such a body, so a hundred downloads at once
// hold a bounded number of messages instead of a hundred (the rest wait in the kernel's socket
// buffers, which is how the servers are slowed down). First come, first served.

export class ByteBudget {
  private used = 0;
  private readonly waiting: { n: number; grant: () => void }[] = [];

  constructor(readonly limit: number) {
    if (!(limit > 0)) throw new RangeError(`byte budget must be > 0, got ${limit}`);
  }

  /** Bytes granted now. */
  get inUse(): number { return this.used; }

  /**
   * Waits until n bytes fit, and returns their release (safe to call twice). A request bigger than the
   * whole budget is granted once nothing else holds any: one huge message is scanned alone.
   */
  async acquire(n: number): Promise<() => void> {
    const want = Math.min(Math.max(0, n), this.limit);
    if (this.waiting.length > 0 || this.used + want > this.limit) {
      await new Promise<void>((grant) => this.waiting.push({ n: want, grant }));
    } else this.used += want;
    return this.releaser(want);
  }

  /**
   * n bytes now, or null when someone waits or fewer than n + leave are free: for memory worth
   * holding only while it is to spare, leaving room for the bodies that must be held.
   */
  tryAcquire(n: number, leave = 0): (() => void) | null {
    const want = Math.max(0, n);
    if (this.waiting.length > 0 || want > this.spare(leave)) return null;
    this.used += want;
    return this.releaser(want);
  }

  /** What tryAcquire(n, leave) would grant now: the most n can be (0 while someone waits). */
  spare(leave = 0): number {
    return this.waiting.length > 0 ? 0 : Math.max(0, this.limit - this.used - leave);
  }

  private releaser(want: number): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.used -= want;
      this.wake();
    };
  }

  private wake(): void {
    while (this.waiting.length > 0 && this.used + this.waiting[0]!.n <= this.limit) {
      const w = this.waiting.shift()!;
      this.used += w.n;
      w.grant();
    }
  }
}
