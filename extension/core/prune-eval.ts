// The pruning evaluation: what removing experts costs on text the saliency never saw. For each
// keep fraction and method the model is pruned into a scratch folder, its perplexity on the
// held-out text is measured by llama-perplexity's method (the server's /v1/perplexity), and the
// file is deleted again; `random` runs once per seed and is reported as mean ± sample standard
// deviation, the baseline any saliency criterion has to beat. Keep 1.0 is one run (every method
// keeps every expert) and must equal the source's perplexity, which is measured too.
import fs from "node:fs";
import path from "node:path";
import { chooseExperts, keptExpertCount, writePrunedModel, type MoeStructure, type PruneSummary } from "./prune";
import type { GgufLayout } from "./gguf-file";
import type { PruneMethod, SaliencyFile } from "./saliency";
import type { PerplexityResult } from "../../shared/wire";

export const DEFAULT_KEEPS = [1, 0.875, 0.75, 0.5];
export const DEFAULT_SEEDS = [1, 2, 3];

/**
 * Splits a text into calibration and held-out parts by interleaved blocks of `blockLines`
 * lines: block i goes to calibration when ⌊(i+1)·share⌋ > ⌊i·share⌋ (share 0.25: blocks 3, 7,
 * 11, …). A text that is grouped by domain thus gives both parts every domain.
 */
export function splitInterleaved(text: string, share: number, blockLines = 40): { calibration: string; heldout: string } {
  if (!(share > 0 && share < 1)) throw new Error(`the calibration share must be in (0, 1), got ${share}`);
  const lines = text.split(/(?<=\n)/);
  const calibration: string[] = [];
  const heldout: string[] = [];
  for (let i = 0; i * blockLines < lines.length; i++) {
    const block = lines.slice(i * blockLines, (i + 1) * blockLines).join("");
    (Math.floor((i + 1) * share) > Math.floor(i * share) ? calibration : heldout).push(block);
  }
  return { calibration: calibration.join(""), heldout: heldout.join("") };
}

export interface PruneEvalOptions {
  layout: GgufLayout;
  structure: MoeStructure;
  sourceSha256: string;
  saliency: SaliencyFile;
  keeps: number[];
  methods: PruneMethod[];
  seeds: number[];
  /** Scratch folder for the pruned files (each deleted after its run unless keepFiles). */
  workDir: string;
  keepFiles?: boolean;
  /** Perplexity of a model file on the held-out text (a server started on that file). */
  perplexityOf(modelPath: string): Promise<PerplexityResult>;
  onProgress?(message: string): void;
}

export interface PruneEvalRun {
  keep: number;
  /** Experts kept per layer and the k the pruned model routes with. */
  nExpert: number;
  k: number;
  method: PruneMethod | "all";
  seed?: number;
  ppl: number;
  pplErr: number;
  outBytes: number;
}

export interface PruneEvalResult {
  model: { file: string; architecture: string; nExpert: number; k: number; bytes: number };
  calibration: SaliencyFile["calibration"];
  heldout: { tokens: number; nCtx: number; chunks: number };
  source: { ppl: number; pplErr: number };
  methods: PruneMethod[];
  seeds: number[];
  runs: PruneEvalRun[];
}

export async function runPruneEvaluation(o: PruneEvalOptions): Promise<PruneEvalResult> {
  const s = o.structure;
  const calibration = { files: o.saliency.calibration.files.map((f) => f.name), tokens: o.saliency.calibration.tokens };
  o.onProgress?.("source model");
  const src = await o.perplexityOf(o.layout.path);
  const runs: PruneEvalRun[] = [];
  fs.mkdirSync(o.workDir, { recursive: true });
  const plan: Array<{ keep: number; method: PruneMethod; seed?: number; label: PruneMethod | "all" }> = [];
  for (const keep of o.keeps) {
    // At keep 1.0 every method keeps every expert: one run stands for all.
    if (keptExpertCount(s, keep) === s.nExpert) plan.push({ keep, method: o.methods[0], label: "all" });
    else
      for (const method of o.methods) {
        if (method === "random") for (const seed of o.seeds) plan.push({ keep, method, seed, label: method });
        else plan.push({ keep, method, label: method });
      }
  }
  for (const [i, p] of plan.entries()) {
    const n = keptExpertCount(s, p.keep);
    o.onProgress?.(`[${i + 1}/${plan.length}] keep ${p.keep} (${n}/${s.nExpert} experts), ${p.label}${p.seed !== undefined ? ` seed ${p.seed}` : ""}`);
    const choice = chooseExperts(s, n, p.method, o.saliency, p.seed);
    const out = path.join(o.workDir, `${path.basename(o.layout.path, ".gguf")}.keep${p.keep}.${p.label}${p.seed !== undefined ? `.seed${p.seed}` : ""}.gguf`);
    let summary: PruneSummary | undefined;
    try {
      summary = await writePrunedModel(o.layout, s, choice, out, {
        method: p.method,
        keep: p.keep,
        seed: p.seed,
        sourceSha256: o.sourceSha256,
        calibration: p.method === "random" ? undefined : calibration,
      });
      const r = await o.perplexityOf(out);
      const after = summary.expert_used_count.after;
      runs.push({
        keep: p.keep,
        nExpert: n,
        k: Array.isArray(after) ? Math.max(...after) : after,
        method: p.label,
        seed: p.seed,
        ppl: r.ppl,
        pplErr: r.ppl_err,
        outBytes: summary.sizes.out_bytes,
      });
    } finally {
      if (!o.keepFiles) fs.rmSync(out, { force: true });
    }
  }
  const k = Array.isArray(s.nExpertUsed) ? Math.max(...s.nExpertUsed) : s.nExpertUsed;
  return {
    model: { file: path.basename(o.layout.path), architecture: s.architecture, nExpert: s.nExpert, k, bytes: o.layout.fileSize },
    calibration: o.saliency.calibration,
    heldout: { tokens: src.tokens, nCtx: src.n_ctx, chunks: src.n_chunks },
    source: { ppl: src.ppl, pplErr: src.ppl_err },
    methods: o.methods,
    seeds: o.seeds,
    runs,
  };
}

function meanSd(xs: number[]): { mean: number; sd: number } {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const sd = xs.length > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1)) : 0;
  return { mean, sd };
}

const mb = (bytes: number) => `${(bytes / 1e6).toFixed(2)} MB`;
const METHOD_LABEL: Record<PruneMethod, string> = { reap: "REAP", weight: "weight", frequency: "frequency", random: "random" };

/** The evaluation as a Markdown table: one row per keep fraction, one column per method. */
export function pruneEvalMarkdown(r: PruneEvalResult): string {
  const header = [
    "keep",
    "experts (k)",
    "file size",
    ...r.methods.map((m) => (m === "random" ? `random (mean ± sd, ${r.seeds.length} seeds)` : `${METHOD_LABEL[m]} (±SE)`)),
  ];
  const rows: string[][] = [];
  const keeps = [...new Set(r.runs.map((x) => x.keep))];
  for (const keep of keeps) {
    const at = r.runs.filter((x) => x.keep === keep);
    const all = at.find((x) => x.method === "all");
    const sizes = [...new Set(at.map((x) => x.outBytes))];
    const size = sizes.length === 1 ? sizes[0] : Math.max(...sizes);
    const cells = r.methods.map((m) => {
      if (all) return `${all.ppl.toFixed(3)} (±${all.pplErr.toFixed(3)})`;
      const xs = at.filter((x) => x.method === m);
      if (!xs.length) return "–";
      if (m === "random") {
        const { mean, sd } = meanSd(xs.map((x) => x.ppl));
        return `${mean.toFixed(3)} ± ${sd.toFixed(3)}`;
      }
      return `${xs[0].ppl.toFixed(3)} (±${xs[0].pplErr.toFixed(3)})`;
    });
    rows.push([
      keep.toFixed(3),
      `${at[0].nExpert}/${r.model.nExpert} (k=${at[0].k})`,
      `${mb(size)} (${((100 * size) / r.model.bytes).toFixed(1)} %)`,
      ...cells,
    ]);
  }
  const line = (c: string[]) => `| ${c.join(" | ")} |`;
  return [line(header), line(header.map(() => "---")), ...rows.map(line)].join("\n") + "\n";
}

/** Which methods beat the random mean at each keep < 1 (lower perplexity), for the notes under the table. */
export function pruneEvalComparison(r: PruneEvalResult): string[] {
  const notes: string[] = [];
  for (const keep of [...new Set(r.runs.map((x) => x.keep))]) {
    const rand = r.runs.filter((x) => x.keep === keep && x.method === "random");
    if (!rand.length) continue;
    const { mean, sd } = meanSd(rand.map((x) => x.ppl));
    const parts = r.methods
      .filter((m) => m !== "random")
      .map((m) => {
        const x = r.runs.find((y) => y.keep === keep && y.method === m);
        if (!x) return undefined;
        const rel = (100 * (x.ppl - mean)) / mean;
        return `${METHOD_LABEL[m]} ${rel <= 0 ? "beats" : "does not beat"} random (${rel >= 0 ? "+" : ""}${rel.toFixed(1)} %)`;
      })
      .filter(Boolean);
    notes.push(`keep ${keep}: random ${mean.toFixed(3)} ± ${sd.toFixed(3)}; ${parts.join(", ")}`);
  }
  return notes;
}
