// `moe-lens speed`: prefill and batch-1 decode tokens/s of gating policies on a text, measured
// side by side in one run (extension/core/speed.ts), with the ratio to the baseline and the
// average active experts, so that a routing change's speed is read with its expert count.
import path from "node:path";
import { COMMON_FLAGS, readTextFile, withServer } from "./server-session";
import { checkKnownFlags, flagInt, flagString, formatTable, UsageError, type ParsedArgs } from "./args";
import { parsePolicySpec } from "../core/policy-parse";
import { DEFAULT_SPEED_OPTIONS, measureSpeed } from "../core/speed";

export const SPEED_HELP = `  moe-lens speed FILE [--model M] [--policies SPEC,...] [--reps N] [--decode N] [--prompt N] [--prefill N] [--json]
                                                     prefill and decode tokens/s per policy, side by side (default
                                                     policies: baseline, k:K/2, amg:0.5 and both with noskip)`;

async function cmdSpeed(args: ParsedArgs): Promise<void> {
  checkKnownFlags(args, [...COMMON_FLAGS, "policies", "reps", "decode", "prompt", "prefill"]);
  const file = args.positional[0];
  const text = readTextFile(file);
  const given = (flagString(args, "policies") ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  for (const s of given) parsePolicySpec(s);
  const options = {
    reps: flagInt(args, "reps", 1, 100) ?? DEFAULT_SPEED_OPTIONS.reps,
    nDecode: flagInt(args, "decode", 64, 4096) ?? DEFAULT_SPEED_OPTIONS.nDecode,
    nPrompt: flagInt(args, "prompt", 1, 1 << 20) ?? DEFAULT_SPEED_OPTIONS.nPrompt,
    nPrefill: flagInt(args, "prefill", 1, 1 << 24),
  };
  await withServer(args, async (server) => {
    const info = await server.client.modelInfo();
    const half = Math.max(1, Math.ceil(info.n_expert_used / 2));
    const specs = given.length ? given : ["baseline", `k:${half}`, "amg:0.5", `k:${half}+noskip`, "amg:0.5+noskip"];
    const json = args.flags.get("json") === true;
    const rows = await measureSpeed(server.client, text, specs, options, (done, total) => {
      if (!json) process.stderr.write(`\rmeasuring: ${done}/${total} runs`);
    });
    if (!json) process.stderr.write("\n");
    if (json) {
      return void console.log(
        JSON.stringify(
          rows.map((r) => ({
            spec: r.spec,
            prefill_tps: r.prefill_tps,
            decode_tps: r.decode_tps,
            prefill_ratio: r.prefill_ratio,
            decode_ratio: r.decode_ratio,
            avg_active_experts: r.avg_active_experts,
            k: r.k,
            skip: r.skip,
            reps: r.reps,
          })),
          null,
          1,
        ),
      );
    }
    console.log(
      `${path.basename(file)} on ${path.basename(info.path)} (${info.n_layer} layers, ${info.n_expert} experts, k=${info.n_expert_used}); ` +
        `rates: medians of ${options.reps} alternating repetitions; ratios: medians of the per-repetition ratios; decode = ${options.nDecode} tokens at batch 1${info.skip_supported ? "" : "; this build cannot skip (GPU): dropped experts are zero-gated"}\n`,
    );
    console.log(
      formatTable(
        ["policy", "avg active", "prefill tok/s", "×", "decode tok/s", "×", "dropped experts"],
        rows.map((r) => [
          r.label,
          `${r.avg_active_experts.toFixed(2)}/${r.k}`,
          r.prefill_tps.toFixed(1),
          r.prefill_ratio.toFixed(2),
          r.decode_tps.toFixed(1),
          r.decode_ratio.toFixed(2),
          r.avg_active_experts < r.k - 1e-9 ? (r.skip ? "skipped" : "zero-gated") : "–",
        ]),
      ),
    );
  });
}

export const speedCommands: Record<string, (a: ParsedArgs) => Promise<void>> = {
  speed: (args) => {
    if (!args.positional[0]) throw new UsageError("moe-lens speed needs a text FILE");
    return cmdSpeed(args);
  },
};
