// Gating policies as the server understands them (see native/API.md, "Policy object").
// Every field is optional; an absent field means that mechanism is off. With every field
// off the server's numbers are bit-identical to unmodified llama.cpp. The key lists are the
// wire contract of the policy object (see shared/wire.ts): the server echoes the policy it
// applied, normalised, in every trace header and perplexity result.

import type { ListsAllKeys } from "./wire";

/** AMG: cumulative-threshold zero-gating after selection (“Adaptive Mixture of Experts Gate (AMG)”, docs/metrics.md#sources). */
export interface AmgPolicy {
  /** Keep the shortest prefix whose cumulative share of the mass reaches this (0 < τ ≤ 1). */
  threshold: number;
  /** Never keep fewer than this many experts (≥ 1). */
  min_k?: number;
  /** "selected": share of the selected experts' mass (as in AMG); "full": share of the full router distribution (Top-P routing). */
  mode?: "selected" | "full";
}

/** β: LIF membrane potential over router logits (“Affinity is not enough”, docs/metrics.md#sources). */
export interface BetaPolicy {
  beta: number;
  /** Optional clamp U ← min(U, θ); the server echoes null for none. */
  theta?: number | null;
  /** "raw": U = βU + z; "scale_preserving": U = βU + (1-β)z. */
  form?: "raw" | "scale_preserving";
  /** Route on (1-α)·z + α·U; 1 = membrane only. */
  mix?: number;
}

/** Π: precision weighting of router logits by inverse variance of a prediction error. */
export interface PiPolicy {
  momentum?: number;
  eps?: number;
}

/** Ant: anticipatory routing with a fitted per-layer predictor (needs a loaded fit). */
export interface AntPolicy {
  gamma: number;
}

export interface Policy {
  amg?: AmgPolicy;
  /** Expert slots. Below the model's k: a cap applied with AMG zero-gating. Above the trained k: the server reloads the model with `<arch>.expert_used_count` overridden. */
  max_k?: number;
  beta?: BetaPolicy;
  pi?: PiPolicy;
  ant?: AntPolicy;
  /** [layer, expert] pairs whose selection logit becomes -inf. */
  disable?: Array<[number, number]>;
  /** [layer, expert, bias] triples added to the selection logit. */
  boost?: Array<[number, number, number]>;
  /** Dropped slots (AMG, the max_k cap) do no expert work where the server supports it (CPU); default true. false: zero-gating only. */
  skip?: boolean;
}

export const POLICY_KEYS = ["amg", "max_k", "beta", "pi", "ant", "disable", "boost", "skip"] as const satisfies ReadonlyArray<keyof Policy>;
const _policyKeys: ListsAllKeys<Policy, typeof POLICY_KEYS> = true;
export const AMG_KEYS = ["threshold", "min_k", "mode"] as const satisfies ReadonlyArray<keyof AmgPolicy>;
const _amgKeys: ListsAllKeys<AmgPolicy, typeof AMG_KEYS> = true;
export const BETA_KEYS = ["beta", "theta", "form", "mix"] as const satisfies ReadonlyArray<keyof BetaPolicy>;
const _betaKeys: ListsAllKeys<BetaPolicy, typeof BETA_KEYS> = true;
export const PI_KEYS = ["momentum", "eps"] as const satisfies ReadonlyArray<keyof PiPolicy>;
const _piKeys: ListsAllKeys<PiPolicy, typeof PI_KEYS> = true;
export const ANT_KEYS = ["gamma"] as const satisfies ReadonlyArray<keyof AntPolicy>;
const _antKeys: ListsAllKeys<AntPolicy, typeof ANT_KEYS> = true;

/** A policy number as typed: the server echoes policies in float32 (0.9 comes back as 0.8999999761581421). */
export function policyNumber(x: number): string {
  return String(Number(x.toPrecision(6)));
}

/** Short label: "baseline", "AMG τ=0.5", "k=12 + AMG τ=0.9", "β=0.9 + Ant γ=0.5". */
export function describePolicy(p: Policy): string {
  const n = policyNumber;
  const parts: string[] = [];
  if (p.max_k !== undefined) parts.push(`k=${p.max_k}`);
  if (p.amg)
    parts.push(`AMG τ=${n(p.amg.threshold)}${p.amg.min_k && p.amg.min_k > 1 ? ` min_k=${p.amg.min_k}` : ""}${p.amg.mode === "full" ? " (top-p)" : ""}`);
  if (p.beta)
    parts.push(
      `β=${n(p.beta.beta)}${p.beta.form === "scale_preserving" ? " (scale-preserving)" : ""}${p.beta.mix !== undefined && p.beta.mix !== 1 ? ` mix=${n(p.beta.mix)}` : ""}`,
    );
  if (p.pi) parts.push("Π");
  if (p.ant) parts.push(`Ant γ=${n(p.ant.gamma)}`);
  if (p.disable?.length) parts.push(`disable ${p.disable.map(([l, e]) => `${l}:${e}`).join(",")}`);
  if (p.boost?.length) parts.push(`boost ${p.boost.map(([l, e, b]) => `${l}:${e}:${n(b)}`).join(",")}`);
  const label = parts.length ? parts.join(" + ") : "baseline";
  return p.skip === false ? `${label} (no skip)` : label;
}
