// Speed of gating policies, measured side by side: every repetition runs each policy once in
// turn, forwards then backwards on the next round (so a noisy machine slows them alike, and no
// policy always runs right after the baseline), the server times prefill and decode itself
// (/v1/speed), and each policy's rate is the median of its repetitions. Its ratio to the first
// policy, the baseline, is the median of the per-round ratios: a round's policies ran within
// seconds of each other, so drift between rounds cancels out of them.
import { describePolicy, type Policy } from "../../shared/policy";
import type { SpeedResult } from "../../shared/wire";
import { parsePolicySpec, validatePolicy } from "./policy-parse";
import type { ServerClient } from "./server-client";

export interface SpeedOptions {
  /** Timed repetitions per policy (after one untimed warm-up round). */
  reps: number;
  /** Tokens generated one at a time for the decode rate. */
  nDecode: number;
  /** Tokens of the text before decoding starts. */
  nPrompt: number;
  /** Tokens of the text evaluated for the prefill rate (undefined: all). */
  nPrefill?: number;
}

export interface SpeedRow {
  spec: string;
  label: string;
  policy: Policy;
  prefill_tps: number;
  decode_tps: number;
  prefill_ratio: number;
  decode_ratio: number;
  avg_active_experts: number;
  k: number;
  skip: boolean;
  reps: number;
}

export const DEFAULT_SPEED_OPTIONS: SpeedOptions = { reps: 3, nDecode: 64, nPrompt: 32 };

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** The specs to measure, the baseline first (added when missing). */
export function speedSpecs(specs: string[]): Array<{ spec: string; policy: Policy }> {
  const parsed = specs.map((spec) => ({ spec, policy: validatePolicy(parsePolicySpec(spec)) }));
  if (!parsed.length || describePolicy(parsed[0].policy) !== "baseline") parsed.unshift({ spec: "baseline", policy: {} });
  return parsed;
}

/**
 * Quick settings for a speed column beside other results (compare, sweep, demo): 3 timed rounds,
 * a 512-token prefill, 32 decoded tokens. Three, not two: a median of two is their mean, so one
 * disturbed round (a 32-token decode on the demo model takes ~15 ms) showed as a 16× "speed-up".
 */
export const QUICK_SPEED_OPTIONS: SpeedOptions = { reps: 3, nDecode: 32, nPrompt: 32, nPrefill: 512 };

export async function measureSpeed(
  client: ServerClient,
  text: string,
  specs: string[],
  options: SpeedOptions = DEFAULT_SPEED_OPTIONS,
  onProgress?: (done: number, total: number) => void,
  signal?: AbortSignal,
): Promise<SpeedRow[]> {
  return measurePolicySpeed(client, text, speedSpecs(specs), options, onProgress, signal);
}

/** measureSpeed over policies given as objects; the first is the baseline of the ratios. */
export async function measurePolicySpeed(
  client: ServerClient,
  text: string,
  runs: Array<{ spec: string; policy: Policy }>,
  options: SpeedOptions = DEFAULT_SPEED_OPTIONS,
  onProgress?: (done: number, total: number) => void,
  signal?: AbortSignal,
): Promise<SpeedRow[]> {
  const samples: SpeedResult[][] = runs.map(() => []);
  const total = (options.reps + 1) * runs.length;
  let done = 0;
  for (let rep = 0; rep <= options.reps; rep++) {
    for (let j = 0; j < runs.length; j++) {
      const i = rep % 2 ? runs.length - 1 - j : j;
      const r = await client.speed({ text, policy: runs[i].policy, n_decode: options.nDecode, n_prompt: options.nPrompt, n_prefill: options.nPrefill }, signal);
      if (rep > 0) samples[i].push(r); // round 0 warms caches and loads any k override
      onProgress?.(++done, total);
    }
  }
  const rate = (tokens: number, ms: number) => (tokens * 1000) / ms;
  const rows = runs.map((run, i) => {
    const s = samples[i];
    return {
      spec: run.spec,
      label: describePolicy(run.policy),
      policy: run.policy,
      prefill_tps: median(s.map((x) => rate(x.prefill_tokens, x.prefill_ms))),
      decode_tps: median(s.map((x) => rate(x.decode_tokens, x.decode_ms))),
      prefill_ratio: 1,
      decode_ratio: 1,
      avg_active_experts: s[0].avg_active_experts,
      k: s[0].k,
      skip: s[0].skip,
      reps: s.length,
    };
  });
  const base = samples[0];
  rows.forEach((r, i) => {
    r.prefill_ratio = median(samples[i].map((x, round) => rate(x.prefill_tokens, x.prefill_ms) / rate(base[round].prefill_tokens, base[round].prefill_ms)));
    r.decode_ratio = median(samples[i].map((x, round) => rate(x.decode_tokens, x.decode_ms) / rate(base[round].decode_tokens, base[round].decode_ms)));
  });
  return rows;
}

/**
 * "1.42× decode, 1.30× prefill at 4.10/8 active, +0.8 % PPL": speed read together with the
 * expert count and, when given, the perplexity change against the baseline's.
 */
export function describeSpeed(
  row: Pick<SpeedRow, "decode_ratio" | "prefill_ratio" | "avg_active_experts" | "k">,
  ppl?: { value: number; baseline: number },
): string {
  const quality = ppl && ppl.baseline > 0 ? `, ${pplChange(ppl.value, ppl.baseline)} PPL` : "";
  return `${row.decode_ratio.toFixed(2)}× decode, ${row.prefill_ratio.toFixed(2)}× prefill at ${row.avg_active_experts.toFixed(2)}/${row.k} active${quality}`;
}

/** "+0.8 %", "−2.1 %", "±0 %": a perplexity relative to the baseline's. */
export function pplChange(value: number, baseline: number): string {
  const pct = (value / baseline - 1) * 100;
  if (Math.abs(pct) < 0.05) return "±0 %";
  return `${pct > 0 ? "+" : "−"}${Math.abs(pct).toFixed(1)} %`;
}

/** What a report says about the cost of dropped experts on this server. */
export function skipNote(skipSupported: boolean): string {
  return skipSupported
    ? "Dropped experts (AMG, a k cap) are skipped: their gate/up/down rows are not computed (policy term noskip zero-gates them instead, for comparison)."
    : "This model runs on a backend without expert skipping: dropped experts are zero-gated (computed, then multiplied by 0), so they save no arithmetic.";
}
