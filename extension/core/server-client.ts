// HTTP client of moe-lens-server (protocol: native/API.md, JSON shapes: shared/wire.ts).
// Used by the extension host and the command line alike. Streams are NDJSON; routing arrays
// arrive as base64 typed arrays.
//
// Requests go through node:http rather than fetch: Node's fetch gives up on any response
// whose headers take more than 300 s, and a perplexity or calibration run on a long text
// answers only when it is done. Here the long jobs (traces, perplexity, calibration,
// generation, tokenizing, speed runs) wait as long as they run — the user cancels them through the
// AbortSignal — and only the quick requests (health, model info, predictor) have a limit.
import http from "node:http";
import { b64ToFloat32, b64ToInt32, b64ToUint16, b64ToUint8 } from "./b64";
import { concatBatches, type Trace, type TraceBatch } from "../../shared/trace";
import type {
  BatchRecord,
  CalibrateResponse,
  ErrorBody,
  GenerateRequest,
  HeaderRecord,
  HealthResponse,
  PerplexityRequest,
  PerplexityResult,
  PredictorResponse,
  RouterPackInfo,
  RouterPackResponse,
  ServerModelInfo,
  SpeedRequest,
  SpeedResult,
  StreamErrorRecord,
  SummaryRecord,
  TokenizeResponse,
  TraceHeader,
  TraceRequest,
  TraceSummary,
} from "../../shared/wire";

export class ServerError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly code: string,
  ) {
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

export interface ServerClientOptions {
  /** How long a quick request (health, model info, predictor) waits for the response headers, ms (default 60 s). */
  quickRequestTimeoutMs?: number;
}

/** What a streamed trace ends with (its batches went to the handlers). */
export interface TraceStreamResult {
  header: TraceHeader;
  summary: TraceSummary;
}

/**
 * Receivers of a streamed trace's records, in order. A handler that returns a promise is
 * awaited before the next record is read, which slows the server down to the receiver's
 * pace (a file being written, say) instead of buffering the stream in memory.
 */
export interface TraceHandlers {
  onHeader?(header: TraceHeader): void | Promise<void>;
  onBatch?(batch: TraceBatch): void | Promise<void>;
  onSummary?(summary: TraceSummary): void | Promise<void>;
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
    routerProbs: r.probs ? b64ToUint16(r.probs) : undefined,
  };
}

/**
 * One connection per request. With keep-alive, a request sent on an idle connection that
 * the server is closing at that moment (cpp-httplib closes idle connections after 5 s) fails
 * as "socket hang up"; on loopback a fresh connection costs nothing.
 */
const agent = new http.Agent({ keepAlive: false });

export class ServerClient {
  private readonly quickTimeoutMs: number;

  constructor(
    readonly baseUrl: string,
    readonly token: string,
    options: ServerClientOptions = {},
  ) {
    this.quickTimeoutMs = options.quickRequestTimeoutMs ?? 60_000;
  }

  /**
   * Sends one request and resolves with the response once its headers arrive (rejecting
   * with a ServerError for an error status). `timeoutMs` 0: no limit.
   */
  private request(method: "GET" | "POST", route: string, body: unknown, signal: AbortSignal | undefined, timeoutMs: number): Promise<http.IncomingMessage> {
    if (signal?.aborted) return Promise.reject(new ServerError("cancelled", 0, "cancelled"));
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body), "utf8");
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const req = http.request(
        this.baseUrl + route,
        {
          method,
          headers: {
            Authorization: `Bearer ${this.token}`,
            ...(payload ? { "Content-Type": "application/json", "Content-Length": payload.length } : {}),
          },
          signal,
          agent,
        },
        (res) => {
          clearTimeout(timer);
          if ((res.statusCode ?? 0) < 400) return resolve(res);
          readBody(res).then(
            (text) => reject(errorFromBody(res.statusCode ?? 0, text)),
            (err: Error) => reject(this.transportError(route, err, signal)),
          );
        },
      );
      if (timeoutMs > 0) {
        timer = setTimeout(
          () => req.destroy(new ServerError(`moe-lens-server at ${this.baseUrl} did not answer ${route} within ${timeoutMs / 1000} s`, 0, "timeout")),
          timeoutMs,
        );
      }
      req.on("error", (err) => {
        clearTimeout(timer);
        reject(this.transportError(route, err, signal));
      });
      req.end(payload);
    });
  }

  /** A failed connection as a ServerError that says what happened. */
  private transportError(route: string, err: Error, signal?: AbortSignal): ServerError {
    if (err instanceof ServerError) return err;
    if (signal?.aborted) return new ServerError("cancelled", 0, "cancelled");
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ECONNREFUSED") return new ServerError(`cannot reach moe-lens-server at ${this.baseUrl}: connection refused`, 0, "unreachable");
    if (code === "ECONNRESET" || code === "EPIPE" || err.message === "socket hang up" || err.message === "aborted") {
      return new ServerError(`moe-lens-server closed the connection during ${route} (did it stop?)`, 0, "connection_lost");
    }
    return new ServerError(`cannot reach moe-lens-server at ${this.baseUrl}: ${err.message}`, 0, "unreachable");
  }

  private async json<T>(method: "GET" | "POST", route: string, body: unknown, signal: AbortSignal | undefined, timeoutMs: number): Promise<T> {
    const res = await this.request(method, route, body, signal, timeoutMs);
    let text: string;
    try {
      text = await readBody(res);
    } catch (err) {
      throw this.transportError(route, err as Error, signal);
    }
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new ServerError(`moe-lens-server sent ${route} a response that is not JSON: ${text.slice(0, 120)}`, res.statusCode ?? 0, "protocol");
    }
  }

  health(signal?: AbortSignal): Promise<HealthResponse> {
    return this.json("GET", "/health", undefined, signal, this.quickTimeoutMs);
  }

  modelInfo(signal?: AbortSignal): Promise<ServerModelInfo> {
    return this.json("GET", "/v1/model", undefined, signal, this.quickTimeoutMs);
  }

  tokenize(text: string, signal?: AbortSignal): Promise<TokenizeResponse> {
    return this.json("POST", "/v1/tokenize", { text }, signal, 0);
  }

  /** Streams a trace; resolves with the whole trace once the summary arrives. */
  async trace(req: TraceRequest, handlers: TraceHandlers = {}, signal?: AbortSignal): Promise<Trace> {
    return this.collect("/v1/trace", req, handlers, signal);
  }

  /**
   * Streams a trace into the handlers without keeping it: memory stays that of one batch
   * whatever the text's length (exports write each batch as it arrives).
   */
  traceStream(req: TraceRequest, handlers: TraceHandlers, signal?: AbortSignal): Promise<TraceStreamResult> {
    return this.stream("/v1/trace", req, handlers, signal);
  }

  /** Generates from a prompt, streaming the routing of the prompt and of every generated token. */
  generate(req: GenerateRequest, handlers: TraceHandlers = {}, signal?: AbortSignal): Promise<Trace> {
    return this.collect("/v1/generate", req, handlers, signal);
  }

  perplexity(req: PerplexityRequest, signal?: AbortSignal): Promise<PerplexityResult> {
    return this.json("POST", "/v1/perplexity", req, signal, 0);
  }

  /** Prefill and batch-1 decode speed under a policy, timed by the server (native/API.md, /v1/speed): a long job. */
  speed(req: SpeedRequest, signal?: AbortSignal): Promise<SpeedResult> {
    return this.json("POST", "/v1/speed", req, signal, 0);
  }

  async calibrate(text: string, signal?: AbortSignal): Promise<CalibrationData> {
    const r = await this.json<CalibrateResponse>("POST", "/v1/calibrate", { text }, signal, 0);
    return { ...r, logits: r.logits.map(b64ToFloat32) };
  }

  async loadPredictor(path: string | null, signal?: AbortSignal): Promise<void> {
    await this.json<PredictorResponse>("POST", "/v1/predictor", { path }, signal, this.quickTimeoutMs);
  }

  /** Routes every later evaluation with a router pack (docs/router-packs.md), or the model's own routers for null. */
  async loadRouterPack(path: string | null, signal?: AbortSignal): Promise<RouterPackInfo | null> {
    return (await this.json<RouterPackResponse>("POST", "/v1/router-pack", { path }, signal, this.quickTimeoutMs)).router_pack;
  }

  /** A streamed trace with every batch kept and concatenated. */
  private async collect(route: string, body: unknown, handlers: TraceHandlers, signal?: AbortSignal): Promise<Trace> {
    const batches: TraceBatch[] = [];
    const { header, summary } = await this.stream(
      route,
      body,
      {
        ...handlers,
        onBatch: (b) => {
          batches.push(b);
          return handlers.onBatch?.(b);
        },
      },
      signal,
    );
    return { header, columns: concatBatches(header, batches), summary };
  }

  private async stream(route: string, body: unknown, handlers: TraceHandlers, signal?: AbortSignal): Promise<TraceStreamResult> {
    const res = await this.request("POST", route, body, signal, 0);
    let header: TraceHeader | undefined;
    let summary: TraceSummary | undefined;
    const onLine = async (line: string) => {
      if (!line.trim()) return;
      const rec = JSON.parse(line) as { type: string; [k: string]: unknown };
      switch (rec.type) {
        case "header": {
          const { type: _type, ...h } = rec as unknown as HeaderRecord;
          header = h;
          await handlers.onHeader?.(header);
          break;
        }
        case "batch":
          await handlers.onBatch?.(decodeBatch(rec as unknown as BatchRecord));
          break;
        case "summary": {
          const { type: _type, ...s } = rec as unknown as SummaryRecord;
          summary = s;
          await handlers.onSummary?.(summary);
          break;
        }
        case "error": {
          const e = rec as unknown as StreamErrorRecord;
          throw new ServerError(String(e.message), 500, String(e.code));
        }
      }
    };
    // Lines are cut on the bytes: a batch line with the full router distribution is megabytes
    // long and arrives in 64 KiB chunks, so only each new chunk is searched for the newline and
    // a line is decoded once, when it is complete (appending to a string and searching it from
    // the start on every chunk was quadratic in the line's length).
    let pending: Buffer[] = [];
    try {
      for await (const data of res) {
        const chunk = data as Buffer;
        let from = 0,
          nl: number;
        while ((nl = chunk.indexOf(0x0a, from)) >= 0) {
          pending.push(chunk.subarray(from, nl));
          const line = pending.length === 1 ? pending[0].toString("utf8") : Buffer.concat(pending).toString("utf8");
          pending = [];
          await onLine(line);
          from = nl + 1;
        }
        if (from < chunk.length) pending.push(chunk.subarray(from));
      }
      await onLine(Buffer.concat(pending).toString("utf8"));
    } catch (err) {
      if (signal?.aborted) throw new ServerError("cancelled", 0, "cancelled");
      if (err instanceof ServerError) throw err;
      if (err instanceof SyntaxError) throw new ServerError(`moe-lens-server sent a malformed ${route} record: ${err.message}`, 0, "protocol");
      throw new ServerError(`the ${route} stream broke off: ${this.transportError(route, err as Error).message}`, 0, "stream_broken");
    } finally {
      res.destroy();
    }
    if (!header) throw new ServerError("the server sent no trace header", 0, "protocol");
    if (!summary) throw new ServerError("the trace ended before its summary (did the server stop?)", 0, "stream_broken");
    return { header, summary };
  }
}

/** The whole body of a response as text. */
async function readBody(res: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of res) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

/** The server's JSON error body (native/API.md, "Errors") as a ServerError; the status line when the body is not JSON. */
function errorFromBody(status: number, text: string): ServerError {
  try {
    const j = JSON.parse(text) as Partial<ErrorBody>;
    if (j.error) return new ServerError(j.error.message, status, j.error.code);
  } catch {
    // not JSON: keep the status line
  }
  return new ServerError(`HTTP ${status}${text.trim() ? `: ${text.trim().slice(0, 200)}` : ""}`, status, "http_error");
}
