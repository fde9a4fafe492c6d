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
// CSV: one row per (token, MoE layer), experts and weights space-separated in selection
// order; the same "text" (lossy) and "bytes" (exact, base64) columns.
import fs from "node:fs";
import path from "node:path";
import type { Trace, TraceBatch } from "../../shared/trace";
import type { TraceHeader, TraceSummary } from "../../shared/wire";

export type TraceExportFormat = "json" | "csv";

/** Where an export goes: receives the file's text in order; may return a promise to slow the writer down (backpressure). */
export type ExportSink = (chunk: string) => void | Promise<void>;

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
    await this.sink(`${JSON.stringify(meta, null, 1).replace(/\n}$/, "")},\n "tokens": [\n`);
  }

  async batch(b: TraceBatch): Promise<void> {
    const h = this.header;
    if (!h) throw new Error("trace export: a batch before the header");
    const L = h.n_moe_layers,
      K = h.k,
      N = h.top_n;
    const lines: string[] = [];
    for (let i = 0; i < b.count; i++) {
      const bytes = this.text.subarray(b.byteStart[i], b.byteEnd[i]).toString("base64");
      const nll = Number.isFinite(b.nll[i]) ? b.nll[i] : null;
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
          weights: Array.from(b.weights.subarray(at, at + K)),
          entropy: b.entropy[i * L + m],
          active: b.active[i * L + m],
        };
        if (N > 0 && b.topIds && b.topProbs) {
          const tp = (i * L + m) * N;
          layer.top = Array.from({ length: N }, (_, j) => [b.topIds![tp + j], b.topProbs![tp + j]]);
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
    await this.sink(`\n ],\n "summary": ${JSON.stringify(summary ?? null)}\n}\n`);
  }
}

/** A whole trace in memory as one export string (small traces, tests). */
export async function traceToString(format: TraceExportFormat, trace: Trace, text: string | Uint8Array): Promise<string> {
  const parts: string[] = [];
  const w = new TraceExportWriter(format, text, (chunk) => void parts.push(chunk));
  await w.begin(trace.header);
  await w.batch(trace.columns);
  await w.end(trace.summary);
  return parts.join("");
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
