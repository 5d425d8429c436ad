import { describe, expect, test } from "bun:test";
import { DEFAULT_LIMITS, LimitError, resolveLimits } from "../../core/limits.ts";

describe("limits", () => {
  test("defaults match DESIGN.md", () => {
    expect(DEFAULT_LIMITS.maxScanSize).toBe(100 * 1024 * 1024);
    expect(DEFAULT_LIMITS.maxFileSize).toBe(30 * 1024 * 1024);
    expect(DEFAULT_LIMITS.maxRecursion).toBe(16);
    expect(DEFAULT_LIMITS.maxFiles).toBe(10_000);
    expect(DEFAULT_LIMITS.maxScanTime).toBe(30_000);
  });
  test("0 and Infinity are honest values", () => {
    expect(resolveLimits({ maxFiles: 0, maxScanSize: Infinity })).toMatchObject({ maxFiles: 0, maxScanSize: Infinity });
  });
  test.each([NaN, -1, "10", null, true])("%p is refused with the key named", (v) => {
    expect(() => resolveLimits({ maxFileSize: v })).toThrow(LimitError);
    expect(() => resolveLimits({ maxFileSize: v })).toThrow(/maxFileSize/);
  });
  test("unknown keys are refused", () => expect(() => resolveLimits({ maxFileSise: 1 })).toThrow(/maxFileSise/));
  test("the client idle timeout cannot go below RFC 1939's ten minutes", () => {
    expect(() => resolveLimits({ clientIdleTimeout: 60_000 })).toThrow(/at least/);
  });
});
