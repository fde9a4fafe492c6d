// The Vulkan build (`MOE_LENS_GPU=vulkan npm run build:native` → out/bin-vulkan/) against the
// CPU build (out/bin/): with every layer offloaded (-ngl 99) the model, its routing and every
// policy run on the Vulkan device, and the in-graph capture reads them back once per ubatch.
// Checked on the demo model and on tiny random models of other MoE architectures: the same
// experts on ≥ 99 % of (token, MoE layer) pairs per policy, complete trace records, and
// perplexity within 1e-3 relative (the server's and llama-perplexity's).
//
// Without a GPU this runs on Mesa's software Vulkan driver, lavapipe (Debian package
// mesa-vulkan-drivers). ggml-vulkan offloads only to discrete and integrated GPUs unless
// GGML_VK_VISIBLE_DEVICES names the devices, and lavapipe is a CPU-type device, so this suite
// sets GGML_VK_VISIBLE_DEVICES=0 (Vulkan device 0) for the servers and tools it starts when
// the environment does not set it. Without out/bin-vulkan/ every test skips, saying so.
// Status: on lavapipe the server's traces still crash, so with out/bin-vulkan/ these tests fail
// today (issue 14 is open; README, "Your own model, and GPUs"); `tools/setup.sh` builds Vulkan
// only with MOE_LENS_VULKAN=1.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { fitAntPredictor } from "../../extension/core/ant";
import { b64ToFloat32 } from "../../extension/core/b64";
import { defaultServerBinary } from "../../extension/core/paths";
import type { Policy } from "../../shared/policy";
import type { ServerProcess } from "../../extension/core/server-process";
import type { Trace } from "../../shared/trace";
import type { ModelInfo } from "../../shared/wire";
import { DEMO_MODEL, llamaPerplexity, rawRequest, ROOT, startServer, tempFile, tinyModel } from "../helpers";

const VULKAN_SERVER = defaultServerBinary(ROOT, "vulkan");
process.env.GGML_VK_VISIBLE_DEVICES ??= "0";
const skip = fs.existsSync(VULKAN_SERVER) ? false : "no Vulkan build (out/bin-vulkan/moe-lens-server): run `MOE_LENS_GPU=vulkan npm run build:native`";

const SAMPLE = fs.readFileSync(path.join(ROOT, "test", "fixtures", "demo-sample.md"), "utf8");
const CALIBRATION = fs.readFileSync(path.join(ROOT, "test", "fixtures", "transitions", "01.txt"), "utf8").replace(/^<<<domain:\w+>>>\n/gm, "");
/** Text for perplexity: ≥ 2 chunks of 128 tokens on every model here. */
const PPL_TEXT = [SAMPLE, CALIBRATION].join("\n");

/** Starts the Vulkan server with every layer offloaded and checks that its routing runs on a Vulkan device. */
async function startVulkan(model: string, extra: { ctx?: number } = {}): Promise<ServerProcess> {
  const server = await startServer(model, { ...extra, binary: VULKAN_SERVER, gpuLayers: 99 });
  const info = await server.client.modelInfo();
  try {
    assert.ok(
      info.router_devices?.length && info.router_devices.every((d) => /^Vulkan\d+$/.test(d)),
      `the routing should run on a Vulkan device, ran on ${JSON.stringify(info.router_devices)} ` +
        "(no Vulkan device? without a GPU install Mesa's lavapipe, Debian package mesa-vulkan-drivers)",
    );
    assert.equal(info.skip_supported, false, "a GPU model zero-gates dropped experts");
  } catch (e) {
    await server.stop();
    throw e;
  }
  return server;
}

/** The experts a row keeps (non-zero weight), as a sorted list, for each (token, MoE layer). */
function keptSets(t: Trace): string[] {
  const { n_moe_layers: L, k: K } = t.header;
  const out: string[] = [];
  for (let row = 0; row < t.columns.count * L; row++) {
    const kept: number[] = [];
    for (let i = row * K; i < (row + 1) * K; i++) if (t.columns.weights[i] !== 0) kept.push(t.columns.experts[i]);
    out.push(kept.sort((a, b) => a - b).join());
  }
  return out;
}

/** Fraction of (token, MoE layer) pairs where both traces keep the same experts. */
function sameExperts(a: Trace, b: Trace): number {
  assert.equal(b.columns.count, a.columns.count);
  const x = keptSets(a),
    y = keptSets(b);
  return x.filter((s, i) => s === y[i]).length / x.length;
}

/** Every record of an in-graph capture is there and consistent with itself. */
function assertComplete(t: Trace, info: ModelInfo): void {
  const { n_moe_layers: L, k: K, top_n: N } = t.header;
  const n = t.columns.count;
  assert.equal(n, t.header.n_tokens);
  assert.equal(t.columns.experts.length, n * L * K);
  assert.equal(t.columns.weights.length, n * L * K);
  for (let row = 0; row < n * L; row++) {
    const ids = Array.from(t.columns.experts.subarray(row * K, (row + 1) * K));
    const w = Array.from(t.columns.weights.subarray(row * K, (row + 1) * K));
    assert.ok(ids.every((e) => e >= 0 && e < info.n_expert) && new Set(ids).size === K, `row ${row}: experts ${ids}`);
    assert.ok(
      w.every((x) => Number.isFinite(x) && x >= 0),
      `row ${row}: weights ${w}`,
    );
    assert.equal(t.columns.active[row], w.filter((x) => x !== 0).length, `row ${row}: active`);
    assert.ok(t.columns.active[row] >= 1);
    assert.ok(Number.isFinite(t.columns.entropy[row]) && t.columns.entropy[row] >= 0);
    if (N === info.n_expert) {
      const p = t.columns.topProbs!.subarray(row * N, (row + 1) * N);
      const top = new Set(t.columns.topIds!.subarray(row * N, (row + 1) * N));
      assert.ok(ids.every((e) => top.has(e)));
      if (info.gating === "softmax") assert.ok(Math.abs(p.reduce((s, x) => s + x, 0) - 1) < 1e-4, `row ${row}: router probabilities sum to 1`);
    }
  }
}

/** A raw trace with expert-output norms (the typed client does not ask for them). */
async function traceNorms(server: ServerProcess, text: string): Promise<{ weights: Float32Array; norms: Float32Array }> {
  const r = await rawRequest(server.port, "/v1/trace", { token: server.client.token, body: JSON.stringify({ text, expert_norms: true }) });
  assert.equal(r.status, 200, r.text);
  const batches = r.text
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l))
    .filter((rec) => rec.type === "batch");
  const cat = (field: string) => batches.flatMap((b) => Array.from(b64ToFloat32(b[field])));
  return { weights: Float32Array.from(cat("weights")), norms: Float32Array.from(cat("expert_norms")) };
}

/** Traces `text` on both servers under each policy and checks routing agreement and records. */
async function compareTraces(cpu: ServerProcess, vk: ServerProcess, text: string, policies: Policy[]): Promise<string[]> {
  const info = await vk.client.modelInfo();
  const lines: string[] = [];
  for (const policy of policies) {
    const a = await cpu.client.trace({ text, policy, top_n: info.n_expert });
    const b = await vk.client.trace({ text, policy, top_n: info.n_expert });
    assertComplete(b, info);
    const same = sameExperts(a, b);
    const pairs = a.columns.count * a.header.n_moe_layers;
    lines.push(
      `${JSON.stringify(policy)}: same experts on ${(100 * same).toFixed(2)} % of ${pairs} (token, layer) pairs, trace ppl ${b.summary!.ppl!.toFixed(4)} vs CPU ${a.summary!.ppl!.toFixed(4)}`,
    );
    assert.ok(same >= 0.99, lines.at(-1));
    assert.ok(Math.abs(b.summary!.avg_active - a.summary!.avg_active) <= 0.01 * a.header.k, lines.at(-1));
    assert.ok(Math.abs(b.summary!.ppl! / a.summary!.ppl! - 1) <= 1e-3, lines.at(-1));
  }
  return lines;
}

const POLICIES: Policy[] = [
  {},
  { amg: { threshold: 0.5 } },
  { amg: { threshold: 0.3, mode: "full", min_k: 1 } },
  { max_k: 1 },
  { beta: { beta: 0.5 } },
  { pi: { momentum: 0.9 } },
];

describe("Vulkan build on the demo model (-ngl 99)", () => {
  let cpu: ServerProcess | undefined;
  let vk: ServerProcess | undefined;
  before(async () => {
    if (skip) return;
    cpu = await startServer(DEMO_MODEL);
    vk = await startVulkan(DEMO_MODEL);
  });
  after(async () => {
    await vk?.stop();
    await cpu?.stop();
  });

  test("baseline, AMG (both modes), the k cap, β and Π route as on the CPU; capture records are complete", { skip }, async (t) => {
    for (const line of await compareTraces(cpu!, vk!, SAMPLE, POLICIES)) t.diagnostic(line);
  });

  test("disable and boost route as on the CPU", { skip }, async () => {
    const info = await vk!.client.modelInfo();
    const layer = info.moe_layers[0];
    await compareTraces(cpu!, vk!, SAMPLE, [
      {
        disable: [
          [layer, 0],
          [layer, 1],
        ],
      },
      { boost: [[layer, info.n_expert - 1, 3]] },
    ]);
  });

  test("Ant, with a predictor fitted from the Vulkan server's router logits, routes as on the CPU", { skip }, async () => {
    // calibration reads raw router logits through the eval callback on the Vulkan device
    const predictor = path.join(path.dirname(tempFile("x", "")), "demo.moe-ant.json");
    await fitAntPredictor(vk!.client, CALIBRATION, DEMO_MODEL, { outPath: predictor });
    await cpu!.client.loadPredictor(predictor);
    await compareTraces(cpu!, vk!, SAMPLE, [{ ant: { gamma: 1 } }]);
  });

  test("expert-output norms are captured in the graph on the device", { skip }, async () => {
    const a = await traceNorms(cpu!, SAMPLE);
    const b = await traceNorms(vk!, SAMPLE);
    assert.equal(b.norms.length, a.norms.length);
    let close = 0;
    for (let i = 0; i < a.norms.length; i++) {
      assert.ok(Number.isFinite(b.norms[i]) && b.norms[i] > 0, `slot ${i}: norm ${b.norms[i]}`);
      if (Math.abs(b.norms[i] - a.norms[i]) <= 1e-2 * a.norms[i]) close++;
    }
    assert.ok(close >= 0.99 * a.norms.length, `${close} of ${a.norms.length} norms within 1 % of the CPU's`);
  });

  test("perplexity within 1e-3 of the CPU build's, for the server and for llama-perplexity", { skip }, async (t) => {
    for (const policy of [{}, { amg: { threshold: 0.5 } }] as Policy[]) {
      const a = await cpu!.client.perplexity({ text: PPL_TEXT, n_ctx: 128, policy });
      const b = await vk!.client.perplexity({ text: PPL_TEXT, n_ctx: 128, policy });
      t.diagnostic(`server ${JSON.stringify(policy)}: Vulkan ${b.ppl.toFixed(4)} vs CPU ${a.ppl.toFixed(4)} (${(b.ppl / a.ppl - 1).toExponential(2)})`);
      assert.equal(b.tokens, a.tokens);
      assert.ok(Math.abs(b.ppl / a.ppl - 1) <= 1e-3, `${b.ppl} vs ${a.ppl}`);
      assert.ok(Math.abs(b.avg_active_experts - a.avg_active_experts) <= 0.01 * a.k);
    }
    const file = tempFile("ppl.txt", PPL_TEXT);
    const ref = Number(llamaPerplexity(DEMO_MODEL, file, 128).ppl);
    const gpu = Number(llamaPerplexity(DEMO_MODEL, file, 128, { backend: "vulkan", gpuLayers: 99 }).ppl);
    t.diagnostic(`llama-perplexity: Vulkan ${gpu} vs CPU ${ref} (${(gpu / ref - 1).toExponential(2)})`);
    assert.ok(Math.abs(gpu / ref - 1) <= 1e-3, `${gpu} vs ${ref}`);
  });
});

// Tiny random models (test-llama-archs): deepseek2 has sigmoid gating with a selection bias,
// gpt-oss softmax after top-k and expert biases (ggml's add_id).
describe("Vulkan build on random models of other architectures (-ngl 99)", () => {
  for (const file of ["qwen3moe-moe", "deepseek2-moe", "gpt-oss-moe"]) {
    test(`${file}: baseline, AMG, the k cap and β route as on the CPU; perplexity within 1e-3`, { skip }, async (t) => {
      const model = tinyModel(file);
      const cpu = await startServer(model, { ctx: 128 });
      let vk: ServerProcess | undefined;
      try {
        vk = await startVulkan(model, { ctx: 128 });
        for (const line of await compareTraces(cpu, vk, SAMPLE, [{}, { amg: { threshold: 0.5 } }, { max_k: 1 }, { beta: { beta: 0.5 } }])) t.diagnostic(line);
        const a = await cpu.client.perplexity({ text: PPL_TEXT, n_ctx: 64 });
        const b = await vk.client.perplexity({ text: PPL_TEXT, n_ctx: 64 });
        t.diagnostic(`perplexity: Vulkan ${b.ppl.toFixed(4)} vs CPU ${a.ppl.toFixed(4)}`);
        assert.ok(Math.abs(b.ppl / a.ppl - 1) <= 1e-3, `${b.ppl} vs ${a.ppl}`);
      } finally {
        await vk?.stop();
        await cpu.stop();
      }
    });
  }
});
