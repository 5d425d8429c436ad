// POP3's use of the shared wire reader: lines as everywhere, plus dot-terminated bodies (RFC 1939
// multi-line replies) unstuffed while they arrive.
import { DotDecoder, DotTerminatorScanner } from "./dot.ts";
import { ByteReader as BaseReader } from "../net/reader.ts";

export { ReadError, lineText, latin1Bytes, type ReadErrorCode, type ByteReaderOptions } from "../net/reader.ts";

export class ByteReader extends BaseReader {
  /** Reads a dot-terminated body, handing unstuffed chunks to sink (awaited: a slow sink slows reading). */
  async readBody(sink: (chunk: Uint8Array) => void | Promise<void>, timeoutMs = 0): Promise<void> {
    const dec = new DotDecoder();
    for (;;) {
      while (this.chunks.length > 0) {
        const c = this.chunks.shift()!;
        this.size -= c.length;
        const step = dec.push(c);
        if (step.done && step.rest.length > 0) { this.chunks.unshift(step.rest); this.size += step.rest.length; }
        this.relieve();
        for (const piece of step.chunks) {
          const r = sink(piece);
          if (r) await r;
        }
        if (step.done) return;
      }
      await this.more(timeoutMs);
    }
  }

  /**
   * Reads a dot-terminated body as the server sent it, stuffing and terminating line included,
   * handing each chunk to sink as it is: for a relay that changes nothing, no copy, no per-line work.
   */
  async relayBody(sink: (chunk: Uint8Array) => void | Promise<void>, timeoutMs = 0): Promise<void> {
    const end = new DotTerminatorScanner();
    for (;;) {
      while (this.chunks.length > 0) {
        let c = this.chunks.shift()!;
        this.size -= c.length;
        const at = end.push(c);
        if (at >= 0 && at < c.length) {
          this.chunks.unshift(c.subarray(at)); // the next reply
          this.size += c.length - at;
          c = c.subarray(0, at);
        }
        this.relieve();
        const r = sink(c);
        if (r) await r;
        if (at >= 0) return;
      }
      await this.more(timeoutMs);
    }
  }
}
