// Text from files and editors, checked before it is traced. The server receives UTF-8 text
// and reports each token's byte span in it; a file that is not UTF-8 would be re-encoded on
// the way (every invalid byte becomes U+FFFD, three bytes: a 20,000-byte binary file went
// out as 36,478 bytes), so the spans would no longer point into the file, and a binary file
// means nothing as text anyway. Such input is refused with a message that says where.
import fs from "node:fs";

export class NotTextError extends Error {
  override name = "NotTextError";
}

/** Offset of the first byte that is not part of well-formed UTF-8 (RFC 3629), or −1. */
export function firstInvalidUtf8(b: Uint8Array): number {
  for (let i = 0; i < b.length;) {
    const c = b[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    // Lead byte → number of continuation bytes, and the range of the first one
    // (which rules out overlong forms, surrogates and code points above U+10FFFF).
    let n: number,
      lo = 0x80,
      hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) n = 1;
    else if (c >= 0xe0 && c <= 0xef) {
      n = 2;
      if (c === 0xe0) lo = 0xa0;
      if (c === 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 3;
      if (c === 0xf0) lo = 0x90;
      if (c === 0xf4) hi = 0x8f;
    } else return i;
    if (i + n >= b.length) return i; // cut off at the end
    if (b[i + 1] < lo || b[i + 1] > hi) return i;
    for (let j = 2; j <= n; j++) if ((b[i + j] & 0xc0) !== 0x80) return i;
    i += n + 1;
  }
  return -1;
}

/** Line and column (1-based, in characters) of UTF-16 offset `at` in `text`. */
function lineColumn(text: string, at: number): string {
  const before = text.slice(0, at);
  const line = before.split("\n").length;
  return `line ${line}, column ${at - before.lastIndexOf("\n")}`;
}

/** `text` unchanged, or a NotTextError when it holds a NUL character (an editor showing a binary file). */
export function requireText(text: string, name: string): string {
  const nul = text.indexOf("\0");
  if (nul >= 0) throw new NotTextError(`${name} is not text: it holds a NUL character (${lineColumn(text, nul)}). MoE Lens traces UTF-8 text only.`);
  return text;
}

/** `bytes` decoded as UTF-8 text, or a NotTextError naming the first invalid byte or NUL. */
export function decodeText(bytes: Uint8Array, name: string): string {
  const bad = firstInvalidUtf8(bytes);
  if (bad >= 0) {
    throw new NotTextError(
      `${name} is not UTF-8 text: byte ${bad} (0x${bytes[bad].toString(16).padStart(2, "0")}) is not valid UTF-8. MoE Lens traces UTF-8 text only; convert the file to UTF-8 first.`,
    );
  }
  const nul = bytes.indexOf(0);
  if (nul >= 0) throw new NotTextError(`${name} is not text: it holds a NUL byte at byte ${nul}. MoE Lens traces UTF-8 text only.`);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8");
}

/** A text file's content, checked as decodeText does. */
export function readTextFile(file: string): string {
  return decodeText(fs.readFileSync(file), file);
}
