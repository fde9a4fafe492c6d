// The real moe-lens-server on the bundled demo model: protocol, security, policies and
// every bad input of the native-server issue, checked from the client's side.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import { after, before, describe, test } from "node:test";
import { type ServerError } from "../../extension/core/server-client";
import type { ServerProcess } from "../../extension/core/server-process";
import { halfToFloat } from "../../shared/half";
import type { TraceBatch } from "../../shared/trace";
import { DEMO_MODEL, rawRequest, requireFile, SERVER_BIN, startServer, tempFile, tinyModel } from "../helpers";

const MODEL = process.env.MOE_LENS_TEST_MODEL ?? DEMO_MODEL;
const SAMPLE =
  'The river ran quietly past the old mill.\n```python\ndef area(r):\n    return 3.14159 * r * r\n```\n{"name": "mill", "built": 1852}\nDer Fluss floss ruhig an der alten Mühle vorbei. 🌊\n';

let server: ServerProcess;
before(async () => {
  requireFile(MODEL, "the demo model is built by tools/train (see README)");
  server = await startServer(MODEL);
});
after(async () => server?.stop());

function textOfSpans(text: string, starts: Int32Array, ends: Int32Array): string {
  const bytes = Buffer.from(text, "utf8");
  const parts: Buffer[] = [];
  for (let i = 0; i < starts.length; i++) parts.push(bytes.subarray(starts[i], ends[i]));
  return Buffer.concat(parts).toString("utf8");
}

describe("process", () => {
  test("ready line gives a port on loopback and requests need the token", async () => {
    assert.ok(server.port > 0);
    const none = await rawRequest(server.port, "/health");
    assert.equal(none.status, 401);
    const wrong = await rawRequest(server.port, "/health", { token: "x".repeat(64) });
    assert.equal(wrong.status, 401);
    assert.match(JSON.stringify(wrong.json), /unauthorized/);
    const ok = await rawRequest(server.port, "/health", { token: server.client.token });
    assert.equal(ok.status, 200);
    assert.deepEqual(ok.json, { ok: true, busy: false });
  });

  test("a non-loopback bind is refused unless --allow-remote", () => {
    const r = spawnSync(SERVER_BIN, ["-m", MODEL, "--host", "0.0.0.0", "--port", "0"], { encoding: "utf8", env: { ...process.env, MOE_LENS_TOKEN: "t" } });
    assert.equal(r.status, 2);
    const line = JSON.parse(r.stdout.trim().split("\n")[0]);
    assert.equal(line.event, "error");
    assert.match(line.message, /non-loopback/);
  });

  test("bad model files fail with one clear error line", () => {
    const cases: Array<[string, RegExp]> = [
      ["/nonexistent/model.gguf", /not found/],
      [tempFile("notes.gguf", "this is not a model"), /not a GGUF file/],
      [tempFile("truncated.gguf", fs.readFileSync(MODEL).subarray(0, 4096)), /is corrupt or truncated/],
      [tinyModel("llama-dense"), /has no experts/],
    ];
    for (const [file, why] of cases) {
      const r = spawnSync(SERVER_BIN, ["-m", file, "--port", "0"], { encoding: "utf8", env: { ...process.env, MOE_LENS_TOKEN: "t" }, timeout: 60_000 });
      assert.equal(r.status, 1, `${file}: ${r.stdout}`);
      const line = JSON.parse(r.stdout.trim().split("\n")[0]);
      assert.equal(line.event, "error");
      assert.match(line.message, why);
    }
  });
});

describe("model info and trace", () => {
  test("model info describes the MoE layout", async () => {
    const info = await server.client.modelInfo();
    assert.equal(info.architecture, "qwen3moe");
    assert.ok(info.moe_layers.length >= 4);
    assert.ok(info.n_expert >= 8);
    assert.ok(info.n_expert_used >= 2);
    assert.equal(info.gating, "softmax");
    assert.equal(info.weights_norm, true);
  });

  test("trace records are consistent with an independent computation", async () => {
    const info = await server.client.modelInfo();
    const E = info.n_expert;
    const t = await server.client.trace({ text: SAMPLE, top_n: E });
    const { header, columns: c, summary } = t;
    const L = header.n_moe_layers,
      K = header.k;
    assert.equal(c.count, header.n_tokens);
    // Byte spans cover the text exactly, multi-byte characters included.
    assert.equal(textOfSpans(SAMPLE, c.byteStart, c.byteEnd), SAMPLE);
    for (let i = 0; i < c.count; i++) {
      if (i < c.count - 1) assert.ok(Number.isFinite(c.nll[i]) && c.nll[i] >= 0, `nll[${i}]`);
      for (let m = 0; m < L; m++) {
        const probs = new Float64Array(E);
        for (let j = 0; j < E; j++) probs[c.topIds![(i * L + m) * E + j]] = c.topProbs![(i * L + m) * E + j];
        // The selected experts are the top-k of the recorded router distribution.
        const order = Array.from(probs.keys()).sort((a, b) => probs[b] - probs[a]);
        const selected = Array.from(c.experts.subarray((i * L + m) * K, (i * L + m + 1) * K));
        assert.deepEqual([...selected].sort(), order.slice(0, K).sort(), `token ${i} layer ${m}`);
        // Their weights are the renormalised probabilities (qwen3moe normalises top-k).
        const mass = selected.reduce((s, e) => s + probs[e], 0);
        for (let j = 0; j < K; j++) assert.ok(Math.abs(c.weights[(i * L + m) * K + j] - probs[selected[j]] / mass) < 1e-4);
        // Entropy over all experts.
        const h = -Array.from(probs).reduce((s, p) => s + (p > 0 ? p * Math.log(p) : 0), 0);
        assert.ok(Math.abs(c.entropy[i * L + m] - h) < 1e-3);
        assert.equal(c.active[i * L + m], K);
      }
    }
    assert.ok(summary && Math.abs(summary.avg_active - K) < 1e-9);
    const usage = summary!.usage.flat().reduce((s: number, x: number) => s + x, 0);
    assert.equal(usage, c.count * L * K);
  });

  test("AMG active counts follow the cumulative-threshold rule", async () => {
    // Dropping experts in one layer changes the hidden state of the next, so each layer is
    // checked against its own router distribution in the AMG trace: the pre-AMG weights are
    // the selected experts' probabilities renormalised (qwen3moe normalises top-k).
    const E = (await server.client.modelInfo()).n_expert;
    const amg = await server.client.trace({ text: SAMPLE, top_n: E, policy: { amg: { threshold: 0.6 } } });
    const { n_moe_layers: L, k: K } = amg.header;
    const c = amg.columns;
    let below = 0;
    for (let i = 0; i < c.count; i++)
      for (let m = 0; m < L; m++) {
        const probs = new Float64Array(E);
        for (let j = 0; j < E; j++) probs[c.topIds![(i * L + m) * E + j]] = c.topProbs![(i * L + m) * E + j];
        const sel = Array.from(c.experts.subarray((i * L + m) * K, (i * L + m + 1) * K));
        const mass = sel.reduce((s, e) => s + probs[e], 0);
        const pre = sel.map((e) => probs[e] / mass).sort((a, b) => b - a);
        let keep = 0,
          cum = 0;
        while (keep < K) {
          cum += pre[keep++];
          if (cum >= 0.6 * (1 - 1e-6)) break;
        }
        assert.equal(c.active[i * L + m], keep, `token ${i} layer ${m}`);
        const w = Array.from(c.weights.subarray((i * L + m) * K, (i * L + m + 1) * K));
        assert.ok(Math.abs(w.reduce((s, x) => s + x, 0) - 1) < 1e-4, "kept mass equals the original mass");
        assert.equal(w.filter((x) => x !== 0).length, keep);
        if (keep < K) below++;
      }
    assert.ok(below > 0, "threshold 0.6 must drop some experts");
    assert.ok(amg.summary!.avg_active < K);
  });

  test("probs: every expert's router probability in f16, summing to 1, agreeing with the top-N record", async () => {
    const batches: TraceBatch[] = [];
    const t = await server.client.traceStream({ text: SAMPLE, top_n: 2, probs: true }, { onBatch: (b) => void batches.push(b) });
    assert.equal(t.header.probs, true);
    const L = t.header.n_moe_layers,
      E = t.header.model.n_expert,
      N = t.header.top_n;
    for (const b of batches) {
      assert.equal(b.routerProbs?.length, b.count * L * E);
      for (let row = 0; row < b.count * L; row++) {
        const p = Array.from(b.routerProbs!.subarray(row * E, (row + 1) * E), halfToFloat);
        assert.ok(Math.abs(p.reduce((a, x) => a + x, 0) - 1) < 5e-3, `row ${row} sums to 1`);
        for (let n = 0; n < N; n++) {
          const id = b.topIds![row * N + n];
          assert.ok(Math.abs(p[id] - b.topProbs![row * N + n]) < 1e-3, `top ${n} of row ${row} agrees`);
        }
      }
    }
    const plain = await server.client.trace({ text: SAMPLE });
    assert.equal(plain.header.probs, false);
  });

  test("text longer than the context streams through a shifted context: every token once, a small first batch", async () => {
    const info = await server.client.modelInfo();
    const long = SAMPLE.repeat(Math.ceil((info.n_ctx * 3) / 60));
    const sizes: number[] = [];
    const t = await server.client.trace({ text: long }, { onBatch: (b) => void sizes.push(b.count) });
    const header = t.header;
    assert.ok(t.header.n_tokens > 2 * info.n_ctx);
    assert.equal(header.kv_shift, info.n_ctx / 2, "the demo model's KV cache can shift");
    assert.deepEqual(t.header.windows, [{ start: 0, end: t.header.n_tokens, scored_from: 0, recorded_end: t.header.n_tokens }]);
    assert.ok(sizes[0] <= 32, `first batch ${sizes[0]} tokens`);
    assert.equal(
      sizes.reduce((a, b) => a + b, 0),
      t.header.n_tokens,
      "each token recorded once",
    );
    assert.equal(t.columns.count, t.header.n_tokens);
    for (let i = 0; i < t.columns.count; i++) assert.equal(t.columns.start + i, i);
    assert.equal(textOfSpans(long, t.columns.byteStart, t.columns.byteEnd), long);
    for (let i = 0; i < t.columns.count - 1; i++) assert.ok(Number.isFinite(t.columns.nll[i]));
    assert.ok(Number.isNaN(t.columns.nll[t.columns.count - 1]));
    // past the first context the model still predicts well: the shift keeps n_ctx/2 tokens of context
    const mean = (a: number, b: number) => {
      let x = 0;
      for (let i = a; i < b; i++) x += t.columns.nll[i];
      return x / (b - a);
    };
    assert.ok(mean(2 * info.n_ctx, t.columns.count - 1) < mean(0, info.n_ctx) + 1, "no collapse after the shifts");
  });

  test("max_k above the trained k reloads with the override and reports it", async () => {
    const info = await server.client.modelInfo();
    const k = info.n_expert_used_trained;
    const t = await server.client.trace({ text: SAMPLE, policy: { max_k: k + 2 } });
    assert.equal(t.header.k, k + 2);
    assert.equal(t.header.model.n_expert_used, k + 2);
    assert.equal(t.summary!.avg_active, k + 2);
    const back = await server.client.trace({ text: SAMPLE });
    assert.equal(back.header.k, k);
  });

  test("disable removes an expert from every selection of its layer", async () => {
    const info = await server.client.modelInfo();
    const layer = info.moe_layers[0];
    const t = await server.client.trace({ text: SAMPLE, policy: { disable: [[layer, 0]] } });
    const { n_moe_layers: L, k: K } = t.header;
    for (let i = 0; i < t.columns.count; i++) for (let j = 0; j < K; j++) assert.notEqual(t.columns.experts[(i * L + 0) * K + j], 0);
  });

  test("generation streams routing per generated token", async () => {
    const t = await server.client.generate({ prompt: "The river", n_predict: 8, temperature: 0, seed: 1 });
    assert.ok(t.columns.count > 2);
    assert.ok(t.summary!.n_tokens === t.columns.count);
  });
});

describe("bad input keeps the server up", () => {
  const post = (route: string, body: string | Buffer, headers: Record<string, string> = {}) =>
    rawRequest(server.port, route, { token: server.client.token, body, headers: { "Content-Type": "application/json", ...headers } });
  const cases: Array<[string, string | Buffer, number, RegExp]> = [
    ["malformed JSON", "{nope", 400, /not valid JSON/],
    ["not an object", "[1,2]", 400, /must be a JSON object/],
    ["missing text", "{}", 400, /"text" is required/],
    ["wrong type", JSON.stringify({ text: 5 }), 400, /must be a string/],
    ["empty text", JSON.stringify({ text: "" }), 400, /empty/],
    ["invalid UTF-8", Buffer.concat([Buffer.from('{"text":"a'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]), 400, /(UTF-8|not valid JSON)/],
    ["out-of-range policy", JSON.stringify({ text: "hi", policy: { amg: { threshold: 2 } } }), 400, /threshold/],
    ["unknown policy field", JSON.stringify({ text: "hi", policy: { gate: 1 } }), 400, /unknown field/],
    ["bad token ids", JSON.stringify({ tokens: [-1] }), 400, /tokens/],
    ["Ant without a predictor", JSON.stringify({ text: "hi", policy: { ant: { gamma: 0.5 } } }), 409, /predictor/],
  ];
  for (const [name, body, status, message] of cases) {
    test(name, async () => {
      const r = await post("/v1/trace", body);
      assert.equal(r.status, status, r.text);
      assert.match((r.json as { error: { message: string } }).error.message, message);
      assert.equal((await server.client.health()).ok, true);
    });
  }

  test("an oversized request gets 413", async () => {
    const small = await startServer(MODEL, {});
    try {
      const r = await rawRequest(small.port, "/v1/trace", { token: small.client.token, body: JSON.stringify({ text: "x".repeat(17 << 20) }) });
      assert.equal(r.status, 413);
      assert.equal((await small.client.health()).ok, true);
    } finally {
      await small.stop();
    }
  });

  test("unknown routes get 404 and perplexity on too little text a clear 400", async () => {
    assert.equal((await rawRequest(server.port, "/v2/nothing", { token: server.client.token })).status, 404);
    await assert.rejects(
      server.client.perplexity({ text: "short", n_ctx: 128 }),
      (e: ServerError) => e.status === 400 && /at least 256 tokens/.test(e.message),
    );
  });

  test("concurrent requests queue or get 429, and all complete", async () => {
    const text = SAMPLE.repeat(20);
    const results = await Promise.allSettled([0, 1, 2].map(() => server.client.trace({ text })));
    let ok = 0;
    for (const r of results) {
      if (r.status === "fulfilled") ok++;
      else assert.equal((r.reason as ServerError).status, 429);
    }
    assert.ok(ok >= 1);
    assert.equal((await server.client.health()).busy, false);
  });

  test("a client that disconnects mid-stream cancels the work", async () => {
    const ac = new AbortController();
    const long = SAMPLE.repeat(400);
    let batches = 0;
    await assert.rejects(
      server.client.trace(
        { text: long },
        {
          onBatch: () => {
            if (++batches === 1) ac.abort();
          },
        },
        ac.signal,
      ),
      (e: ServerError) => e.code === "cancelled",
    );
    // The model is free again soon after: a new trace runs without 429.
    const t0 = Date.now();
    const t = await server.client.trace({ text: "after the cancel" });
    assert.ok(t.columns.count > 0);
    assert.ok(Date.now() - t0 < 10_000);
  });
});
