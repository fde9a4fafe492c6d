// Exact mapping between the server's token spans and the editor's text positions.
//
// The server reports `[start, end)` UTF-8 *byte* offsets into the text it was sent
// (native/API.md, /v1/trace). VS Code addresses text in UTF-16 code units, with line
// breaks ("\n" or "\r\n") counted as they are in the document. This module converts:
//
//   - multi-byte characters: "é" is 2 bytes / 1 unit, "€" 3 bytes / 1 unit;
//   - astral characters: "😀" is 4 bytes / 2 units (a surrogate pair) — never split it;
//   - byte-level BPE tokens that split a character (a span boundary inside a code point's
//     bytes): the token is mapped to the whole containing character, so a start inside a
//     character rounds down to its first unit and an end inside a character rounds up past
//     its last unit; two tokens sharing one character map to the same range;
//   - CRLF: "\r\n" is two bytes and two units, so offsets agree; a position inside the
//     pair (between "\r" and "\n") is clamped to the end of the line, as VS Code does.
//
// No `vscode` import: unit-tested in test/unit/offsets.test.ts.

/** Byte length of a string in UTF-8 (lone surrogates count as U+FFFD, 3 bytes, as TextEncoder does). */
export function utf8Length(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length && isLow(text.charCodeAt(i + 1))) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

function isLow(c: number): boolean {
  return c >= 0xdc00 && c <= 0xdfff;
}

/**
 * Maps UTF-8 byte offsets of one string to UTF-16 offsets of the same string.
 * Built once per traced text in O(bytes); each lookup is O(1).
 */
export class Utf8ToUtf16 {
  /** For every byte offset b in [0, nBytes]: the UTF-16 offset of the character containing byte b. */
  private readonly charStart: Int32Array;
  /** For every byte offset b in [0, nBytes]: the UTF-16 offset just past that character. */
  private readonly charEnd: Int32Array;
  /** 1 where byte b starts a character (or b = nBytes). */
  private readonly boundary: Uint8Array;
  readonly byteLength: number;
  readonly length: number;

  constructor(text: string) {
    const nBytes = utf8Length(text);
    this.byteLength = nBytes;
    this.length = text.length;
    this.charStart = new Int32Array(nBytes + 1);
    this.charEnd = new Int32Array(nBytes + 1);
    this.boundary = new Uint8Array(nBytes + 1);
    let b = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      let bytes = 3,
        units = 1;
      if (c < 0x80) bytes = 1;
      else if (c < 0x800) bytes = 2;
      else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length && isLow(text.charCodeAt(i + 1))) {
        bytes = 4;
        units = 2;
      }
      this.boundary[b] = 1;
      for (let k = 0; k < bytes; k++) {
        this.charStart[b + k] = i;
        this.charEnd[b + k] = i + units;
      }
      b += bytes;
      i += units - 1;
    }
    this.boundary[nBytes] = 1;
    this.charStart[nBytes] = text.length;
    this.charEnd[nBytes] = text.length;
  }

  private clampByte(byte: number): number {
    if (!(byte >= 0)) return 0; // also NaN
    return byte > this.byteLength ? this.byteLength : Math.floor(byte);
  }

  /** UTF-16 offset for a span *start*: a byte inside a character rounds down to the character's start. */
  startOffset(byte: number): number {
    return this.charStart[this.clampByte(byte)];
  }

  /** UTF-16 offset for a span *end* (exclusive): a byte inside a character rounds up to the character's end. */
  endOffset(byte: number): number {
    const b = this.clampByte(byte);
    return this.boundary[b] ? this.charStart[b] : this.charEnd[b];
  }

  /** True when the byte offset falls on a character boundary. */
  isBoundary(byte: number): boolean {
    const b = this.clampByte(byte);
    return b === byte && this.boundary[b] === 1;
  }

  /** Maps one `[start, end)` byte span to a UTF-16 span covering every character it touches. */
  span(byteStart: number, byteEnd: number): [number, number] {
    const s = this.startOffset(byteStart);
    const e = this.endOffset(Math.max(byteStart, byteEnd));
    return [s, Math.max(s, e)];
  }

  /**
   * Maps columnar spans (as in a TraceBatch) into new Int32Arrays of UTF-16 offsets,
   * adding `base` (the UTF-16 offset of the traced text inside the document).
   */
  spans(byteStart: ArrayLike<number>, byteEnd: ArrayLike<number>, base = 0): { start: Int32Array; end: Int32Array } {
    const n = byteStart.length;
    const start = new Int32Array(n),
      end = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const [s, e] = this.span(byteStart[i], byteEnd[i]);
      start[i] = s + base;
      end[i] = e + base;
    }
    return { start, end };
  }
}

/** UTF-16 offset → UTF-8 byte offset (the inverse direction, for sending a cursor to the server). */
export function utf16ToUtf8Offset(text: string, offset: number): number {
  const o = Math.max(0, Math.min(text.length, offset));
  // Do not count half a surrogate pair: an offset between the halves maps to the pair's start.
  const end = o > 0 && o < text.length && isLow(text.charCodeAt(o)) && text.charCodeAt(o - 1) >= 0xd800 && text.charCodeAt(o - 1) <= 0xdbff ? o - 1 : o;
  return utf8Length(text.slice(0, end));
}

export interface LinePosition {
  line: number;
  character: number;
}

/**
 * Line/character positions for UTF-16 offsets, with VS Code's rules: line breaks are
 * "\r\n", "\n" or a lone "\r"; an offset inside "\r\n" is clamped to the end of its line;
 * out-of-range offsets are clamped to the text.
 */
export class LineIndex {
  private readonly starts: number[] = [0];
  /** Length of each line without its line break. */
  private readonly lengths: number[] = [];
  readonly length: number;

  constructor(text: string) {
    this.length = text.length;
    let lineStart = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c === 13 /* \r */ || c === 10 /* \n */) {
        this.lengths.push(i - lineStart);
        if (c === 13 && text.charCodeAt(i + 1) === 10) i++;
        lineStart = i + 1;
        this.starts.push(lineStart);
      }
    }
    this.lengths.push(text.length - lineStart);
  }

  get lineCount(): number {
    return this.starts.length;
  }

  positionAt(offset: number): LinePosition {
    const o = Math.max(0, Math.min(this.length, Math.floor(offset)));
    let lo = 0,
      hi = this.starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.starts[mid] <= o) lo = mid;
      else hi = mid - 1;
    }
    return { line: lo, character: Math.min(o - this.starts[lo], this.lengths[lo]) };
  }

  offsetAt(pos: LinePosition): number {
    if (pos.line < 0) return 0;
    if (pos.line >= this.starts.length) return this.length;
    return this.starts[pos.line] + Math.max(0, Math.min(pos.character, this.lengths[pos.line]));
  }
}
