// The GGUF container at byte level: read a file's header (metadata key/values and tensor
// table) without touching the tensor data, and write a new file whose tensors are copied,
// in pieces, from byte ranges of a source file. Expert pruning needs every metadata value
// kept as its exact encoded bytes, so untouched keys are copied bit for bit in their
// original types, and tensor data streamed through a small buffer, so a model of many
// gigabytes is never held in memory. Every length, count and tensor extent is checked
// against the file's size, so gguf.ts also reads models through it (Select Model…, the CLI).
// Format: llama.cpp's ggml/include/gguf.h (v2/v3, little-endian); ggml type sizes from
// ggml/src/ggml.c.
import fs from "node:fs";

export const GGUF_MAGIC = "GGUF";
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** GGUF metadata value types (gguf_type). */
export const GgufType = {
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
} as const;

const SCALAR_SIZE: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

/** ggml tensor types: name, elements per block, bytes per block. */
export const GGML_TYPES: Record<number, { name: string; blockSize: number; typeSize: number }> = {
  0: { name: "F32", blockSize: 1, typeSize: 4 },
  1: { name: "F16", blockSize: 1, typeSize: 2 },
  2: { name: "Q4_0", blockSize: 32, typeSize: 18 },
  3: { name: "Q4_1", blockSize: 32, typeSize: 20 },
  6: { name: "Q5_0", blockSize: 32, typeSize: 22 },
  7: { name: "Q5_1", blockSize: 32, typeSize: 24 },
  8: { name: "Q8_0", blockSize: 32, typeSize: 34 },
  9: { name: "Q8_1", blockSize: 32, typeSize: 36 },
  10: { name: "Q2_K", blockSize: 256, typeSize: 84 },
  11: { name: "Q3_K", blockSize: 256, typeSize: 110 },
  12: { name: "Q4_K", blockSize: 256, typeSize: 144 },
  13: { name: "Q5_K", blockSize: 256, typeSize: 176 },
  14: { name: "Q6_K", blockSize: 256, typeSize: 210 },
  15: { name: "Q8_K", blockSize: 256, typeSize: 292 },
  16: { name: "IQ2_XXS", blockSize: 256, typeSize: 66 },
  17: { name: "IQ2_XS", blockSize: 256, typeSize: 74 },
  18: { name: "IQ3_XXS", blockSize: 256, typeSize: 98 },
  19: { name: "IQ1_S", blockSize: 256, typeSize: 50 },
  20: { name: "IQ4_NL", blockSize: 32, typeSize: 18 },
  21: { name: "IQ3_S", blockSize: 256, typeSize: 110 },
  22: { name: "IQ2_S", blockSize: 256, typeSize: 82 },
  23: { name: "IQ4_XS", blockSize: 256, typeSize: 136 },
  24: { name: "I8", blockSize: 1, typeSize: 1 },
  25: { name: "I16", blockSize: 1, typeSize: 2 },
  26: { name: "I32", blockSize: 1, typeSize: 4 },
  27: { name: "I64", blockSize: 1, typeSize: 8 },
  28: { name: "F64", blockSize: 1, typeSize: 8 },
  29: { name: "IQ1_M", blockSize: 256, typeSize: 56 },
  30: { name: "BF16", blockSize: 1, typeSize: 2 },
  34: { name: "TQ1_0", blockSize: 256, typeSize: 54 },
  35: { name: "TQ2_0", blockSize: 256, typeSize: 66 },
  39: { name: "MXFP4", blockSize: 32, typeSize: 17 },
  40: { name: "NVFP4", blockSize: 64, typeSize: 36 },
  41: { name: "Q1_0", blockSize: 128, typeSize: 18 },
  42: { name: "Q2_0", blockSize: 64, typeSize: 18 },
};

export class GgufError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "GgufError";
  }
}

export type GgufScalar = number | bigint | boolean | string;
export type GgufValue = GgufScalar | GgufScalar[];

/** One metadata entry: `raw` is the value's encoding after its type tag (for arrays: element type, count, elements). */
export interface GgufKv {
  key: string;
  type: number;
  raw: Buffer;
}

export interface GgufTensorInfo {
  name: string;
  /** ne[0..n-1], innermost first (ggml order). */
  dims: number[];
  type: number;
  /** Offset of the data from the start of the data section. */
  offset: number;
  /** Bytes of data (blocks × block size). */
  nbytes: number;
}

export interface GgufLayout {
  path: string;
  version: number;
  kvs: GgufKv[];
  tensors: GgufTensorInfo[];
  alignment: number;
  /** Absolute file offset of the data section. */
  dataStart: number;
  fileSize: number;
}

export function tensorBytes(name: string, dims: number[], type: number): number {
  const t = GGML_TYPES[type];
  if (!t) throw new GgufError(`tensor ${name} has ggml type ${type}, which this reader does not know`);
  if (dims[0] % t.blockSize !== 0)
    throw new GgufError(`tensor ${name}: its first dimension ${dims[0]} is not a multiple of the ${t.name} block size ${t.blockSize}`);
  let rows = 1;
  for (let i = 1; i < dims.length; i++) rows *= dims[i];
  return (dims[0] / t.blockSize) * t.typeSize * rows;
}

export const alignUp = (x: number, a: number) => Math.ceil(x / a) * a;

// ---------------------------------------------------------------------------------------------
// Reading

/** A forward cursor over the file's header that reads more of the file as it goes. */
class HeaderCursor {
  private buf = Buffer.alloc(0);
  private bufStart = 0;
  pos = 0;

  constructor(
    private readonly fd: number,
    readonly fileSize: number,
    private readonly what: string,
  ) {}

  private ensure(n: number): void {
    if (this.pos + n > this.fileSize)
      throw new GgufError(`${this.what} is truncated or corrupt: the header needs byte ${this.pos + n} but the file has ${this.fileSize}`);
    if (this.pos + n <= this.bufStart + this.buf.length) return;
    const keep = this.buf.subarray(this.pos - this.bufStart);
    const want = Math.min(Math.max(n, 1 << 20), this.fileSize - this.pos);
    const fresh = Buffer.alloc(want - keep.length);
    let got = 0;
    while (got < fresh.length) {
      const r = fs.readSync(this.fd, fresh, got, fresh.length - got, this.pos + keep.length + got);
      if (r === 0) throw new GgufError(`${this.what}: unexpected end of file at byte ${this.pos + keep.length + got}`);
      got += r;
    }
    this.buf = Buffer.concat([keep, fresh]);
    this.bufStart = this.pos;
  }

  bytes(n: number): Buffer {
    this.ensure(n);
    const b = this.buf.subarray(this.pos - this.bufStart, this.pos - this.bufStart + n);
    this.pos += n;
    return b;
  }

  u32(): number {
    return this.bytes(4).readUInt32LE(0);
  }

  u64(): number {
    const v = this.bytes(8).readBigUInt64LE(0);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new GgufError(`${this.what}: a count or size field is implausibly large (${v}); the file is corrupt`);
    return Number(v);
  }

  string(): string {
    const n = this.u64();
    if (n > this.fileSize - this.pos)
      throw new GgufError(`${this.what}: a string of ${n} bytes runs past the end of the file; the file is truncated or corrupt`);
    return this.bytes(n).toString("utf8");
  }

  /** Skips one value of `type` and returns its encoded bytes. */
  value(type: number): Buffer {
    const start = this.pos;
    this.skipValue(type, 0);
    // The value may straddle a buffer refill; re-read it whole (values are small except arrays, read once).
    return this.slice(start, this.pos);
  }

  private skipValue(type: number, depth: number): void {
    if (type === GgufType.STRING) {
      this.string();
    } else if (type === GgufType.ARRAY) {
      if (depth > 4) throw new GgufError(`${this.what}: arrays nested too deeply; the file is corrupt`);
      const elem = this.u32();
      const n = this.u64();
      const size = SCALAR_SIZE[elem];
      if (size !== undefined) {
        if (n * size > this.fileSize - this.pos)
          throw new GgufError(`${this.what}: an array of ${n} elements runs past the end of the file; the file is truncated or corrupt`);
        this.bytes(n * size);
      } else if (elem === GgufType.STRING || elem === GgufType.ARRAY) {
        for (let i = 0; i < n; i++) this.skipValue(elem, depth + 1);
      } else throw new GgufError(`${this.what}: unknown array element type ${elem}; the file is corrupt`);
    } else {
      const size = SCALAR_SIZE[type];
      if (size === undefined) throw new GgufError(`${this.what}: unknown metadata value type ${type}; the file is corrupt`);
      this.bytes(size);
    }
  }

  private slice(start: number, end: number): Buffer {
    if (start >= this.bufStart) return Buffer.from(this.buf.subarray(start - this.bufStart, end - this.bufStart));
    const out = Buffer.alloc(end - start);
    let got = 0;
    while (got < out.length) got += fs.readSync(this.fd, out, got, out.length - got, start + got);
    return out;
  }
}

/** Reads the header and tensor table of a GGUF file and checks that every tensor lies inside the file. */
export function readGgufLayout(path: string): GgufLayout {
  if (!fs.existsSync(path) || !fs.statSync(path).isFile()) throw new GgufError(`model file not found: ${path}`);
  const fileSize = fs.statSync(path).size;
  const fd = fs.openSync(path, "r");
  try {
    const c = new HeaderCursor(fd, fileSize, path);
    // A file that starts with the magic but ends inside the header is truncated, not "not GGUF".
    if (fileSize < 4 || c.bytes(4).toString("latin1") !== GGUF_MAGIC) throw new GgufError(`not a GGUF file: ${path}`);
    const version = c.u32();
    if (version !== 2 && version !== 3) {
      throw new GgufError(
        version > 0xffff
          ? `${path} is a big-endian GGUF; only little-endian files are supported`
          : `${path} has GGUF version ${version}; versions 2 and 3 are supported`,
      );
    }
    const nTensors = c.u64();
    const nKv = c.u64();
    if (nTensors > 1e7 || nKv > 1e7) throw new GgufError(`${path}: implausible counts (${nTensors} tensors, ${nKv} metadata keys); the file is corrupt`);
    const kvs: GgufKv[] = [];
    const keys = new Set<string>();
    for (let i = 0; i < nKv; i++) {
      const key = c.string();
      if (keys.has(key)) throw new GgufError(`${path}: metadata key ${key} appears twice; the file is corrupt`);
      keys.add(key);
      const type = c.u32();
      kvs.push({ key, type, raw: c.value(type) });
    }
    const alignKv = kvs.find((k) => k.key === "general.alignment");
    const alignment = alignKv ? Number(decodeKv(alignKv)) : GGUF_DEFAULT_ALIGNMENT;
    if (!Number.isInteger(alignment) || alignment <= 0 || alignment % 8 !== 0)
      throw new GgufError(`${path}: general.alignment ${alignment} is not a positive multiple of 8`);
    const tensors: GgufTensorInfo[] = [];
    const names = new Set<string>();
    for (let i = 0; i < nTensors; i++) {
      const name = c.string();
      if (names.has(name)) throw new GgufError(`${path}: tensor ${name} appears twice; the file is corrupt`);
      names.add(name);
      const nDims = c.u32();
      if (nDims < 1 || nDims > 4) throw new GgufError(`${path}: tensor ${name} has ${nDims} dimensions; the file is corrupt`);
      const dims: number[] = [];
      for (let d = 0; d < nDims; d++) dims.push(c.u64());
      const type = c.u32();
      const offset = c.u64();
      tensors.push({ name, dims, type, offset, nbytes: tensorBytes(name, dims, type) });
    }
    const dataStart = alignUp(c.pos, alignment);
    for (const t of tensors) {
      if (t.offset % alignment !== 0) throw new GgufError(`${path}: tensor ${t.name} is not aligned to ${alignment} bytes; the file is corrupt`);
      if (dataStart + t.offset + t.nbytes > fileSize) {
        throw new GgufError(`${path} is truncated or corrupt: tensor ${t.name} ends at byte ${dataStart + t.offset + t.nbytes}, the file has ${fileSize}`);
      }
    }
    return { path, version, kvs, tensors, alignment, dataStart, fileSize };
  } finally {
    fs.closeSync(fd);
  }
}

function readScalar(type: number, b: Buffer, at: number): [GgufScalar, number] {
  switch (type) {
    case GgufType.UINT8:
      return [b.readUInt8(at), 1];
    case GgufType.INT8:
      return [b.readInt8(at), 1];
    case GgufType.UINT16:
      return [b.readUInt16LE(at), 2];
    case GgufType.INT16:
      return [b.readInt16LE(at), 2];
    case GgufType.UINT32:
      return [b.readUInt32LE(at), 4];
    case GgufType.INT32:
      return [b.readInt32LE(at), 4];
    case GgufType.FLOAT32:
      return [b.readFloatLE(at), 4];
    case GgufType.BOOL:
      return [b.readUInt8(at) !== 0, 1];
    case GgufType.UINT64: {
      const v = b.readBigUInt64LE(at);
      return [v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v, 8];
    }
    case GgufType.INT64: {
      const v = b.readBigInt64LE(at);
      return [v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v, 8];
    }
    case GgufType.FLOAT64:
      return [b.readDoubleLE(at), 8];
    case GgufType.STRING: {
      const n = Number(b.readBigUInt64LE(at));
      return [b.toString("utf8", at + 8, at + 8 + n), 8 + n];
    }
    default:
      throw new GgufError(`cannot decode GGUF value type ${type}`);
  }
}

/** The value of a metadata entry (arrays of scalars or strings as JS arrays; nested arrays are refused). */
export function decodeKv(kv: GgufKv): GgufValue {
  if (kv.type !== GgufType.ARRAY) return readScalar(kv.type, kv.raw, 0)[0];
  const elem = kv.raw.readUInt32LE(0);
  if (elem === GgufType.ARRAY) throw new GgufError(`metadata ${kv.key} is an array of arrays`);
  const n = Number(kv.raw.readBigUInt64LE(4));
  const out: GgufScalar[] = [];
  let at = 12;
  for (let i = 0; i < n; i++) {
    const [v, size] = readScalar(elem, kv.raw, at);
    out.push(v);
    at += size;
  }
  return out;
}

export function findKv(layout: { kvs: GgufKv[] }, key: string): GgufKv | undefined {
  return layout.kvs.find((k) => k.key === key);
}

// ---------------------------------------------------------------------------------------------
// Encoding metadata

function encodeScalar(type: number, v: GgufScalar): Buffer {
  if (type === GgufType.STRING) {
    const s = Buffer.from(String(v), "utf8");
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(s.length));
    return Buffer.concat([len, s]);
  }
  const size = SCALAR_SIZE[type];
  if (size === undefined) throw new GgufError(`cannot encode GGUF value type ${type}`);
  const b = Buffer.alloc(size);
  switch (type) {
    case GgufType.UINT8:
      b.writeUInt8(Number(v));
      break;
    case GgufType.INT8:
      b.writeInt8(Number(v));
      break;
    case GgufType.UINT16:
      b.writeUInt16LE(Number(v));
      break;
    case GgufType.INT16:
      b.writeInt16LE(Number(v));
      break;
    case GgufType.UINT32:
      b.writeUInt32LE(Number(v));
      break;
    case GgufType.INT32:
      b.writeInt32LE(Number(v));
      break;
    case GgufType.FLOAT32:
      b.writeFloatLE(Number(v));
      break;
    case GgufType.BOOL:
      b.writeUInt8(v ? 1 : 0);
      break;
    case GgufType.UINT64:
      b.writeBigUInt64LE(BigInt(v));
      break;
    case GgufType.INT64:
      b.writeBigInt64LE(BigInt(v));
      break;
    case GgufType.FLOAT64:
      b.writeDoubleLE(Number(v));
      break;
  }
  return b;
}

/** A metadata entry of `type` (for an array: `type` = ARRAY and `elementType` its elements' type). */
export function encodeKv(key: string, type: number, value: GgufValue, elementType?: number): GgufKv {
  if (type !== GgufType.ARRAY) return { key, type, raw: encodeScalar(type, value as GgufScalar) };
  if (!Array.isArray(value) || elementType === undefined || elementType === GgufType.ARRAY)
    throw new GgufError(`metadata ${key}: an array needs a scalar element type`);
  const head = Buffer.alloc(12);
  head.writeUInt32LE(elementType, 0);
  head.writeBigUInt64LE(BigInt(value.length), 4);
  return { key, type, raw: Buffer.concat([head, ...value.map((v) => encodeScalar(elementType, v))]) };
}

/** The same entry with a new value in its existing type (for arrays: the existing element type). */
export function reencodeKv(kv: GgufKv, value: GgufValue): GgufKv {
  return encodeKv(kv.key, kv.type, value, kv.type === GgufType.ARRAY ? kv.raw.readUInt32LE(0) : undefined);
}

// ---------------------------------------------------------------------------------------------
// Writing

/** Where an output tensor's bytes come from, in order: a byte range of the source's data section, or bytes given. */
export type TensorPiece = { offset: number; length: number } | { data: Uint8Array };

const pieceLength = (p: TensorPiece) => ("data" in p ? p.data.length : p.length);

export interface OutputTensor {
  name: string;
  dims: number[];
  type: number;
  pieces: TensorPiece[];
}

/** The format of the file to write (version, alignment) and, when pieces refer to one, the source file. */
export type GgufWriteSource = Pick<GgufLayout, "version" | "alignment"> & Partial<Pick<GgufLayout, "path" | "dataStart">>;

const COPY_CHUNK = 4 << 20;

function encodeHeader(version: number, kvs: GgufKv[], tensors: OutputTensor[], alignment: number): { header: Buffer; offsets: number[]; dataBytes: number } {
  const parts: Buffer[] = [];
  const u32 = (v: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    return b;
  };
  const u64 = (v: number) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    return b;
  };
  const str = (s: string) => encodeScalar(GgufType.STRING, s);
  parts.push(Buffer.from(GGUF_MAGIC, "latin1"), u32(version), u64(tensors.length), u64(kvs.length));
  for (const kv of kvs) parts.push(str(kv.key), u32(kv.type), kv.raw);
  const offsets: number[] = [];
  let at = 0;
  for (const t of tensors) {
    const nbytes = tensorBytes(t.name, t.dims, t.type);
    const have = t.pieces.reduce((s, p) => s + pieceLength(p), 0);
    if (have !== nbytes) throw new GgufError(`internal error: tensor ${t.name} needs ${nbytes} bytes, its pieces hold ${have}`);
    offsets.push(at);
    parts.push(str(t.name), u32(t.dims.length), ...t.dims.map(u64), u32(t.type), u64(at));
    at = alignUp(at + nbytes, alignment);
  }
  const header = Buffer.concat(parts);
  const padded = Buffer.alloc(alignUp(header.length, alignment));
  header.copy(padded);
  return { header: padded, offsets, dataBytes: at };
}

/**
 * Writes a GGUF file: `kvs` as given, then `tensors` in order, each assembled from its pieces
 * (byte ranges of `source`'s data section, or bytes given) and padded to the alignment. Streams through one 4 MiB buffer.
 * Returns the size of the file written.
 */
export async function writeGguf(
  outPath: string,
  source: GgufWriteSource,
  kvs: GgufKv[],
  tensors: OutputTensor[],
  onProgress?: (bytesDone: number, bytesTotal: number) => void,
): Promise<number> {
  const { header, dataBytes } = encodeHeader(source.version, kvs, tensors, source.alignment);
  const total = header.length + dataBytes;
  const needsSource = tensors.some((t) => t.pieces.some((p) => !("data" in p)));
  if (needsSource && !source.path) throw new GgufError("internal error: tensor pieces refer to a source file but none was given");
  const src = needsSource ? await fs.promises.open(source.path!, "r") : undefined;
  const out = await fs.promises.open(outPath, "w");
  try {
    await out.write(header, 0, header.length, 0);
    let pos = header.length;
    const chunk = Buffer.alloc(COPY_CHUNK);
    for (const t of tensors) {
      let written = 0;
      for (const p of t.pieces) {
        if ("data" in p) {
          await out.write(p.data, 0, p.data.length, pos);
          pos += p.data.length;
          written += p.data.length;
          continue;
        }
        for (let done = 0; done < p.length;) {
          const n = Math.min(chunk.length, p.length - done);
          const { bytesRead } = await src!.read(chunk, 0, n, source.dataStart! + p.offset + done);
          if (bytesRead !== n) throw new GgufError(`${source.path} changed or was truncated while it was being copied (tensor ${t.name})`);
          await out.write(chunk, 0, n, pos);
          pos += n;
          done += n;
          written += n;
        }
      }
      const pad = alignUp(written, source.alignment) - written;
      if (pad) {
        await out.write(Buffer.alloc(pad), 0, pad, pos);
        pos += pad;
      }
      onProgress?.(pos, total);
    }
    if (pos !== total) throw new GgufError(`internal error: wrote ${pos} bytes, expected ${total}`);
  } finally {
    await out.close();
    await src?.close();
  }
  return total;
}
