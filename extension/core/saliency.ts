// Expert saliency from the server's routing traces over the user's calibration text: per MoE
// layer and expert, three accumulators and nothing else (the trace itself is never kept):
//   frequency  the slots in which the expert was selected with a non-zero gate weight;
//   weight     the sum of its gate weights over those slots;
//   reap       REAP's router-weighted expert-output norm (Lasby et al., Cerebras 2025): the mean,
//              over the tokens routed to the expert, of gate weight × ‖expert output‖₂, with the
//              norms from the trace's `expert_norms` (servers with the "expert_norms" capability).
// The calibration text is streamed: files are read in pieces of at most PIECE_BYTES, cut at line
// ends, and each piece is traced and folded into the accumulators batch by batch.
// Exported as JSON (format "moe-lens-saliency", version 1), tied to the model by its SHA-256.
import fs from "node:fs";
import path from "node:path";
import type { ServerClient } from "./server-client";
import type { TraceBatch } from "../../shared/trace";
import type { ModelInfo } from "../../shared/wire";

export const SALIENCY_FORMAT = "moe-lens-saliency";
export const SALIENCY_VERSION = 1;
export const EXPERT_NORMS_CAPABILITY = "expert_norms";

/** Saliency criteria; `random` ignores them (a seeded shuffle: the baseline a criterion must beat). */
export const PRUNE_METHODS = ["reap", "weight", "frequency", "random"] as const;
export type PruneMethod = (typeof PRUNE_METHODS)[number];

export interface LayerSaliency {
  /** Model layer index (as in tensor names blk.N). */
  layer: number;
  frequency: number[];
  weight: number[];
  /** Mean gate weight × expert-output norm over the tokens routed to each expert (0 for none); null without norms. */
  reap: number[] | null;
}

export interface SaliencyFile {
  format: typeof SALIENCY_FORMAT;
  version: typeof SALIENCY_VERSION;
  model_sha256: string;
  model_file: string;
  architecture: string;
  n_expert: number;
  /** Expert slots per token during calibration. */
  k: number;
  calibration: { files: Array<{ name: string; tokens: number }>; tokens: number };
  layers: LayerSaliency[];
}

/** Per-(MoE layer, expert) sums over trace batches. */
export class SaliencyAccumulator {
  readonly frequency: Float64Array;
  readonly weight: Float64Array;
  readonly normWeighted: Float64Array;
  tokens = 0;
  private sawNorms = false;

  constructor(
    readonly moeLayers: number[],
    readonly nExpert: number,
    readonly k: number,
  ) {
    const n = moeLayers.length * nExpert;
    this.frequency = new Float64Array(n);
    this.weight = new Float64Array(n);
    this.normWeighted = new Float64Array(n);
  }

  get hasNorms(): boolean {
    return this.sawNorms;
  }

  /** Folds one batch ([token][moe layer][slot] arrays) into the sums. */
  add(batch: TraceBatch): void {
    const L = this.moeLayers.length,
      K = this.k,
      E = this.nExpert;
    if (batch.experts.length !== batch.count * L * K)
      throw new Error(`trace batch has ${batch.experts.length} expert slots, expected ${batch.count}×${L}×${K}`);
    const norms = batch.expertNorms;
    if (norms && norms.length !== batch.experts.length) throw new Error(`trace batch has ${norms.length} expert norms for ${batch.experts.length} slots`);
    if (norms) this.sawNorms = true;
    for (let t = 0; t < batch.count; t++) {
      for (let m = 0; m < L; m++) {
        for (let s = 0; s < K; s++) {
          const i = (t * L + m) * K + s;
          const e = batch.experts[i];
          const w = batch.weights[i];
          if (!(w > 0) || e < 0 || e >= E) continue; // zero-gated or empty slot
          const j = m * E + e;
          this.frequency[j] += 1;
          this.weight[j] += w;
          if (norms) this.normWeighted[j] += w * norms[i];
        }
      }
    }
    this.tokens += batch.count;
  }

  layers(): LayerSaliency[] {
    const E = this.nExpert;
    return this.moeLayers.map((layer, m) => {
      const at = (a: Float64Array) => Array.from(a.subarray(m * E, (m + 1) * E));
      const freq = at(this.frequency);
      return {
        layer,
        frequency: freq,
        weight: at(this.weight),
        reap: this.sawNorms ? at(this.normWeighted).map((s, e) => (freq[e] > 0 ? s / freq[e] : 0)) : null,
      };
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Calibration text

/** Largest piece of text sent in one trace request (well under the server's default body cap). */
export const PIECE_BYTES = 256 * 1024;

/** A source of calibration text, read piece by piece. */
export interface CalibrationSource {
  name: string;
  pieces(): AsyncIterable<string>;
}

const SKIP_DIRS = new Set(["node_modules", "__pycache__"]);

/** The files of a calibration folder (recursively, sorted; hidden entries and node_modules skipped), or the one file given. */
export function calibrationFiles(fileOrDir: string): string[] {
  if (!fs.existsSync(fileOrDir)) throw new Error(`no such file or folder: ${fileOrDir}`);
  if (fs.statSync(fileOrDir).isFile()) return [fileOrDir];
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const name of fs.readdirSync(dir).sort()) {
      if (name.startsWith(".") || SKIP_DIRS.has(name)) continue;
      const p = path.join(dir, name);
      const st = fs.statSync(p);
      if (st.isDirectory()) walk(p);
      else if (st.isFile() && st.size > 0) out.push(p);
    }
  };
  walk(fileOrDir);
  return out;
}

/** True when the file's first 8 KiB hold a NUL byte or invalid UTF-8 (a binary file, not text). */
export function looksBinary(file: string): boolean {
  const fd = fs.openSync(file, "r");
  try {
    const b = Buffer.alloc(8192);
    const n = fs.readSync(fd, b, 0, b.length, 0);
    const head = b.subarray(0, n);
    if (head.includes(0)) return true;
    // Trim a multi-byte character cut at the end of the sample before checking.
    let end = head.length;
    for (let back = 0; back < 3 && end > 0 && (head[end - 1] & 0xc0) === 0x80; back++) end--;
    if (end > 0 && head[end - 1] >= 0xc0) end--;
    new TextDecoder("utf-8", { fatal: true }).decode(head.subarray(0, end));
    return false;
  } catch {
    return true;
  } finally {
    fs.closeSync(fd);
  }
}

/** Where to cut `buf` so that the piece ends at a line end, else at a UTF-8 character boundary. */
function cutPoint(buf: Buffer, limit: number): number {
  if (buf.length <= limit) return buf.length;
  const nl = buf.lastIndexOf(0x0a, limit - 1);
  if (nl >= 0) return nl + 1;
  let at = limit;
  while (at > 0 && (buf[at] & 0xc0) === 0x80) at--;
  return at;
}

/** A file read in pieces of at most `pieceBytes`, cut at line ends (never splitting a character). */
export function fileSource(file: string, pieceBytes = PIECE_BYTES): CalibrationSource {
  return {
    name: file,
    async *pieces() {
      const fh = await fs.promises.open(file, "r");
      try {
        const decoder = new TextDecoder("utf-8", { fatal: true });
        let pending = Buffer.alloc(0);
        let pos = 0;
        for (;;) {
          const chunk = Buffer.alloc(pieceBytes);
          const { bytesRead } = await fh.read(chunk, 0, pieceBytes, pos);
          pos += bytesRead;
          pending = Buffer.concat([pending, chunk.subarray(0, bytesRead)]);
          const last = bytesRead === 0;
          while (pending.length > (last ? 0 : pieceBytes)) {
            const cut = last && pending.length <= pieceBytes ? pending.length : cutPoint(pending, pieceBytes);
            if (cut === 0) throw new TypeError("no character boundary");
            const text = decoder.decode(pending.subarray(0, cut));
            pending = pending.subarray(cut);
            if (text.trim()) yield text;
          }
          if (last) break;
        }
      } catch (err) {
        if (err instanceof TypeError) throw new Error(`${file} is not UTF-8 text`);
        throw err;
      } finally {
        await fh.close();
      }
    },
  };
}

/** Calibration text held in memory (for example a split of a larger file), in pieces like a file. */
export function textSource(name: string, text: string, pieceBytes = PIECE_BYTES): CalibrationSource {
  return {
    name,
    async *pieces() {
      let rest = Buffer.from(text, "utf8");
      while (rest.length) {
        const cut = cutPoint(rest, pieceBytes);
        const piece = rest.subarray(0, cut).toString("utf8");
        rest = rest.subarray(cut);
        if (piece.trim()) yield piece;
      }
    },
  };
}

/** The calibration sources of a file or folder; binary files in a folder are skipped (and named in `skipped`). */
export function calibrationSources(fileOrDir: string): { sources: CalibrationSource[]; skipped: string[] } {
  const files = calibrationFiles(fileOrDir);
  const sources: CalibrationSource[] = [];
  const skipped: string[] = [];
  for (const f of files) {
    if (looksBinary(f)) {
      if (files.length === 1) throw new Error(`${f} is not UTF-8 text`);
      skipped.push(f);
    } else sources.push(fileSource(f));
  }
  if (!sources.length) throw new Error(`${fileOrDir} holds no text files to calibrate on`);
  return { sources, skipped };
}

export interface SaliencyOptions {
  modelSha256: string;
  signal?: AbortSignal;
  onProgress?: (message: string) => void;
}

/** Whether the running server can report expert-output norms (needed by REAP). */
export function hasExpertNorms(info: ModelInfo): boolean {
  return (info.capabilities ?? []).includes(EXPERT_NORMS_CAPABILITY);
}

/**
 * Traces every piece of every source through the server (the model's own routing, no policy)
 * and accumulates saliency. Expert-output norms are asked for when the server can give them.
 */
export async function computeSaliency(client: ServerClient, sources: CalibrationSource[], opts: SaliencyOptions): Promise<SaliencyFile> {
  const info = await client.modelInfo(opts.signal);
  const norms = hasExpertNorms(info);
  const acc = new SaliencyAccumulator(info.moe_layers, info.n_expert, info.n_expert_used);
  const files: Array<{ name: string; tokens: number }> = [];
  for (const src of sources) {
    const before = acc.tokens;
    for await (const text of src.pieces()) {
      await client.traceStream(
        { text, ...(norms ? { expert_norms: true } : {}) },
        {
          onHeader: (h) => {
            if (h.k !== acc.k || h.n_moe_layers !== acc.moeLayers.length)
              throw new Error(`the server's trace has k=${h.k} over ${h.n_moe_layers} MoE layers, expected k=${acc.k} over ${acc.moeLayers.length}`);
          },
          onBatch: (b) => acc.add(b),
        },
        opts.signal,
      );
    }
    files.push({ name: src.name, tokens: acc.tokens - before });
    opts.onProgress?.(`${src.name}: ${acc.tokens - before} tokens`);
  }
  if (acc.tokens === 0) throw new Error("the calibration text is empty: there is nothing to measure saliency on");
  return {
    format: SALIENCY_FORMAT,
    version: SALIENCY_VERSION,
    model_sha256: opts.modelSha256,
    model_file: path.basename(info.path),
    architecture: info.architecture,
    n_expert: info.n_expert,
    k: info.n_expert_used,
    calibration: { files, tokens: acc.tokens },
    layers: acc.layers(),
  };
}

/** Reads and checks a saliency file; with `modelSha256`, refuses one measured on another model. */
export function readSaliency(file: string, modelSha256?: string): SaliencyFile {
  let s: SaliencyFile;
  try {
    s = JSON.parse(fs.readFileSync(file, "utf8")) as SaliencyFile;
  } catch (err) {
    throw new Error(`cannot read the saliency file ${file}: ${(err as Error).message}`);
  }
  if (s?.format !== SALIENCY_FORMAT) throw new Error(`${file} is not a MoE Lens saliency file`);
  if (s.version !== SALIENCY_VERSION) throw new Error(`${file} has saliency version ${s.version}; this MoE Lens reads version ${SALIENCY_VERSION}`);
  if (
    !Array.isArray(s.layers) ||
    s.layers.some(
      (l) =>
        !Number.isInteger(l.layer) ||
        l.frequency?.length !== s.n_expert ||
        l.weight?.length !== s.n_expert ||
        (l.reap !== null && l.reap?.length !== s.n_expert),
    )
  ) {
    throw new Error(`${file}: every layer needs frequency, weight and reap arrays of n_expert = ${s.n_expert} values`);
  }
  if (modelSha256 && s.model_sha256 !== modelSha256)
    throw new Error(`${file} was measured on another model (${s.model_file}, SHA-256 ${s.model_sha256.slice(0, 12)}…); measure saliency on this one`);
  return s;
}

/** The score each method ranks by (higher = more salient). */
function scores(l: LayerSaliency, method: Exclude<PruneMethod, "random">): number[] {
  if (method === "frequency") return l.frequency;
  if (method === "weight") return l.weight;
  if (!l.reap)
    throw new Error(
      `the saliency has no expert-output norms, so REAP cannot rank experts (the server lacked the "${EXPERT_NORMS_CAPABILITY}" capability); use --method weight or frequency`,
    );
  return l.reap;
}

/**
 * Experts of one layer, most salient first. Ties are broken by the other criteria (REAP, then
 * summed weight, then frequency) and finally by the lower expert id, so the order is deterministic.
 */
export function expertOrder(l: LayerSaliency, method: Exclude<PruneMethod, "random">): number[] {
  const keys = [
    scores(l, method),
    ...(["reap", "weight", "frequency"] as const).filter((m) => m !== method && (m !== "reap" || l.reap)).map((m) => scores(l, m)),
  ];
  return l.frequency
    .map((_f, e) => e)
    .sort((a, b) => {
      for (const k of keys) if (k[a] !== k[b]) return k[b] - k[a];
      return a - b;
    });
}

/** A seeded permutation of 0…n-1 (mulberry32 driving Fisher–Yates), distinct per layer. */
export function seededOrder(n: number, seed: number, layer: number): number[] {
  let state = (Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(layer + 1, 0x85ebca6b)) >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const order = Array.from({ length: n }, (_v, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}
