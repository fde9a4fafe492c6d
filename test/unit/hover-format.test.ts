import test from "node:test";
import assert from "node:assert/strict";
import { routingShifts } from "../../extension/core/metrics";
import { fenceBoundaries } from "../../extension/core/transitions";
import {
  compactWeight,
  shiftThresholds,
  formatTokenHover,
  HOVER_MAX_LINE,
  layerLines,
  modelLabel,
  showPiece,
  statusText,
  type StatusInput,
} from "../../extension/vscode/format";
import type { TokenInfo } from "../../extension/core/trace-store";

function token(L: number, K: number): TokenInfo {
  const experts = new Int32Array(L * K),
    weights = new Float32Array(L * K);
  for (let l = 0; l < L; l++) {
    experts[l * K] = (l * 3) % 64;
    experts[l * K + 1] = (l * 7 + 1) % 64;
    weights[l * K] = 0.61;
    weights[l * K + 1] = l % 2 ? 0 : 0.39;
  }
  return {
    index: 12,
    piece: " wor`ld\n",
    tokenId: 4242,
    start: 0,
    end: 5,
    nll: 2.0794415,
    experts,
    weights,
    entropy: new Float32Array(L).fill(1.2),
    active: new Uint8Array(L).map((_, l) => (l % 2 ? 1 : 2)),
  };
}

test("weights print in three characters; a dropped slot is marked", () => {
  assert.equal(compactWeight(0.61), ".61");
  assert.equal(compactWeight(0.389), ".39");
  assert.equal(compactWeight(1), "1.0");
  assert.equal(compactWeight(0), " --");
  assert.equal(compactWeight(NaN), "  ?");
});

test("one line per layer: model layer index, experts with weights in fixed-width cells, entropy, active", () => {
  const lines = layerLines(token(2, 2), { moeLayers: [0, 12], k: 2, trainedK: 2, policyLabel: "baseline" });
  assert.equal(lines.length, 2);
  assert.equal(lines[0], "L0   e0 .61 e1 .39  H=1.20 act 2");
  assert.equal(lines[1], "L12  e3 .61 e8  --  H=1.20 act 1", "the zero-gated slot is marked dropped");
});

test("48 layers stay one short line each", () => {
  const L = 48;
  const md = formatTokenHover(token(L, 2), { moeLayers: [...Array(L).keys()], k: 2, trainedK: 2, policyLabel: "AMG τ=0.5" });
  const block = md.split("```text\n")[1].split("\n```")[0].split("\n");
  assert.equal(block.length, 48);
  for (const l of block) assert.ok(l.length <= 48, `line too long: ${l}`);
  // columns align: every "H=" at the same column
  const col = block[0].indexOf("H=");
  for (const l of block) assert.equal(l.indexOf("H="), col);
});

/** A token of a 48-layer × k 8 model of 128 experts: every slot filled, two dropped per layer, weights .08–.17. */
function fineToken(L: number, K: number): TokenInfo {
  const t = token(L, K);
  for (let l = 0; l < L; l++)
    for (let s = 0; s < K; s++) {
      t.experts[l * K + s] = (l * 37 + s * 11) % 128;
      t.weights[l * K + s] = s >= K - 2 ? 0 : 0.17 - 0.01 * s;
    }
  t.entropy.fill(4.1);
  t.active.fill(K - 2);
  return t;
}

test("a 48-layer × k 8 hover: a summary line and a layer × k table within ~50 lines of at most 100 characters", () => {
  const L = 48,
    K = 8;
  const md = formatTokenHover(fineToken(L, K), {
    moeLayers: [...Array(L).keys()],
    k: K,
    trainedK: K,
    policyLabel: "AMG τ=0.9 · max k 6 · β 0.9 (scale-preserving) · Π momentum 0.95",
  });
  const lines = md.split("\n");
  assert.ok(lines.length <= 51, `${lines.length} lines`);
  for (const l of lines) assert.ok(l.length <= HOVER_MAX_LINE, `line of ${l.length} characters: ${l}`);
  assert.match(
    lines[0],
    /^\*\*MoE Lens\*\* · token 12 `·worˋld\\n` · NLL 2\.08 · mean H 4\.10 · act 6\.00\/8 · AMG τ=0\\\.9.*…$/,
    "one summary line, the policy clipped",
  );
  const block = md.split("```text\n")[1].split("\n```")[0].split("\n");
  assert.equal(block.length, L, "every layer has its row");
  assert.equal(block[47], "L47  e75  .17 e86  .16 e97  .15 e108 .14 e119 .13 e2   .12 e13   -- e24   --  H=4.10 act 6");
  // every row has k cells; the H= column lines up
  for (const row of block) {
    assert.equal(row.match(/e\d+ +(\.\d\d|--)/g)?.length, K, row);
    assert.equal(row.indexOf("H="), block[0].indexOf("H="));
  }
});

test("the hover header has the token, NLL in nats and bits, mean entropy, active/k and the policy", () => {
  const md = formatTokenHover(token(2, 2), { moeLayers: [0, 1], k: 2, trainedK: 2, policyLabel: "AMG τ=0.5", truncated: true, alsoTokens: [3, 4] });
  assert.match(md, /token 12 `·worˋld\\n` \(id 4242\)/);
  assert.match(md, /NLL 2\.08 nats \(3\.00 bits\)/);
  assert.match(md, /mean H 1\.20 nats/);
  assert.match(md, /active 1\.50\/2/);
  assert.match(md, /AMG τ=0\\\.5/, "the policy label, escaped (renders as AMG τ=0.5)");
  assert.match(md, /split across tokens 3, 4/);
  assert.match(md, /text changed after this trace/);
  const t = token(1, 2);
  t.nll = NaN;
  assert.match(formatTokenHover(t, { moeLayers: [0], k: 2, trainedK: 2, policyLabel: "baseline" }), /NLL n\/a/);
});

test("pieces show whitespace and control characters visibly", () => {
  assert.equal(showPiece(" a\tb\r\n\u0001"), "·a\\tb\\r\\n\\x01");
});

test("routing shift is 1 − Jaccard of the non-zero selected sets, averaged over layers", () => {
  const L = 2,
    K = 2,
    n = 3;
  // token0: {1,2},{3,4}; token1: {1,2},{5,6}; token2: {1,(7 zero-gated)},{5,6}
  const experts = new Int32Array([1, 2, 3, 4, 1, 2, 5, 6, 1, 7, 5, 6]);
  const weights = new Float32Array([0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 1, 0, 0.5, 0.5]);
  const s = routingShifts({ experts, weights }, n, L, K);
  assert.equal(s[0], 0);
  assert.equal(s[1], 0.5); // layer0 same (0), layer1 disjoint (1)
  assert.equal(s[2], 0.25); // layer0 {1} vs {1,2}: 1 − 1/2; layer1 same
});

test("domain transitions from code fences: prose → lang → prose, CRLF aware", () => {
  const text = "Intro text.\r\n```python\r\nx = 1\r\n```\r\nMore prose.\n~~~\nplain\n~~~\n";
  const b = fenceBoundaries(text);
  assert.equal(b.length, 4);
  assert.deepEqual([b[0].from, b[0].to], ["prose", "python"]);
  assert.equal(text.slice(b[0].offset, b[0].offset + 5), "x = 1");
  assert.deepEqual([b[1].from, b[1].to], ["python", "prose"]);
  assert.equal(text.slice(b[1].offset, b[1].offset + 4), "More");
  assert.deepEqual([b[2].from, b[2].to], ["prose", "code"]);
  assert.deepEqual([b[3].from, b[3].to], ["code", "prose"]);
  assert.equal(text.slice(b[0].lineStart, b[0].lineEnd), "```python");
});

test("an unclosed fence gives one transition; a fence with info string does not close", () => {
  const b = fenceBoundaries("a\n```js\nx\n```ts\ny\n");
  assert.equal(b.length, 1);
});

test("model label is the file name without .gguf", () => {
  assert.equal(modelLabel("/x/y/demo-moe.gguf"), "demo-moe");
  assert.equal(modelLabel("C:\\m\\Qwen3-30B.GGUF"), "Qwen3-30B");
});

test("shift marks are relative to the trace: mean + 1σ and + 2σ, never below 0.2", () => {
  const t = shiftThresholds(new Float32Array([0, 0.5, 0.5, 0.5, 0.5, 1]));
  // tokens 1..5: mean 0.6, σ 0.2
  assert.ok(Math.abs(t.medium - 0.8) < 1e-6);
  assert.ok(Math.abs(t.strong - 1.0) < 1e-6);
  assert.deepEqual(shiftThresholds(new Float32Array([0, 0, 0, 0])), { medium: 0.2, strong: 0.2 });
  assert.equal(shiftThresholds(new Float32Array([0, 1])).medium, Infinity);
});

test("a trace made with another model than the running one says so in its hover", () => {
  const ctx = { moeLayers: [0], k: 2, trainedK: 2, policyLabel: "baseline" };
  assert.doesNotMatch(formatTokenHover(token(1, 2), ctx), /Stale/);
  assert.match(
    formatTokenHover(token(1, 2), { ...ctx, otherModelNow: "/m/demo-moe-fine.gguf" }),
    /Stale: traced with another model; the server now runs demo-moe-fine\. Trace again/,
  );
});

test("status text: the active-expert figure only beside the model that made it; a switch shows what loads", () => {
  const small = "/m/demo-moe.gguf",
    fine = "/m/demo-moe-fine.gguf";
  const last = { avgActive: 2, k: 2, modelPath: small };
  const base: StatusInput = { state: "ready", modelPath: small, loadedModelPath: small, tracing: false, policyLabel: "baseline", last };
  assert.equal(statusText(base), "demo-moe · ready · baseline · act 2.00/2");
  // Select Model… to the fine model: while it loads, the old model's figure and name are gone.
  assert.equal(statusText({ ...base, state: "starting", modelPath: fine, loadedModelPath: undefined }), "demo-moe-fine · loading demo-moe-fine · baseline");
  // Ready with the new model, before any trace of it: still no figure from the old one.
  assert.equal(statusText({ ...base, modelPath: fine, loadedModelPath: fine }), "demo-moe-fine · ready · baseline");
  assert.equal(
    statusText({ ...base, modelPath: fine, loadedModelPath: fine, last: { avgActive: 7.5, k: 8, modelPath: fine } }),
    "demo-moe-fine · ready · baseline · act 7.50/8",
  );
  assert.equal(statusText({ ...base, tracing: true }), "demo-moe · tracing · baseline · act 2.00/2");
});
