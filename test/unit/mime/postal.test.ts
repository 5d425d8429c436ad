// Cross-check against postal-mime on well-formed messages: the offset tree must find the same
// attachments, with the same filenames and the same decoded bytes, as an independent parser.
import { expect, test } from "bun:test";
import PostalMime from "postal-mime";
import { decodePartBody } from "../../../core/mime/decode.ts";
import { parseMessage, walkParts } from "../../../core/mime/parse.ts";
import { eicar } from "../../helpers/eicar.ts";
import { attachment, base64Lines, largeMessage, message, multipart, pseudoRandom } from "../../helpers/messages.ts";

async function compare(raw: Uint8Array) {
  const theirs = await PostalMime.parse(raw);
  const root = parseMessage(raw);
  const leaves = [...walkParts(root)].filter((p) => p.filename !== undefined && p.children.length === 0 && !p.message);
  const ours = leaves.map((p) => ({ filename: p.filename, hex: Buffer.from(decodePartBody(raw, p)).toString("hex") }));
  // postal-mime keeps the line break before the next delimiter (as LF) in non-base64 parts; RFC 2046
  // gives it to the delimiter, as the offset tree does, so that one LF is dropped before comparing.
  const expected = theirs.attachments
    .filter((a) => a.filename)
    .map((a, i) => {
      let bytes = Buffer.from(a.content as ArrayBuffer);
      if (leaves[i]?.transferEncoding !== "base64" && bytes.at(-1) === 0x0a) bytes = bytes.subarray(0, -1);
      return { filename: a.filename ?? undefined, hex: bytes.toString("hex") };
    });
  expect(ours.length).toBeGreaterThan(0);
  expect(ours).toEqual(expected);
}

test("plain attachments in mixed and alternative parts", async () => {
  const alt = multipart("alt", ["Content-Type: text/plain\r\n\r\nhello", "Content-Type: text/html\r\n\r\n<p>hello</p>"], { subtype: "alternative" });
  await compare(Buffer.from(message(multipart("mix", [alt, attachment("a.bin", pseudoRandom(5000, 2)), attachment("eicar.com", eicar())]))));
});

test("RFC 2047 and RFC 2231 filenames, UTF-8 and ISO-8859-1", async () => {
  const parts = [
    `Content-Type: application/pdf\r\nContent-Disposition: attachment; filename="=?UTF-8?B?w6lsw6h2ZS5wZGY=?="\r\nContent-Transfer-Encoding: base64\r\n\r\n${base64Lines("one")}`,
    `Content-Type: application/pdf\r\nContent-Disposition: attachment;\r\n filename*0*=UTF-8''%E6%97%A5%E6%9C%AC;\r\n filename*1*=%E8%AA%9E.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n${base64Lines("two")}`,
    `Content-Type: application/octet-stream; name="=?ISO-8859-1?Q?caf=E9.doc?="\r\nContent-Disposition: attachment\r\nContent-Transfer-Encoding: base64\r\n\r\n${base64Lines(pseudoRandom(300, 4))}`,
    `Content-Type: text/plain; name="notes.txt"\r\nContent-Disposition: attachment; filename*=iso-8859-1''na%EFve.txt\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nna=EFve=\r\n text=3D1\n`,
  ];
  await compare(Buffer.from(message(multipart("b", parts)), "latin1"));
});

test("LF-only message with nested multiparts", async () => {
  const inner = multipart("in", [attachment("x.zip", pseudoRandom(777, 8), "\n")], { eol: "\n" });
  await compare(Buffer.from(message(multipart("out", ["Content-Type: text/plain\n\nbody", inner, attachment("y.exe", eicar(), "\n")], { eol: "\n" }), "\n")));
});

test("the large benchmark message", async () => {
  await compare(largeMessage(2 * 1024 * 1024, 150));
});
