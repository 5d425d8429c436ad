// The login guard's bookkeeping: unauthenticated connections per address, failures per connection,
// and a name that keeps failing from one address (other names and addresses unaffected).
import { expect, test } from "bun:test";
import { FAILURE_WINDOW_MS, LoginGuard, MAX_NAME_FAILURES } from "../../../core/net/login-guard.ts";

const limits = { maxUnauthenticatedPerClient: 2, maxLoginFailures: 3 };

test("an address holds at most the cap of connections that have not logged in; logging in or leaving frees a place", () => {
  const g = new LoginGuard(() => limits);
  const a = g.admit("10.0.0.1")!;
  const b = g.admit("10.0.0.1")!;
  expect(g.admit("10.0.0.1")).toBeNull();
  expect(g.admit("10.0.0.2")).not.toBeNull(); // another address has its own places
  a.loggedIn();
  const c = g.admit("10.0.0.1")!;
  expect(c).not.toBeNull();
  b.release();
  b.release(); // idempotent
  a.release(); // already counted out at login
  expect(g.unauthenticated("10.0.0.1")).toBe(1);
});

test("a connection closes after maxLoginFailures; a name failing too often from one address is blocked there for the window", () => {
  let now = 0;
  const g = new LoginGuard(() => ({ maxUnauthenticatedPerClient: 1000, maxLoginFailures: 3 }), () => now);
  const conn = g.admit("10.0.0.1")!;
  expect([conn.failed("bob"), conn.failed("bob"), conn.failed("bob")]).toEqual([false, false, true]);
  for (let i = 3; i < MAX_NAME_FAILURES; i++) g.admit("10.0.0.1")!.failed("Bob");
  const next = g.admit("10.0.0.1")!;
  expect(next.blocked("bob")).toBe(true);
  expect(next.blocked("alice")).toBe(false);
  expect(g.admit("10.0.0.2")!.blocked("bob")).toBe(false);
  now += FAILURE_WINDOW_MS + 1;
  expect(next.blocked("bob")).toBe(false);
});
