// The demo model in llama.cpp agrees with the PyTorch model it was trained as:
//  - llama.cpp's tokenizer gives exactly the training tokenizer's ids (multi-byte text
//    included; ids recorded by tools/train/bpe.py into test/fixtures/tokenizer/expected-ids.json);
//  - per-token log-probabilities and selected experts match the PyTorch reference trace
//    (tools/train/reference_trace.py → test/fixtures/parity/demo-sample.trace.json).
// Tolerances (measured when the model was exported, see tools/train/README.md): experts equal
// on ≥ 99% of (token, layer) pairs; |Δ log p| ≤ 2e-3 nats on average and ≤ 0.25 at worst
// (a near-tie between two experts flips one selection); router probabilities within 0.02.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import type { ServerProcess } from "../../extension/core/server-process";
import { DEMO_MODEL, ROOT, startServer } from "../helpers";

interface ReferenceToken {
  id: number;
  logprob_next: number | null;
  experts: number[][];
  probs: number[][];
}

let server: ServerProcess;
before(async () => {
  server = await startServer(DEMO_MODEL);
});
after(async () => server?.stop());

test("llama.cpp's tokenizer gives the training tokenizer's ids", async () => {
  const expected = JSON.parse(fs.readFileSync(path.join(ROOT, "test", "fixtures", "tokenizer", "expected-ids.json"), "utf8")) as {
    ids: Record<string, number[]>;
  };
  for (const [file, ids] of Object.entries(expected.ids)) {
    const text = fs.readFileSync(path.join(ROOT, file), "utf8");
    const got = await server.client.tokenize(text);
    assert.equal(got.tokens.length, ids.length, file);
    assert.deepEqual(got.tokens, ids, file);
    assert.ok(/[^\x00-\x7f]/.test(text), "the text has multi-byte characters");
  }
});

test("log-probabilities and expert choices match the PyTorch reference", async () => {
  const ref = JSON.parse(fs.readFileSync(path.join(ROOT, "test", "fixtures", "parity", "demo-sample.trace.json"), "utf8")) as {
    n_expert: number;
    tokens: ReferenceToken[];
  };
  const text = fs.readFileSync(path.join(ROOT, "test", "fixtures", "demo-sample.md"), "utf8");
  const t = await server.client.trace({ text, top_n: ref.n_expert });
  const { n_moe_layers: L, k: K } = t.header;
  const E = ref.n_expert;
  assert.equal(t.columns.count, ref.tokens.length);
  let pairs = 0,
    same = 0,
    sumDiff = 0,
    nDiff = 0,
    maxDiff = 0,
    maxProbDiff = 0;
  ref.tokens.forEach((r, i) => {
    assert.equal(t.columns.tokenIds[i], r.id, `token ${i}`);
    if (r.logprob_next !== null && i < t.columns.count - 1) {
      const d = Math.abs(-t.columns.nll[i] - r.logprob_next);
      sumDiff += d;
      nDiff++;
      maxDiff = Math.max(maxDiff, d);
    }
    for (let m = 0; m < L; m++) {
      pairs++;
      const sel = Array.from(t.columns.experts.subarray((i * L + m) * K, (i * L + m + 1) * K)).sort();
      if (JSON.stringify(sel) === JSON.stringify([...r.experts[m]].sort())) same++;
      for (let j = 0; j < E; j++) {
        const e = t.columns.topIds![(i * L + m) * E + j];
        maxProbDiff = Math.max(maxProbDiff, Math.abs(t.columns.topProbs![(i * L + m) * E + j] - r.probs[m][e]));
      }
    }
  });
  const share = same / pairs;
  console.log(
    `parity: experts equal on ${same}/${pairs} (${(100 * share).toFixed(2)}%), mean |Δ log p| ${(sumDiff / nDiff).toExponential(2)}, max ${maxDiff.toExponential(2)}, max |Δ p_router| ${maxProbDiff.toExponential(2)}`,
  );
  assert.ok(share >= 0.99, `experts match on ${(100 * share).toFixed(2)}% of (token, layer) pairs`);
  assert.ok(sumDiff / nDiff <= 2e-3, `mean |Δ log p| = ${sumDiff / nDiff}`);
  assert.ok(maxDiff <= 0.25, `max |Δ log p| = ${maxDiff}`);
  assert.ok(maxProbDiff <= 0.02, `max |Δ p_router| = ${maxProbDiff}`);
});
