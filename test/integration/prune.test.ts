// Expert pruning against the real server and llama.cpp: saliency measured by the server on
// real text, pruned files that llama-perplexity and moe-lens-server load (reporting the new
// expert count), expert tensors equal to the kept slices of the source byte for byte with the
// router rows in the same order, keep 1.0 reproducing the source's perplexity digit for digit;
// on the demo model, on tiny random models of four architectures (widened to 8 experts: a
// shared expert, selection biases with expert groups, expert and router biases, a leading
// dense layer) and on a quantized (Q4_K) random qwen3moe whose k must be lowered.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, test } from "node:test";
import { chooseExperts, keptExpertCount, openForPruning, PROVENANCE_PREFIX, writePrunedModel } from "../../extension/core/prune";
import {
  computeSaliency,
  EXPERT_NORMS_CAPABILITY,
  expertOrder,
  hasExpertNorms,
  textSource,
  type PruneMethod,
  type SaliencyFile,
} from "../../extension/core/saliency";
import type { TraceBatch } from "../../shared/trace";
import { DEMO_MODEL, FINE_MODEL, llamaPerplexity, requireFile, ROOT, startServer, tempFile, tinyModel, variedText } from "../helpers";
import { assertPrunedFrom, kvValue, widenExperts } from "../prune-helpers";

const CLI = path.join(ROOT, "bin", "moe-lens.js");
const FIXTURES = path.join(ROOT, "test", "fixtures");
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), "moe-lens-prune-"));

function cli(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", cwd: ROOT, timeout: 300_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function cliJson<T>(args: string[]): T {
  const r = cli([...args, "--json", "--threads", "2"]);
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as T;
}

/** Perplexity text for the demo model: the mixed sample and three labelled documents (≈ 2,000 tokens). */
function demoEvalFile(): string {
  const parts = ["demo-sample.md", "transitions/01.txt", "transitions/02.txt", "transitions/03.txt"].map((f) =>
    fs.readFileSync(path.join(FIXTURES, f), "utf8"),
  );
  return tempFile("prune-eval.txt", parts.join("\n"));
}

async function expertIdsTraced(model: string, text: string): Promise<{ nExpert: number; k: number; maxId: number }> {
  const server = await startServer(model, { ctx: 128 });
  try {
    const info = await server.client.modelInfo();
    const tr = await server.client.trace({ text });
    return { nExpert: info.n_expert, k: info.n_expert_used, maxId: Math.max(...tr.columns.experts) };
  } finally {
    await server.stop();
  }
}

describe("prune: demo model", () => {
  test("keep 0.75 by gate weight keeps the 6 most-weighted experts byte for byte, runs in llama-perplexity and the server; keep 1.0 reproduces the source's perplexity", async () => {
    const dir = tmp();
    const salFile = path.join(dir, "saliency.json");
    const calibration = path.join(FIXTURES, "demo-sample.md");
    cliJson(["saliency", "--calibration", calibration, "--out", salFile]);
    const sal = JSON.parse(fs.readFileSync(salFile, "utf8")) as SaliencyFile;
    const tokens = sal.calibration.tokens;
    assert.equal(tokens, 838);
    assert.deepEqual(
      sal.layers.map((l) => l.layer),
      [0, 1, 2, 3],
    );
    for (const l of sal.layers) {
      // At baseline every token fills k = 2 slots with non-zero, renormalised weights.
      assert.equal(
        l.frequency.reduce((a, b) => a + b, 0),
        2 * tokens,
      );
      assert.ok(Math.abs(l.weight.reduce((a, b) => a + b, 0) - tokens) < 1e-3 * tokens);
    }

    const p75 = path.join(dir, "demo-75.gguf");
    const r = cliJson<{
      expert_count: { before: number; after: number };
      expert_used_count: { after: number };
      layers: Array<{ layer: number; kept: number[]; removed: number[] }>;
      sizes: { out_bytes: number; source_bytes: number };
    }>(["prune", "--model", DEMO_MODEL, "--saliency", salFile, "--keep", "0.75", "--method", "weight", "--out", p75]);
    assert.deepEqual(r.expert_count, { before: 8, after: 6 });
    assert.equal(r.expert_used_count.after, 2);
    assert.equal(r.sizes.out_bytes, fs.statSync(p75).size);
    assert.ok(r.sizes.out_bytes < r.sizes.source_bytes);
    const kept = assertPrunedFrom(DEMO_MODEL, p75);
    for (const l of sal.layers) {
      const top6 = expertOrder(l, "weight")
        .slice(0, 6)
        .sort((a, b) => a - b);
      assert.deepEqual(kept.get(l.layer), top6, `layer ${l.layer}: the 6 experts with the largest summed gate weight`);
      assert.deepEqual(r.layers.find((x) => x.layer === l.layer)!.kept, top6);
    }
    const out = openForPruning(p75).layout;
    assert.equal(kvValue(out, `${PROVENANCE_PREFIX}method`), "weight");
    assert.equal(kvValue(out, `${PROVENANCE_PREFIX}calibration_tokens`), 838);

    const traced = await expertIdsTraced(p75, fs.readFileSync(calibration, "utf8"));
    assert.deepEqual({ nExpert: traced.nExpert, k: traced.k }, { nExpert: 6, k: 2 });
    assert.ok(traced.maxId < 6);

    const evalFile = demoEvalFile();
    const source = llamaPerplexity(DEMO_MODEL, evalFile, 128);
    const pruned = llamaPerplexity(p75, evalFile, 128);
    assert.ok(Number.isFinite(Number(pruned.ppl)) && pruned.ppl !== source.ppl, `pruned ${pruned.ppl} vs source ${source.ppl}`);

    const p100 = path.join(dir, "demo-100.gguf");
    cliJson(["prune", "--model", DEMO_MODEL, "--saliency", salFile, "--keep", "1", "--method", "frequency", "--out", p100]);
    assertPrunedFrom(DEMO_MODEL, p100);
    const same = llamaPerplexity(p100, evalFile, 128);
    assert.deepEqual(same, source, "keep 1.0: the same chunks and final estimate as the source");
  });

  test(`REAP: the server's expert-output norms are per expert, independent of the gate, and fold into the saliency`, async (t) => {
    const server = await startServer(DEMO_MODEL);
    let sal!: SaliencyFile;
    const text = fs.readFileSync(path.join(FIXTURES, "demo-sample.md"), "utf8");
    try {
      const info = await server.client.modelInfo();
      if (!hasExpertNorms(info))
        return t.skip(`this moe-lens-server lacks the "${EXPERT_NORMS_CAPABILITY}" capability (GET /v1/model "capabilities"), which REAP needs`);
      /** The run's slots, [token][moe layer][slot], concatenated over its batches. */
      const collect = async (policy?: { amg: { threshold: number } }) => {
        const batches: TraceBatch[] = [];
        await server.client.traceStream({ text, expert_norms: true, ...(policy ? { policy } : {}) }, { onBatch: (b) => void batches.push(b) });
        for (const b of batches) assert.equal(b.expertNorms?.length, b.experts.length, "a norm per slot");
        const cat = <T extends Int32Array | Float32Array>(f: (b: TraceBatch) => T, make: (n: number) => T) => {
          const out = make(batches.reduce((n, b) => n + f(b).length, 0));
          let at = 0;
          for (const b of batches) {
            out.set(f(b), at);
            at += f(b).length;
          }
          return out;
        };
        return {
          experts: cat(
            (b) => b.experts,
            (n) => new Int32Array(n),
          ),
          weights: cat(
            (b) => b.weights,
            (n) => new Float32Array(n),
          ),
          norms: cat(
            (b) => b.expertNorms!,
            (n) => new Float32Array(n),
          ),
        };
      };
      const base = await collect();
      const amg = await collect({ amg: { threshold: 0.5 } });
      const L = info.moe_layers.length,
        K = info.n_expert_used,
        E = info.n_expert;
      const sum = new Float64Array(L * E),
        count = new Float64Array(L * E);
      let compared = 0,
        zeroed = 0;
      const b = base,
        a = amg;
      assert.equal(a.experts.length, b.experts.length);
      for (let i = 0; i < b.experts.length; i++) {
        assert.ok(b.weights[i] > 0 && b.norms[i] > 0 && Number.isFinite(b.norms[i]), `slot ${i}: a selected expert has a positive output norm`);
        const m = Math.floor(i / K) % L;
        sum[m * E + b.experts[i]] += b.weights[i] * b.norms[i];
        count[m * E + b.experts[i]] += 1;
        if (a.weights[i] === 0) {
          assert.equal(a.norms[i], 0, "a zero-gated (skipped) slot has norm 0");
          zeroed++;
        } else if (m === 0 && a.experts[i] === b.experts[i]) {
          // Layer 0 sees the same input under both policies, and the norm is taken before gate weighting.
          assert.ok(Math.abs(a.norms[i] - b.norms[i]) <= 1e-4 * b.norms[i], `layer 0 slot ${i}: ${a.norms[i]} vs ${b.norms[i]}`);
          compared++;
        }
      }
      assert.ok(compared > 500 && zeroed > 500, `compared ${compared}, zero-gated ${zeroed}`);
      sal = await computeSaliency(server.client, [textSource("demo-sample.md", text)], { modelSha256: "0".repeat(64) });
      for (const [m, l] of sal.layers.entries()) {
        for (let e = 0; e < E; e++) {
          const want = count[m * E + e] ? sum[m * E + e] / count[m * E + e] : 0;
          assert.ok(Math.abs(l.reap![e] - want) <= 1e-9 * Math.max(1, want), `layer ${l.layer} expert ${e}: REAP ${l.reap![e]} vs ${want}`);
        }
      }
    } finally {
      await server.stop();
    }
    const dir = tmp();
    const out = path.join(dir, "demo-reap.gguf");
    const r = cliJson<{ method: string; layers: Array<{ layer: number; kept: number[] }> }>([
      "prune",
      "--model",
      DEMO_MODEL,
      "--calibration",
      path.join(FIXTURES, "demo-sample.md"),
      "--keep",
      "0.5",
      "--out",
      out,
    ]);
    assert.equal(r.method, "reap", "REAP is the default method");
    for (const l of sal.layers)
      assert.deepEqual(
        r.layers.find((x) => x.layer === l.layer)!.kept,
        expertOrder(l, "reap")
          .slice(0, 4)
          .sort((a, b) => a - b),
      );
    assertPrunedFrom(DEMO_MODEL, out);
    assert.ok(Number.isFinite(Number(llamaPerplexity(out, demoEvalFile(), 128).ppl)));
  });

  test("refusals: a dense model, a corrupt or foreign file, a keep too small, bad flags, an existing output", () => {
    const dir = tmp();
    const refuse = (args: string[], status: number, re: RegExp) => {
      const r = cli(args);
      assert.equal(r.status, status, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, re);
      assert.equal(r.stderr.trim().split("\n").length, 1, "one line");
    };
    const out = path.join(dir, "out.gguf");
    const base = ["prune", "--method", "random", "--out", out];
    refuse([...base, "--model", tinyModel("llama-dense"), "--keep", "0.5"], 1, /has no routed experts \(a dense llama model\): there is nothing to prune/);
    const cut = path.join(dir, "cut.gguf");
    fs.writeFileSync(cut, fs.readFileSync(DEMO_MODEL).subarray(0, 4_000_000));
    refuse([...base, "--model", cut, "--keep", "0.5"], 1, /is truncated or corrupt: tensor/);
    refuse([...base, "--model", path.join(FIXTURES, "demo-sample.md"), "--keep", "0.5"], 1, /not a GGUF file/);
    refuse([...base, "--model", DEMO_MODEL, "--keep", "0.1"], 1, /leaves 1; at least 2 must remain/);
    refuse([...base, "--model", DEMO_MODEL, "--keep", "1.5"], 2, /--keep must be a fraction in \(0, 1\]/);
    refuse(
      ["prune", "--model", DEMO_MODEL, "--keep", "0.5", "--method", "magnitude", "--out", out],
      2,
      /--method must be one of reap, weight, frequency, random/,
    );
    refuse(["prune", "--model", DEMO_MODEL, "--keep", "0.5", "--method", "weight", "--out", out], 2, /needs --calibration FILE\|DIR/);
    refuse([...base, "--model", DEMO_MODEL, "--keep", "0.5", "--out", DEMO_MODEL], 2, /must not be the model itself/);
    assert.ok(!fs.existsSync(out), "nothing written");
    fs.writeFileSync(out, "keep me");
    refuse([...base, "--model", DEMO_MODEL, "--keep", "0.5"], 2, /exists; pass --force/);
    assert.equal(fs.readFileSync(out, "utf8"), "keep me");
    const r = cli([...base, "--model", DEMO_MODEL, "--keep", "0.5", "--seed", "4", "--force"]);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(fs.readdirSync(dir).sort(), ["cut.gguf", "out.gguf"], "no temporary file left");
    assert.equal(kvValue(openForPruning(out).layout, `${PROVENANCE_PREFIX}seed`), 4);
  });
});

// Random models of test-llama-archs (2 experts each), widened to 8 experts.
const ARCHS: Array<{ arch: string; what: string; groups?: { count: number; used: number } }> = [
  { arch: "qwen2moe", what: "shared expert with its own gate" },
  {
    arch: "deepseek2",
    what: "sigmoid gating, selection bias exp_probs_b, 2 expert groups, a shared expert, a leading dense layer",
    groups: { count: 2, used: 1 },
  },
  { arch: "gpt-oss", what: "router and expert biases, softmax after top-k" },
  { arch: "glm4moe", what: "selection bias, shared expert, a leading dense layer" },
];

describe("prune: architectures", () => {
  for (const { arch, what, groups } of ARCHS) {
    test(`${arch} (${what}): keep 0.5 loads in llama.cpp and the server with 4 experts, slices byte for byte; keep 1.0 reproduces perplexity`, async (t) => {
      let tiny: string;
      try {
        tiny = tinyModel(`${arch}-moe`);
      } catch (err) {
        return t.skip(String((err as Error).message));
      }
      const dir = tmp();
      const wide = await widenExperts(tiny, path.join(dir, `${arch}-8.gguf`), 8, { groups });
      const { layout, structure } = openForPruning(wide);
      const server = await startServer(wide, { ctx: 128 });
      let sal: SaliencyFile;
      let method: PruneMethod;
      try {
        method = hasExpertNorms(await server.client.modelInfo()) ? "reap" : "weight";
        sal = await computeSaliency(server.client, [textSource("varied", variedText(600))], { modelSha256: "0".repeat(64) });
      } finally {
        await server.stop();
      }
      const write = async (keep: number) => {
        const out = path.join(dir, `${arch}-${keep}.gguf`);
        const choice = chooseExperts(structure, keptExpertCount(structure, keep), method, sal);
        await writePrunedModel(layout, structure, choice, out, {
          method,
          keep,
          sourceSha256: "0".repeat(64),
          calibration: { files: ["varied"], tokens: sal.calibration.tokens },
        });
        return { out, choice };
      };
      const half = await write(0.5);
      const kept = assertPrunedFrom(wide, half.out);
      assert.deepEqual(kept, half.choice.kept);
      if (groups)
        for (const k of kept.values())
          assert.deepEqual(
            k.map((e) => Math.floor(e / 4)),
            [0, 0, 1, 1],
            "two experts from each group",
          );
      const traced = await expertIdsTraced(half.out, variedText(200));
      assert.equal(traced.nExpert, 4);
      assert.ok(traced.maxId < 4);
      const evalFile = tempFile("arch.txt", variedText(500));
      assert.ok(Number.isFinite(Number(llamaPerplexity(half.out, evalFile, 64).ppl)));
      const full = await write(1);
      assertPrunedFrom(wide, full.out);
      assert.deepEqual(llamaPerplexity(full.out, evalFile, 64), llamaPerplexity(wide, evalFile, 64));
    });
  }

  test("quantized (Q4_K) random qwen3moe, 16 experts, k = 8: keep 0.25 copies blocks exactly and lowers k to 4", () => {
    const dir = tmp();
    const src = path.join(dir, "q4k.gguf");
    const bench = requireFile(
      path.join(ROOT, "out", "bin", process.platform === "win32" ? "moe-lens-bench.exe" : "moe-lens-bench"),
      "run `npm run build:native`",
    );
    const w = spawnSync(
      bench,
      ["random-moe", "-m", DEMO_MODEL, "-o", src, "--layers", "2", "--embd", "256", "--ff", "256", "--experts", "16", "--k", "8", "--type", "q4_k"],
      { encoding: "utf8" },
    );
    assert.equal(w.status, 0, w.stderr);
    const out = path.join(dir, "q4k-25.gguf");
    const r = cliJson<{ expert_count: { after: number }; expert_used_count: { before: number; after: number } }>([
      "prune",
      "--model",
      src,
      "--keep",
      "0.25",
      "--method",
      "random",
      "--seed",
      "3",
      "--out",
      out,
    ]);
    assert.deepEqual([r.expert_count.after, r.expert_used_count.before, r.expert_used_count.after], [4, 8, 4]);
    assertPrunedFrom(src, out);
    const info = cliJson<{ n_expert: number; n_expert_used: number; n_expert_used_trained: number }>(["info", "--model", out]);
    assert.deepEqual([info.n_expert, info.n_expert_used, info.n_expert_used_trained], [4, 4, 4]);
    assert.ok(Number.isFinite(Number(llamaPerplexity(out, demoEvalFile(), 128).ppl)));
  });
});

describe("prune: the fine-grained demo model", () => {
  // Issue 16's claim, kept true: on text the saliency never saw, the best criterion at keep 0.75
  // beats random's mean over three seeds. A quarter of heldout-mixed.txt (interleaved halves:
  // calibration and held-out) keeps the run near a minute on two cores.
  const FINE = FINE_MODEL;
  test("keep 0.75: REAP or gate weight beats random (mean of 3 seeds) on held-out text", (t) => {
    if (!fs.existsSync(FINE)) return void t.skip(`${FINE} is missing`);
    const text = fs.readFileSync(path.join(FIXTURES, "heldout-mixed.txt"), "utf8");
    const file = tempFile("fine-heldout.txt", text.slice(0, Math.floor(text.length / 4)));
    const r = cliJson<PruneEvalResultJson>([
      "prune-eval",
      "--model",
      FINE,
      "--heldout",
      file,
      "--calibration-share",
      "0.5",
      "--keeps",
      "0.75",
      "--methods",
      "reap,weight,random",
      "--seeds",
      "1,2,3",
    ]);
    const ppl = (m: string) => r.runs.filter((x) => x.method === m).map((x) => x.ppl);
    const random = ppl("random");
    assert.equal(random.length, 3);
    const randomMean = random.reduce((a, b) => a + b, 0) / random.length;
    const best = Math.min(...ppl("reap"), ...ppl("weight"));
    assert.ok(best < randomMean, `best criterion ${best} vs random mean ${randomMean} (${random.join(", ")})`);
    assert.ok(r.source.ppl < best, "pruning costs something");
  });
});

interface PruneEvalResultJson {
  source: { ppl: number };
  runs: Array<{ method: string; ppl: number }>;
}
