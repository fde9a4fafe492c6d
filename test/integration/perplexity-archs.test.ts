// Perplexity equals llama-perplexity's (same tree, same model, text and context) to every
// printed digit, on the demo model and on tiny random models of several MoE architectures;
// traces on those architectures are consistent with the recorded router distribution.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import { DEMO_MODEL, llamaPerplexity, ROOT, startServer, tempFile, tinyModel, variedText } from "../helpers";

const MODEL = process.env.MOE_LENS_TEST_MODEL ?? DEMO_MODEL;

function evalText(): string {
  const dir = path.join(ROOT, "test", "fixtures");
  const files = [
    "demo-sample.md",
    ...fs
      .readdirSync(path.join(dir, "transitions"))
      .filter((f) => f.endsWith(".txt"))
      .map((f) => path.join("transitions", f)),
  ];
  const text = files.map((f) => fs.readFileSync(path.join(dir, f), "utf8")).join("\n");
  return text.length > 20_000 ? text : (text + "\n" + fs.readFileSync(path.join(ROOT, "native", "API.md"), "utf8")).repeat(2);
}

describe("perplexity", () => {
  test("demo model: no policy equals llama-perplexity; AMG 0.5 lowers active experts and changes it", async () => {
    const text = evalText();
    const file = tempFile("eval.txt", text);
    const ref = llamaPerplexity(MODEL, file, 128);
    const server = await startServer(MODEL);
    try {
      const r = await server.client.perplexity({ text, n_ctx: 128 });
      assert.equal(r.ppl.toFixed(4), ref.ppl);
      assert.equal(r.ppl_err.toFixed(5), ref.err);
      assert.equal(r.printed, `Final estimate: PPL = ${ref.ppl} +/- ${ref.err}`);
      assert.equal(r.avg_active_experts, r.k);
      const amg = await server.client.perplexity({ text, n_ctx: 128, policy: { amg: { threshold: 0.5 } } });
      assert.ok(amg.avg_active_experts < amg.k, `avg active ${amg.avg_active_experts}`);
      assert.notEqual(amg.ppl.toFixed(4), ref.ppl);
      const one = await server.client.perplexity({ text, n_ctx: 128, policy: { amg: { threshold: 1 } } });
      assert.equal(one.ppl.toFixed(4), ref.ppl, "threshold 1.0 keeps every expert");
    } finally {
      await server.stop();
    }
  });
});

// Tiny random models of MoE architectures that go through build_moe_ffn.
const ARCHS: Array<{ file: string; gating: string }> = [
  { file: "qwen3moe-moe", gating: "softmax" },
  { file: "olmoe-moe", gating: "softmax" },
  { file: "qwen2moe-moe", gating: "softmax" },
  { file: "deepseek2-moe", gating: "sigmoid" },
  { file: "gpt-oss-moe", gating: "softmax_weight" },
  { file: "granitemoe-moe", gating: "softmax" },
  { file: "llama-moe", gating: "softmax" },
];

describe("architectures", () => {
  for (const { file, gating } of ARCHS) {
    test(`${file}: gating detected, trace consistent, perplexity equals llama-perplexity`, async (t) => {
      let model: string;
      try {
        model = tinyModel(file);
      } catch (err) {
        return t.skip(String((err as Error).message));
      }
      const server = await startServer(model, { ctx: 128 });
      try {
        const info = await server.client.modelInfo();
        assert.equal(info.gating, gating);
        const E = info.n_expert;
        const text = variedText(160);
        const tr = await server.client.trace({ text, top_n: E });
        const { n_moe_layers: L, k: K } = tr.header;
        assert.ok(L > 0 && K > 0);
        for (let i = 0; i < tr.columns.count; i++)
          for (let m = 0; m < L; m++) {
            const ids = tr.columns.topIds!.subarray((i * L + m) * E, (i * L + m) * E + K);
            const sel = tr.columns.experts.subarray((i * L + m) * K, (i * L + m + 1) * K);
            // Without selection bias the selected set is the top-k of the router output.
            if (gating !== "sigmoid") assert.deepEqual(Array.from(sel).sort(), Array.from(ids).sort(), `${file} token ${i} layer ${m}`);
            assert.equal(new Set(sel).size, K);
          }
        const pplText = variedText(800);
        const ref = llamaPerplexity(model, tempFile("arch.txt", pplText), 64);
        const r = await server.client.perplexity({ text: pplText, n_ctx: 64 });
        assert.equal(r.ppl.toFixed(4), ref.ppl);
        assert.equal(r.ppl_err.toFixed(5), ref.err);
        const amg = await server.client.trace({ text, policy: { amg: { threshold: 0.3 } } });
        assert.ok(amg.summary!.avg_active <= K);
      } finally {
        await server.stop();
      }
    });
  }
});
