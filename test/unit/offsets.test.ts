import test from "node:test";
import assert from "node:assert/strict";
import { LineIndex, Utf8ToUtf16, utf16ToUtf8Offset, utf8Length } from "../../extension/core/offsets";

const enc = new TextEncoder();

/** Byte spans of each code point, as a tokenizer splitting at every character would give. */
function charSpans(text: string): Array<[number, number, string]> {
  const out: Array<[number, number, string]> = [];
  let b = 0;
  for (const ch of text) {
    const n = enc.encode(ch).length;
    out.push([b, b + n, ch]);
    b += n;
  }
  return out;
}

test("utf8Length agrees with TextEncoder, including astral characters and lone surrogates", () => {
  for (const s of ["", "abc", "é", "€", "😀", "a😀b", "日本語", "\r\n", "x\uD800y", "\uDC00", "👩‍💻"]) {
    assert.equal(utf8Length(s), enc.encode(s).length, JSON.stringify(s));
  }
});

test("ASCII: byte offsets equal UTF-16 offsets", () => {
  const m = new Utf8ToUtf16("hello world");
  assert.deepEqual(m.span(0, 5), [0, 5]);
  assert.deepEqual(m.span(5, 11), [5, 11]);
  assert.equal(m.byteLength, 11);
});

test("every whole-character byte span maps to exactly that character's UTF-16 range", () => {
  const text = "aé€😀z\r\n日本🎉\n";
  const m = new Utf8ToUtf16(text);
  let u = 0;
  for (const [bs, be, ch] of charSpans(text)) {
    const [s, e] = m.span(bs, be);
    assert.equal(text.slice(s, e), ch, `char ${JSON.stringify(ch)} at bytes ${bs}-${be}`);
    assert.equal(s, u);
    u += ch.length;
  }
  assert.equal(m.endOffset(m.byteLength), text.length);
});

test("multi-character tokens over multi-byte text map to the right substring", () => {
  const text = "Grüße, 世界! 😀👍 done";
  const m = new Utf8ToUtf16(text);
  // tokens: "Grüße", ",", " 世界", "!", " 😀👍", " done"
  const pieces = ["Grüße", ",", " 世界", "!", " 😀👍", " done"];
  let b = 0;
  for (const p of pieces) {
    const n = enc.encode(p).length;
    const [s, e] = m.span(b, b + n);
    assert.equal(text.slice(s, e), p);
    b += n;
  }
});

test("a surrogate pair is never split: spans inside a 4-byte character cover both halves", () => {
  const text = "a😀b"; // bytes: a=0, 😀=1..5, b=5
  const m = new Utf8ToUtf16(text);
  // byte-level BPE splitting the emoji into two tokens: [1,3) and [3,5)
  assert.deepEqual(m.span(1, 3), [1, 3]);
  assert.deepEqual(m.span(3, 5), [1, 3]);
  assert.equal(text.slice(1, 3), "😀");
  // and into four single bytes
  for (let b = 1; b < 5; b++) assert.deepEqual(m.span(b, b + 1), [1, 3]);
  assert.deepEqual(m.span(5, 6), [3, 4]);
});

test("a token ending inside a character rounds up; one starting inside rounds down", () => {
  const text = "x€y"; // € = bytes 1..4
  const m = new Utf8ToUtf16(text);
  assert.deepEqual(m.span(0, 2), [0, 2]); // "x" + first byte of € → "x€"
  assert.deepEqual(m.span(2, 5), [1, 3]); // rest of € + "y" → "€y"
  assert.equal(m.isBoundary(1), true);
  assert.equal(m.isBoundary(2), false);
  assert.equal(m.isBoundary(4), true);
});

test("CRLF: byte and UTF-16 offsets agree, and a token may hold \\r\\n or split it", () => {
  const text = "ab\r\ncd\r\n";
  const m = new Utf8ToUtf16(text);
  assert.deepEqual(m.span(2, 4), [2, 4]);
  assert.deepEqual(m.span(2, 3), [2, 3]);
  assert.deepEqual(m.span(3, 4), [3, 4]);
  const li = new LineIndex(text);
  assert.deepEqual(li.positionAt(2), { line: 0, character: 2 });
  assert.deepEqual(li.positionAt(3), { line: 0, character: 2 }, "between \\r and \\n clamps to line end");
  assert.deepEqual(li.positionAt(4), { line: 1, character: 0 });
  assert.deepEqual(li.positionAt(8), { line: 2, character: 0 });
  assert.equal(li.lineCount, 3);
  assert.equal(li.offsetAt({ line: 1, character: 1 }), 5);
  assert.equal(li.offsetAt({ line: 0, character: 99 }), 2, "character clamped to line length");
});

test("LineIndex: \\n, lone \\r and multi-byte text; offsets round-trip", () => {
  const text = "α\nβγ\rδ\r\n😀x";
  const li = new LineIndex(text);
  assert.equal(li.lineCount, 4);
  assert.deepEqual(li.positionAt(text.indexOf("😀")), { line: 3, character: 0 });
  assert.deepEqual(li.positionAt(text.indexOf("x")), { line: 3, character: 2 });
  for (let o = 0; o <= text.length; o++) {
    if (text[o - 1] === "\r" && text[o] === "\n") continue; // inside CRLF: not a position
    assert.equal(li.offsetAt(li.positionAt(o)), o, `offset ${o}`);
  }
  assert.deepEqual(li.positionAt(-5), { line: 0, character: 0 });
  assert.deepEqual(li.positionAt(1e9), { line: 3, character: 3 });
});

test("columnar spans with a base offset (selection traces)", () => {
  const doc = "prefix 😀 then: é€ end";
  const sel = doc.slice(doc.indexOf("é"));
  const base = doc.indexOf("é");
  const m = new Utf8ToUtf16(sel);
  const spans = charSpans(sel);
  const { start, end } = m.spans(
    spans.map((s) => s[0]),
    spans.map((s) => s[1]),
    base,
  );
  for (let i = 0; i < spans.length; i++) assert.equal(doc.slice(start[i], end[i]), spans[i][2]);
});

test("out-of-range and empty spans are clamped, never past the text", () => {
  const m = new Utf8ToUtf16("héllo");
  assert.deepEqual(m.span(0, 0), [0, 0]); // BOS: empty span at 0
  assert.deepEqual(m.span(4, 100), [3, 5]);
  assert.deepEqual(m.span(-3, 1), [0, 1]);
  assert.deepEqual(m.span(5, 2), [4, 4], "end before start collapses to an empty span");
  assert.deepEqual(m.span(NaN, NaN), [0, 0]);
});

test("utf16ToUtf8Offset is the inverse at character boundaries and never splits a pair", () => {
  const text = "aé😀b";
  assert.equal(utf16ToUtf8Offset(text, 0), 0);
  assert.equal(utf16ToUtf8Offset(text, 1), 1);
  assert.equal(utf16ToUtf8Offset(text, 2), 3);
  assert.equal(utf16ToUtf8Offset(text, 3), 3, "between surrogate halves → start of the pair");
  assert.equal(utf16ToUtf8Offset(text, 4), 7);
  assert.equal(utf16ToUtf8Offset(text, 5), 8);
  const m = new Utf8ToUtf16(text);
  for (const b of [0, 1, 3, 7, 8]) assert.equal(utf16ToUtf8Offset(text, m.startOffset(b)), b);
});

test("a large text maps in linear time", () => {
  const text = "Grüße 😀 ".repeat(50_000);
  const t0 = Date.now();
  const m = new Utf8ToUtf16(text);
  assert.equal(m.byteLength, enc.encode(text).length);
  assert.equal(m.endOffset(m.byteLength), text.length);
  assert.ok(Date.now() - t0 < 2000);
});
