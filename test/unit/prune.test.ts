// Expert pruning without a server: the GGUF reader and writer, the choice of experts, the
// saliency accumulators, the calibration text reader and the held-out split, on small GGUF
// files written here (with a quantized expert tensor, a router, a selection bias, a shared
// expert and a dense layer) and on the demo model's own file.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, test } from "node:test";
import { decodeKv, encodeKv, findKv, GgufError, GgufType, readGgufLayout, writeGguf, type GgufKv, type OutputTensor } from "../../extension/core/gguf-file";
import { analyzeMoe, chooseExperts, keptExpertCount, PROVENANCE_PREFIX, writePrunedModel, type PruneProvenance } from "../../extension/core/prune";
import { splitInterleaved } from "../../extension/core/prune-eval";
import {
  calibrationSources,
  expertOrder,
  fileSource,
  readSaliency,
  SaliencyAccumulator,
  seededOrder,
  textSource,
  type SaliencyFile,
} from "../../extension/core/saliency";
import type { TraceBatch } from "../../shared/trace";
import { DEMO_MODEL } from "../helpers";
import { assertPrunedFrom, kvValue, readTensorBytes } from "../prune-helpers";

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), "moe-lens-prune-unit-"));
const F32 = 0,
  Q8_0 = 8;

/** Bytes where every expert's slice differs (the expert id and the position are mixed in). */
function pattern(bytes: number, nExpert: number, salt: number): Uint8Array {
  const b = new Uint8Array(bytes);
  const per = bytes / nExpert;
  for (let i = 0; i < bytes; i++) b[i] = (Math.floor(i / per) * 37 + (i % per) * 5 + salt) & 255;
  return b;
}

function f32(values: number[]): Uint8Array {
  return new Uint8Array(new Float32Array(values).buffer);
}

interface SynthOptions {
  nExpert?: number;
  used?: number | number[];
  groups?: [number, number];
  extraTensors?: OutputTensor[];
  noExperts?: boolean;
  extraKvs?: GgufKv[];
}

/** A small qwen3moe-shaped GGUF: 2 MoE layers (router, Q8_0 gate_exps, F32 down_exps, selection bias, shared expert) and a dense layer. */
async function synthModel(file: string, o: SynthOptions = {}): Promise<string> {
  const E = o.nExpert ?? 8;
  const kvs: GgufKv[] = [
    encodeKv("general.architecture", GgufType.STRING, "qwen3moe"),
    encodeKv("general.name", GgufType.STRING, "synthetic"),
    encodeKv("qwen3moe.block_count", GgufType.UINT32, 3),
    encodeKv("qwen3moe.expert_count", GgufType.UINT32, o.noExperts ? 0 : E),
    Array.isArray(o.used)
      ? encodeKv("qwen3moe.expert_used_count", GgufType.ARRAY, o.used, GgufType.UINT32)
      : encodeKv("qwen3moe.expert_used_count", GgufType.UINT32, o.used ?? 4),
    encodeKv("tokenizer.ggml.tokens", GgufType.ARRAY, ["a", "b", "ü", "€"], GgufType.STRING),
    ...(o.groups
      ? [encodeKv("qwen3moe.expert_group_count", GgufType.UINT32, o.groups[0]), encodeKv("qwen3moe.expert_group_used_count", GgufType.UINT32, o.groups[1])]
      : []),
    ...(o.extraKvs ?? []),
  ];
  const t = (name: string, dims: number[], type: number, data: Uint8Array): OutputTensor => ({ name, dims, type, pieces: [{ data }] });
  const tensors: OutputTensor[] = [t("token_embd.weight", [4, 10], F32, pattern(160, 1, 1))];
  for (const b of [0, 1]) {
    if (!o.noExperts) {
      tensors.push(
        t(`blk.${b}.ffn_gate_inp.weight`, [4, E], F32, pattern(16 * E, E, 10 + b)),
        t(`blk.${b}.ffn_gate_exps.weight`, [32, 2, E], Q8_0, pattern(68 * E, E, 20 + b)),
        t(`blk.${b}.ffn_down_exps.weight`, [2, 4, E], F32, pattern(32 * E, E, 30 + b)),
        t(`blk.${b}.exp_probs_b.bias`, [E], F32, f32(Array.from({ length: E }, (_v, e) => e / 10 + b))),
      );
    }
    tensors.push(t(`blk.${b}.ffn_up_shexp.weight`, [4, 3], F32, pattern(48, 1, 40 + b)));
  }
  tensors.push(t("blk.2.ffn_gate.weight", [4, 3], F32, pattern(48, 1, 50)), ...(o.extraTensors ?? []));
  await writeGguf(file, { version: 3, alignment: 32 }, kvs, tensors);
  return file;
}

function saliencyFor(layers: number[], nExpert: number, weight: (layer: number, e: number) => number): SaliencyFile {
  return {
    format: "moe-lens-saliency",
    version: 1,
    model_sha256: "x".repeat(64),
    model_file: "m.gguf",
    architecture: "qwen3moe",
    n_expert: nExpert,
    k: 2,
    calibration: { files: [{ name: "cal.txt", tokens: 100 }], tokens: 100 },
    layers: layers.map((layer) => {
      const w = Array.from({ length: nExpert }, (_v, e) => weight(layer, e));
      return { layer, frequency: w.map((x) => Math.round(x * 10)), weight: w, reap: w.map((x) => x / 2) };
    }),
  };
}

const provenance = (p: Partial<PruneProvenance> = {}): PruneProvenance => ({
  method: "weight",
  keep: 0.5,
  sourceSha256: "ab".repeat(32),
  calibration: { files: ["cal.txt"], tokens: 100 },
  ...p,
});

describe("GGUF reader and writer", () => {
  test("every metadata type round-trips; a file written from pieces of another is byte-identical", async () => {
    const dir = tmp();
    const kvs = [
      encodeKv("u8", GgufType.UINT8, 200),
      encodeKv("i8", GgufType.INT8, -5),
      encodeKv("u16", GgufType.UINT16, 60000),
      encodeKv("i16", GgufType.INT16, -300),
      encodeKv("u32", GgufType.UINT32, 4e9),
      encodeKv("i32", GgufType.INT32, -2e9),
      encodeKv("f32", GgufType.FLOAT32, 0.5),
      encodeKv("bool", GgufType.BOOL, true),
      encodeKv("str", GgufType.STRING, "Grüße 🌍"),
      encodeKv("u64", GgufType.UINT64, 2 ** 40),
      encodeKv("i64", GgufType.INT64, -(2 ** 40)),
      encodeKv("f64", GgufType.FLOAT64, Math.PI),
      encodeKv("arr", GgufType.ARRAY, [1, 2, 3], GgufType.INT32),
      encodeKv("strs", GgufType.ARRAY, ["x", "", "ÿ"], GgufType.STRING),
    ];
    const a = path.join(dir, "a.gguf");
    await writeGguf(
      a,
      { version: 3, alignment: 64 },
      [...kvs, encodeKv("general.alignment", GgufType.UINT32, 64)],
      [
        { name: "t0", dims: [3], type: F32, pieces: [{ data: f32([1, 2, 3]) }] },
        { name: "t1", dims: [32, 2], type: Q8_0, pieces: [{ data: pattern(68, 1, 3) }] },
      ],
    );
    const la = readGgufLayout(a);
    assert.equal(la.alignment, 64);
    assert.deepEqual(la.kvs.slice(0, kvs.length).map(decodeKv), [
      200,
      -5,
      60000,
      -300,
      4e9,
      -2e9,
      0.5,
      true,
      "Grüße 🌍",
      2 ** 40,
      -(2 ** 40),
      Math.PI,
      [1, 2, 3],
      ["x", "", "ÿ"],
    ]);
    assert.deepEqual(
      la.tensors.map((t) => [t.name, t.dims, t.nbytes, t.offset]),
      [
        ["t0", [3], 12, 0],
        ["t1", [32, 2], 68, 64],
      ],
    );
    assert.deepEqual(Array.from(new Float32Array(new Uint8Array(readTensorBytes(la, la.tensors[0])).buffer)), [1, 2, 3]);
    const b = path.join(dir, "b.gguf");
    await writeGguf(
      b,
      la,
      la.kvs,
      la.tensors.map((t) => ({ name: t.name, dims: t.dims, type: t.type, pieces: [{ offset: t.offset, length: t.nbytes }] })),
    );
    assert.ok(fs.readFileSync(a).equals(fs.readFileSync(b)));
  });

  test("the demo model copied tensor by tensor through the writer holds the same header and tensors", async () => {
    const src = readGgufLayout(DEMO_MODEL);
    const out = path.join(tmp(), "copy.gguf");
    await writeGguf(
      out,
      src,
      src.kvs,
      src.tensors.map((t) => ({ name: t.name, dims: t.dims, type: t.type, pieces: [{ offset: t.offset, length: t.nbytes }] })),
    );
    const copy = readGgufLayout(out);
    assert.deepEqual(copy.kvs, src.kvs);
    assert.deepEqual(copy.tensors, src.tensors);
    const head = copy.dataStart + copy.tensors[copy.tensors.length - 1].offset + copy.tensors[copy.tensors.length - 1].nbytes;
    assert.ok(fs.readFileSync(out).subarray(0, head).equals(fs.readFileSync(DEMO_MODEL).subarray(0, head)));
  });

  test("corrupt, truncated and foreign files are refused with a reason", async () => {
    const dir = tmp();
    const good = await synthModel(path.join(dir, "good.gguf"));
    const bytes = fs.readFileSync(good);
    const write = (name: string, b: Uint8Array) => {
      const f = path.join(dir, name);
      fs.writeFileSync(f, b);
      return f;
    };
    assert.throws(() => readGgufLayout(write("text.gguf", Buffer.from("hello, this is not a model at all"))), /not a GGUF file/);
    assert.throws(
      () => readGgufLayout(write("cut-data.gguf", bytes.subarray(0, bytes.length - 100))),
      /truncated or corrupt: tensor blk\.\d+\.\w+\.weight ends at byte \d+, the file has \d+/,
    );
    assert.throws(() => readGgufLayout(write("cut-header.gguf", bytes.subarray(0, 60))), /truncated/);
    const huge = Buffer.from(bytes);
    huge.writeBigUInt64LE(1n << 40n, 24); // the first key's length
    assert.throws(() => readGgufLayout(write("huge.gguf", huge)), /runs past the end of the file/);
    const v9 = Buffer.from(bytes);
    v9.writeUInt32LE(9, 4);
    assert.throws(() => readGgufLayout(write("v9.gguf", v9)), /GGUF version 9/);
    assert.throws(() => readGgufLayout(path.join(dir, "absent.gguf")), /not found/);
    const odd = fs.readFileSync(
      await synthModel(path.join(dir, "odd.gguf"), { extraTensors: [{ name: "odd_tensor", dims: [4], type: F32, pieces: [{ data: new Uint8Array(16) }] }] }),
    );
    odd.writeUInt32LE(4, odd.indexOf("odd_tensor") + 10 + 4 + 8); // its type field: 4 (Q4_2, removed from ggml)
    assert.throws(
      () => readGgufLayout(write("type.gguf", odd)),
      (e: Error) => e instanceof GgufError && /ggml type 4, which this reader does not know/.test(e.message),
    );
  });
});

describe("what pruning touches", () => {
  test("per-expert tensors are found per MoE layer; shared experts and dense layers are not touched", async () => {
    const s = analyzeMoe(readGgufLayout(await synthModel(path.join(tmp(), "m.gguf"))));
    assert.equal(s.nExpert, 8);
    assert.equal(s.nExpertUsed, 4);
    assert.deepEqual(s.moeBlocks, [0, 1]);
    assert.deepEqual(
      s.expertTensors
        .get(1)!
        .map((t) => t.name)
        .sort(),
      ["blk.1.exp_probs_b.bias", "blk.1.ffn_down_exps.weight", "blk.1.ffn_gate_exps.weight", "blk.1.ffn_gate_inp.weight"],
    );
  });

  test("a dense model, an unknown per-expert tensor, split experts and a wrong expert dimension are refused", async () => {
    const dir = tmp();
    const refuse = (name: string, re: RegExp) => assert.throws(() => analyzeMoe(readGgufLayout(path.join(dir, name))), re, name);
    await synthModel(path.join(dir, "dense.gguf"), { noExperts: true });
    refuse("dense.gguf", /no routed experts \(a dense qwen3moe model\)/);
    await synthModel(path.join(dir, "unknown.gguf"), {
      extraTensors: [{ name: "blk.1.ffn_new_exps.weight", dims: [4, 8], type: F32, pieces: [{ data: new Uint8Array(128) }] }],
    });
    refuse("unknown.gguf", /blk\.1\.ffn_new_exps\.weight: a per-expert tensor this tool does not know/);
    await synthModel(path.join(dir, "split.gguf"), {
      extraTensors: [{ name: "blk.1.ffn_gate.3.weight", dims: [4, 3], type: F32, pieces: [{ data: new Uint8Array(48) }] }],
    });
    refuse("split.gguf", /stores each expert as its own tensor/);
    await synthModel(path.join(dir, "dim.gguf"), {
      extraTensors: [{ name: "blk.1.ffn_up_exps.weight", dims: [4, 3, 7], type: F32, pieces: [{ data: new Uint8Array(336) }] }],
    });
    refuse("dim.gguf", /blk\.1\.ffn_up_exps\.weight has 7 entries along its last dimension, expected qwen3moe\.expert_count = 8/);
  });

  test("the kept count is round(keep·E), in whole groups, and never below two experts (two per group)", async () => {
    const dir = tmp();
    const plain = analyzeMoe(readGgufLayout(await synthModel(path.join(dir, "p.gguf"))));
    assert.deepEqual(
      [1, 0.875, 0.75, 0.5, 0.3, 0.2].map((k) => keptExpertCount(plain, k)),
      [8, 7, 6, 4, 2, 2],
    );
    assert.throws(() => keptExpertCount(plain, 0.1), /leaves 1; at least 2 must remain .*the smallest keep is 0\.2500/);
    assert.throws(() => keptExpertCount(plain, 0), /in \(0, 1\]/);
    assert.throws(() => keptExpertCount(plain, 1.5), /in \(0, 1\]/);
    const grouped = analyzeMoe(readGgufLayout(await synthModel(path.join(dir, "g.gguf"), { groups: [2, 1] })));
    assert.deepEqual(
      [1, 0.75, 0.6, 0.5].map((k) => keptExpertCount(grouped, k)),
      [8, 6, 4, 4],
    );
    assert.throws(() => keptExpertCount(grouped, 0.3), /at least 4 must remain \(two in each of the 2 expert groups/);
  });
});

describe("choosing experts", () => {
  test("by saliency: the top N of each layer, in their original order; ties go by the other criteria, then the lower id", async () => {
    const s = analyzeMoe(readGgufLayout(await synthModel(path.join(tmp(), "m.gguf"))));
    const sal = saliencyFor([0, 1], 8, (layer, e) => (layer === 0 ? e : 8 - e));
    const c = chooseExperts(s, 3, "weight", sal);
    assert.deepEqual(c.kept.get(0), [5, 6, 7]);
    assert.deepEqual(c.kept.get(1), [0, 1, 2]);
    assert.deepEqual(c.uncalibrated, []);
    const l = { layer: 0, frequency: [5, 5, 9, 5], weight: [1, 2, 1, 2], reap: [3, 3, 3, 3] };
    assert.deepEqual(expertOrder(l, "frequency"), [2, 1, 3, 0]);
    assert.deepEqual(expertOrder(l, "reap"), [1, 3, 2, 0]);
    assert.throws(() => expertOrder({ ...l, reap: null }, "reap"), /no expert-output norms/);
  });

  test("a layer without calibration data keeps its first N experts and is reported", async () => {
    const s = analyzeMoe(readGgufLayout(await synthModel(path.join(tmp(), "m.gguf"))));
    const c = chooseExperts(
      s,
      2,
      "frequency",
      saliencyFor([0], 8, (_l, e) => e),
    );
    assert.deepEqual(c.kept.get(0), [6, 7]);
    assert.deepEqual(c.kept.get(1), [0, 1]);
    assert.deepEqual(c.uncalibrated, [1]);
    assert.throws(
      () =>
        chooseExperts(
          s,
          2,
          "weight",
          saliencyFor([0, 5], 8, () => 1),
        ),
      /layer 5, which has no experts/,
    );
    assert.throws(
      () =>
        chooseExperts(
          s,
          2,
          "weight",
          saliencyFor([0], 6, () => 1),
        ),
      /6 experts per layer, the model has 8/,
    );
    assert.throws(() => chooseExperts(s, 2, "weight", undefined), /needs saliency/);
  });

  test("with expert groups, the same number from every group", async () => {
    const s = analyzeMoe(readGgufLayout(await synthModel(path.join(tmp(), "g.gguf"), { groups: [2, 1] })));
    // Group 0 (experts 0-3) is far more salient than group 1, yet each keeps 2.
    const c = chooseExperts(
      s,
      4,
      "weight",
      saliencyFor([0, 1], 8, (_l, e) => (e < 4 ? 100 + e : e)),
    );
    assert.deepEqual(c.kept.get(0), [2, 3, 6, 7]);
  });

  test("random: a seeded permutation, the same for the same seed, different across seeds and layers", async () => {
    const s = analyzeMoe(readGgufLayout(await synthModel(path.join(tmp(), "m.gguf"))));
    for (const seed of [0, 1, 2]) for (const layer of [0, 1]) assert.deepEqual([...seededOrder(8, seed, layer)].sort(), [0, 1, 2, 3, 4, 5, 6, 7]);
    assert.deepEqual(seededOrder(64, 7, 3), seededOrder(64, 7, 3));
    assert.notDeepEqual(seededOrder(64, 7, 3), seededOrder(64, 8, 3));
    assert.notDeepEqual(seededOrder(64, 7, 3), seededOrder(64, 7, 4));
    const a = chooseExperts(s, 4, "random", undefined, 5);
    assert.deepEqual(a.kept, chooseExperts(s, 4, "random", undefined, 5).kept);
    for (const k of a.kept.values()) assert.equal(new Set(k).size, 4);
  });
});

describe("writing the pruned model", () => {
  test("kept slices byte for byte (quantized blocks included), k lowered to N, provenance recorded", async () => {
    const dir = tmp();
    const src = await synthModel(path.join(dir, "m.gguf"));
    const layout = readGgufLayout(src);
    const s = analyzeMoe(layout);
    const choice = chooseExperts(
      s,
      2,
      "weight",
      saliencyFor([0, 1], 8, (l, e) => (l === 0 ? e : -e)),
    );
    const out = path.join(dir, "out.gguf");
    const r = await writePrunedModel(layout, s, choice, out, provenance({ keep: 0.25 }));
    const kept = assertPrunedFrom(src, out);
    assert.deepEqual(kept.get(0), [6, 7]);
    assert.deepEqual(kept.get(1), [0, 1]);
    const o = readGgufLayout(out);
    assert.equal(kvValue(o, "qwen3moe.expert_count"), 2);
    assert.equal(kvValue(o, "qwen3moe.expert_used_count"), 2);
    assert.equal(findKv(o, "qwen3moe.expert_count")!.type, GgufType.UINT32);
    assert.deepEqual(kvValue(o, "tokenizer.ggml.tokens"), ["a", "b", "ü", "€"]);
    assert.equal(kvValue(o, `${PROVENANCE_PREFIX}source_sha256`), "ab".repeat(32));
    assert.equal(kvValue(o, `${PROVENANCE_PREFIX}method`), "weight");
    assert.equal(kvValue(o, `${PROVENANCE_PREFIX}keep_fraction`), 0.25);
    assert.equal(kvValue(o, `${PROVENANCE_PREFIX}source_expert_count`), 8);
    assert.equal(kvValue(o, `${PROVENANCE_PREFIX}calibration`), "100 tokens from 1 file: cal.txt");
    assert.deepEqual(kvValue(o, `${PROVENANCE_PREFIX}calibration_files`), ["cal.txt"]);
    assert.equal(kvValue(o, `${PROVENANCE_PREFIX}seed`), undefined);
    assert.deepEqual(r.expert_count, { before: 8, after: 2 });
    assert.deepEqual(r.expert_used_count, { before: 4, after: 2 });
    assert.deepEqual(r.layers[0], { layer: 0, kept: [6, 7], removed: [0, 1, 2, 3, 4, 5], calibrated: true });
    assert.equal(r.sizes.out_bytes, fs.statSync(out).size);
    // 6 of 8 slices of the router (16 B), gate (68 B), down (32 B) and bias (4 B) go, in 2 layers.
    assert.equal(r.sizes.removed_expert_bytes, 2 * 6 * (16 + 68 + 32 + 4));
    assert.deepEqual(fs.readdirSync(dir).sort(), ["m.gguf", "out.gguf"], "no temporary file left behind");
  });

  test("a per-layer expert_used_count is lowered per layer; pruning a pruned file replaces its provenance", async () => {
    const dir = tmp();
    const src = await synthModel(path.join(dir, "m.gguf"), { used: [4, 1, 0] });
    const layout = readGgufLayout(src);
    const s = analyzeMoe(layout);
    const once = path.join(dir, "once.gguf");
    await writePrunedModel(
      layout,
      s,
      chooseExperts(s, 3, "random", undefined, 9),
      once,
      provenance({ method: "random", keep: 0.375, seed: 9, calibration: undefined }),
    );
    const o = readGgufLayout(once);
    assert.deepEqual(kvValue(o, "qwen3moe.expert_used_count"), [3, 1, 0]);
    assert.equal(kvValue(o, `${PROVENANCE_PREFIX}seed`), 9);
    assert.equal(kvValue(o, `${PROVENANCE_PREFIX}calibration`), "none (random selection)");
    const s2 = analyzeMoe(o);
    const twice = path.join(dir, "twice.gguf");
    await writePrunedModel(
      o,
      s2,
      chooseExperts(s2, 2, "random", undefined, 1),
      twice,
      provenance({ method: "random", keep: 0.67, seed: 1, calibration: undefined }),
    );
    const t = readGgufLayout(twice); // duplicate keys would be refused here
    assert.equal(kvValue(t, `${PROVENANCE_PREFIX}source_expert_count`), 3);
    assert.equal(t.kvs.filter((k) => k.key === `${PROVENANCE_PREFIX}seed`).length, 1);
    assertPrunedFrom(once, twice);
  });
});

describe("saliency", () => {
  const batch = (count: number, experts: number[], weights: number[], norms?: number[]): TraceBatch => ({
    start: 0,
    count,
    tokenIds: new Int32Array(count),
    byteStart: new Int32Array(count),
    byteEnd: new Int32Array(count),
    pieces: [],
    nll: new Float32Array(count),
    experts: Int32Array.from(experts),
    weights: Float32Array.from(weights),
    entropy: new Float32Array(count * 2),
    active: new Uint8Array(count * 2),
    expertNorms: norms ? Float32Array.from(norms) : undefined,
  });

  test("frequency counts non-zero-weight selections, weight sums gates, REAP averages gate × norm over routed tokens", () => {
    const acc = new SaliencyAccumulator([3, 5], 4, 2);
    // token 0: layer 3 → experts 1 (0.75, ‖·‖ 2) and 2 (0.25, 4); layer 5 → 0 (1.0, 1) and 3 zero-gated
    // token 1: layer 3 → 1 (0.5, 6) and 0 (0.5, 2);              layer 5 → an empty slot (-1) and 3 (1.0, 3)
    acc.add(batch(2, [1, 2, 0, 3, 1, 0, -1, 3], [0.75, 0.25, 1, 0, 0.5, 0.5, 0, 1], [2, 4, 1, 9, 6, 2, 0, 3]));
    const [l3, l5] = acc.layers();
    assert.equal(acc.tokens, 2);
    assert.deepEqual(l3, { layer: 3, frequency: [1, 2, 1, 0], weight: [0.5, 1.25, 0.25, 0], reap: [1, (1.5 + 3) / 2, 1, 0] });
    assert.deepEqual(l5, { layer: 5, frequency: [1, 0, 0, 1], weight: [1, 0, 0, 1], reap: [1, 0, 0, 3] });
    const noNorms = new SaliencyAccumulator([0], 4, 1);
    noNorms.add({ ...batch(1, [2], [1]), entropy: new Float32Array(1), active: new Uint8Array(1) });
    assert.equal(noNorms.layers()[0].reap, null);
    assert.throws(() => acc.add(batch(1, [1, 2], [1, 1])), /expected 1×2×2/);
  });

  test("saliency files are checked against the model", () => {
    const dir = tmp();
    const f = path.join(dir, "s.json");
    fs.writeFileSync(f, JSON.stringify(saliencyFor([0], 4, () => 1)));
    assert.equal(readSaliency(f, "x".repeat(64)).layers.length, 1);
    assert.throws(() => readSaliency(f, "y".repeat(64)), /measured on another model/);
    fs.writeFileSync(f, JSON.stringify({ format: "moe-lens-ant-predictor" }));
    assert.throws(() => readSaliency(f), /not a MoE Lens saliency file/);
    fs.writeFileSync(f, JSON.stringify({ ...saliencyFor([0], 4, () => 1), n_expert: 5 }));
    assert.throws(() => readSaliency(f), /n_expert = 5/);
  });
});

describe("calibration text", () => {
  const collect = async (it: AsyncIterable<string>) => {
    const out: string[] = [];
    for await (const p of it) out.push(p);
    return out;
  };

  test("files are read in bounded pieces cut at line ends, never inside a character", async () => {
    const dir = tmp();
    const lines = Array.from({ length: 300 }, (_v, i) => `line ${i}: Grüße, 世界 🌍 ${"x".repeat(i % 17)}\n`);
    const longLine = "ä€🌍".repeat(200);
    const text = lines.join("") + longLine + "\nend\n";
    const f = path.join(dir, "cal.txt");
    fs.writeFileSync(f, text);
    for (const source of [fileSource(f, 1000), textSource("t", text, 1000)]) {
      const pieces = await collect(source.pieces());
      assert.equal(pieces.join(""), text);
      for (const p of pieces) assert.ok(Buffer.byteLength(p) <= 1000);
      assert.ok(
        pieces.slice(0, 5).every((p) => p.endsWith("\n")),
        "cut at line ends where there are some",
      );
    }
  });

  test("a folder is walked in order; binary files, hidden entries and node_modules are skipped", () => {
    const dir = tmp();
    fs.mkdirSync(path.join(dir, "sub"));
    fs.mkdirSync(path.join(dir, ".git"));
    fs.mkdirSync(path.join(dir, "node_modules"));
    fs.writeFileSync(path.join(dir, "b.md"), "# hello\n");
    fs.writeFileSync(path.join(dir, "sub", "a.py"), "print(1)\n");
    fs.writeFileSync(path.join(dir, ".git", "HEAD"), "ref\n");
    fs.writeFileSync(path.join(dir, "node_modules", "x.js"), "x\n");
    fs.writeFileSync(path.join(dir, "img.png"), Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 0, 0, 13]));
    fs.writeFileSync(path.join(dir, "latin1.txt"), Buffer.from([0x47, 0x72, 0xfc, 0xdf, 0x65]));
    fs.writeFileSync(path.join(dir, "empty.txt"), "");
    const r = calibrationSources(dir);
    assert.deepEqual(
      r.sources.map((s) => path.relative(dir, s.name)),
      ["b.md", path.join("sub", "a.py")],
    );
    assert.deepEqual(
      r.skipped.map((s) => path.basename(s)),
      ["img.png", "latin1.txt"],
    );
    assert.throws(() => calibrationSources(path.join(dir, "img.png")), /not UTF-8 text/);
    assert.throws(() => calibrationSources(path.join(dir, "nope")), /no such file or folder/);
  });

  test("the interleaved split gives every stretch of a text to both parts, losing nothing", () => {
    const lines = Array.from({ length: 400 }, (_v, i) => `${i}\n`);
    const { calibration, heldout } = splitInterleaved(lines.join(""), 0.25);
    const cal = calibration.split("\n").filter(Boolean).map(Number);
    const held = heldout.split("\n").filter(Boolean).map(Number);
    assert.equal(cal.length, 80, "blocks 3 and 7 of 10");
    assert.deepEqual(
      [...cal, ...held].sort((a, b) => a - b),
      lines.map((_l, i) => i),
    );
    assert.deepEqual(cal.slice(0, 3), [120, 121, 122], "block 3 (lines 120-159) is the first calibration block");
    assert.deepEqual(cal.slice(40, 43), [280, 281, 282]);
    assert.throws(() => splitInterleaved("a\n", 1), /in \(0, 1\)/);
  });
});
