// Regression test for issue 17, item 12 (input fidelity): a binary file was accepted and
// re-encoded (a 20,000-byte file went to the server as 36,478 bytes, so the byte spans no
// longer matched it). Text input must be well-formed UTF-8 without NUL bytes, or be refused
// with a message that says where; valid text passes byte for byte.
import assert from "node:assert/strict";
import { isUtf8 } from "node:buffer";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import { decodeText, firstInvalidUtf8, NotTextError, requireText } from "../../extension/core/text-input";

test("a 20,000-byte binary file is refused, naming the first invalid byte", () => {
  const bin = Buffer.concat([Buffer.from("GIF89a"), randomBytes(20_000 - 6)]);
  bin[10] = 0xff;
  assert.throws(
    () => decodeText(bin, "image.gif"),
    (e: Error) => e instanceof NotTextError && /image\.gif is not UTF-8 text: byte \d+ \(0x[0-9a-f]{2}\)/.test(e.message),
  );
});

test("well-formed UTF-8 passes unchanged, byte for byte", () => {
  const text = "Prose, 中文, emoji 🌊🧪, combining é, and a BOM-less end\n";
  const bytes = Buffer.from(text, "utf8");
  assert.equal(decodeText(bytes, "t.md"), text);
  assert.deepEqual(Buffer.from(decodeText(bytes, "t.md"), "utf8"), bytes);
});

test("NUL bytes are refused even in valid UTF-8, in files and in editor text", () => {
  assert.throws(() => decodeText(Buffer.from("abc\0def"), "f.txt"), /f\.txt is not text: it holds a NUL byte at byte 3/);
  assert.throws(() => requireText("line one\nab\0", "doc.md"), /doc\.md is not text: it holds a NUL character \(line 2, column 3\)/);
  assert.equal(requireText("fine", "doc.md"), "fine");
});

test("invalid forms: lone continuation, overlong, surrogate, above U+10FFFF, cut off", () => {
  const cases: Array<[number[], number]> = [
    [[0x61, 0x80], 1],
    [[0xc0, 0xaf], 0],
    [[0xe0, 0x80, 0xaf], 0],
    [[0xed, 0xa0, 0x80], 0],
    [[0xf4, 0x90, 0x80, 0x80], 0],
    [[0xf5, 0x80, 0x80, 0x80], 0],
    [[0x61, 0xe2, 0x82], 1],
    [[0xf0, 0x9f, 0x8c], 0],
  ];
  for (const [bytes, at] of cases) assert.equal(firstInvalidUtf8(Uint8Array.from(bytes)), at, JSON.stringify(bytes));
  assert.equal(firstInvalidUtf8(Buffer.from("€𝄞", "utf8")), -1);
});

test("agrees with Node's own UTF-8 check on random input", () => {
  for (let i = 0; i < 2000; i++) {
    // Mostly-valid text with a few random bytes spliced in.
    const b = Buffer.concat([Buffer.from("aé€🌊".repeat(1 + (i % 3)), "utf8"), randomBytes(i % 5)]);
    assert.equal(firstInvalidUtf8(b) === -1, isUtf8(b), b.toString("hex"));
  }
});
