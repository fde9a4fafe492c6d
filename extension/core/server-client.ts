// HTTP client of moe-lens-server (protocol: native/API.md). Used by the extension host and
// the command line alike. Streams are NDJSON; routing arrays arrive as base64 typed arrays.
import { b64ToFloat32, b64ToInt32, b64ToUint8 } from "./b64";
import { concatBatches, type Trace, type TraceBatch } from "../../shared/trace";
import type {
  BatchRecord, CalibrateResponse, GenerateRequest, HealthResponse, PerplexityRequest, PerplexityResult, PredictorResponse, ServerModelInfo,
  TokenizeResponse, TraceHeader, TraceRequest, TraceSummary,
} from "../../shared/wire";

export class ServerError extends Error {
  constructor(message: string, readonly status: number, readonly code: string) {
    super(message);
    this.name = "ServerError";
  }
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

  health(signal?: AbortSignal): Promise<HealthResponse> {
    return this.json("GET", "/health", undefined, signal);
  }

  modelInfo(signal?: AbortSignal): Promise<ServerModelInfo> {
    return this.json("GET", "/v1/model", undefined, signal);
  }

  tokenize(text: string, signal?: AbortSignal): Promise<TokenizeResponse> {
    return this.json("POST", "/v1/tokenize", { text }, signal);
  }

  /** Streams a trace; resolves with the whole trace once the summary arrives. */
  trace(req: TraceRequest, handlers: TraceHandlers = {}, signal?: AbortSignal): Promise<Trace> {
    return this.streamTrace("/v1/trace", req, handlers, signal);
  }

  generate(req: GenerateRequest, handlers: TraceHandlers = {}, signal?: AbortSignal): Promise<Trace> {
    return this.streamTrace("/v1/generate", req, handlers, signal);
  }

  perplexity(req: PerplexityRequest, signal?: AbortSignal): Promise<PerplexityResult> {
    return this.json("POST", "/v1/perplexity", req, signal);
  }

  async calibrate(text: string, signal?: AbortSignal): Promise<CalibrationData> {
    const r = await this.json<CalibrateResponse>("POST", "/v1/calibrate", { text }, signal);
    return { ...r, logits: r.logits.map(b64ToFloat32) };
  }

  async loadPredictor(path: string | null, signal?: AbortSignal): Promise<void> {
    await this.json<PredictorResponse>("POST", "/v1/predictor", { path }, signal);
  }

  private async streamTrace(route: string, body: unknown, handlers: TraceHandlers, signal?: AbortSignal): Promise<Trace> {
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
          batches.push(b);
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
    return { header, columns: concatBatches(header, batches), summary };
  }
}
