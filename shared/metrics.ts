// The routing metrics that both the host (command line, hovers, decorations, reports) and
// the routing panel compute, written once so their numbers cannot drift. Definitions:
// docs/metrics.md. Pure functions over the trace's row-major columns
// (`[token][moe layer][slot]`, see shared/trace.ts); no Node, no DOM.

/** The selection columns of a trace (or of any one of its batches). */
export interface RoutingColumns {
  /** Selected expert ids, [token][moe layer][slot]. */
  experts: ArrayLike<number>;
  /** Their final gate weights; 0 = zero-gated (not active). */
  weights: ArrayLike<number>;
}

const isActive = (c: RoutingColumns, at: number) => c.weights[at] !== 0 && c.experts[at] >= 0;

/**
 * Routing shift between two slot rows of K slots (row `a` at offset `atA`, row `b` at
 * `atB`, possibly of different batches): 1 − Jaccard similarity of their active expert sets
 * (the experts with a non-zero weight). 0 when both sets are empty.
 */
export function rowShift(a: RoutingColumns, atA: number, b: RoutingColumns, atB: number, K: number): number {
  let na = 0,
    nb = 0,
    inter = 0;
  for (let i = 0; i < K; i++) {
    if (isActive(a, atA + i)) na++;
    if (isActive(b, atB + i)) nb++;
  }
  for (let i = 0; i < K; i++) {
    if (!isActive(a, atA + i)) continue;
    for (let j = 0; j < K; j++) if (isActive(b, atB + j) && b.experts[atB + j] === a.experts[atA + i]) inter++;
  }
  const union = na + nb - inter;
  return union ? 1 - inter / union : 0;
}

/** Index into the columns of the slot of (t, m) whose expert has the largest final weight (its top-1 expert). */
export function top1Slot(c: RoutingColumns, L: number, K: number, t: number, m: number): number {
  const at = (t * L + m) * K;
  let best = 0;
  for (let j = 1; j < K; j++) if (c.weights[at + j] > c.weights[at + best]) best = j;
  return at + best;
}

/** Routing shift of token t from token t−1 in MoE layer m (0 for the first token). */
export function routingShift(c: RoutingColumns, L: number, K: number, t: number, m: number): number {
  return t <= 0 ? 0 : rowShift(c, ((t - 1) * L + m) * K, c, (t * L + m) * K, K);
}

/** Routing shift of token t averaged over the MoE layers. */
export function meanRoutingShift(c: RoutingColumns, L: number, K: number, t: number): number {
  let s = 0;
  for (let m = 0; m < L; m++) s += routingShift(c, L, K, t, m);
  return L ? s / L : 0;
}

/**
 * Expert usage over tokens [from, to): how often each expert is active (selected with a
 * non-zero weight), [moe layer][expert]. Expert ids outside [0, E) are not counted.
 */
export function expertUsage(c: RoutingColumns, L: number, K: number, E: number, from: number, to: number): number[][] {
  const usage = Array.from({ length: L }, () => new Array<number>(E).fill(0));
  for (let t = from; t < to; t++)
    for (let m = 0; m < L; m++)
      for (let j = 0; j < K; j++) {
        const at = (t * L + m) * K + j;
        const e = c.experts[at];
        if (c.weights[at] !== 0 && e >= 0 && e < E) usage[m][e]++;
      }
  return usage;
}

/** Mean of the finite values (NaN when there are none). */
export function finiteMean(xs: ArrayLike<number>): number {
  let s = 0,
    n = 0;
  for (let i = 0; i < xs.length; i++) {
    if (Number.isFinite(xs[i])) {
      s += xs[i];
      n++;
    }
  }
  return n ? s / n : NaN;
}
