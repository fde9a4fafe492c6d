// The JSON moe-lens-server sends and receives, one type per record, each with the list of
// its keys (native/API.md describes them in prose). The extension host and the command line
// read them through extension/core/server-client.ts; the webview receives headers and
// summaries unchanged (shared/protocol.ts).
//
// Every key list below is checked twice: at compile time against its interface
// (`satisfies` catches a listed key the type lacks, `ListsAllKeys` a typed key the list
// lacks), and at run time by test/integration/wire-contract.test.ts against what the real
// server sends on every route and record type. A key added, renamed or dropped on either
// side fails one of them. test/unit/wire-doc.test.ts checks that native/API.md names
// every listed key.

import type { Policy } from "./policy";

/** Compiles to `true` only when `K` names every key of `T` (optional ones included). */
export type ListsAllKeys<T, K extends readonly PropertyKey[]> = [Exclude<keyof T, K[number]>] extends [never] ? true : { missing: Exclude<keyof T, K[number]> };

/** The loaded model, as in every trace header (`header.model`). */
export interface ModelInfo {
  /** The model file as the server was started with it. */
  path: string;
  architecture: string;
  /** llama.cpp's one-line description (architecture, size, quantisation). */
  description: string;
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
  /** BOS token id. */
  bos: number;
  vocab_type: "none" | "spm" | "bpe" | "wpm" | "ugm" | "rwkv" | "plamo2" | "unknown";
  size_bytes: number;
  n_params: number;
  /** Optional server features clients may test for, e.g. "in_graph_routing", "expert_norms". */
  capabilities: string[];
  /** Whether dropped experts can skip their computation on this build and model (CPU only; see policy.skip). */
  skip_supported: boolean;
  /** The router pack every evaluation routes with (docs/router-packs.md), or null for the model's own routers. */
  router_pack: RouterPackInfo | null;
  /** Per MoE layer, the backend buffer its router ran in at load time ("CPU", "Vulkan0", "RPC0[host:port]", …). */
  router_devices: string[];
}
/** A loaded router pack as the server describes it. */
export interface RouterPackInfo {
  path: string;
  name: string;
  description: string;
  /** Trained mechanisms the pack carries, "+"-joined ("beta+ant"); "" for routers only. */
  mechanisms: string;
}
export const ROUTER_PACK_INFO_KEYS = ["path", "name", "description", "mechanisms"] as const satisfies ReadonlyArray<keyof RouterPackInfo>;
const _routerPackInfoKeys: ListsAllKeys<RouterPackInfo, typeof ROUTER_PACK_INFO_KEYS> = true;
export const MODEL_INFO_KEYS = [
  "path",
  "architecture",
  "description",
  "n_layer",
  "moe_layers",
  "n_expert",
  "n_expert_used",
  "n_expert_used_trained",
  "n_expert_shared",
  "gating",
  "weights_norm",
  "weights_scale",
  "n_ctx",
  "n_ctx_train",
  "n_vocab",
  "add_bos",
  "bos",
  "vocab_type",
  "size_bytes",
  "n_params",
  "capabilities",
  "skip_supported",
  "router_pack",
  "router_devices",
] as const satisfies ReadonlyArray<keyof ModelInfo>;
const _modelInfoKeys: ListsAllKeys<ModelInfo, typeof MODEL_INFO_KEYS> = true;

/** `GET /v1/model`: the model info and whether an Ant predictor is loaded. */
export interface ServerModelInfo extends ModelInfo {
  predictor_loaded: boolean;
}
export const SERVER_MODEL_INFO_KEYS = [...MODEL_INFO_KEYS, "predictor_loaded"] as const satisfies ReadonlyArray<keyof ServerModelInfo>;
const _serverModelInfoKeys: ListsAllKeys<ServerModelInfo, typeof SERVER_MODEL_INFO_KEYS> = true;

/** `GET /health`. */
export interface HealthResponse {
  ok: boolean;
  /** A model evaluation is running. */
  busy: boolean;
}
export const HEALTH_KEYS = ["ok", "busy"] as const satisfies ReadonlyArray<keyof HealthResponse>;
const _healthKeys: ListsAllKeys<HealthResponse, typeof HEALTH_KEYS> = true;

/** `POST /v1/tokenize`. */
export interface TokenizeRequest {
  text: string;
  add_bos?: boolean;
}
export interface TokenizeResponse {
  tokens: number[];
  pieces: string[];
  /** `[start, end)` UTF-8 byte offsets of each token in the request's text. */
  byte_spans: Array<[number, number]>;
}
export const TOKENIZE_KEYS = ["tokens", "pieces", "byte_spans"] as const satisfies ReadonlyArray<keyof TokenizeResponse>;
const _tokenizeKeys: ListsAllKeys<TokenizeResponse, typeof TOKENIZE_KEYS> = true;

/** A context window of a trace of text longer than the context (native/API.md, "Windows"). */
export interface TraceWindow {
  /** First token evaluated in this window. */
  start: number;
  /** One past the last token evaluated. */
  end: number;
  /** First token recorded from this window. */
  scored_from: number;
  /** One past the last token recorded from this window. */
  recorded_end: number;
}
export const TRACE_WINDOW_KEYS = ["start", "end", "scored_from", "recorded_end"] as const satisfies ReadonlyArray<keyof TraceWindow>;
const _traceWindowKeys: ListsAllKeys<TraceWindow, typeof TRACE_WINDOW_KEYS> = true;

/** `POST /v1/trace` request: text (or token ids), optional policy, router top-N, expert-output norms, BOS. */
export type TraceRequest = ({ text: string } | { tokens: number[] }) & {
  policy?: Policy;
  top_n?: number;
  expert_norms?: boolean;
  /** Stream every expert's router probability (f16) with each batch. */
  probs?: boolean;
  add_bos?: boolean;
};

/** Header of one trace (the stream's first record, without its `type`): what the columns mean. */
export interface TraceHeader {
  model: ModelInfo;
  /** The policy as the server normalised it (every field it applies, with defaults). */
  policy: Policy;
  /** Number of MoE layers traced (columns per token). */
  n_moe_layers: number;
  /** Expert slots per layer in the arrays (= n_expert_used as loaded). */
  k: number;
  /** Top router probabilities per layer recorded (0 = none). */
  top_n: number;
  /** Total tokens the trace will hold. */
  n_tokens: number;
  /** Context windows used (one unless the text is longer than the context, and one when the context shifts). */
  windows: TraceWindow[];
  /** Tokens dropped from the context each time it fills (n_ctx/2), or 0 when the text fits or the memory cannot shift. */
  kv_shift: number;
  /** Whether each batch carries `probs`, every expert's router probability. */
  probs: boolean;
}
export const TRACE_HEADER_KEYS = [
  "type",
  "model",
  "policy",
  "n_moe_layers",
  "k",
  "top_n",
  "n_tokens",
  "windows",
  "kv_shift",
  "probs",
] as const satisfies ReadonlyArray<keyof HeaderRecord>;
const _traceHeaderKeys: ListsAllKeys<HeaderRecord, typeof TRACE_HEADER_KEYS> = true;
export type HeaderRecord = TraceHeader & { type: "header" };

/** A run of consecutive tokens as the server streams it: little-endian arrays in base64. */
export interface BatchRecord {
  type: "batch";
  start: number;
  count: number;
  /** i32 × count. */
  token_ids: string;
  /** i32 × 2·count: `[start, end)` UTF-8 byte offsets in the request's text. */
  byte_spans: string;
  /** Token texts; lossy where a token holds part of a UTF-8 character (use byte_spans). */
  pieces: string[];
  /** f32 × count. */
  nll: string;
  /** i32 × count·L·K. */
  experts: string;
  /** f32 × count·L·K. */
  weights: string;
  /** f32 × count·L. */
  entropy: string;
  /** u8 × count·L. */
  active: string;
  /** i32 × count·L·N, only when top_n > 0. */
  top_ids?: string;
  /** f32 × count·L·N, only when top_n > 0. */
  top_probs?: string;
  /** f32 × count·L·K: L2 norm of each selected slot's expert output before gating, only when the request asked for expert_norms. */
  expert_norms?: string;
  /** f16 × count·L·E: every expert's router probability, `[token][layer][expert]`, only when the request asked for probs. */
  probs?: string;
}
export const BATCH_KEYS = [
  "type",
  "start",
  "count",
  "token_ids",
  "byte_spans",
  "pieces",
  "nll",
  "experts",
  "weights",
  "entropy",
  "active",
  "top_ids",
  "top_probs",
  "expert_norms",
  "probs",
] as const satisfies ReadonlyArray<keyof BatchRecord>;
const _batchKeys: ListsAllKeys<BatchRecord, typeof BATCH_KEYS> = true;
/** The batch keys sent only when the request asked for top_n > 0. */
export const BATCH_TOP_N_KEYS = ["top_ids", "top_probs"] as const satisfies ReadonlyArray<keyof BatchRecord>;
/** The batch key sent only when the request asked for expert_norms. */
export const BATCH_EXPERT_NORMS_KEYS = ["expert_norms"] as const satisfies ReadonlyArray<keyof BatchRecord>;
/** The batch key sent only when the request asked for probs. */
export const BATCH_PROBS_KEYS = ["probs"] as const satisfies ReadonlyArray<keyof BatchRecord>;

/** The stream's last record (without its `type`). */
export interface TraceSummary {
  n_tokens: number;
  /** exp(mean NLL) over the tokens that have a next token; null when none has. */
  ppl: number | null;
  mean_nll: number | null;
  avg_active: number;
  avg_active_per_layer: number[];
  /** Selection counts, [n_moe_layers][n_expert], counting experts with non-zero weight. */
  usage: number[][];
  elapsed_ms: number;
}
export type SummaryRecord = TraceSummary & { type: "summary" };
export const SUMMARY_KEYS = [
  "type",
  "n_tokens",
  "ppl",
  "mean_nll",
  "avg_active",
  "avg_active_per_layer",
  "usage",
  "elapsed_ms",
] as const satisfies ReadonlyArray<keyof SummaryRecord>;
const _summaryKeys: ListsAllKeys<SummaryRecord, typeof SUMMARY_KEYS> = true;

/** A failure after a stream has started (its last record). */
export interface StreamErrorRecord {
  type: "error";
  code: string;
  message: string;
}
export const STREAM_ERROR_KEYS = ["type", "code", "message"] as const satisfies ReadonlyArray<keyof StreamErrorRecord>;
const _streamErrorKeys: ListsAllKeys<StreamErrorRecord, typeof STREAM_ERROR_KEYS> = true;

/** Every non-streamed error: `{"error": {"code", "message"}}` with a 4xx/5xx status. */
export interface ErrorBody {
  error: { code: string; message: string };
}
export const ERROR_BODY_KEYS = ["error"] as const satisfies ReadonlyArray<keyof ErrorBody>;
export const ERROR_KEYS = ["code", "message"] as const satisfies ReadonlyArray<keyof ErrorBody["error"]>;
const _errorKeys: ListsAllKeys<ErrorBody["error"], typeof ERROR_KEYS> = true;

/** `POST /v1/perplexity` request (llama-perplexity's method, native/API.md). */
export interface PerplexityRequest {
  text: string;
  n_ctx: number;
  policy?: Policy;
  n_batch?: number;
}
export interface PerplexityResult {
  ppl: number;
  ppl_err: number;
  n_chunks: number;
  n_ctx: number;
  /** Sequences evaluated in parallel per batch (n_batch / n_ctx). */
  n_seq: number;
  tokens: number;
  scored: number;
  chunk_ppl: number[];
  avg_active_experts: number;
  k: number;
  /** llama-perplexity's final line, e.g. "Final estimate: PPL = 11.3277 +/- 0.14300". */
  printed: string;
  /** The policy as the server normalised it. */
  policy: Policy;
}
export const PERPLEXITY_KEYS = [
  "ppl",
  "ppl_err",
  "n_chunks",
  "n_ctx",
  "n_seq",
  "tokens",
  "scored",
  "chunk_ppl",
  "avg_active_experts",
  "k",
  "printed",
  "policy",
] as const satisfies ReadonlyArray<keyof PerplexityResult>;
const _perplexityKeys: ListsAllKeys<PerplexityResult, typeof PERPLEXITY_KEYS> = true;

/**
 * `POST /v1/generate` request (NDJSON stream of the trace records: header, the prompt's
 * batch, one batch per generated token, summary). Used by the speed benchmark.
 */
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

/** `POST /v1/speed`: prefill and batch-1 decode timed inside the server under a policy (native/API.md). */
export interface SpeedRequest {
  text: string;
  policy?: Policy;
  /** Tokens of the text evaluated for the prefill rate (default: all). */
  n_prefill?: number;
  /** Tokens of the text before decoding starts (default 32). */
  n_prompt?: number;
  /** Tokens generated one at a time for the decode rate (default 64). */
  n_decode?: number;
}
export interface SpeedResult {
  prefill_tokens: number;
  prefill_ms: number;
  decode_tokens: number;
  decode_ms: number;
  /** Active experts per token and MoE layer after the policy, over prefill and decode. */
  avg_active_experts: number;
  decode_avg_active_experts: number;
  k: number;
  /** Whether the dropped experts' computation was skipped (else zero-gated). */
  skip: boolean;
  /** The policy as the server normalised it. */
  policy: Policy;
}
export const SPEED_KEYS = [
  "prefill_tokens",
  "prefill_ms",
  "decode_tokens",
  "decode_ms",
  "avg_active_experts",
  "decode_avg_active_experts",
  "k",
  "skip",
  "policy",
] as const satisfies ReadonlyArray<keyof SpeedResult>;
const _speedKeys: ListsAllKeys<SpeedResult, typeof SPEED_KEYS> = true;

/** `POST /v1/calibrate`: unmodified router logits for fitting the Ant predictor. */
export interface CalibrateResponse {
  n_tokens: number;
  n_expert: number;
  moe_layers: number[];
  /** Per MoE layer: f32 × n_tokens·n_expert, base64. */
  logits: string[];
}
export const CALIBRATE_KEYS = ["n_tokens", "n_expert", "moe_layers", "logits"] as const satisfies ReadonlyArray<keyof CalibrateResponse>;
const _calibrateKeys: ListsAllKeys<CalibrateResponse, typeof CALIBRATE_KEYS> = true;

/** `POST /v1/predictor` (`{"path": …}` or `{"path": null}` to unload). */
/** `POST /v1/router-pack`. */
export interface RouterPackResponse {
  router_pack: RouterPackInfo | null;
}
export const ROUTER_PACK_KEYS = ["router_pack"] as const satisfies ReadonlyArray<keyof RouterPackResponse>;
const _routerPackKeys: ListsAllKeys<RouterPackResponse, typeof ROUTER_PACK_KEYS> = true;

export interface PredictorResponse {
  predictor_loaded: boolean;
}
export const PREDICTOR_KEYS = ["predictor_loaded"] as const satisfies ReadonlyArray<keyof PredictorResponse>;
const _predictorKeys: ListsAllKeys<PredictorResponse, typeof PREDICTOR_KEYS> = true;
