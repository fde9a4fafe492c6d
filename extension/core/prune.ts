// Expert pruning of a GGUF MoE model: the same architecture with some routed experts removed
// from every MoE layer, written as a new GGUF that stock llama.cpp loads.
//
// What changes: in every block with routed experts, each per-expert tensor keeps the slices of
// the kept experts along its last dimension (ggml's outermost, so an expert's slice is one
// contiguous byte range and quantized blocks are copied as they are): the experts' gate, up,
// down and merged gate_up weights with their biases and scales, the router's rows
// (`ffn_gate_inp` weight and bias) and selection biases (`exp_probs_b`, `exp_probs_b_vl`).
// Kept experts stay in their original order, so router row i still belongs to expert i's
// weights. `<arch>.expert_count` becomes the kept count N, the same in every layer (llama.cpp
// has one count), and `<arch>.expert_used_count` (a number or one per layer) is lowered to N
// only where it exceeds N. Shared experts, dense layers and everything else are copied
// untouched. Provenance goes under `moe_lens.prune.*`.
//
// Expert groups (DeepSeek-V3's `expert_group_count` G > 1, group-limited routing): llama.cpp
// cuts the router's output into G equal runs of consecutive experts and scores each group by
// its two best experts. To keep that routing meaningful the same number of experts, N/G, is
// kept in every group (the most salient of each group), N is rounded to a multiple of G, at
// least two experts per group must remain, and the group keys are left unchanged.
import fs from "node:fs";
import path from "node:path";
import {
  decodeKv,
  encodeKv,
  findKv,
  GgufType,
  readGgufLayout,
  writeGguf,
  reencodeKv,
  type GgufKv,
  type GgufLayout,
  type GgufTensorInfo,
  type OutputTensor,
  type TensorPiece,
} from "./gguf-file";
import { expertOrder, seededOrder, type PruneMethod, type SaliencyFile } from "./saliency";

export class PruneError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PruneError";
  }
}

export const PROVENANCE_PREFIX = "moe_lens.prune.";

/** Tensor stems (blk.N.<stem>.<suffix>) whose last dimension runs over the routed experts. */
const PER_EXPERT_STEMS = new Set([
  "ffn_gate_exps",
  "ffn_up_exps",
  "ffn_down_exps",
  "ffn_gate_up_exps", // expert weights, biases, scales
  "ffn_gate_inp", // the router
  "exp_probs_b",
  "exp_probs_b_vl", // selection biases (DeepSeek-V3 and relatives)
]);
/** Stems that look per-expert but are not: Arctic's norm in front of its experts is [n_embd]. */
const NOT_PER_EXPERT_STEMS = new Set(["ffn_norm_exps"]);

export interface MoeStructure {
  architecture: string;
  nExpert: number;
  /** `<arch>.expert_used_count`: one number, or one per layer. */
  nExpertUsed: number | number[];
  /** `<arch>.expert_group_count` and `expert_group_used_count` (0 when absent). */
  groupCount: number;
  groupUsed: number;
  /** Blocks (layer indices) with routed experts, ascending. */
  moeBlocks: number[];
  /** Per block, its per-expert tensors. */
  expertTensors: Map<number, GgufTensorInfo[]>;
}

const blockOf = (name: string) => /^blk\.(\d+)\.([A-Za-z0-9_]+)\.(.+)$/.exec(name);

/** Finds the routed experts of a model and checks that this tool knows how to prune every tensor that holds them. */
export function analyzeMoe(layout: GgufLayout): MoeStructure {
  const archKv = findKv(layout, "general.architecture");
  if (!archKv || archKv.type !== GgufType.STRING) throw new PruneError(`${layout.path} names no general.architecture; it is not a llama.cpp model`);
  const architecture = String(decodeKv(archKv));
  const value = (key: string) => {
    const kv = findKv(layout, `${architecture}.${key}`);
    return kv ? decodeKv(kv) : undefined;
  };
  const nExpert = Number(value("expert_count") ?? 0);
  const used = value("expert_used_count");
  const expertTensors = new Map<number, GgufTensorInfo[]>();
  for (const t of layout.tensors) {
    if (/^blk\.\d+\.ffn_(gate|up|down)\.\d+\./.test(t.name)) {
      throw new PruneError(
        `${layout.path} stores each expert as its own tensor (${t.name}), an old layout; convert it with a current llama.cpp (one merged *_exps tensor per layer) first`,
      );
    }
    const m = blockOf(t.name);
    if (!m) continue;
    const stem = m[2];
    if (stem.includes("chexps")) throw new PruneError(`${t.name}: chunked experts (GroveMoE) tie experts together in groups; pruning them is not supported`);
    if (PER_EXPERT_STEMS.has(stem)) {
      const last = t.dims[t.dims.length - 1];
      if (last !== nExpert)
        throw new PruneError(
          `${t.name} has ${last} entries along its last dimension, expected ${architecture}.expert_count = ${nExpert}; the file is inconsistent`,
        );
      const block = Number(m[1]);
      if (!expertTensors.has(block)) expertTensors.set(block, []);
      expertTensors.get(block)!.push(t);
    } else if (/exps|exp_probs/.test(stem) && !NOT_PER_EXPERT_STEMS.has(stem)) {
      throw new PruneError(`${t.name}: a per-expert tensor this tool does not know how to prune (architecture ${architecture})`);
    }
  }
  if (nExpert <= 1 || expertTensors.size === 0) {
    throw new PruneError(`${path.basename(layout.path)} has no routed experts (a dense ${architecture} model): there is nothing to prune`);
  }
  if (used === undefined) throw new PruneError(`${layout.path} has experts but no ${architecture}.expert_used_count`);
  const moeBlocks = [...expertTensors.keys()].sort((a, b) => a - b);
  for (const b of moeBlocks) {
    const names = expertTensors.get(b)!.map((t) => blockOf(t.name)![2]);
    if (!names.includes("ffn_gate_inp")) throw new PruneError(`block ${b} has expert tensors but no router (blk.${b}.ffn_gate_inp)`);
    if (!names.some((n) => n.endsWith("_exps"))) throw new PruneError(`block ${b} has a router but no expert weights`);
  }
  return {
    architecture,
    nExpert,
    nExpertUsed: Array.isArray(used) ? used.map(Number) : Number(used),
    groupCount: Number(value("expert_group_count") ?? 0),
    groupUsed: Number(value("expert_group_used_count") ?? 0),
    moeBlocks,
    expertTensors,
  };
}

/** N = round(keep·E), in whole groups when the model has expert groups; refuses what would not be a working MoE. */
export function keptExpertCount(s: MoeStructure, keep: number): number {
  if (!(keep > 0 && keep <= 1)) throw new PruneError(`--keep must be a fraction in (0, 1], got ${keep}`);
  const G = s.groupCount > 1 ? s.groupCount : 1;
  const n = G * Math.round((keep * s.nExpert) / G);
  const min = 2 * G;
  if (n < min) {
    const why =
      G > 1
        ? `two in each of the ${G} expert groups, since llama.cpp scores a group by its two best experts`
        : "one expert per layer would make it a dense model";
    throw new PruneError(
      `keeping ${keep} of ${s.nExpert} experts leaves ${n}; at least ${min} must remain (${why}): the smallest keep is ${(min / s.nExpert).toFixed(4)}`,
    );
  }
  return n;
}

export interface ExpertChoice {
  /** Per MoE block, the kept experts' original ids, ascending. */
  kept: Map<number, number[]>;
  /** Blocks without calibration data (e.g. next-token-prediction layers llama.cpp does not run), which keep their first N experts. */
  uncalibrated: number[];
}

/**
 * Picks N experts in every MoE block: the most salient by `method`, or a seeded random set.
 * With expert groups, N/G from each group.
 */
export function chooseExperts(s: MoeStructure, n: number, method: PruneMethod, saliency: SaliencyFile | undefined, seed = 0): ExpertChoice {
  if (method !== "random") {
    if (!saliency) throw new PruneError(`--method ${method} needs saliency from calibration text`);
    if (saliency.n_expert !== s.nExpert) throw new PruneError(`the saliency is for ${saliency.n_expert} experts per layer, the model has ${s.nExpert}`);
    for (const l of saliency.layers)
      if (!s.expertTensors.has(l.layer)) throw new PruneError(`the saliency has layer ${l.layer}, which has no experts in this model`);
  }
  const G = s.groupCount > 1 ? s.groupCount : 1;
  const groupSize = s.nExpert / G;
  const kept = new Map<number, number[]>();
  const uncalibrated: number[] = [];
  for (const block of s.moeBlocks) {
    let order: number[];
    if (method === "random") order = seededOrder(s.nExpert, seed, block);
    else {
      const l = saliency!.layers.find((x) => x.layer === block);
      if (l) order = expertOrder(l, method);
      else {
        uncalibrated.push(block);
        order = Array.from({ length: s.nExpert }, (_v, i) => i);
      }
    }
    const chosen: number[] = [];
    for (let g = 0; g < G; g++) chosen.push(...order.filter((e) => Math.floor(e / groupSize) === g).slice(0, n / G));
    kept.set(
      block,
      chosen.sort((a, b) => a - b),
    );
  }
  return { kept, uncalibrated };
}

export interface PruneProvenance {
  method: PruneMethod;
  keep: number;
  seed?: number;
  sourceSha256: string;
  /** What the saliency was measured on; absent for `random`. */
  calibration?: { files: string[]; tokens: number };
}

export interface PruneSummary {
  source: string;
  out: string;
  architecture: string;
  method: PruneMethod;
  keep: number;
  seed?: number;
  source_sha256: string;
  expert_count: { before: number; after: number };
  expert_used_count: { before: number | number[]; after: number | number[] };
  expert_groups: { count: number; used: number } | null;
  layers: Array<{ layer: number; kept: number[]; removed: number[]; calibrated: boolean }>;
  sizes: { source_bytes: number; out_bytes: number; removed_expert_bytes: number };
  calibration: { files: string[]; tokens: number } | null;
}

/** The pieces of a per-expert tensor that hold the kept experts, adjacent slices merged. */
function keptPieces(t: GgufTensorInfo, nExpert: number, kept: number[]): TensorPiece[] {
  const slice = t.nbytes / nExpert;
  const pieces: Array<{ offset: number; length: number }> = [];
  for (const e of kept) {
    const offset = t.offset + e * slice;
    const last = pieces[pieces.length - 1];
    if (last && last.offset + last.length === offset) last.length += slice;
    else pieces.push({ offset, length: slice });
  }
  return pieces;
}

function describeCalibration(c: { files: string[]; tokens: number } | undefined): string {
  if (!c) return "none (random selection)";
  const shown = c.files.slice(0, 8).join(", ") + (c.files.length > 8 ? `, … (${c.files.length} files)` : "");
  return `${c.tokens} tokens from ${c.files.length} file${c.files.length === 1 ? "" : "s"}: ${shown}`;
}

/** The output's metadata: the source's, with the expert counts changed and the provenance replaced. */
function prunedMetadata(
  layout: GgufLayout,
  s: MoeStructure,
  choice: ExpertChoice,
  n: number,
  p: PruneProvenance,
): { kvs: GgufKv[]; usedAfter: number | number[] } {
  const usedAfter = Array.isArray(s.nExpertUsed) ? s.nExpertUsed.map((k) => Math.min(k, n)) : Math.min(s.nExpertUsed, n);
  const kvs: GgufKv[] = [];
  for (const kv of layout.kvs) {
    if (kv.key.startsWith(PROVENANCE_PREFIX)) continue; // a source that was itself pruned: its record is replaced
    if (kv.key === `${s.architecture}.expert_count`) kvs.push(reencodeKv(kv, n));
    else if (kv.key === `${s.architecture}.expert_used_count`) kvs.push(reencodeKv(kv, usedAfter));
    else kvs.push(kv);
  }
  const P = PROVENANCE_PREFIX;
  kvs.push(
    encodeKv(`${P}source_file`, GgufType.STRING, path.basename(layout.path)),
    encodeKv(`${P}source_sha256`, GgufType.STRING, p.sourceSha256),
    encodeKv(`${P}source_expert_count`, GgufType.UINT32, s.nExpert),
    encodeKv(`${P}method`, GgufType.STRING, p.method),
    encodeKv(`${P}keep_fraction`, GgufType.FLOAT32, p.keep),
    encodeKv(`${P}calibration`, GgufType.STRING, describeCalibration(p.calibration)),
    encodeKv(`${P}calibration_tokens`, GgufType.UINT64, p.calibration?.tokens ?? 0),
    encodeKv(`${P}layers`, GgufType.ARRAY, s.moeBlocks, GgufType.UINT32),
    encodeKv(
      `${P}kept_experts`,
      GgufType.ARRAY,
      s.moeBlocks.flatMap((b) => choice.kept.get(b)!),
      GgufType.UINT32,
    ),
  );
  if (p.seed !== undefined) kvs.push(encodeKv(`${P}seed`, GgufType.UINT32, p.seed));
  if (p.calibration?.files.length) kvs.push(encodeKv(`${P}calibration_files`, GgufType.ARRAY, p.calibration.files, GgufType.STRING));
  return { kvs, usedAfter };
}

/**
 * Writes the pruned model to `outPath` (through a temporary file in the same folder, renamed
 * when complete, so a failure never leaves a half-written model under that name).
 */
export async function writePrunedModel(
  layout: GgufLayout,
  s: MoeStructure,
  choice: ExpertChoice,
  outPath: string,
  p: PruneProvenance,
  onProgress?: (done: number, total: number) => void,
): Promise<PruneSummary> {
  const counts = new Set([...choice.kept.values()].map((k) => k.length));
  if (counts.size !== 1 || choice.kept.size !== s.moeBlocks.length)
    throw new PruneError("internal error: every MoE layer must keep the same number of experts");
  const n = [...counts][0];
  if (p.seed !== undefined && !(Number.isInteger(p.seed) && p.seed >= 0 && p.seed <= 0xffffffff))
    throw new PruneError(`--seed must be an integer in [0, 4294967295], got ${p.seed}`);
  // By name, so a structure from another read of the same file works as well as its own.
  const perExpert = new Set([...s.expertTensors.values()].flat().map((t) => t.name));
  let removedBytes = 0;
  const tensors: OutputTensor[] = layout.tensors.map((t) => {
    if (!perExpert.has(t.name)) return { name: t.name, dims: t.dims, type: t.type, pieces: [{ offset: t.offset, length: t.nbytes }] };
    const kept = choice.kept.get(Number(blockOf(t.name)![1]))!;
    removedBytes += (t.nbytes / s.nExpert) * (s.nExpert - kept.length);
    return { name: t.name, dims: [...t.dims.slice(0, -1), kept.length], type: t.type, pieces: keptPieces(t, s.nExpert, kept) };
  });
  const { kvs, usedAfter } = prunedMetadata(layout, s, choice, n, p);
  const outAbs = path.resolve(outPath);
  const tmp = path.join(path.dirname(outAbs), `.${path.basename(outAbs)}.partial-${process.pid}`);
  let outBytes: number;
  try {
    outBytes = await writeGguf(tmp, layout, kvs, tensors, onProgress);
    fs.renameSync(tmp, outAbs);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  return {
    source: layout.path,
    out: outAbs,
    architecture: s.architecture,
    method: p.method,
    keep: p.keep,
    ...(p.seed !== undefined ? { seed: p.seed } : {}),
    source_sha256: p.sourceSha256,
    expert_count: { before: s.nExpert, after: n },
    expert_used_count: { before: s.nExpertUsed, after: usedAfter },
    expert_groups: s.groupCount > 1 ? { count: s.groupCount, used: s.groupUsed } : null,
    layers: s.moeBlocks.map((b) => {
      const kept = choice.kept.get(b)!;
      return {
        layer: b,
        kept,
        removed: Array.from({ length: s.nExpert }, (_v, e) => e).filter((e) => !kept.includes(e)),
        calibrated: !choice.uncalibrated.includes(b),
      };
    }),
    sizes: { source_bytes: layout.fileSize, out_bytes: outBytes, removed_expert_bytes: removedBytes },
    calibration: p.calibration ?? null,
  };
}

/** Reads and analyses a model for pruning, refusing what cannot be pruned (with a clear reason). */
export function openForPruning(modelPath: string): { layout: GgufLayout; structure: MoeStructure } {
  const layout = readGgufLayout(modelPath);
  return { layout, structure: analyzeMoe(layout) };
}
