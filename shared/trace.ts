// The routing trace in memory: columnar typed arrays, one row per token, so that a
// 20k-token × 48-layer trace stays a few typed arrays instead of millions of objects.
// The same shapes travel from the server (base64 in NDJSON, decoded by
// extension/core/server-client.ts; the JSON shapes are in shared/wire.ts) and to the webview
// (transferable ArrayBuffers, see shared/protocol.ts).

import type { TraceHeader, TraceSummary } from "./wire";

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
  /** Every expert's router probability as IEEE half-precision bits, [count][n_moe_layers][n_expert], when asked for (`probs`; not kept by concatBatches); shared/half.ts halfToFloat reads one. */
  routerProbs?: Uint16Array;
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
  const L = header.n_moe_layers,
    K = header.k,
    N = header.top_n;
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
