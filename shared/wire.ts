// The JSON shapes moe-lens-server sends and receives (native/API.md is their prose
// description). The extension host and the command line read them through
// extension/core/server-client.ts; the webview receives headers and summaries unchanged.

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

export interface PerplexityResult {
  ppl: number;
  ppl_err: number;
  n_chunks: number;
  n_ctx: number;
  tokens: number;
  scored: number;
  chunk_ppl: number[];
  avg_active_experts: number;
  k: number;
  printed: string;
}

export interface GenerateRequest {
  prompt: string;
  n_predict?: number;
  temperature?: number;
  top_k?: number;
  top_p?: number;
  seed?: number;
  policy?: Policy;
  top_n?: number;
}

export interface BatchRecord {
  type: "batch";
  start: number;
  count: number;
  token_ids: string;
  byte_spans: string;
  pieces: string[];
  nll: string;
  experts: string;
  weights: string;
  entropy: string;
  active: string;
  top_ids?: string;
  top_probs?: string;
}

