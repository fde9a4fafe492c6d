// The routing trace in memory: columnar typed arrays, one row per token, so that a
// 20k-token × 48-layer trace stays a few typed arrays instead of millions of objects.
// The same shapes travel from the server (base64 in NDJSON, see native/API.md) and to the
// webview (transferable ArrayBuffers, see webview/protocol.ts).

import type { Policy } from "./policy";

export interface ModelInfo {
  path: string;
  architecture: string;
  n_layer: number;
  /** Indices of the layers that have a routed MoE FFN. */
  moe_layers: number[];
  n_expert: number;
  /** Experts used per token as loaded (after any expert_used_count override). */
  n_expert_used: number;
  /** Experts used per token as trained (from the GGUF before overrides). */
  n_expert_used_trained: number;
  n_expert_shared: number;
  gating: "softmax" | "sigmoid" | "softmax_weight";
  weights_norm: boolean;
  weights_scale: number;
  n_ctx: number;
  n_ctx_train: number;
  n_vocab: number;
  add_bos: boolean;
  /** Hex SHA-256 of the model file (ties fitted predictors to a model). */
  sha256?: string;
  predictor_loaded?: boolean;
  /** Optional server features, e.g. "in_graph_routing", "expert_norms" (native/API.md). */
  capabilities: string[];
  /** Whether dropped experts can skip their computation on this build and model (CPU only). */
  skip_supported: boolean;
}

/** Header of one trace: what the columns mean. */
export interface TraceHeader {
  model: ModelInfo;
  policy: Policy;
  /** Number of MoE layers traced (columns per token). */
  n_moe_layers: number;
  /** Expert slots per layer in the arrays (= n_expert_used as loaded). */
  k: number;
  /** Top router probabilities per layer recorded (0 = none). */
  top_n: number;
  /** Total tokens the trace will hold. */
  n_tokens: number;
  /** Context windows used for text longer than the context (see native/API.md). */
  windows: Array<{ start: number; end: number; scored_from: number }>;
}

/** A run of consecutive tokens. Arrays are row-major: [token][layer][slot]. */
export interface TraceBatch {
  start: number;
  count: number;
  tokenIds: Int32Array;
  /** UTF-8 byte offsets of each token's piece in the input text ([start, end)). */
  byteStart: Int32Array;
  byteEnd: Int32Array;
  pieces: string[];
  /** NLL (nats) of the *next* token given this and earlier ones; NaN where there is none. */
  nll: Float32Array;
  /** Selected expert ids, [count][n_moe_layers][k], descending by router probability. */
  experts: Int32Array;
  /** Final gate weights of those experts after the model's normalisation and all policies; 0 = dropped. */
  weights: Float32Array;
  /** Router entropy (nats) over all experts, [count][n_moe_layers]. */
  entropy: Float32Array;
  /** Experts with non-zero weight after AMG, [count][n_moe_layers]. */
  active: Uint8Array;
  /** Top-N router ids and probabilities, [count][n_moe_layers][top_n], when asked for. */
  topIds?: Int32Array;
  topProbs?: Float32Array;
  /** ‖output‖₂ of each selected slot's expert before gate weighting, [count][n_moe_layers][k], when asked for (not kept by concatBatches). */
  expertNorms?: Float32Array;
}

export interface TraceSummary {
  n_tokens: number;
  /** exp(mean NLL) over the tokens that have a next token. */
  ppl: number;
  mean_nll: number;
  avg_active: number;
  avg_active_per_layer: number[];
  /** Selection counts, [n_moe_layers][n_expert], counting experts with non-zero weight. */
  usage: number[][];
  elapsed_ms: number;
}

/** A complete trace with all batches concatenated. */
export interface Trace {
  header: TraceHeader;
  columns: TraceBatch;
  summary?: TraceSummary;
}

const FIELDS_PER_LAYER = ["entropy", "active"] as const;
const FIELDS_PER_SLOT = ["experts", "weights"] as const;

/** Concatenates batches (in order, contiguous) into one column set. */
export function concatBatches(header: TraceHeader, batches: TraceBatch[]): TraceBatch {
  const n = batches.reduce((s, b) => s + b.count, 0);
  const L = header.n_moe_layers, K = header.k, N = header.top_n;
  const out: TraceBatch = {
    start: batches.length ? batches[0].start : 0,
    count: n,
    tokenIds: new Int32Array(n),
    byteStart: new Int32Array(n),
    byteEnd: new Int32Array(n),
    pieces: [],
    nll: new Float32Array(n),
    experts: new Int32Array(n * L * K),
    weights: new Float32Array(n * L * K),
    entropy: new Float32Array(n * L),
    active: new Uint8Array(n * L),
    topIds: N > 0 ? new Int32Array(n * L * N) : undefined,
    topProbs: N > 0 ? new Float32Array(n * L * N) : undefined,
  };
  let at = 0;
  for (const b of batches) {
    if (b.start !== out.start + at) throw new Error(`trace batches are not contiguous: expected token ${out.start + at}, got ${b.start}`);
    out.tokenIds.set(b.tokenIds, at);
    out.byteStart.set(b.byteStart, at);
    out.byteEnd.set(b.byteEnd, at);
    out.nll.set(b.nll, at);
    for (const f of FIELDS_PER_SLOT) out[f].set(b[f], at * L * K);
    for (const f of FIELDS_PER_LAYER) out[f].set(b[f], at * L);
    if (N > 0 && b.topIds && b.topProbs) {
      out.topIds!.set(b.topIds, at * L * N);
      out.topProbs!.set(b.topProbs, at * L * N);
    }
    for (const p of b.pieces) out.pieces.push(p);
    at += b.count;
  }
  return out;
}
