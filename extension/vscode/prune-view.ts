// Pure helpers of the Prune Experts… command (no `vscode` import; test/unit/prune-view.test.ts):
// the panel's saliency chart message and the preview the user confirms before a file is written.
import path from "node:path";
import type { ExpertChoice, MoeStructure } from "../core/prune";
import type { PruneMethod, SaliencyFile } from "../core/saliency";
import type { HostMessage, SaliencyCriterion } from "../../shared/protocol";

export type SaliencyMessage = Extract<HostMessage, { type: "saliency" }>;

/** The criterion the chart ranks by: the method's own, or for `random` the best one measured (REAP, else gate weight). */
export function chartCriterion(method: PruneMethod, saliency: SaliencyFile): SaliencyCriterion {
  if (method !== "random") return method;
  return saliency.layers.every((l) => l.reap) ? "reap" : "weight";
}

/** The chart of every calibrated MoE layer: scores by the criterion and the experts `choice` keeps. */
export function saliencyMessage(saliency: SaliencyFile, choice: ExpertChoice, method: PruneMethod, keep: number, seed?: number): SaliencyMessage {
  const criterion = chartCriterion(method, saliency);
  const layers = saliency.layers.map((l) => ({
    layer: l.layer,
    scores: (criterion === "reap" ? l.reap : l[criterion]) ?? l.weight,
    kept: choice.kept.get(l.layer) ?? [],
  }));
  const n = layers[0]?.kept.length ?? 0;
  const how = method === "random" ? `random (seed ${seed ?? 0}); bars show ${criterion} for reference` : method;
  return {
    type: "saliency",
    title: `Prune preview: keep ${n} of ${saliency.n_expert} experts per layer (${how}, keep ${keep}) — ${saliency.model_file}`,
    criterion,
    layers,
    note:
      `Saliency measured on ${saliency.calibration.tokens.toLocaleString("en-US")} tokens of ` +
      `${saliency.calibration.files.map((f) => path.basename(f.name)).join(", ")}, per layer (never pooled across layers).` +
      (choice.uncalibrated.length ? ` Layers ${choice.uncalibrated.join(", ")} saw no calibration tokens and keep their first ${n} experts.` : ""),
  };
}

/** Bytes of the expert tensors (the part pruning shrinks) and of the whole file. */
export function expertBytes(structure: MoeStructure): number {
  let bytes = 0;
  for (const ts of structure.expertTensors.values()) for (const t of ts) bytes += t.nbytes;
  return bytes;
}

/** The confirmation line: what goes, and the file size it leads to (expert tensors scale with the kept share). */
export function prunePreview(o: { modelFile: string; modelBytes: number; structure: MoeStructure; kept: number; method: PruneMethod }): string {
  const { structure: s, kept } = o;
  const removed = s.nExpert - kept;
  const estimate = o.modelBytes - expertBytes(s) * (removed / s.nExpert);
  return (
    `Remove ${removed} of ${s.nExpert} experts in each of ${s.moeBlocks.length} MoE layers of ${path.basename(o.modelFile)} ` +
    `(${o.method}), keeping ${kept}: about ${(estimate / 1e6).toFixed(1)} MB instead of ${(o.modelBytes / 1e6).toFixed(1)} MB. ` +
    `The source model is not changed.`
  );
}
