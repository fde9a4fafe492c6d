// Whole-trace routing statistics for the command line and the reports (definitions:
// docs/metrics.md). The per-token metrics are shared/metrics.ts, the same functions the
// panel uses. Statistics accumulate batch by batch, so a trace streamed to disk never has
// to be held in memory to be summarised.
import { meanRoutingShift, rowShift, type SelectionArrays } from "../../shared/metrics";
import type { Trace, TraceBatch } from "../../shared/trace";
import type { TraceHeader } from "../../shared/wire";

export interface TraceStats {
  tokens: number;
  avgActive: number;
  k: number;
  meanNll: number;
  /** exp(mean NLL) over tokens with a next token: the trace's own perplexity, not llama-perplexity's. */
  tracePpl: number;
  meanEntropy: number;
  /** Mean over tokens 1… of the routing shift from the previous token (mean over layers). */
  meanShift: number;
}

/** TraceStats of batches added in order (contiguous, as the server streams them). */
export class TraceStatsAccumulator {
  private readonly L: number;
  private readonly K: number;
  private tokens = 0;
  private nll = 0;
  private nllN = 0;
  private active = 0;
  private entropy = 0;
  private shift = 0;
  /** The last token's experts and weights ([moe layer][slot]), for the shift of the next batch's first token. */
  private prev: { experts: Int32Array; weights: Float32Array } | undefined;

  constructor(header: Pick<TraceHeader, "n_moe_layers" | "k">) {
    this.L = header.n_moe_layers;
    this.K = header.k;
  }

  add(b: TraceBatch): void {
    const { L, K } = this;
    for (let i = 0; i < b.count; i++) {
      if (Number.isFinite(b.nll[i])) {
        this.nll += b.nll[i];
        this.nllN++;
      }
      for (let m = 0; m < L; m++) {
        this.active += b.active[i * L + m];
        this.entropy += b.entropy[i * L + m];
      }
      if (i > 0) this.shift += meanRoutingShift(b, L, K, i);
      else if (this.prev) {
        let s = 0;
        for (let m = 0; m < L; m++) s += rowShift(this.prev, m * K, b, m * K, K);
        this.shift += L ? s / L : 0;
      }
    }
    if (b.count > 0) {
      const last = (b.count - 1) * L * K;
      this.prev = { experts: b.experts.slice(last, last + L * K), weights: b.weights.slice(last, last + L * K) };
    }
    this.tokens += b.count;
  }

  result(): TraceStats {
    const cells = Math.max(1, this.tokens * this.L);
    const meanNll = this.nllN ? this.nll / this.nllN : NaN;
    return {
      tokens: this.tokens,
      avgActive: this.active / cells,
      k: this.K,
      meanNll,
      tracePpl: Math.exp(meanNll),
      meanEntropy: this.entropy / cells,
      meanShift: this.tokens > 1 ? this.shift / (this.tokens - 1) : 0,
    };
  }
}

export function traceStats(trace: Trace): TraceStats {
  const acc = new TraceStatsAccumulator(trace.header);
  acc.add(trace.columns);
  return acc.result();
}

/** The routing shift of every token (mean over layers; token 0 gets 0), for the editor's shift marks. */
export function routingShifts(c: SelectionArrays, n: number, L: number, K: number): Float32Array {
  return Float32Array.from({ length: n }, (_, t) => meanRoutingShift(c, L, K, t));
}
