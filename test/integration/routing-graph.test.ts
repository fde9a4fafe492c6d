// The routing policies that run inside llama.cpp's graph (native/patches/0002): AMG in both
// modes, min_k, the max_k cap and disable/boost give exactly what their rule says when
// applied to the baseline routing of the same text, on the demo model and on random models of
// several MoE architectures; skipping the dropped experts' computation changes no number.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { Policy } from "../../shared/policy";
import type { ServerProcess } from "../../extension/core/server-process";
import type { Trace } from "../../shared/trace";
import { DEMO_MODEL, startServer, tinyModel } from "../helpers";

const SAMPLE =
  "The river ran quietly past the old mill.\n```python\ndef area(r):\n    return 3.14159 * r * r\n```\n" +
  '{"name": "mill", "built": 1852}\nDer Fluss floss ruhig an der alten Mühle vorbei.\n12 + 35 = 47\n';

/**
 * The cumulative-threshold rule (docs: native/API.md, policy object) for one token and layer:
 * walk the slots by descending final weight, keep a rank while the ranks before it hold less
 * than τ of the total, then at least min_k and at most cap ranks; survivors keep the mass.
 */
function gateOracle(w: number[], opts: { tau?: number; minK?: number; cap?: number; values?: number[]; total?: number }): number[] {
  const k = w.length;
  const order = [...w.keys()].sort((a, b) => w[b] - w[a] || a - b);
  const values = opts.values ?? w;
  const mass = w.reduce((s, x) => s + x, 0);
  const total = opts.total ?? values.reduce((s, x) => s + x, 0);
  const target = opts.tau === undefined ? Infinity : opts.tau * (1 - 1e-6) * total;
  const keep = new Array<boolean>(k).fill(false);
  let before = 0;
  order.forEach((slot, rank) => {
    keep[slot] = (before < target || rank < (opts.minK ?? 1)) && rank < (opts.cap ?? k);
    before += values[slot];
  });
  const kept = w.reduce((s, x, i) => s + (keep[i] ? x : 0), 0);
  return w.map((x, i) => (keep[i] ? (x * mass) / kept : 0));
}

/**
 * Checks a gated trace against the rule, row by row. A policy changes the output of every MoE
 * layer, so only the first MoE layer routes the same input as the baseline trace: there the
 * rule is applied to the baseline's weights. Deeper layers (`allLayers`, for softmax gating with
 * renormalised weights, like the demo model) take the router's weights from the gated trace's
 * own router distribution (top_n = n_expert): w_i = p_i / Σ_selected p.
 */
function assertGated(base: Trace, gated: Trace, opts: { tau?: number; minK?: number; cap?: number; full?: boolean; allLayers?: boolean }): number {
  const { n_moe_layers: L, k: K, top_n: N } = base.header;
  let dropped = 0;
  for (let token = 0; token < base.columns.count; token++) {
    for (let m = 0; m < (opts.allLayers ? L : 1); m++) {
      const row = token * L + m;
      const own = m > 0 ? gated : base;
      const ids = Array.from(own.columns.experts.subarray(row * K, (row + 1) * K));
      if (m === 0)
        assert.deepEqual(Array.from(gated.columns.experts.subarray(row * K, (row + 1) * K)), ids, `token ${token}: the first layer's selection is unchanged`);
      // the router distribution of this row, by expert id
      const p = new Map<number, number>();
      if (N > 0) {
        const topIds = own.columns.topIds!.subarray(row * N, (row + 1) * N);
        const topProbs = own.columns.topProbs!.subarray(row * N, (row + 1) * N);
        topIds.forEach((id, i) => p.set(id, topProbs[i]));
      }
      const selectedProbs = ids.map((e) => p.get(e)!);
      const w =
        m === 0 ? Array.from(base.columns.weights.subarray(row * K, (row + 1) * K)) : selectedProbs.map((x) => x / selectedProbs.reduce((a, b) => a + b, 0));
      const full = opts.full ? { values: selectedProbs, total: [...p.values()].reduce((a, b) => a + b, 0) } : {};
      const want = gateOracle(w, { ...opts, ...full });
      const got = gated.columns.weights.subarray(row * K, (row + 1) * K);
      const tol = m === 0 ? 1e-6 : 1e-4; // deeper rows: weights recomputed from f32 probabilities
      for (let i = 0; i < K; i++) {
        assert.equal(got[i] === 0, want[i] === 0, `token ${token} layer ${m} slot ${i}: kept ${got[i] !== 0}, rule says ${want[i] !== 0} (w=${w})`);
        assert.ok(Math.abs(got[i] - want[i]) <= tol * Math.max(1, want[i]), `token ${token} layer ${m} slot ${i}: ${got[i]} vs ${want[i]}`);
        if (want[i] === 0) dropped++;
      }
      assert.equal(gated.columns.active[row], want.filter((x) => x !== 0).length);
    }
  }
  return dropped;
}

describe("in-graph routing on the demo model", () => {
  let server: ServerProcess;
  let base: Trace;
  before(async () => {
    server = await startServer(DEMO_MODEL);
    const info = await server.client.modelInfo();
    base = await server.client.trace({ text: SAMPLE, top_n: info.n_expert });
  });
  after(async () => server?.stop());

  test("AMG (selected mode) at several thresholds and min_k follows the rule; τ = 1 is the baseline bit for bit", async () => {
    for (const [tau, minK] of [
      [0.5, 1],
      [0.9, 1],
      [0.5, 2],
    ] as const) {
      const t = await server.client.trace({ text: SAMPLE, top_n: base.header.top_n, policy: { amg: { threshold: tau, min_k: minK } } });
      const dropped = assertGated(base, t, { tau, minK, allLayers: true });
      if (minK === 1 && tau === 0.5) assert.ok(dropped > 0, "τ = 0.5 drops experts on this text");
      if (minK === 2) assert.equal(dropped, 0, "min_k = k keeps all");
    }
    const one = await server.client.trace({ text: SAMPLE, policy: { amg: { threshold: 1 } } });
    assert.deepEqual(one.columns.weights, base.columns.weights);
    assert.deepEqual(one.columns.nll, base.columns.nll);
  });

  test("AMG over the full distribution (top-p) follows the rule", async () => {
    const t = await server.client.trace({ text: SAMPLE, top_n: base.header.top_n, policy: { amg: { threshold: 0.3, mode: "full" } } });
    assert.ok(assertGated(base, t, { tau: 0.3, full: true, allLayers: true }) > 0);
  });

  test("max_k below k caps the survivors by weight", async () => {
    const t = await server.client.trace({ text: SAMPLE, top_n: base.header.top_n, policy: { max_k: 1 } });
    assertGated(base, t, { cap: 1, allLayers: true });
    assert.ok(t.columns.active.every((a) => a === 1));
  });

  test("disable removes an expert from the selection; boost makes it more frequent", async () => {
    const { n_moe_layers: L, k: K } = base.header;
    const layer = base.header.model.moe_layers[L - 1];
    const count = (t: Trace, e: number) => {
      let n = 0;
      for (let row = 0; row < t.columns.count; row++) for (let i = 0; i < K; i++) if (t.columns.experts[(row * L + L - 1) * K + i] === e) n++;
      return n;
    };
    const top = [...Array(base.header.model.n_expert).keys()].sort((a, b) => count(base, b) - count(base, a))[0];
    const rare = [...Array(base.header.model.n_expert).keys()].sort((a, b) => count(base, a) - count(base, b))[0];
    const disabled = await server.client.trace({ text: SAMPLE, policy: { disable: [[layer, top]] } });
    assert.equal(count(disabled, top), 0);
    const boosted = await server.client.trace({ text: SAMPLE, policy: { boost: [[layer, rare, 4]] } });
    assert.ok(count(boosted, rare) > count(base, rare), `boost: ${count(boosted, rare)} vs ${count(base, rare)}`);
    // other layers are untouched by a bias on the last one
    for (let row = 0; row < base.columns.count; row++)
      for (let m = 0; m < L - 1; m++)
        for (let i = 0; i < K; i++) assert.equal(disabled.columns.experts[(row * L + m) * K + i], base.columns.experts[(row * L + m) * K + i]);
  });

  test("skip on and off give the same routing and the same numbers", async () => {
    for (const policy of [{ amg: { threshold: 0.5 } }, { max_k: 1 }] as Policy[]) {
      const on = await server.client.trace({ text: SAMPLE, policy });
      const off = await server.client.trace({ text: SAMPLE, policy: { ...policy, skip: false } });
      assert.deepEqual(on.columns.experts, off.columns.experts);
      assert.deepEqual(on.columns.weights, off.columns.weights);
      for (let i = 0; i < on.columns.count; i++) {
        const a = on.columns.nll[i],
          b = off.columns.nll[i];
        assert.ok((Number.isNaN(a) && Number.isNaN(b)) || Math.abs(a - b) <= 1e-5 * Math.max(1, Math.abs(b)), `token ${i}: ${a} vs ${b}`);
      }
    }
  });
});

describe("in-graph routing on random models of other architectures", () => {
  // qwen2moe has a shared expert, deepseek2 sigmoid gating with a selection bias, gpt-oss
  // softmax after top-k and expert biases (ggml's add_id with skipped slots).
  for (const arch of ["qwen3moe-moe", "qwen2moe-moe", "deepseek2-moe", "gpt-oss-moe"]) {
    test(`${arch}: AMG and the cap follow the rule, skip changes nothing, perplexity within 1e-5`, async () => {
      const server = await startServer(tinyModel(arch));
      try {
        const info = await server.client.modelInfo();
        const text = SAMPLE.repeat(6);
        const base = await server.client.trace({ text, top_n: info.n_expert });
        const policy: Policy = { amg: { threshold: 0.5 } };
        const gated = await server.client.trace({ text, top_n: info.n_expert, policy });
        assertGated(base, gated, { tau: 0.5 });
        if (info.n_expert_used > 1) assertGated(base, await server.client.trace({ text, top_n: info.n_expert, policy: { max_k: 1 } }), { cap: 1 });
        const off = await server.client.trace({ text, policy: { ...policy, skip: false } });
        assert.deepEqual(gated.columns.weights, off.columns.weights);
        const nCtx = 64;
        const on = await server.client.perplexity({ text, n_ctx: nCtx, policy });
        const zero = await server.client.perplexity({ text, n_ctx: nCtx, policy: { ...policy, skip: false } });
        assert.ok(Math.abs(on.ppl - zero.ppl) <= 1e-5 * zero.ppl, `ppl skip ${on.ppl} vs zero-gating ${zero.ppl}`);
        assert.equal(on.avg_active_experts, zero.avg_active_experts);
      } finally {
        await server.stop();
      }
    });
  }
});
