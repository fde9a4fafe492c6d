// Routing metrics over a trace's columns (definitions: ../shared notes gating-and-metrics.md).
import type { Trace } from "../../shared/trace";

/** 1 − Jaccard similarity of the active expert sets of token t and t−1, per MoE layer. */
export function routingShift(trace: Trace, t: number, m: number): number {
  if (t <= 0) return 0;
  const { k, n_moe_layers: L } = trace.header;
  const c = trace.columns;
  const setOf = (i: number) => {
    const s = new Set<number>();
    for (let j = 0; j < k; j++) {
      const at = (i * L + m) * k + j;
      if (c.weights[at] !== 0) s.add(c.experts[at]);
    }
    return s;
  };
  const a = setOf(t), b = setOf(t - 1);
  let inter = 0;
  for (const e of a) if (b.has(e)) inter++;
  const union = a.size + b.size - inter;
  return union === 0 ? 0 : 1 - inter / union;
}

/** Mean routing shift over all layers at token t. */
export function meanRoutingShift(trace: Trace, t: number): number {
  const L = trace.header.n_moe_layers;
  let s = 0;
  for (let m = 0; m < L; m++) s += routingShift(trace, t, m);
  return L ? s / L : 0;
}

/** Expert usage counts [moe layer][expert] over tokens [from, to), counting non-zero weights. */
export function expertUsage(trace: Trace, nExpert: number, from = 0, to = trace.columns.count): number[][] {
  const { k, n_moe_layers: L } = trace.header;
  const c = trace.columns;
  const usage = Array.from({ length: L }, () => new Array<number>(nExpert).fill(0));
  for (let t = from; t < to; t++)
    for (let m = 0; m < L; m++)
      for (let j = 0; j < k; j++) {
        const at = (t * L + m) * k + j;
        if (c.weights[at] !== 0 && c.experts[at] >= 0) usage[m][c.experts[at]]++;
      }
  return usage;
}

export interface TraceStats {
  tokens: number;
  avgActive: number;
  k: number;
  meanNll: number;
  /** exp(mean NLL) over tokens with a next token: the trace's own perplexity, not llama-perplexity's. */
  tracePpl: number;
  meanEntropy: number;
  meanShift: number;
}

export function traceStats(trace: Trace): TraceStats {
  const c = trace.columns;
  const L = trace.header.n_moe_layers;
  let nll = 0, nllN = 0, act = 0, ent = 0, shift = 0;
  for (let t = 0; t < c.count; t++) {
    if (Number.isFinite(c.nll[t])) {
      nll += c.nll[t];
      nllN++;
    }
    for (let m = 0; m < L; m++) {
      act += c.active[t * L + m];
      ent += c.entropy[t * L + m];
    }
    shift += meanRoutingShift(trace, t);
  }
  const cells = Math.max(1, c.count * L);
  return {
    tokens: c.count,
    avgActive: act / cells,
    k: trace.header.k,
    meanNll: nllN ? nll / nllN : NaN,
    tracePpl: nllN ? Math.exp(nll / nllN) : NaN,
    meanEntropy: ent / cells,
    meanShift: c.count > 1 ? shift / (c.count - 1) : 0,
  };
}
