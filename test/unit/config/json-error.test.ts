import { describe, expect, test } from "bun:test";
import { jsonErrorOffset, lineColumn } from "../../../core/config/json-error.ts";

const VALID = [
  "{}", "[]", "0", "-1.5e+3", '"a\\u00e9\\n"', "true", "null",
  '{\n  "action": "clean",\n  "limits": { "maxFileSize": 31457280, "x": [1, 2, {"a": null}] },\n  "subjectTag": "[VIRUS] \\"x\\""\n}\n',
];

describe("jsonErrorOffset", () => {
  test("valid JSON has no error", () => {
    for (const t of VALID) expect([t, jsonErrorOffset(t)]).toEqual([t, -1]);
  });

  test("points at the first bad character, as a user reads it", () => {
    const text = '{\n  "action": "clean",\n  "tagClean": tru\n}\n';
    const at = jsonErrorOffset(text);
    expect(lineColumn(text, at)).toBe("line 3, column 15");
    expect(lineColumn('{"a": 1,}', jsonErrorOffset('{"a": 1,}'))).toBe("line 1, column 9");
    expect(jsonErrorOffset('{"a": 1} x')).toBe(9);
    expect(jsonErrorOffset('{"a": 1')).toBe(7); // the end of the text
  });

  test("agrees with JSON.parse on every mutation of a config file", () => {
    const base = VALID[7]!;
    const alphabet = ['"', "{", "}", "[", "]", ",", ":", "\\", "1", "-", "e", ".", " ", "\n", "t", "u", "\x01"];
    let seed = 7;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
    for (let k = 0; k < 3000; k++) {
      let t = base;
      for (let m = 0; m <= rand(3); m++) {
        const at = rand(t.length + 1);
        const op = rand(3);
        const c = alphabet[rand(alphabet.length)]!;
        t = op === 0 ? t.slice(0, at) + c + t.slice(at) : op === 1 ? t.slice(0, at) + t.slice(at + 1) : t.slice(0, at) + c + t.slice(at + 1);
      }
      let parses = true;
      try {
        JSON.parse(t);
      } catch {
        parses = false;
      }
      expect([t, jsonErrorOffset(t) === -1]).toEqual([t, parses]);
    }
  });
});
