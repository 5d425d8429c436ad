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
  test("Infinity is an honest value (no cap); limits that would switch scanning off are refused", () => {
    expect(resolveLimits({ maxFiles: 1, maxScanSize: Infinity })).toMatchObject({ maxFiles: 1, maxScanSize: Infinity });
    for (const [k, v] of [["maxFileSize", 0], ["maxFileSize", 1.5], ["maxScanSize", 0], ["maxFiles", 0], ["maxScanTime", 0], ["maxRecursion", 2.5], ["maxMessageSize", 100]] as const) {
      expect(() => resolveLimits({ [k]: v })).toThrow(new RegExp(`${k}: (must be at least|expected a whole number)`));
    }
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
