// Loads a directory of ClamAV databases (.hdb .hsb .ndb, .cvd/.cld containers of them, .ign/.ign2 and
// .fp/.sfp lists) into signature sets, with a report. Nothing is dropped silently: every file or line we
// cannot use is counted in `unsupported` under its file name and the reason.
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { openCvd } from "./cvd.ts";
import { HashDb, parseHashLine, type HashSig } from "./hash.ts";
import { parseNdbLine, type BodySig } from "./ndb.ts";

export interface LoadReport {
  files: { path: string; kind: string; signatures: number }[];
  unsupported: { file: string; reason: string; count: number }[];
  total: number;
}

export interface SignatureSet {
  hashes: HashDb;
  /** Hashes of known false positives (.fp MD5, .sfp SHA): a detection on such an object is dropped. */
  allow: HashDb;
  body: BodySig[];
  /** Names what was read: see signatureDigest. Absent on sets built by hand. */
  digest?: string;
}

/**
 * sha256 (hex) over the sorted names and content hashes of the database files read, so it changes
 * whenever a file is added, removed, renamed or changed. Container members are covered by the
 * container's own hash. No files at all gives the digest of an empty list (the EICAR-only set).
 */
export function signatureDigest(files: { name: string; sha256: string }[]): string {
  const h = new Bun.CryptoHasher("sha256");
  for (const f of [...files].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) h.update(`${f.name}\0${f.sha256}\n`);
  return h.digest("hex");
}

/** Database kinds ClamAV knows that we do not read, and why. */
const UNSUPPORTED: Record<string, string> = {
  hdu: "PUA database (ClamAV reads it only with --detect-pua)",
  hsu: "PUA database (ClamAV reads it only with --detect-pua)",
  ndu: "PUA database (ClamAV reads it only with --detect-pua)",
  mdb: "PE section hashes (no PE parsing)", mdu: "PE section hashes (no PE parsing)",
  msb: "PE section hashes (no PE parsing)", msu: "PE section hashes (no PE parsing)",
  ldb: "logical signatures", ldu: "logical signatures",
  cdb: "container metadata signatures", cbc: "bytecode signatures", idb: "icon signatures",
  pdb: "phishing signatures", gdb: "phishing signatures", wdb: "phishing signatures",
  ftm: "file type magic", crb: "certificate trust rules", cat: "certificate catalogs",
  yar: "YARA rules", yara: "YARA rules", pwdb: "password lists", imp: "PE import hashes",
};
/** Files inside containers that carry no signatures. */
const METADATA = new Set(["info", "cfg", "COPYING"]);

const ext = (name: string): string => {
  const dot = name.lastIndexOf(".");
  return dot < 0 ? name : name.slice(dot + 1).toLowerCase();
};

function lines(data: Uint8Array): { text: string; no: number }[] {
  const out: { text: string; no: number }[] = [];
  Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("latin1").split("\n").forEach((raw, i) => {
    const text = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    if (text.trim() !== "" && !text.startsWith("#")) out.push({ text, no: i + 1 });
  });
  return out;
}

class Loader {
  report: LoadReport = { files: [], unsupported: [], total: 0 };
  hashSigs: HashSig[] = [];
  allowSigs: HashSig[] = [];
  bodySigs: BodySig[] = [];
  ignored = new Set<string>();
  private read: { name: string; sha256: string }[] = [];
  private grouped = new Map<string, { file: string; reason: string; count: number }>();

  private bad(file: string, reason: string, no: number): void {
    const key = `${file}\0${reason}`;
    const g = this.grouped.get(key);
    if (g) g.count++;
    else {
      const entry = { file, reason: `${reason} (first at line ${no})`, count: 1 };
      this.grouped.set(key, entry);
      this.report.unsupported.push(entry);
    }
  }

  /** One file as found on disk or given by the caller; name (not the directory) goes into the digest. */
  addFile(path: string, name: string, data: Uint8Array): void {
    this.read.push({ name, sha256: new Bun.CryptoHasher("sha256").update(data).digest("hex") });
    this.add(path, name, data);
  }

  /** One database file (or container member) named path. */
  add(path: string, name: string, data: Uint8Array): void {
    const kind = ext(name);
    if (kind === "hdb" || kind === "hsb" || kind === "fp" || kind === "sfp") {
      const into = kind === "fp" || kind === "sfp" ? this.allowSigs : this.hashSigs;
      let n = 0;
      for (const l of lines(data)) {
        const r = parseHashLine(l.text);
        if ("sig" in r) { into.push(r.sig); n++; } else this.bad(path, r.error, l.no);
      }
      this.report.files.push({ path, kind, signatures: n });
    } else if (kind === "ndb") {
      let n = 0;
      for (const l of lines(data)) {
        const r = parseNdbLine(l.text);
        if ("sig" in r) { this.bodySigs.push(r.sig); n++; } else this.bad(path, r.error, l.no);
      }
      this.report.files.push({ path, kind, signatures: n });
    } else if (kind === "ign" || kind === "ign2") {
      const ls = lines(data);
      // .ign2: "Name[:md5]"; the older .ign: "db:line:Name".
      for (const l of ls) this.ignored.add(kind === "ign2" ? l.text.split(":")[0] : (l.text.split(":")[2] ?? ""));
      this.report.files.push({ path, kind, signatures: ls.length });
    } else if (kind === "cvd" || kind === "cld") {
      const c = openCvd(data, kind === "cld");
      if ("error" in c) { this.report.unsupported.push({ file: path, reason: c.error, count: 1 }); return; }
      for (const m of c.members) this.add(`${path}/${m.name}`, m.name, m.data);
    } else if (METADATA.has(kind) || METADATA.has(name)) {
      this.report.files.push({ path, kind: "metadata", signatures: 0 });
    } else {
      const reason = UNSUPPORTED[kind] ?? "not a ClamAV database we know";
      this.report.unsupported.push({ file: path, reason, count: lines(data).length });
    }
  }

  finish(): SignatureSet {
    const keep = <T extends { name: string }>(list: T[]) => (this.ignored.size ? list.filter((s) => !this.ignored.has(s.name)) : list);
    const hashes = new HashDb(), allow = new HashDb();
    for (const s of keep(this.hashSigs)) hashes.add(s);
    for (const s of this.allowSigs) allow.add(s);
    const body = keep(this.bodySigs);
    const dropped = this.hashSigs.length + this.bodySigs.length - hashes.size - body.length;
    if (dropped) this.report.unsupported.push({ file: "(.ign/.ign2 lists)", reason: "signatures disabled by an ignore list", count: dropped });
    this.report.total = hashes.size + body.length;
    return { hashes, allow, body, digest: signatureDigest(this.read) };
  }
}

/** Loads every file directly in dir (sorted by name). Throws only when dir itself cannot be read. */
export async function loadSignatureDir(dir: string): Promise<{ set: SignatureSet; report: LoadReport }> {
  const names = (await readdir(dir)).sort();
  const loader = new Loader();
  for (const name of names) {
    const path = join(dir, name);
    if (!(await stat(path)).isFile()) continue;
    loader.addFile(path, name, new Uint8Array(await readFile(path)));
  }
  const set = loader.finish();
  return { set, report: loader.report };
}

/** Loads signature files given as bytes (tests, embedded databases). */
export function loadSignatureFiles(files: { name: string; data: Uint8Array }[]): { set: SignatureSet; report: LoadReport } {
  const loader = new Loader();
  for (const f of files) loader.addFile(f.name, f.name, f.data);
  const set = loader.finish();
  return { set, report: loader.report };
}

/** Lines a CLI prints to stderr: totals, one line per file, one line per unsupported group. */
export function formatLoadReport(r: LoadReport): string[] {
  const out = [`signatures: ${r.total} loaded from ${r.files.filter((f) => f.signatures > 0).length} file(s), plus the built-in EICAR test signature`];
  for (const f of r.files) out.push(`  ${f.path} (${f.kind}): ${f.signatures}`);
  const skipped = r.unsupported.reduce((n, u) => n + u.count, 0);
  if (r.unsupported.length) out.push(`not loaded: ${skipped} signature line(s)/file(s):`);
  for (const u of r.unsupported) out.push(`  ${u.file}: ${u.count} — ${u.reason}`);
  return out;
}
