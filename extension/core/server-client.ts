// HTTP client of moe-lens-server (protocol: native/API.md). Used by the extension host and
// the command line alike. Streams are NDJSON; routing arrays arrive as base64 typed arrays.
import { b64ToFloat32, b64ToInt32, b64ToUint8 } from "./b64";
import type { Policy } from "./policy";
import { concatBatches, type ModelInfo, type Trace, type TraceBatch, type TraceHeader, type TraceSummary } from "./trace";

export class ServerError extends Error {
  constructor(message: string, readonly status: number, readonly code: string) {
    super(message);
    this.name = "ServerError";
  }
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
  policy: Policy;
}

export interface CalibrationData {
  n_tokens: number;
  n_expert: number;
  moe_layers: number[];
  /** Raw router logits per MoE layer, [token][expert]. */
  logits: Float32Array[];
}

export interface TraceHandlers {
  onHeader?(header: TraceHeader): void;
  onBatch?(batch: TraceBatch): void;
  onSummary?(summary: TraceSummary): void;
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

interface BatchRecord {
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
  expert_norms?: string;
}

export function decodeBatch(r: BatchRecord): TraceBatch {
  const spans = b64ToInt32(r.byte_spans);
  const byteStart = new Int32Array(r.count);
  const byteEnd = new Int32Array(r.count);
  for (let i = 0; i < r.count; i++) {
    byteStart[i] = spans[2 * i];
    byteEnd[i] = spans[2 * i + 1];
  }
  return {
    start: r.start,
    count: r.count,
    tokenIds: b64ToInt32(r.token_ids),
    byteStart,
    byteEnd,
    pieces: r.pieces,
    nll: b64ToFloat32(r.nll),
    experts: b64ToInt32(r.experts),
    weights: b64ToFloat32(r.weights),
    entropy: b64ToFloat32(r.entropy),
    active: b64ToUint8(r.active),
    topIds: r.top_ids ? b64ToInt32(r.top_ids) : undefined,
    topProbs: r.top_probs ? b64ToFloat32(r.top_probs) : undefined,
    expertNorms: r.expert_norms ? b64ToFloat32(r.expert_norms) : undefined,
  };
}

export class ServerClient {
  constructor(readonly baseUrl: string, readonly token: string) {}

  private async request(method: "GET" | "POST", route: string, body?: unknown, signal?: AbortSignal): Promise<Response> {
    let res: Response;
    try {
      res = await fetch(this.baseUrl + route, {
        method,
        headers: { Authorization: `Bearer ${this.token}`, ...(body === undefined ? {} : { "Content-Type": "application/json" }) },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
      });
    } catch (err) {
      if (signal?.aborted) throw new ServerError("cancelled", 0, "cancelled");
      throw new ServerError(`cannot reach moe-lens-server at ${this.baseUrl}: ${(err as Error).message}`, 0, "unreachable");
    }
    if (!res.ok) {
      let code = "http_error";
      let message = `HTTP ${res.status}`;
      try {
        const j = (await res.json()) as { error?: { code: string; message: string } };
        if (j.error) ({ code, message } = j.error);
      } catch {
        // body was not JSON; keep the status line
      }
      throw new ServerError(message, res.status, code);
    }
    return res;
  }

  private async json<T>(method: "GET" | "POST", route: string, body?: unknown, signal?: AbortSignal): Promise<T> {
    return (await (await this.request(method, route, body, signal)).json()) as T;
  }

  health(signal?: AbortSignal): Promise<{ ok: boolean; busy: boolean }> {
    return this.json("GET", "/health", undefined, signal);
  }

  modelInfo(signal?: AbortSignal): Promise<ModelInfo> {
    return this.json("GET", "/v1/model", undefined, signal);
  }

  tokenize(text: string, signal?: AbortSignal): Promise<{ tokens: number[]; pieces: string[]; byte_spans: Array<[number, number]> }> {
    return this.json("POST", "/v1/tokenize", { text }, signal);
  }

  /** Streams a trace; resolves with the whole trace once the summary arrives. */
  trace(req: { text: string; policy?: Policy; top_n?: number } | { tokens: number[]; policy?: Policy; top_n?: number },
        handlers: TraceHandlers = {}, signal?: AbortSignal): Promise<Trace> {
    return this.streamTrace("/v1/trace", req, handlers, signal);
  }

  /**
   * Streams a trace to the handlers without keeping its batches, so memory stays flat however
   * long the text; `expert_norms` asks for each selected expert's output norm (servers with the
   * "expert_norms" capability).
   */
  async traceStream(req: { text: string; policy?: Policy; top_n?: number; expert_norms?: boolean }, handlers: TraceHandlers,
                    signal?: AbortSignal): Promise<{ header: TraceHeader; summary: TraceSummary }> {
    const { header, summary } = await this.stream("/v1/trace", req, handlers, signal, false);
    return { header, summary };
  }

  generate(req: GenerateRequest, handlers: TraceHandlers = {}, signal?: AbortSignal): Promise<Trace> {
    return this.streamTrace("/v1/generate", req, handlers, signal);
  }

  perplexity(req: { text: string; n_ctx: number; policy?: Policy; n_batch?: number }, signal?: AbortSignal): Promise<PerplexityResult> {
    return this.json("POST", "/v1/perplexity", req, signal);
  }

  /** Prefill and batch-1 decode speed under a policy, timed by the server (native/API.md, /v1/speed). */
  speed(req: SpeedRequest, signal?: AbortSignal): Promise<SpeedResult> {
    return this.json("POST", "/v1/speed", req, signal);
  }

  async calibrate(text: string, signal?: AbortSignal): Promise<CalibrationData> {
    const r = await this.json<{ n_tokens: number; n_expert: number; moe_layers: number[]; logits: string[] }>("POST", "/v1/calibrate", { text }, signal);
    return { ...r, logits: r.logits.map(b64ToFloat32) };
  }

  async loadPredictor(path: string | null, signal?: AbortSignal): Promise<void> {
    await this.json("POST", "/v1/predictor", { path }, signal);
  }

  private async streamTrace(route: string, body: unknown, handlers: TraceHandlers, signal?: AbortSignal): Promise<Trace> {
    const { header, summary, batches } = await this.stream(route, body, handlers, signal, true);
    return { header, columns: concatBatches(header, batches), summary };
  }

  private async stream(route: string, body: unknown, handlers: TraceHandlers, signal: AbortSignal | undefined, retain: boolean):
      Promise<{ header: TraceHeader; summary: TraceSummary; batches: TraceBatch[] }> {
    const res = await this.request("POST", route, body, signal);
    let header: TraceHeader | undefined;
    let summary: TraceSummary | undefined;
    const batches: TraceBatch[] = [];
    const onLine = (line: string) => {
      if (!line.trim()) return;
      const rec = JSON.parse(line) as { type: string; [k: string]: unknown };
      switch (rec.type) {
        case "header":
          header = rec as unknown as TraceHeader;
          handlers.onHeader?.(header);
          break;
        case "batch": {
          const b = decodeBatch(rec as unknown as BatchRecord);
          if (retain) batches.push(b);
          handlers.onBatch?.(b);
          break;
        }
        case "summary":
          summary = rec as unknown as TraceSummary;
          handlers.onSummary?.(summary);
          break;
        case "error":
          throw new ServerError(String(rec.message), 500, String(rec.code ?? "failed"));
      }
    };
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let pending = "";
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        pending += decoder.decode(value, { stream: true });
        let nl: number;
        while ((nl = pending.indexOf("\n")) >= 0) {
          onLine(pending.slice(0, nl));
          pending = pending.slice(nl + 1);
        }
      }
      onLine(pending);
    } catch (err) {
      if (signal?.aborted) throw new ServerError("cancelled", 0, "cancelled");
      if (err instanceof ServerError) throw err;
      throw new ServerError(`the trace stream broke off: ${(err as Error).message}`, 0, "stream_broken");
    } finally {
      reader.releaseLock();
    }
    if (!header) throw new ServerError("the server sent no trace header", 0, "protocol");
    if (!summary) throw new ServerError("the trace ended before its summary (did the server stop?)", 0, "stream_broken");
    return { header, summary, batches };
  }
}
