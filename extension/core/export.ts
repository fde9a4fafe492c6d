// Trace export formats, written piece by piece as the trace streams in, so an export of any
// length needs the memory of one batch (the command line writes a 2-million-token trace
// straight from the server to disk; Export Trace… writes the stored batches one by one).
//
// JSON, schema "moe-lens-trace" version 1:
// {
//   "schema": "moe-lens-trace", "version": 1,
//   "model": ModelInfo (native/API.md, /v1/model), "policy": Policy (as the server applied it),
//   "k": slots per layer, "moe_layers": [model layer index per MoE layer],
//   "windows": [{"start", "end", "scored_from", "recorded_end"}, ...] (as the trace header),
//   "tokens": [  one line per token:
//     {"index", "id", "text", "bytes", "byte_start", "byte_end", "nll" (nats, null for the last),
//      "layers": [{"layer", "experts": [ids], "weights": [final weights, 0 = dropped],
//                  "entropy" (nats), "active", "top": [[id, prob], ...] when recorded}]}
//   ],
//   "summary": TraceSummary (written last: the server sends it after the tokens)
// }
// "bytes" is the base64 of the token's exact UTF-8 bytes in the traced text
// ([byte_start, byte_end)); "text" is the model's piece as a string, which is lossy where a
// byte-level token holds only part of a character (U+FFFD stands for the missing part).
// The JSON is compact (no indentation) and its floats are written with the fewest digits that
// give back the same float32 (at most 9 significant digits): full precision at half the size.
// CSV: one row per (token, MoE layer), experts and weights space-separated in selection
// order; the same "text" (lossy) and "bytes" (exact, base64) columns.
//
// Binary, ".moetrace" (compact and exact; read back by readMoeTrace below): a gzip stream
// (one gzip member per record group, which gzip readers join) of
//   "MOETRACE" (8 ASCII bytes), then records, each: u32 little-endian n, n bytes of UTF-8
//   JSON, then the record's binary payload:
//   {"type":"header","schema":"moe-lens-trace","format":"moetrace","version":1,
//    "header": TraceHeader (as the server sent it), "text_bytes": n}  + the traced text's n UTF-8 bytes;
//   {"type":"batch","start","count","pieces":[…],"columns":[[name, dtype, length], …]}
//    + each column's values in that order, little-endian, as the TraceBatch arrays
//    (shared/trace.ts: tokenIds, byteStart, byteEnd i32; nll, weights, entropy, topProbs,
//    expertNorms f32; experts, topIds i32; active u8; routerProbs u16 = IEEE half bits);
//   {"type":"summary","summary": TraceSummary or null}  (last; no payload).
// A 5,000-token × 48-layer × k 8 trace is a few MB (JSON: hundreds).
import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";
import { concatBatches, type Trace, type TraceBatch } from "../../shared/trace";
import type { TraceHeader, TraceSummary } from "../../shared/wire";

export type TraceExportFormat = "json" | "csv" | "moetrace";

/** Where an export goes: receives the file's text (binary for .moetrace) in order; may return a promise to slow the writer down (backpressure). */
export type ExportSink = (chunk: string | Uint8Array) => void | Promise<void>;

/** The export format a file name asks for (by its extension; JSON when it names none of them). */
export function exportFormatOf(file: string): TraceExportFormat {
  const ext = path.extname(file).toLowerCase();
  return ext === ".csv" ? "csv" : ext === ".moetrace" ? "moetrace" : "json";
}

/** A float32 value as the shortest decimal that reads back as the same float32. */
function f32(x: number): number | null {
  if (!Number.isFinite(x)) return null;
  for (let p = 1; p < 9; p++) {
    const y = Number(x.toPrecision(p));
    if (Math.fround(y) === x) return y;
  }
  return Number(x.toPrecision(9));
}

const MOETRACE_MAGIC = "MOETRACE";
type ColumnName =
  "tokenIds" | "byteStart" | "byteEnd" | "nll" | "experts" | "weights" | "entropy" | "active" | "topIds" | "topProbs" | "expertNorms" | "routerProbs";
type Dtype = "i32" | "f32" | "u8" | "u16";
const MOETRACE_COLUMNS: ReadonlyArray<[ColumnName, Dtype]> = [
  ["tokenIds", "i32"],
  ["byteStart", "i32"],
  ["byteEnd", "i32"],
  ["nll", "f32"],
  ["experts", "i32"],
  ["weights", "f32"],
  ["entropy", "f32"],
  ["active", "u8"],
  ["topIds", "i32"],
  ["topProbs", "f32"],
  ["expertNorms", "f32"],
  ["routerProbs", "u16"],
];
const DTYPES = { i32: Int32Array, f32: Float32Array, u8: Uint8Array, u16: Uint16Array } as const;

/** One record of a .moetrace stream: its length-prefixed JSON and its payload. */
function moetraceRecord(json: object, payload: ArrayBufferView[] = []): Buffer[] {
  const head = Buffer.from(JSON.stringify(json), "utf8");
  const len = Buffer.alloc(4);
  len.writeUInt32LE(head.length);
  return [len, head, ...payload.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength))];
}

const CSV_HEADER = "token_index,token_id,text,byte_start,byte_end,nll,layer,active,entropy,experts,weights,bytes\n";

function csvField(s: string): string {
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/**
 * Writes one trace export. Call header(), then batch() for each batch in order, then
 * end(). `text` is the UTF-8 text that was traced: the byte spans index into it.
 */
export class TraceExportWriter {
  private header: TraceHeader | undefined;
  private first = true;
  private readonly text: Buffer;

  constructor(
    readonly format: TraceExportFormat,
    text: string | Uint8Array,
    private readonly sink: ExportSink,
  ) {
    this.text = typeof text === "string" ? Buffer.from(text, "utf8") : Buffer.from(text.buffer, text.byteOffset, text.byteLength);
  }

  async begin(header: TraceHeader): Promise<void> {
    this.header = header;
    if (this.format === "csv") return this.sink(CSV_HEADER);
    if (this.format === "moetrace") {
      const rec = moetraceRecord({ type: "header", schema: "moe-lens-trace", format: "moetrace", version: 1, header, text_bytes: this.text.length }, [
        this.text,
      ]);
      return this.sink(zlib.gzipSync(Buffer.concat([Buffer.from(MOETRACE_MAGIC, "ascii"), ...rec])));
    }
    const meta = {
      schema: "moe-lens-trace",
      version: 1,
      model: header.model,
      policy: header.policy,
      k: header.k,
      moe_layers: header.model.moe_layers,
      windows: header.windows,
    };
    // The metadata object without its closing brace, then the token array opens.
    await this.sink(`${JSON.stringify(meta).slice(0, -1)},\n"tokens": [\n`);
  }

  async batch(b: TraceBatch): Promise<void> {
    const h = this.header;
    if (!h) throw new Error("trace export: a batch before the header");
    const L = h.n_moe_layers,
      K = h.k,
      N = h.top_n;
    if (this.format === "moetrace") return this.sink(zlib.gzipSync(Buffer.concat(moetraceBatch(b))));
    const lines: string[] = [];
    for (let i = 0; i < b.count; i++) {
      const bytes = this.text.subarray(b.byteStart[i], b.byteEnd[i]).toString("base64");
      const nll = f32(b.nll[i]);
      if (this.format === "csv") {
        const lead = `${b.start + i},${b.tokenIds[i]},${csvField(b.pieces[i])},${b.byteStart[i]},${b.byteEnd[i]},${nll === null ? "" : nll.toFixed(6)}`;
        for (let m = 0; m < L; m++) {
          const at = (i * L + m) * K;
          lines.push(
            `${lead},${h.model.moe_layers[m]},${b.active[i * L + m]},${b.entropy[i * L + m].toFixed(6)},` +
              `${Array.from(b.experts.subarray(at, at + K)).join(" ")},${Array.from(b.weights.subarray(at, at + K), (w) => w.toFixed(6)).join(" ")},${bytes}\n`,
          );
        }
        continue;
      }
      const layers = [];
      for (let m = 0; m < L; m++) {
        const at = (i * L + m) * K;
        const layer: Record<string, unknown> = {
          layer: h.model.moe_layers[m],
          experts: Array.from(b.experts.subarray(at, at + K)),
          weights: Array.from(b.weights.subarray(at, at + K), f32),
          entropy: f32(b.entropy[i * L + m]),
          active: b.active[i * L + m],
        };
        if (N > 0 && b.topIds && b.topProbs) {
          const tp = (i * L + m) * N;
          layer.top = Array.from({ length: N }, (_, j) => [b.topIds![tp + j], f32(b.topProbs![tp + j])]);
        }
        layers.push(layer);
      }
      const token = { index: b.start + i, id: b.tokenIds[i], text: b.pieces[i], bytes, byte_start: b.byteStart[i], byte_end: b.byteEnd[i], nll, layers };
      lines.push(`${this.first ? "" : ",\n"}  ${JSON.stringify(token)}`);
      this.first = false;
    }
    if (lines.length) await this.sink(lines.join(""));
  }

  async end(summary: TraceSummary | undefined): Promise<void> {
    if (this.format === "csv") return;
    if (this.format === "moetrace") return this.sink(zlib.gzipSync(Buffer.concat(moetraceRecord({ type: "summary", summary: summary ?? null }))));
    await this.sink(`\n],\n"summary": ${JSON.stringify(summary ?? null)}\n}\n`);
  }
}

/** A batch as a .moetrace record: the columns it carries, as they are. */
function moetraceBatch(b: TraceBatch): Buffer[] {
  const present = MOETRACE_COLUMNS.filter(([name]) => b[name] !== undefined);
  const columns = present.map(([name, dtype]) => [name, dtype, b[name]!.length]);
  return moetraceRecord(
    { type: "batch", start: b.start, count: b.count, pieces: b.pieces, columns },
    present.map(([name]) => b[name]!),
  );
}

/** A .moetrace file read back: the trace (batches joined), the traced text's UTF-8 bytes, and the router data concatBatches does not keep. */
export interface MoeTraceContents {
  trace: Trace;
  text: Uint8Array;
  /** Every expert's router probability (f16 bits, [token][layer][expert]) and the expert-output norms, when the trace recorded them. */
  routerProbs?: Uint16Array;
  expertNorms?: Float32Array;
}

/** Reads a .moetrace export (the format at the top of this file); a clear error for anything else. */
export function readMoeTrace(file: Uint8Array, name = "the file"): MoeTraceContents {
  let data: Buffer;
  try {
    data = zlib.gunzipSync(file);
  } catch (e) {
    throw new Error(`${name} is not a .moetrace export (not gzip: ${(e as Error).message})`);
  }
  if (data.subarray(0, 8).toString("ascii") !== MOETRACE_MAGIC) throw new Error(`${name} is not a .moetrace export (no MOETRACE signature)`);
  let at = 8;
  const next = (): Record<string, unknown> => {
    if (at + 4 > data.length) throw new Error(`${name}: the .moetrace export is truncated at byte ${at}`);
    const n = data.readUInt32LE(at);
    if (at + 4 + n > data.length) throw new Error(`${name}: the .moetrace export is truncated at byte ${at}`);
    const rec = JSON.parse(data.toString("utf8", at + 4, at + 4 + n)) as Record<string, unknown>;
    at += 4 + n;
    return rec;
  };
  const take = (bytes: number): ArrayBuffer => {
    if (at + bytes > data.length) throw new Error(`${name}: the .moetrace export is truncated at byte ${at}`);
    const out = new ArrayBuffer(bytes); // fresh and aligned, for the typed-array views
    new Uint8Array(out).set(data.subarray(at, at + bytes));
    at += bytes;
    return out;
  };
  const first = next();
  if (first.type !== "header" || first.format !== "moetrace" || first.version !== 1)
    throw new Error(`${name}: unsupported .moetrace header (${JSON.stringify(first).slice(0, 120)})`);
  const header = first.header as TraceHeader;
  const text = new Uint8Array(take(Number(first.text_bytes)));
  const batches: TraceBatch[] = [];
  let summary: TraceSummary | undefined;
  let ended = false;
  while (at < data.length) {
    const rec = next();
    if (rec.type === "summary") {
      summary = (rec.summary as TraceSummary | null) ?? undefined;
      ended = true;
      break;
    }
    if (rec.type !== "batch") throw new Error(`${name}: unknown .moetrace record ${JSON.stringify(rec.type)}`);
    const b: Partial<TraceBatch> = { start: Number(rec.start), count: Number(rec.count), pieces: rec.pieces as string[] };
    for (const [col, dtype, length] of rec.columns as Array<[ColumnName, Dtype, number]>) {
      const Ctor = DTYPES[dtype];
      if (!Ctor) throw new Error(`${name}: unknown .moetrace column type ${JSON.stringify(dtype)}`);
      (b as Record<string, unknown>)[col] = new Ctor(take(length * Ctor.BYTES_PER_ELEMENT), 0, length);
    }
    batches.push(b as TraceBatch);
  }
  if (!ended) throw new Error(`${name}: the .moetrace export ends before its summary (an interrupted export?)`);
  const joined = (col: "routerProbs" | "expertNorms") => {
    if (!batches.length || !batches.every((b) => b[col])) return undefined;
    const total = batches.reduce((n, b) => n + b[col]!.length, 0);
    const out = col === "routerProbs" ? new Uint16Array(total) : new Float32Array(total);
    let o = 0;
    for (const b of batches) {
      out.set(b[col]!, o);
      o += b[col]!.length;
    }
    return out;
  };
  return {
    trace: { header, columns: concatBatches(header, batches), summary },
    text,
    routerProbs: joined("routerProbs") as Uint16Array | undefined,
    expertNorms: joined("expertNorms") as Float32Array | undefined,
  };
}

/** A whole trace in memory as one export (small traces, tests): a string for JSON and CSV, bytes for .moetrace. */
export async function traceToString(format: "json" | "csv", trace: Trace, text: string | Uint8Array): Promise<string>;
export async function traceToString(format: "moetrace", trace: Trace, text: string | Uint8Array): Promise<Buffer>;
export async function traceToString(format: TraceExportFormat, trace: Trace, text: string | Uint8Array): Promise<string | Buffer> {
  const parts: Array<string | Uint8Array> = [];
  const w = new TraceExportWriter(format, text, (chunk) => void parts.push(chunk));
  await w.begin(trace.header);
  await w.batch(trace.columns);
  await w.end(trace.summary);
  return format === "moetrace" ? Buffer.concat(parts as Uint8Array[]) : parts.join("");
}

/**
 * Writes an export to `file` through `write`, with bounded memory (the sink waits whenever
 * the file's buffer is full). The data goes to a temporary file beside it, renamed at the
 * end: a failed export leaves no partial file, and an existing file stays until the new one
 * is complete.
 */
export async function writeExportFile(file: string, write: (sink: ExportSink) => Promise<void>): Promise<void> {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const partial = `${file}.partial-${process.pid}`;
  const out = fs.createWriteStream(partial);
  const failed = new Promise<never>((_, reject) => out.once("error", reject));
  failed.catch(() => undefined);
  const sink: ExportSink = (chunk) => (out.write(chunk) ? undefined : Promise.race([new Promise<void>((resolve) => out.once("drain", resolve)), failed]));
  try {
    await Promise.race([write(sink), failed]);
    await Promise.race([new Promise<void>((resolve) => out.end(resolve)), failed]);
    fs.renameSync(partial, file);
  } catch (err) {
    out.destroy();
    fs.rmSync(partial, { force: true });
    throw err;
  }
}
