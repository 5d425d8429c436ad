// The scanning room's public surface: the pipeline, verdict types, the engine interface and archive sniffing.
export { looksLikeMessage, scanMessage, scanObject, type ScanContext } from "./pipeline.ts";
export { describeVerdict, worse, type Finding, type ScanResult, type UnscannedReason, type Verdict } from "./verdict.ts";
export type { Detection, Engine } from "./engine.ts";
export { readArchive, sniffArchive, type ArchiveKind, type ArchiveMember } from "./archive/index.ts";
