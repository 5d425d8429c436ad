// The shape of the byte-offset MIME tree. Every offset indexes the original message buffer, so a
// rewrite can replace exact byte ranges and leave everything else byte-identical.

export interface HeaderField {
  /** Field name as written (case kept). */
  name: string;
  /** Unfolded raw value (latin1 view of the bytes, CR/LF of folds removed, leading space trimmed). */
  value: string;
  /** Offsets of the whole field including its folded lines and line end: [start, end). */
  start: number;
  end: number;
}

/** A way of reading what mail readers disagree on (see ParseOptions.reading). */
export interface Reading {
  /** The last of a repeated Content-* field or parameter wins (and a plain parameter over its RFC 2231 form). */
  last?: boolean;
  /** A CR without LF also ends a header line. */
  bareCr?: boolean;
}

export interface MimePart {
  /** IMAP section number: "" for the message root, "1", "1.2", …; a message/rfc822 part's inner message keeps the part's id. */
  id: string;
  /** Offset where this part's header block starts. */
  start: number;
  /** Offset just past the blank line that ends the header block (== bodyStart). */
  headerEnd: number;
  bodyStart: number;
  /** Offset just past the body (before the CRLF that precedes the next boundary line, per RFC 2046). */
  bodyEnd: number;
  headers: HeaderField[];
  /** Lower-cased "type/subtype"; "text/plain" when absent or unparseable (RFC 2045 §5.2). */
  contentType: string;
  /** Content-Type parameters, names lower-cased, values RFC 2231 decoded. */
  params: Record<string, string>;
  /** Lower-cased Content-Transfer-Encoding, "7bit" when absent. */
  transferEncoding: string;
  /** Lower-cased disposition type ("attachment", "inline") or "" when absent. */
  disposition: string;
  /** Filename from Content-Disposition filename= or Content-Type name=, RFC 2047/2231 decoded. */
  filename?: string;
  /** Multipart children, in order. */
  children: MimePart[];
  /** For message/rfc822 (and message/global) parts: the parsed inner message, whose offsets index the same buffer. */
  message?: MimePart;
  /** Nesting depth: 0 for the root. */
  depth: number;
  /** Set when parsing stopped early here (limit reached, e.g. "too-deep", "too-many-files"). */
  truncated?: "too-deep" | "too-many-files";
  /** Root only: what makes other readings of this message differ (repeated Content-* fields or parameters, bare CRs in headers). */
  ambiguities?: { repeated: boolean; bareCr: boolean };
}
