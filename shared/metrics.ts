// The routing metrics that both the host (command line, hovers, decorations, reports) and
// the routing panel compute, written once so their numbers cannot drift. Definitions:
// docs/metrics.md. Pure functions over the trace's row-major columns
// (`[token][moe layer][slot]`, see shared/trace.ts); no Node, no DOM. Per-layer expert
// figures over the same columns (load, balance, specialisation) are in expert-stats.ts.

/**
 * The selection columns of a trace (or of any one of its batches) with their shape: the one
 * type every routing figure reads (here and in expert-stats.ts). Arrays may be longer than
 * count × L × K (the panel's store grows them geometrically); only that prefix is read.
 */
export interface RoutingColumns {
  /** Tokens. */
  count: number;
  /** MoE layers. */
  L: number;
  /** Selection slots per token and layer (k). */
  K: number;
  /** Experts per layer. */
  E: number;
  /** Selected expert ids, [token][moe layer][slot]. */
  experts: ArrayLike<number>;
  /** Their final gate weights; 0 = zero-gated (dropped by a policy, not active). */
  weights: ArrayLike<number>;
}

/** Just the two selection arrays, for the functions that take the shape as arguments (they also compare rows of different batches). */
export type SelectionArrays = Pick<RoutingColumns, "experts" | "weights">;

/**
 * Whether one slot is a selection (an active expert): a gate weight > 0 and an id in [0, E).
 * A zero-gated slot is not one. Gate weights are never negative (softmax or sigmoid gates),
 * so this is the server's `w ≠ 0` count of active experts too.
 */
export function isSelection(expert: number, weight: number, E = Infinity): boolean {
  return weight > 0 && expert >= 0 && expert < E;
}

const isActive = (c: SelectionArrays, at: number) => isSelection(c.experts[at], c.weights[at]);

/**
 * Routing shift between two slot rows of K slots (row `a` at offset `atA`, row `b` at
 * `atB`, possibly of different batches): 1 − Jaccard similarity of their active expert sets
 * (the selections, isSelection). 0 when both sets are empty.
 */
export function rowShift(a: SelectionArrays, atA: number, b: SelectionArrays, atB: number, K: number): number {
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
export function top1Slot(c: SelectionArrays, L: number, K: number, t: number, m: number): number {
  const at = (t * L + m) * K;
  let best = 0;
  for (let j = 1; j < K; j++) if (c.weights[at + j] > c.weights[at + best]) best = j;
  return at + best;
}

/** Routing shift of token t from token t−1 in MoE layer m (0 for the first token). */
export function routingShift(c: SelectionArrays, L: number, K: number, t: number, m: number): number {
  return t <= 0 ? 0 : rowShift(c, ((t - 1) * L + m) * K, c, (t * L + m) * K, K);
}

/** Routing shift of token t averaged over the MoE layers. */
export function meanRoutingShift(c: SelectionArrays, L: number, K: number, t: number): number {
  let s = 0;
  for (let m = 0; m < L; m++) s += routingShift(c, L, K, t, m);
  return L ? s / L : 0;
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
