// Every evasion of the corpus is caught, and the copy the client gets holds no payload under any
// reading: ours (all readings again) and postal-mime's (a second, independent parser).
import { describe, expect, test } from "bun:test";
import PostalMime from "postal-mime";
import { DEFAULT_CONFIG } from "../../../core/config/types.ts";
import { DEFAULT_LIMITS } from "../../../core/limits.ts";
import { applyPolicy, policyFromConfig } from "../../../core/rewrite/index.ts";
import { BuiltinEngine } from "../../../core/scan/engines/builtin.ts";
import { scanMessage } from "../../../core/scan/pipeline.ts";
import { EICAR_TEXT } from "../../helpers/eicar.ts";
import { evasionCorpus } from "../../helpers/evasion.ts";

const engine = BuiltinEngine.eicarOnly();
const corpus = await evasionCorpus();
const policy = policyFromConfig(DEFAULT_CONFIG, "mailsentry test");

/** Everything postal-mime hands an application: text, HTML, attachments, data: URIs decoded. */
async function postalObjects(raw: Uint8Array): Promise<Uint8Array[]> {
  const email = await PostalMime.parse(raw);
  const out: Uint8Array[] = [];
  for (const s of [email.text ?? "", email.html ?? ""]) {
    out.push(Buffer.from(s, "utf8"));
    for (const m of s.matchAll(/data:[^,"']*;base64,([^"')>]+)/g)) out.push(Buffer.from(m[1]!.replace(/\s+/g, ""), "base64"));
  }
  for (const a of email.attachments) out.push(typeof a.content === "string" ? Buffer.from(a.content) : new Uint8Array(a.content));
  return out;
}

describe("evasion corpus", () => {
  test("the corpus is the size it says, and every case is built", () => {
    expect(corpus.length).toBeGreaterThanOrEqual(24);
    for (const c of corpus) expect(c.raw.length).toBeGreaterThan(100);
  });

  for (const c of corpus) {
    test(`caught and cleaned: ${c.name}`, async () => {
      const { result, tree } = await scanMessage(c.raw, { engine, limits: DEFAULT_LIMITS });
      expect(result.verdict.kind).toBe("infected");
      const out = applyPolicy(c.raw, tree, result, policy);
      expect(out.disposition).toBe("deliver");
      expect(out.applied === "clean" || out.applied === "replace").toBe(true);
      // The copy is clean under every reading we know…
      const again = await scanMessage(out.bytes, { engine, limits: DEFAULT_LIMITS });
      expect(again.result.verdict).toEqual({ kind: "clean" });
      // …and under postal-mime's: no object it extracts holds the payload.
      for (const obj of await postalObjects(out.bytes)) expect(Buffer.from(obj).includes(EICAR_TEXT)).toBe(false);
    });
  }
});
