// Test helpers for expert pruning: reading tensor bytes, checking a pruned file against its
// source byte for byte, and widening llama.cpp's tiny random test models (test-llama-archs
// writes every MoE architecture with only 2 experts) to more experts, so that pruning them
// removes some and keeps others. Widening keeps the architecture and every other tensor: each
// new expert's tensors are an existing expert's, scaled element by element by a seeded
// factor in [0.75, 1.25] plus a small offset, so that all experts differ.
import assert from "node:assert/strict";
import fs from "node:fs";
import { decodeKv, findKv, readGgufLayout, reencodeKv, writeGguf, type GgufLayout, type GgufTensorInfo, type OutputTensor } from "../extension/core/gguf-file";
import { analyzeMoe, PROVENANCE_PREFIX } from "../extension/core/prune";
import type { LayerSaliency, SaliencyFile } from "../extension/core/saliency";

export function readTensorBytes(layout: GgufLayout, t: GgufTensorInfo): Buffer {
  const fd = fs.openSync(layout.path, "r");
  try {
    const b = Buffer.alloc(t.nbytes);
    fs.readSync(fd, b, 0, t.nbytes, layout.dataStart + t.offset);
    return b;
  } finally {
    fs.closeSync(fd);
  }
}

export function kvValue(layout: GgufLayout, key: string): unknown {
  const kv = findKv(layout, key);
  return kv ? decodeKv(kv) : undefined;
}

/**
 * Asserts that `pruned` is `source` with, in every MoE layer, exactly the experts its provenance
 * names kept, in their original order: per-expert tensors hold those slices byte for byte (router
 * rows included), every other tensor is identical. Returns the kept experts per layer.
 */
export function assertPrunedFrom(source: string, pruned: string): Map<number, number[]> {
  const src = readGgufLayout(source);
  const out = readGgufLayout(pruned);
  const s = analyzeMoe(src);
  const layers = kvValue(out, `${PROVENANCE_PREFIX}layers`) as number[];
  const flat = kvValue(out, `${PROVENANCE_PREFIX}kept_experts`) as number[];
  const n = Number(kvValue(out, `${s.architecture}.expert_count`));
  assert.deepEqual(layers, s.moeBlocks, "provenance names every MoE layer");
  assert.equal(flat.length, n * layers.length);
  const kept = new Map(layers.map((l, i) => [l, flat.slice(i * n, (i + 1) * n)]));
  const perExpert = new Set([...s.expertTensors.values()].flat().map((t) => t.name));
  assert.equal(out.tensors.length, src.tensors.length, "same tensors");
  for (const t of src.tensors) {
    const o = out.tensors.find((x) => x.name === t.name);
    assert.ok(o, `${t.name} is in the pruned file`);
    assert.equal(o.type, t.type, `${t.name}: same type`);
    const a = readTensorBytes(src, t);
    const b = readTensorBytes(out, o);
    if (!perExpert.has(t.name)) {
      assert.deepEqual(o.dims, t.dims, `${t.name}: same shape`);
      assert.ok(a.equals(b), `${t.name}: untouched tensor copied byte for byte`);
      continue;
    }
    assert.deepEqual(o.dims, [...t.dims.slice(0, -1), n], `${t.name}: last dimension is the kept count`);
    const ids = kept.get(Number(/^blk\.(\d+)\./.exec(t.name)![1]))!;
    assert.deepEqual(
      [...ids].sort((x, y) => x - y),
      ids,
      "kept experts in their original order",
    );
    const slice = t.nbytes / s.nExpert;
    ids.forEach((e, i) =>
      assert.ok(b.subarray(i * slice, (i + 1) * slice).equals(a.subarray(e * slice, (e + 1) * slice)), `${t.name}: slot ${i} holds expert ${e} byte for byte`),
    );
  }
  return kept;
}

/** Writes `source` with `nExpert` experts per MoE layer (see the file comment); F32 expert tensors only. */
export async function widenExperts(
  source: string,
  out: string,
  nExpert: number,
  opts: { seed?: number; groups?: { count: number; used: number } } = {},
): Promise<string> {
  const layout = readGgufLayout(source);
  const s = analyzeMoe(layout);
  const perExpert = new Set([...s.expertTensors.values()].flat());
  let state = (opts.seed ?? 1) >>> 0;
  const uniform = () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return (state / 4294967296) * 2 - 1;
  };
  const tensors: OutputTensor[] = layout.tensors.map((t) => {
    if (!perExpert.has(t)) return { name: t.name, dims: t.dims, type: t.type, pieces: [{ offset: t.offset, length: t.nbytes }] };
    if (t.type !== 0) throw new Error(`${t.name}: widening needs F32 expert tensors`);
    const src = new Float32Array(new Uint8Array(readTensorBytes(layout, t)).buffer);
    const per = src.length / s.nExpert;
    const dst = new Float32Array(per * nExpert);
    for (let e = 0; e < nExpert; e++) {
      const from = (e % s.nExpert) * per;
      for (let i = 0; i < per; i++) dst[e * per + i] = e < s.nExpert ? src[from + i] : src[from + i] * (1 + 0.25 * uniform()) + 0.01 * uniform();
    }
    return { name: t.name, dims: [...t.dims.slice(0, -1), nExpert], type: t.type, pieces: [{ data: new Uint8Array(dst.buffer) }] };
  });
  const set: Record<string, number> = { [`${s.architecture}.expert_count`]: nExpert };
  if (opts.groups) {
    set[`${s.architecture}.expert_group_count`] = opts.groups.count;
    set[`${s.architecture}.expert_group_used_count`] = opts.groups.used;
  }
  for (const key of Object.keys(set)) if (!findKv(layout, key)) throw new Error(`${source} has no ${key} to change`);
  const kvs = layout.kvs.map((kv) => (kv.key in set ? reencodeKv(kv, set[kv.key]) : kv));
  await writeGguf(out, layout, kvs, tensors);
  return out;
}

/** A saliency file of the demo model's shape (8 experts, k = 2) with the given layers and calibration. */
export function syntheticSaliency(layers: LayerSaliency[], calibration: { name: string; tokens: number }): SaliencyFile {
  return {
    format: "moe-lens-saliency",
    version: 1,
    model_sha256: "0".repeat(64),
    model_file: "demo-moe.gguf",
    architecture: "qwen3moe",
    n_expert: 8,
    k: 2,
    calibration: { files: [calibration], tokens: calibration.tokens },
    layers,
  };
}
