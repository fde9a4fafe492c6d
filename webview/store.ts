// The panel's copy of each trace: the columns it draws (shared/protocol.ts PanelBatch), in
// typed arrays sized from the header's token count (grown only if more arrive), so
// ingesting a batch is a few memcpy's and never one object per token.
import { loadMatrix, tokenRangeMask } from "../shared/expert-stats";
import { fromHalves } from "../shared/half";
import { finiteMean, routingShift, top1Slot } from "../shared/metrics";
import { INT16_EXPERT_IDS_MAX, type DomainSegment, type PanelBatch, type TransitionMetrics } from "../shared/protocol";
import type { TraceHeader, TraceSummary } from "../shared/wire";

function grow<T extends Int16Array | Int32Array | Float32Array | Uint8Array>(a: T, need: number): T {
  if (a.length >= need) return a;
  const next = new (a.constructor as { new (n: number): T })(Math.max(need, a.length * 2));
  next.set(a);
  return next;
}

type Typed = Int16Array | Uint16Array | Int32Array | Float32Array | Uint8Array;
type TypedCtor<T extends Typed> = { new (a: ArrayLike<number> | ArrayBufferLike): T; from(a: ArrayLike<number>): T };

/**
 * A batch array as it arrived, as the typed array the store keeps. VS Code transfers typed
 * arrays as binary (for extensions whose engine is 1.57 or later, as this one); a message
 * from elsewhere (a test page, an older channel) may carry another element type, an
 * ArrayBuffer, a plain array or an index-keyed object, converted here once per batch.
 */
export function asTyped<T extends Typed>(ctor: TypedCtor<T>, v: unknown): T {
  if (v instanceof ctor) return v;
  // Another element type (or another realm's array): convert value by value.
  if (ArrayBuffer.isView(v)) return ctor.from(v as Typed);
  if (v instanceof ArrayBuffer) return new ctor(v);
  if (Array.isArray(v)) return ctor.from(v);
  if (v && typeof v === "object") return ctor.from(Object.values(v as Record<string, number>));
  return new ctor(0 as unknown as ArrayLike<number>);
}

export class PanelTrace {
  count = 0;
  tokenIds = new Int32Array(0);
  nll = new Float32Array(0);
  /** Expert ids, 16-bit when the model's ids fit (shared/protocol.ts PanelBatch). */
  experts: Int16Array | Int32Array = new Int32Array(0);
  weights = new Float32Array(0);
  entropy = new Float32Array(0);
  active = new Uint8Array(0);
  pieces: string[] = [];
  summary?: TraceSummary;
  error?: string;
  segments: DomainSegment[] = [];
  transitions: TransitionMetrics[] = [];
  readonly L: number;
  readonly K: number;
  readonly N: number;
  readonly E: number;

  constructor(
    readonly id: string,
    readonly label: string,
    readonly header: TraceHeader,
  ) {
    this.L = header.n_moe_layers;
    this.K = header.k;
    this.N = header.top_n;
    this.E = header.model.n_expert;
    const n = Math.max(0, header.n_tokens | 0);
    this.tokenIds = new Int32Array(n);
    this.nll = new Float32Array(n);
    this.experts = this.E <= INT16_EXPERT_IDS_MAX ? new Int16Array(n * this.L * this.K) : new Int32Array(n * this.L * this.K);
    this.weights = new Float32Array(n * this.L * this.K);
    this.entropy = new Float32Array(n * this.L);
    this.active = new Uint8Array(n * this.L);
  }

  ingest(raw: PanelBatch): void {
    const b: PanelBatch = {
      ...raw,
      tokenIds: asTyped(Int32Array, raw.tokenIds),
      nll: asTyped(Float32Array, raw.nll),
      experts: this.experts instanceof Int16Array ? asTyped(Int16Array, raw.experts) : asTyped(Int32Array, raw.experts),
      weightHalves: asTyped(Uint16Array, raw.weightHalves),
      entropy: asTyped(Float32Array, raw.entropy),
      active: asTyped(Uint8Array, raw.active),
    };
    const end = b.start + b.count;
    const { L, K } = this;
    this.tokenIds = grow(this.tokenIds, end);
    this.nll = grow(this.nll, end);
    this.experts = grow(this.experts, end * L * K);
    this.weights = grow(this.weights, end * L * K);
    this.entropy = grow(this.entropy, end * L);
    this.active = grow(this.active, end * L);
    this.tokenIds.set(b.tokenIds, b.start);
    this.nll.set(b.nll, b.start);
    this.experts.set(b.experts, b.start * L * K);
    fromHalves(b.weightHalves, this.weights, b.start * L * K);
    this.entropy.set(b.entropy, b.start * L);
    this.active.set(b.active, b.start * L);
    for (let i = 0; i < b.count; i++) this.pieces[b.start + i] = b.pieces[i];
    this.count = Math.max(this.count, end);
  }

  /** The selected expert with the largest final weight at (t, m). */
  top1(t: number, m: number): number {
    return this.experts[top1Slot(this, this.L, this.K, t, m)];
  }

  /** Final weight of expert e at (t, m); 0 when not selected. */
  weightOf(t: number, m: number, e: number): number {
    const at = (t * this.L + m) * this.K;
    for (let j = 0; j < this.K; j++) if (this.experts[at + j] === e) return this.weights[at + j];
    return 0;
  }

  /** Routing shift of t from t−1 in layer m (shared/metrics.ts). */
  shift(t: number, m: number): number {
    return routingShift(this, this.L, this.K, t, m);
  }

  avgActive(): number {
    let s = 0;
    const n = this.count * this.L;
    for (let i = 0; i < n; i++) s += this.active[i];
    return n ? s / n : 0;
  }

  meanNll(): number {
    return finiteMean(this.nll.subarray(0, this.count));
  }

  /** Expert usage [layer][expert] over tokens [from, to): each layer's load (shared/expert-stats.ts loadMatrix). */
  usage(from = 0, to = this.count): number[][] {
    const loads = loadMatrix(this, from <= 0 && to >= this.count ? undefined : tokenRangeMask(this.count, from, to));
    return Array.from({ length: this.L }, (_, m) => Array.from(loads.subarray(m * this.E, (m + 1) * this.E)));
  }
}
