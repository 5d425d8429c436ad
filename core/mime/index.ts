// The public face of core/mime: the offset tree, header decoding and transfer decoding.
export type { HeaderField, MimePart } from "./types.ts";
export { parseMessage, walkParts, headerField, headerValue, messageId, type ParseOptions } from "./parse.ts";
export { decodeEncodedWords, parseHeaderValueWithParams, parseHeaderBlock, decodeCharset } from "./headers.ts";
export { decodeBase64, decodeQuotedPrintable, decodePartBody, findUuencoded, type UuBlock } from "./decode.ts";
