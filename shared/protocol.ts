// The one message protocol between the extension host and the routing panel webview.
// Both sides import these types. Trace data crosses as typed arrays inside `PanelBatch`
// (postMessage structured-clones them as binary, never as one JSON object per token).

import type { BalanceFigures, ExpertForClass } from "./expert-stats";
import { toHalves } from "./half";
import type { Policy } from "./policy";
import type { TraceBatch } from "./trace";
import type { TraceHeader, TraceSummary } from "./wire";

/** A labelled span of tokens (from labels, code fences, or change points). */
export interface DomainSegment {
  /** First token index (inclusive) and end (exclusive). */
  start: number;
  end: number;
  domain: string;
  source: "label" | "fence" | "language" | "change-point";
}

/** Metrics at one domain transition (definitions: docs/metrics.md, "Domain transitions"). */
export interface TransitionMetrics {
  /** Token index of the transition step: its input is the old domain, the next token the new one. */
  token: number;
  from: string;
  to: string;
  /** Per MoE layer: probability the router puts on the new domain's expert, its rank (1 = top), K99 over the run. */
  probNewExpert: number[];
  rankNewExpert: number[];
  nll: number;
}

/** The columns of a trace batch the panel draws, as the host has them. */
export type PanelColumns = Pick<TraceBatch, "start" | "count" | "tokenIds" | "pieces" | "nll" | "experts" | "weights" | "entropy" | "active">;

/**
 * The columns of a trace batch the panel draws, as they travel. The rest stays with the
 * host: byte ranges, top-N and full router distributions, expert norms (at 48 layers × 128
 * experts the router distributions are most of a trace); the panel asks for one cell's with
 * `routerTop`. The two per-slot columns travel narrowed, because each message is copied a
 * few times in the workbench and those copies stay in the renderer until its next full
 * garbage collection: expert ids as 16-bit integers when the model has at most 32,767
 * experts (−1 still fits), gate weights as IEEE halves (shared/half.ts; a kept expert's
 * weight stays non-zero). The panel widens the weights to float32 as it stores them.
 */
export interface PanelBatch extends Omit<PanelColumns, "experts" | "weights"> {
  experts: Int16Array | Int32Array;
  /** Gate weights as half-precision bits, [count][n_moe_layers][k]. */
  weightHalves: Uint16Array;
}

/** Expert ids fit in an Int16Array for this many experts or fewer. */
export const INT16_EXPERT_IDS_MAX = 32767;

/** A batch's panel columns for a model of `nExpert` experts (arrays shared, not copied, except the narrowed ones). */
export function panelBatch(b: PanelColumns, nExpert: number): PanelBatch {
  const { start, count, tokenIds, pieces, nll, entropy, active } = b;
  const experts = nExpert <= INT16_EXPERT_IDS_MAX ? Int16Array.from(b.experts) : b.experts;
  return { start, count, tokenIds, pieces, nll, experts, weightHalves: toHalves(b.weights), entropy, active };
}

/** Host → webview. */
export type HostMessage =
  | { type: "traceStart"; traceId: string; label: string; header: TraceHeader }
  | { type: "traceBatch"; traceId: string; batch: PanelBatch }
  /** The answer to a `routerTop` request: the recorded top router probabilities of one cell, highest first (empty when none were recorded). */
  | { type: "routerTop"; traceId: string; token: number; layer: number; ids: number[]; probs: number[] }
  | { type: "traceEnd"; traceId: string; summary: TraceSummary }
  | { type: "traceError"; traceId: string; message: string }
  | { type: "segments"; traceId: string; segments: DomainSegment[]; transitions: TransitionMetrics[] }
  /** Show two finished traces side by side (same text, two policies). */
  | { type: "compare"; leftTraceId: string; rightTraceId: string }
  /** Measured speed of the compared policies (right against left), shown under the compare table. */
  | { type: "compareSpeed"; leftTraceId: string; rightTraceId: string; text: string }
  /** The policy new traces use, after every change (the panel's controls show it); the model's trained k and expert count (0 before a model is loaded). */
  | {
      type: "policy";
      policy: Policy;
      trainedK: number;
      maxK: number;
      antAvailable: boolean;
      /** The router packs kept beside the model (docs/router-packs.md) and the one in use (its path), or null for the model's own routers. */
      routerPacks: RouterPackChoice[];
      routerPack: string | null;
      /** The model the server runs now (absent or null while none is ready): traces made with another are marked stale. */
      modelPath?: string | null;
    }
  | { type: "highlightToken"; traceId: string; token: number }
  /** The trace history of the document the panel shows (after every change to it): newest last; `note` says what the memory cap evicted. */
  | { type: "history"; document: string; entries: TraceHistoryEntry[]; usedBytes: number; capBytes: number; note?: string }
  /** A finished experiment (AMG sweep or {β, Π, Ant} ablation) as a table: the CLI's table, cells already formatted. */
  | { type: "experiment"; kind: "sweep" | "ablation"; title: string; columns: string[]; rows: string[][]; note?: string }
  /** A finished Build Expert Atlas for Folder… (and on every panel reload after it): the atlas's per-layer figures. */
  | { type: "atlas"; atlas: AtlasView }
  /** Prune Experts… preview: each MoE layer's experts scored by a saliency criterion, and those a prune keeps. */
  | { type: "saliency"; title: string; criterion: SaliencyCriterion; layers: LayerSaliencyView[]; note: string };

/**
 * The expert atlas of a folder as the panel shows it: per-layer figures only (MI, balance,
 * each class's top experts by lift), never the L × classes × E counts, so it stays a few
 * kB at 48 layers × 128 experts. Built by atlasView (extension/core/atlas.ts).
 */
export interface AtlasView {
  /** What was traced: the folder, how classes were chosen, the policy. */
  title: string;
  documents: number;
  tokens: number;
  /** MoE layers, experts per token, experts per layer. */
  L: number;
  K: number;
  E: number;
  classes: string[];
  /** Tokens of each class (in `classes` order). */
  classTokens: number[];
  /** How many experts per class each layer lists at most. */
  topN: number;
  /** One per MoE layer, index = MoE layer index. */
  layers: AtlasLayerView[];
}

export interface AtlasLayerView {
  /** Mutual information between class and expert in this layer, bits. */
  miBits: number;
  balance: BalanceFigures;
  /** Per class (in `classes` order), its top experts by lift with their selections. */
  top: ExpertForClass[][];
}

/** One trace of a document's history, as the panel lists it. */
export interface TraceHistoryEntry {
  traceId: string;
  label: string;
  tokens: number;
  state: "streaming" | "done" | "error" | "cancelled";
  /** The trace the editor and panel show for this document now. */
  active: boolean;
  /** False when the document changed since (the trace was cut or is for an older version). */
  current: boolean;
  bytes: number;
  /** Milliseconds since the epoch. */
  createdAt: number;
}

/** What the saliency chart ranks experts by (README, "Pruning experts"). */
/** A router pack the panel offers: what the pack says about itself. */
export interface RouterPackChoice {
  name: string;
  path: string;
  /** "+"-joined trained mechanisms ("beta+ant"), "" for routers only. */
  mechanisms: string;
  description: string;
}

export type SaliencyCriterion = "reap" | "weight" | "frequency";

export interface LayerSaliencyView {
  /** Model layer index (blk.N). */
  layer: number;
  /** One score per expert id, by the chart's criterion. */
  scores: number[];
  /** Expert ids the prune keeps (the rest are removed). */
  kept: number[];
}

/** Webview → host. */
export type WebviewMessage =
  | { type: "ready" }
  /** User changed a control: host re-traces with this policy. */
  | { type: "applyPolicy"; policy: Policy }
  /** Route with one of the offered router packs (its path), or null for the model's own routers. */
  | { type: "selectRouterPack"; path: string | null }
  | { type: "revealToken"; traceId: string; token: number }
  /** The recorded top router probabilities of one cell (token, MoE layer index) for the details box. */
  | { type: "routerTop"; traceId: string; token: number; layer: number }
  /** Show this trace of the history (it becomes its document's active trace). */
  | { type: "selectTrace"; traceId: string }
  /** Drop this trace from the history. */
  | { type: "removeTrace"; traceId: string }
  | { type: "requestCompare"; left: Policy; right: Policy }
  /** The user pressed "Export…" under an experiment table: host offers CSV / JSON / HTML. */
  | { type: "exportExperiment" }
  /** The user pressed "Export…" under the saliency chart: host saves the saliency as JSON. */
  | { type: "exportSaliency" };
