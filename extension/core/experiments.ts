// The two published experiments, on the user's own model and text (sources and
// definitions: docs/metrics.md):
//   1. AMG sweep: thresholds × max_k (including max_k above the trained k) → the table of
//      “Adaptive Mixture of Experts Gate (AMG)”: Config | PPL | ±σ | Avg experts active,
//      with llama-perplexity's method.
//   2. The 2³ ablation of {β, Π, Ant} at labelled domain transitions → the table of
//      “Affinity is not enough”: per subset, metric mean ± std over documents, and Δ vs
//      Standard.
// Results are plain objects; CSV, JSON, Markdown and a standalone HTML report are written from them.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fitAntPredictor } from "./ant";
import { describePolicy, type Policy } from "../../shared/policy";
import { escapeHtml, renderReport, type ReportSection } from "./report";
import type { ModelInfo, PerplexityResult } from "../../shared/wire";
import type { ServerClient } from "./server-client";
import { describeSpeed, measurePolicySpeed, QUICK_SPEED_OPTIONS, skipNote, type SpeedOptions, type SpeedRow } from "./speed";
import type { Trace } from "../../shared/trace";
import {
  analyzeTransitions,
  changePointSegments,
  detectChangePoints,
  domainExperts,
  kCoverage,
  spansToSegments,
  type ChangePointOptions,
  type DomainExperts,
  type DomainSegment,
  type DomainSpan,
  type TransitionSummary,
} from "./transitions";

export type Progress = (message: string) => void;

// ---------------------------------------------------------------------------------------------
// AMG sweep

export interface SweepOptions {
  /** AMG thresholds τ; 1.0 is added when missing (it must reproduce the no-gating row). Default 0.5, 0.75, 0.9, 1.0. */
  thresholds?: number[];
  /** Expert slots to sweep; default [k, 2k] (capped at n_expert), k = the trained k. */
  maxK?: number[];
  /** Perplexity context; default: chosen so the text gives at least 4 chunks. */
  nCtx?: number;
  minK?: number;
  nBatch?: number;
  /** Measure each row's speed against the baseline row (core/speed.ts); default: quick settings. false: skip. */
  speed?: SpeedOptions | false;
  signal?: AbortSignal;
  onProgress?: Progress;
}

export interface SweepRow {
  /** "k8 baseline", "k8 + threshold 0.75", "k12 no gating", "k12 + threshold 0.90". */
  config: string;
  policy: Policy;
  /** Expert slots of the run (the loaded k). */
  k: number;
  threshold: number | null;
  ppl: number;
  pplErr: number;
  avgActive: number;
  nChunks: number;
  nCtx: number;
  /** llama-perplexity's final line. */
  printed: string;
  /** Measured against the sweep's first row, when asked. */
  speed?: SpeedRow;
}

export interface SweepResult {
  model: ModelInfo;
  trainedK: number;
  nCtx: number;
  tokens: number;
  rows: SweepRow[];
}

export const DEFAULT_THRESHOLDS = [0.5, 0.75, 0.9, 1.0];

/** Largest power of two ≤ tokens/minChunks and ≤ the training context (≥ 16), so the text gives at least `minChunks` chunks. */
export function chooseNCtx(tokens: number, nCtxTrain: number, minChunks = 4): number {
  const cap = Math.min(Math.floor(tokens / minChunks), nCtxTrain > 0 ? nCtxTrain : Infinity);
  if (cap < 16) throw new Error(`the text is too short for a perplexity sweep: ${tokens} tokens give fewer than ${minChunks} chunks of 16 tokens`);
  return 2 ** Math.floor(Math.log2(cap));
}

export function sweepPolicies(
  trainedK: number,
  thresholds: number[],
  maxKs: number[],
  minK?: number,
): Array<{ config: string; policy: Policy; threshold: number | null; maxK: number }> {
  const ts = [...new Set([...thresholds, 1.0])].sort((a, b) => a - b);
  const out: Array<{ config: string; policy: Policy; threshold: number | null; maxK: number }> = [];
  for (const K of [...new Set(maxKs)]) {
    const base: Policy = K === trainedK ? {} : { max_k: K };
    const cap = K < trainedK ? " (cap)" : "";
    out.push({ config: K === trainedK ? `k${K} baseline` : `k${K}${cap} no gating`, policy: base, threshold: null, maxK: K });
    for (const t of ts) {
      out.push({
        config: `k${K}${cap} + threshold ${t.toFixed(2)}`,
        policy: { ...base, amg: { threshold: t, ...(minK && minK > 1 ? { min_k: minK } : {}) } },
        threshold: t,
        maxK: K,
      });
    }
  }
  return out;
}

export async function runAmgSweep(client: ServerClient, text: string, opts: SweepOptions = {}): Promise<SweepResult> {
  const model = await client.modelInfo(opts.signal);
  const trainedK = model.n_expert_used_trained;
  const tokens = (await client.tokenize(text, opts.signal)).tokens.length;
  const nCtx = opts.nCtx ?? chooseNCtx(tokens, model.n_ctx_train);
  const maxKs = opts.maxK ?? [trainedK, Math.min(model.n_expert, 2 * trainedK)];
  for (const K of maxKs) if (!Number.isInteger(K) || K < 1 || K > model.n_expert) throw new Error(`max_k ${K} is outside 1…${model.n_expert}`);
  const rows: SweepRow[] = [];
  const plan = sweepPolicies(trainedK, opts.thresholds ?? DEFAULT_THRESHOLDS, maxKs, opts.minK);
  for (const [i, p] of plan.entries()) {
    opts.onProgress?.(`[${i + 1}/${plan.length}] ${p.config}`);
    const r: PerplexityResult = await client.perplexity({ text, n_ctx: nCtx, policy: p.policy, ...(opts.nBatch ? { n_batch: opts.nBatch } : {}) }, opts.signal);
    rows.push({
      config: p.config,
      policy: p.policy,
      k: r.k,
      threshold: p.threshold,
      ppl: r.ppl,
      pplErr: r.ppl_err,
      avgActive: r.avg_active_experts,
      nChunks: r.n_chunks,
      nCtx: r.n_ctx,
      printed: r.printed,
    });
  }
  if (opts.speed !== false) {
    const speed = await measurePolicySpeed(
      client,
      text,
      rows.map((r) => ({ spec: r.config, policy: r.policy })),
      opts.speed ?? QUICK_SPEED_OPTIONS,
      (done, total) => opts.onProgress?.(`speed ${done}/${total}`),
      opts.signal,
    );
    rows.forEach((r, i) => (r.speed = speed[i]));
  }
  return { model, trainedK, nCtx, tokens, rows };
}

/** The table of “Adaptive Mixture of Experts Gate (AMG)”: Config | PPL | ±σ | Avg experts active. */
export function sweepTable(r: SweepResult): { header: string[]; rows: string[][] } {
  const withSpeed = r.rows.some((x) => x.speed);
  const base = r.rows[0];
  return {
    header: ["Config", "PPL", "±σ", "Avg experts active", ...(withSpeed ? [`Speed and quality vs ${base.config}`] : [])],
    rows: r.rows.map((x) => [
      x.config,
      x.ppl.toFixed(4),
      `±${x.pplErr.toFixed(3)}`,
      `${x.avgActive.toFixed(2)}/${x.k}`,
      ...(withSpeed ? [x.speed ? describeSpeed(x.speed, { value: x.ppl, baseline: base.ppl }) : "–"] : []),
    ]),
  };
}

// ---------------------------------------------------------------------------------------------
// Ablation of {β, Π, Ant}

export interface AblationDoc {
  name: string;
  /** The text to trace (labels already removed). */
  text: string;
  /** Domain labels; absent or empty: change points of the Standard trace. */
  spans?: DomainSpan[];
}

export interface AblationOptions {
  beta?: number;
  betaForm?: "raw" | "scale_preserving";
  gamma?: number;
  piMomentum?: number;
  /** Calibration text for the Ant predictor (must not be evaluation text). Absent: use the predictor the server already has loaded. */
  calibrationText?: string;
  /** Where to write the fitted predictor (default: a temp file, never beside the model). */
  predictorOut?: string;
  /** β memory and ridge of the fit (default: the ablation's β, ridge 1). */
  fitBeta?: number;
  ridge?: number;
  changePoints?: ChangePointOptions;
  /** Trained router packs, one per subset (ablationPacks): each row routes with its pack and no
   *  post-hoc policy; no predictor or calibration is needed. The server's pack is put back after. */
  packs?: AblationPacks;
  /** Keep the traces of the first document (for the HTML report). Default true. */
  keepTraces?: boolean;
  signal?: AbortSignal;
  onProgress?: Progress;
}

export interface Subset {
  beta: boolean;
  pi: boolean;
  ant: boolean;
}

/** The 2³ subsets in the order of “Affinity is not enough”: Standard, singles, pairs, all three. */
export const ABLATION_SUBSETS: Subset[] = [
  { beta: false, pi: false, ant: false },
  { beta: true, pi: false, ant: false },
  { beta: false, pi: true, ant: false },
  { beta: false, pi: false, ant: true },
  { beta: true, pi: true, ant: false },
  { beta: true, pi: false, ant: true },
  { beta: false, pi: true, ant: true },
  { beta: true, pi: true, ant: true },
];

/** One trained pack per subset, in ABLATION_SUBSETS order (docs/router-packs.md). */
export type AblationPacks = Array<{ subset: Subset; path: string; name: string; description: string }>;

/** The pack name a subset's trained router pack carries: "standard", "beta", "pi", "ant", "beta+pi", … "beta+pi+ant". */
export function subsetPackName(s: Subset): string {
  return [s.beta ? "beta" : "", s.pi ? "pi" : "", s.ant ? "ant" : ""].filter(Boolean).join("+") || "standard";
}

/**
 * The eight packs of the ablation among a model's packs, matched by pack name (subsetPackName) and
 * checked against the mechanisms each declares; throws naming what is missing or inconsistent.
 */
export function ablationPacks(available: Array<{ path: string; name: string; mechanisms: string; description: string }>): AblationPacks {
  const missing: string[] = [];
  const packs: AblationPacks = [];
  for (const subset of ABLATION_SUBSETS) {
    const name = subsetPackName(subset);
    const p = available.find((x) => x.name === name);
    if (!p) {
      missing.push(name);
      continue;
    }
    const want = name === "standard" ? "" : name;
    if (p.mechanisms !== want) throw new Error(`router pack ${p.path} is named ${name} but declares mechanisms "${p.mechanisms}"`);
    packs.push({ subset, path: p.path, name, description: p.description });
  }
  if (missing.length)
    throw new Error(`the trained ablation needs one router pack per subset; missing: ${missing.join(", ")} (tools/train/README.md, "Router packs")`);
  return packs;
}

export function subsetName(s: Subset): string {
  const parts = [s.beta ? "β" : "", s.pi ? "Π" : "", s.ant ? "Ant" : ""].filter(Boolean);
  return parts.length ? parts.join(" + ") : "Standard";
}

export function subsetPolicy(s: Subset, o: Pick<AblationOptions, "beta" | "betaForm" | "gamma" | "piMomentum"> = {}): Policy {
  const p: Policy = {};
  if (s.beta) p.beta = { beta: o.beta ?? 0.9, ...(o.betaForm && o.betaForm !== "raw" ? { form: o.betaForm } : {}) };
  if (s.pi) p.pi = o.piMomentum !== undefined ? { momentum: o.piMomentum } : {};
  if (s.ant) p.ant = { gamma: o.gamma ?? 0.5 };
  return p;
}

/** One document's transition metrics under one subset. */
export interface DocMetrics extends TransitionSummary {
  doc: string;
  tokens: number;
}

export interface Stat {
  mean: number;
  /** Sample standard deviation over documents (0 for one document). */
  std: number;
  n: number;
}

export function stat(xs: number[]): Stat {
  const v = xs.filter(Number.isFinite);
  const n = v.length;
  if (!n) return { mean: NaN, std: NaN, n: 0 };
  const m = v.reduce((a, b) => a + b, 0) / n;
  const sd = n > 1 ? Math.sqrt(v.reduce((a, b) => a + (b - m) ** 2, 0) / (n - 1)) : 0;
  return { mean: m, std: sd, n };
}

export interface AblationRow {
  config: string;
  subset: Subset;
  policy: Policy;
  perDoc: DocMetrics[];
  /** Probability on the new domain's expert at the transition step. */
  prob: Stat;
  /** Paired per-document difference from Standard. */
  deltaProb: Stat;
  /** K99 by rank coverage, per document. */
  k99: Stat;
  /** K99 by rank coverage over the (transition, layer) cases of all documents together. */
  k99Pooled: number;
  /** K99 as the Affinity text defines it (log 0.01 / log(1 − P(correct))), per document. */
  k99Affinity: Stat;
  top1: Stat;
  bpcTransition: Stat;
  deltaBpc: Stat;
  nllTransition: Stat;
  nllInside: Stat;
  bpcInside: Stat;
}

export interface AblationResult {
  model: ModelInfo;
  settings: { beta: number; betaForm: "raw" | "scale_preserving"; gamma: number; piMomentum: number | null };
  /** The Ant predictor of the post-hoc rows; null when the rows are trained packs. */
  predictor: { path: string | null; calibrationTokens: number | null; source: "fitted" | "preloaded" } | null;
  /** The trained router pack of each row, or null when the rows are post-hoc policies on the model's routers. */
  packs: Array<{ config: string; name: string; path: string; description: string }> | null;
  docs: Array<{ name: string; tokens: number; transitions: number; labels: DomainSegment["source"] | "mixed" }>;
  domainExperts: DomainExperts;
  rows: AblationRow[];
  /** Traces of the first document under Standard and under β + Π + Ant (when kept). */
  traces: Array<{ label: string; trace: Trace }>;
}

function pairedDelta(rows: DocMetrics[], base: DocMetrics[], key: "meanProb" | "bpcTransition"): Stat {
  return stat(rows.map((r, i) => r[key] - base[i][key]));
}

export async function runAblation(client: ServerClient, docs: AblationDoc[], opts: AblationOptions = {}): Promise<AblationResult> {
  if (!docs.length) throw new Error("the ablation needs at least one labelled document");
  const log = opts.onProgress ?? (() => undefined);
  const info = await client.modelInfo(opts.signal);
  const E = info.n_expert;
  const settings = {
    beta: opts.beta ?? 0.9,
    betaForm: opts.betaForm ?? "raw",
    gamma: opts.gamma ?? 0.5,
    piMomentum: opts.piMomentum ?? null,
  } as AblationResult["settings"];
  const policyOpts = { beta: settings.beta, betaForm: settings.betaForm, gamma: settings.gamma, piMomentum: opts.piMomentum };

  // Post hoc, Ant needs a fitted predictor; it stays loaded for all eight subsets, so Π's prediction
  // error (native/API.md: Ant's forecast when a predictor is loaded) is the same in every Π row.
  // Trained packs carry their own mechanisms and need none.
  let predictor: AblationResult["predictor"] = null;
  const packs = opts.packs;
  if (packs) {
    if (packs.length !== ABLATION_SUBSETS.length) throw new Error(`the trained ablation needs ${ABLATION_SUBSETS.length} router packs, got ${packs.length}`);
  } else if (opts.calibrationText !== undefined) {
    const out = opts.predictorOut ?? path.join(fs.mkdtempSync(path.join(os.tmpdir(), "moe-lens-ant-")), "ablation.moe-ant.json");
    log(`fitting the Ant predictor on the calibration text → ${out}`);
    const written = await fitAntPredictor(client, opts.calibrationText, info.path, {
      beta: opts.fitBeta ?? settings.beta,
      ridge: opts.ridge ?? 1.0,
      outPath: out,
      signal: opts.signal,
    });
    const fit = JSON.parse(fs.readFileSync(written, "utf8")) as { calibration?: { tokens?: number } };
    predictor = { path: written, calibrationTokens: fit.calibration?.tokens ?? null, source: "fitted" };
  } else if (info.predictor_loaded) {
    predictor = { path: null, calibrationTokens: null, source: "preloaded" };
  } else {
    throw new Error("the Ant rows need a fitted predictor: give calibration text (not the evaluation text), or start the server with a fitted predictor");
  }

  const traceOf = (doc: AblationDoc, policy: Policy) => client.trace({ text: doc.text, policy, top_n: E }, {}, opts.signal);
  const packFor = (subset: Subset) => packs?.find((p) => p.subset.beta === subset.beta && p.subset.pi === subset.pi && p.subset.ant === subset.ant);
  const routeWith = async (subset: Subset) => {
    const pack = packFor(subset);
    if (pack) {
      log(`router pack ${pack.name} (${pack.path})`);
      await client.loadRouterPack(pack.path, opts.signal);
    }
  };
  const previousPack = info.router_pack?.path ?? null;
  try {
    const keep = opts.keepTraces ?? true;
    const traces: AblationResult["traces"] = [];

    // Standard first: it fixes the segments (change points when unlabelled) and the domain experts.
    const std = ABLATION_SUBSETS[0];
    await routeWith(std);
    const baseTraces: Trace[] = [];
    const segments: DomainSegment[][] = [];
    for (const [i, doc] of docs.entries()) {
      log(`[Standard] ${doc.name} (${i + 1}/${docs.length})`);
      const t = await traceOf(doc, {});
      baseTraces.push(t);
      segments.push(doc.spans?.length ? spansToSegments(t, doc.spans) : changePointSegments(t.columns.count, detectChangePoints(t, opts.changePoints).points));
      if (keep && i === 0) traces.push({ label: `${doc.name}: Standard`, trace: t });
    }
    const experts = domainExperts(baseTraces.map((trace, i) => ({ trace, segments: segments[i] })));
    const metricsOf = (trace: Trace, i: number): DocMetrics => ({
      doc: docs[i].name,
      tokens: trace.columns.count,
      ...analyzeTransitions(trace, segments[i], { experts, text: docs[i].text }).summary,
    });
    const ranksOf = (trace: Trace, i: number) =>
      analyzeTransitions(trace, segments[i], { experts, text: docs[i].text }).transitions.flatMap((x) => x.rankNewExpert);

    const perSubset: Array<{ subset: Subset; policy: Policy; perDoc: DocMetrics[]; ranks: number[] }> = [];
    perSubset.push({ subset: std, policy: {}, perDoc: baseTraces.map(metricsOf), ranks: baseTraces.flatMap(ranksOf) });
    baseTraces.length = keep ? 1 : 0; // free the rest
    for (const subset of ABLATION_SUBSETS.slice(1)) {
      // A trained pack routes by itself; post hoc, the subset's policy acts on the model's routers.
      const policy = packs ? {} : subsetPolicy(subset, policyOpts);
      await routeWith(subset);
      const perDoc: DocMetrics[] = [];
      const ranks: number[] = [];
      for (const [i, doc] of docs.entries()) {
        log(`[${subsetName(subset)}] ${doc.name} (${i + 1}/${docs.length})`);
        const t = await traceOf(doc, policy);
        perDoc.push(metricsOf(t, i));
        ranks.push(...ranksOf(t, i));
        if (keep && i === 0 && subset.beta && subset.pi && subset.ant) traces.push({ label: `${doc.name}: β + Π + Ant`, trace: t });
      }
      perSubset.push({ subset, policy, perDoc, ranks });
    }
    const base = perSubset[0].perDoc;
    const rows: AblationRow[] = perSubset.map(({ subset, policy, perDoc, ranks }) => ({
      config: subsetName(subset),
      subset,
      policy,
      perDoc,
      prob: stat(perDoc.map((d) => d.meanProb)),
      deltaProb: pairedDelta(perDoc, base, "meanProb"),
      k99: stat(perDoc.map((d) => d.k99)),
      k99Pooled: kCoverage(ranks),
      k99Affinity: stat(perDoc.map((d) => d.k99Affinity)),
      top1: stat(perDoc.map((d) => d.top1)),
      bpcTransition: stat(perDoc.map((d) => d.bpcTransition)),
      deltaBpc: pairedDelta(perDoc, base, "bpcTransition"),
      nllTransition: stat(perDoc.map((d) => d.nllTransition)),
      nllInside: stat(perDoc.map((d) => d.nllInside)),
      bpcInside: stat(perDoc.map((d) => d.bpcInside)),
    }));
    return {
      model: info,
      settings,
      predictor,
      packs: packs ? packs.map((p) => ({ config: subsetName(p.subset), name: p.name, path: p.path, description: p.description })) : null,
      docs: docs.map((d, i) => ({
        name: d.name,
        tokens: base[i].tokens,
        transitions: base[i].transitions,
        labels: segments[i].length ? (segments[i].every((s) => s.source === segments[i][0].source) ? segments[i][0].source : "mixed") : "change-point",
      })),
      domainExperts: experts,
      rows,
      traces,
    };
  } finally {
    // Put back the pack the server routed with before (or the model's own routers).
    if (packs) await client.loadRouterPack(previousPack).catch(() => undefined);
  }
}

/** "13 documents on demo.gguf (qwen3moe, 8 experts, k=2); Ant fitted on sample.md": the table's subtitle (CLI and panel). */
export function ablationSubtitle(docs: number, r: AblationResult, calibration?: string): string {
  return `${docs} document${docs === 1 ? "" : "s"} on ${path.basename(r.model.path)} (${r.model.architecture}, ${r.model.n_expert} experts, k=${r.model.n_expert_used_trained})${r.packs ? "; trained router packs" : calibration ? `; Ant fitted on ${path.basename(calibration)}` : ""}`;
}

const pm = (s: Stat, digits: number, sign = false) =>
  !Number.isFinite(s.mean) ? "–" : `${sign && s.mean >= 0 ? "+" : ""}${s.mean.toFixed(digits)} ± ${s.std.toFixed(digits)}`;

/** The table of “Affinity is not enough”: one row per subset, mean ± std over documents, Δ vs Standard. */
export function ablationTable(r: AblationResult): { header: string[]; rows: string[][] } {
  return {
    header: [
      "Gate",
      "β",
      "Π",
      "Ant",
      "P(correct expert)",
      "Δ vs Standard",
      "top-1 share",
      "K99 (rank)",
      "K99 (rank) pooled",
      "K99 (Affinity)",
      "BPC @ transition",
      "Δ BPC",
      "NLL @ transition",
      "NLL inside",
    ],
    rows: r.rows.map((x) => [
      x.config,
      x.subset.beta ? "✓" : "",
      x.subset.pi ? "✓" : "",
      x.subset.ant ? "✓" : "",
      pm(x.prob, 3),
      x.config === "Standard" ? "–" : pm(x.deltaProb, 3, true),
      pm(x.top1, 3),
      pm(x.k99, 1),
      Number.isFinite(x.k99Pooled) ? String(x.k99Pooled) : "–",
      pm(x.k99Affinity, 1),
      pm(x.bpcTransition, 2),
      x.config === "Standard" ? "–" : pm(x.deltaBpc, 2, true),
      pm(x.nllTransition, 3),
      pm(x.nllInside, 3),
    ]),
  };
}

// ---------------------------------------------------------------------------------------------
// Writers

const csvCell = (v: unknown) => {
  const s = v === null || v === undefined || (typeof v === "number" && !Number.isFinite(v)) ? "" : String(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
};
const csv = (header: string[], rows: unknown[][]) => [header, ...rows].map((r) => r.map(csvCell).join(",")).join("\n") + "\n";

export function sweepToCsv(r: SweepResult): string {
  return csv(
    [
      "config",
      "max_k",
      "k",
      "threshold",
      "ppl",
      "ppl_err",
      "avg_active",
      "n_chunks",
      "n_ctx",
      "policy",
      "prefill_tps",
      "decode_tps",
      "prefill_ratio",
      "decode_ratio",
    ],
    r.rows.map((x) => [
      x.config,
      x.policy.max_k ?? r.trainedK,
      x.k,
      x.threshold,
      x.ppl,
      x.pplErr,
      x.avgActive,
      x.nChunks,
      x.nCtx,
      describePolicy(x.policy),
      x.speed?.prefill_tps ?? null,
      x.speed?.decode_tps ?? null,
      x.speed?.prefill_ratio ?? null,
      x.speed?.decode_ratio ?? null,
    ]),
  );
}

export function ablationToCsv(r: AblationResult): string {
  const stats = ["prob", "deltaProb", "top1", "k99", "k99Affinity", "bpcTransition", "deltaBpc", "nllTransition", "nllInside", "bpcInside"] as const;
  const snake = (s: string) => s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
  return csv(
    ["config", "beta", "pi", "ant", ...stats.flatMap((s) => [`${snake(s)}_mean`, `${snake(s)}_std`]), "k99_pooled", "n_docs", "policy", "router_pack"],
    r.rows.map((x) => [
      x.config,
      x.subset.beta ? 1 : 0,
      x.subset.pi ? 1 : 0,
      x.subset.ant ? 1 : 0,
      ...stats.flatMap((s) => [x[s].mean, x[s].std]),
      x.k99Pooled,
      x.prob.n,
      describePolicy(x.policy),
      r.packs?.find((p) => p.config === x.config)?.name ?? "",
    ]),
  );
}

/** JSON with NaN written as null. Schema "moe-lens-experiment" version 1: {schema, version, kind, ...result}. */
export function experimentToJson(kind: "amg-sweep" | "ablation", r: SweepResult | AblationResult): string {
  const body = kind === "ablation" ? { ...(r as AblationResult), traces: undefined } : r;
  return JSON.stringify({ schema: "moe-lens-experiment", version: 1, kind, ...body }, (_k, v) => (typeof v === "number" && !Number.isFinite(v) ? null : v), 1);
}

export function markdownTable(t: { header: string[]; rows: string[][] }): string {
  const esc = (s: string) => s.replace(/\|/g, "\\|");
  return (
    [`| ${t.header.map(esc).join(" | ")} |`, `|${t.header.map(() => "---").join("|")}|`, ...t.rows.map((r) => `| ${r.map(esc).join(" | ")} |`)].join("\n") +
    "\n"
  );
}

/** A horizontal bar chart (inline SVG, no scripts) with ± error bars. */
export function barChartSvg(
  title: string,
  items: Array<{ label: string; value: number; err?: number }>,
  opts: { digits?: number; from?: number } = {},
): string {
  const ok = items.filter((i) => Number.isFinite(i.value));
  const hi = Math.max(...ok.map((i) => i.value + (Number.isFinite(i.err) ? i.err! : 0)), 1e-9);
  const lo = opts.from ?? Math.min(0, ...ok.map((i) => i.value - (Number.isFinite(i.err) ? i.err! : 0)));
  const left = 190,
    width = 360,
    bh = 18,
    gap = 6,
    top = 24;
  const x = (v: number) => left + ((v - lo) / (hi - lo || 1)) * width;
  const bars = items
    .map((it, i) => {
      const y = top + i * (bh + gap);
      if (!Number.isFinite(it.value))
        return `<text x="${left}" y="${y + 13}" font-size="11">–</text><text x="0" y="${y + 13}" font-size="11">${escapeHtml(it.label)}</text>`;
      const e = Number.isFinite(it.err) ? it.err! : 0;
      return (
        `<text x="0" y="${y + 13}" font-size="11">${escapeHtml(it.label)}</text>` +
        `<rect x="${x(lo)}" y="${y}" width="${Math.max(0, x(it.value) - x(lo))}" height="${bh}" fill="#4e79a7"><title>${escapeHtml(it.label)}: ${it.value.toFixed(opts.digits ?? 3)} ± ${e.toFixed(opts.digits ?? 3)}</title></rect>` +
        (e > 0 ? `<line x1="${x(it.value - e)}" x2="${x(it.value + e)}" y1="${y + bh / 2}" y2="${y + bh / 2}" stroke="#222"/>` : "") +
        `<text x="${x(it.value + e) + 4}" y="${y + 13}" font-size="11">${it.value.toFixed(opts.digits ?? 3)}</text>`
      );
    })
    .join("");
  const h = top + items.length * (bh + gap);
  return `<figure><svg xmlns="http://www.w3.org/2000/svg" width="${left + width + 80}" height="${h}" role="img" aria-label="${escapeHtml(title)}"><text x="0" y="14" font-size="12" font-weight="bold">${escapeHtml(title)}</text>${bars}</svg></figure>`;
}

function section(title: string, note: string, t: { header: string[]; rows: string[][] }): ReportSection {
  return {
    title,
    note,
    columns: t.header.slice(1),
    rows: t.rows.map((r) => ({ label: r[0], cells: Object.fromEntries(t.header.slice(1).map((h, i) => [h, r[i + 1]])) })),
  };
}

export function sweepNote(r: SweepResult): string {
  return `PPL by llama-perplexity's method (n_ctx = ${r.nCtx}, ${r.rows[0]?.nChunks ?? 0} chunks, ${r.tokens} tokens), ± its standard error. AMG keeps the shortest prefix of the selected experts whose cumulative weight share reaches the threshold; rows with k above the trained k (${r.trainedK}) reload the model with ${r.model.architecture}.expert_used_count overridden. ${skipNote(r.model.skip_supported)}${r.rows.some((x) => x.speed) ? ` Speed: prefill and batch-1 decode timed by the server, medians of ${r.rows[0].speed?.reps ?? 0} alternating rounds, ratios to the first row (moe-lens speed measures at length).` : ""}`;
}

export function ablationNote(r: AblationResult): string {
  const n = r.rows[0]?.prob.n ?? 0;
  const common = `Mean ± sample std over ${n} document${n === 1 ? "" : "s"} (${r.docs.reduce((s, d) => s + d.transitions, 0)} transitions). P(correct expert): router probability at the transition step (last old-domain token) on the new domain's expert, per MoE layer; domain experts from the Standard traces (largest usage difference). K99 (rank): experts needed so the correct one is in the top-K in 99% of (transition, layer) cases (MoE Lens's definition). K99 (Affinity): log 0.01 / log(1 − P(correct)), the Affinity text's definition. BPC = NLL / ln 2 / characters of the predicted token.`;
  if (r.packs)
    return `${common} Each row routes with its own trained router pack (${r.packs.map((p) => p.name).join(", ")}: router-only fine-tunes with the mechanisms named, docs/router-packs.md); no post-hoc policy is applied.`;
  return `${common} β = ${r.settings.beta} (${r.settings.betaForm === "raw" ? "raw membrane U = βU + z" : "scale-preserving U = βU + (1-β)z"}), Ant γ = ${r.settings.gamma}, Π momentum ${r.settings.piMomentum ?? "0.95 (server default)"}; the Ant predictor (${r.predictor?.source ?? "none"}${r.predictor?.calibrationTokens ? `, ${r.predictor.calibrationTokens} calibration tokens` : ""}) stays loaded for every row, so Π's prediction error is Ant's forecast in all Π rows. All policies are applied post hoc to the frozen router.`;
}

export function renderExperimentReport(opts: { title: string; subtitle: string; sweep?: SweepResult; ablation?: AblationResult }): string {
  const sections: ReportSection[] = [];
  const charts: string[] = [];
  if (opts.sweep) {
    sections.push(section("AMG sweep", sweepNote(opts.sweep), sweepTable(opts.sweep)));
    charts.push(
      barChartSvg(
        "Perplexity ± σ",
        opts.sweep.rows.map((x) => ({ label: x.config, value: x.ppl, err: x.pplErr })),
        { digits: 3, from: 0 },
      ),
    );
    charts.push(
      barChartSvg(
        "Average experts active",
        opts.sweep.rows.map((x) => ({ label: x.config, value: x.avgActive })),
        { digits: 2, from: 0 },
      ),
    );
  }
  if (opts.ablation) {
    sections.push(section("Ablation of {β, Π, Ant} at domain transitions", ablationNote(opts.ablation), ablationTable(opts.ablation)));
    charts.push(
      barChartSvg(
        "P(correct expert) at the transition step, ± std over documents",
        opts.ablation.rows.map((x) => ({ label: x.config, value: x.prob.mean, err: x.prob.std })),
        { from: 0 },
      ),
    );
    charts.push(
      barChartSvg(
        "BPC at the transition step, ± std over documents",
        opts.ablation.rows.map((x) => ({ label: x.config, value: x.bpcTransition.mean, err: x.bpcTransition.std })),
        { digits: 2, from: 0 },
      ),
    );
  }
  const html = renderReport({ title: opts.title, subtitle: opts.subtitle, sections, traces: opts.ablation?.traces ?? [] });
  const chartHtml = `<h2>Charts</h2>\n${charts.join("\n")}\n`;
  const at = html.indexOf("<h2>Routing heatmaps");
  return at >= 0 ? html.slice(0, at) + chartHtml + html.slice(at) : html.replace("</body>", `${chartHtml}</body>`);
}
