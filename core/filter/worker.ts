// A scan worker's thread (started by pool.ts): loads the built-in engine from the signature
// directory once, then runs one scan job at a time. The copy a rewrite makes is transferred back,
// not cloned, and an unchanged message is not sent back at all: the caller still holds it.
import type { RewriteOutcome } from "../rewrite/index.ts";
import { BuiltinEngine } from "../scan/engines/builtin.ts";
import type { LoadReport } from "../scan/signatures/load.ts";
import type { ScanResult } from "../scan/verdict.ts";
import { ownedBytes } from "./buffers.ts";
import { scanAndApply, scanSpoolFile, type FileRewrite, type ScanJob } from "./scan-job.ts";

export type ToWorker =
  | { type: "load"; signatures: string | null }
  | { type: "scan"; id: number; raw: Uint8Array; job: ScanJob }
  /** A spooled message: the worker maps the file itself, so nothing of it crosses the threads. */
  | { type: "scan-file"; id: number; path: string; out: string; job: ScanJob };

/** The rewrite as it travels back: bytes absent when the message is unchanged. */
export type WireRewrite = Omit<RewriteOutcome, "bytes"> & { bytes: Uint8Array | null };

export type FromWorker =
  | { type: "loaded"; identity: string; signatureCount: number; report: LoadReport }
  | { type: "load-failed"; message: string }
  | { type: "done"; id: number; result: ScanResult; rewrite?: WireRewrite; rewriteError?: string }
  | { type: "done-file"; id: number; result: ScanResult; rewrite?: FileRewrite; rewriteError?: string }
  | { type: "failed"; id: number; message: string };

/** Bytes of messages scanned after which the worker's heap is collected. */
const COLLECT_AFTER = 8 * 1024 * 1024;
let scannedSinceCollection = 0;

declare const self: Worker;
let engine: BuiltinEngine | null = null;

self.onmessage = async (e: MessageEvent<ToWorker>) => {
  const m = e.data;
  if (m.type === "load") {
    try {
      const loaded = await BuiltinEngine.load(m.signatures);
      engine = loaded.engine;
      post({ type: "loaded", identity: engine.identity, signatureCount: engine.signatureCount, report: loaded.report });
    } catch (err) {
      post({ type: "load-failed", message: (err as Error).message });
    }
    return;
  }
  if (m.type === "scan-file") {
    try {
      if (!engine) throw new Error("scan worker has no engine loaded");
      const s = await scanSpoolFile(engine, m.path, m.out, m.job);
      post({ type: "done-file", id: m.id, result: s.result, rewrite: s.rewrite, rewriteError: s.rewriteError?.message });
    } catch (err) {
      post({ type: "failed", id: m.id, message: (err as Error).message });
    }
    // The map goes when it is collected: now, so its pages and the file's disk space go with it.
    scannedSinceCollection = 0;
    Bun.gc(true);
    return;
  }
  try {
    if (!engine) throw new Error("scan worker has no engine loaded");
    const s = await scanAndApply(engine, m.raw, m.job);
    const transfer: ArrayBuffer[] = [];
    let rewrite: WireRewrite | undefined;
    if (s.rewrite) {
      const { bytes, ...rest } = s.rewrite;
      const out = bytes === m.raw ? null : ownedBytes(bytes);
      if (out) transfer.push(out.buffer as ArrayBuffer);
      rewrite = { ...rest, bytes: out };
    }
    post({ type: "done", id: m.id, result: s.result, rewrite, rewriteError: s.rewriteError?.message }, transfer);
    // What the messages decoded into is garbage now. Collected here, on the worker's own small
    // heap (the event loop is not held up), its memory is reused by the next jobs instead of
    // fresh pages being faulted in, and the garbage never grows far past COLLECT_AFTER.
    scannedSinceCollection += m.raw.length;
    if (scannedSinceCollection >= COLLECT_AFTER) {
      scannedSinceCollection = 0;
      Bun.gc(true);
    }
  } catch (err) {
    post({ type: "failed", id: m.id, message: (err as Error).message });
  }
};

function post(m: FromWorker, transfer: ArrayBuffer[] = []): void {
  self.postMessage(m, transfer);
}

