// Unit tests of the plain-TypeScript core: policy parsing, metrics, exports, Ant fitting,
// base64 arrays, CLI argument parsing.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { parseArgs, UsageError } from "../../extension/cli/args";
import { fitLayer, solveRidge } from "../../extension/core/ant";
import { b64ToFloat32, b64ToInt32, float32ToB64 } from "../../extension/core/b64";
import { traceToString, TraceExportWriter } from "../../extension/core/export";
import { TraceStatsAccumulator, traceStats } from "../../extension/core/metrics";
import { loadMatrix } from "../../shared/expert-stats";
import { routingShift } from "../../shared/metrics";
import { sliceBatch } from "../../extension/core/trace-store";
import { describePolicy } from "../../shared/policy";
import { parseExpertList, parsePolicySpec, PolicyError, validatePolicy } from "../../extension/core/policy-parse";
import type { ModelInfo } from "../../shared/wire";
import type { Trace } from "../../shared/trace";

/** A 3-token, 1-layer, k=2 trace with known answers. */
function smallTrace(): Trace {
  const model = { moe_layers: [5], n_expert: 4, architecture: "qwen3moe" } as unknown as ModelInfo;
  return {
    header: { model, policy: {}, n_moe_layers: 1, k: 2, top_n: 0, n_tokens: 3, windows: [], kv_shift: 0, probs: false },
    columns: {
      start: 0,
      count: 3,
      tokenIds: Int32Array.from([1, 2, 3]),
      byteStart: Int32Array.from([0, 1, 3]),
      byteEnd: Int32Array.from([1, 3, 4]),
      pieces: ["a", "b,", '"'],
      nll: Float32Array.from([1, 3, NaN]),
      experts: Int32Array.from([0, 1, 0, 2, 3, 2]),
      weights: Float32Array.from([0.6, 0.4, 1, 0, 0.5, 0.5]),
      entropy: Float32Array.from([1, 1, 1]),
      active: Uint8Array.from([2, 1, 2]),
    },
  };
}

describe("policy parsing", () => {
  test("specs compose with +", () => {
    assert.deepEqual(parsePolicySpec("k:12+amg:0.9"), { max_k: 12, amg: { threshold: 0.9 } });
    assert.deepEqual(parsePolicySpec("beta:0.9:sp+pi+ant:0.5"), { beta: { beta: 0.9, form: "scale_preserving" }, pi: {}, ant: { gamma: 0.5 } });
    assert.deepEqual(parsePolicySpec("topp:0.8"), { amg: { threshold: 0.8, mode: "full" } });
    assert.deepEqual(parsePolicySpec("baseline"), {});
    assert.throws(() => parsePolicySpec("amg:1.5"), PolicyError);
    assert.throws(() => parsePolicySpec("magic"), /unknown policy term/);
  });
  test("validation rejects bad fields with clear messages", () => {
    assert.throws(() => validatePolicy({ amg: { threshold: 0 } }), /AMG threshold/);
    assert.throws(() => validatePolicy({ beta: { beta: 1 } }), /β/);
    assert.throws(() => validatePolicy({ disable: [[0, 9]] }, 8), /disable expert/);
    assert.throws(() => validatePolicy({ foo: 1 }), /unknown policy field/);
    assert.deepEqual(validatePolicy({ amg: { threshold: "0.5" } }), { amg: { threshold: 0.5 } });
  });
  test("labels and expert lists", () => {
    assert.equal(describePolicy({}), "baseline");
    assert.equal(describePolicy({ max_k: 12, amg: { threshold: 0.9 } }), "k=12 + AMG τ=0.9");
    assert.equal(describePolicy({ amg: { threshold: 0.8999999761581421 } }), "AMG τ=0.9", "the server's float32 echo reads as typed");
    assert.deepEqual(parseExpertList("1:2,3:4", false), [
      [1, 2],
      [3, 4],
    ]);
    assert.deepEqual(parseExpertList("1:2:0.5", true), [[1, 2, 0.5]]);
    assert.throws(() => parseExpertList("1", false), /LAYER:EXPERT/);
  });
});

describe("metrics", () => {
  test("routing shift is 1 − Jaccard of the active sets", () => {
    const t = smallTrace();
    assert.equal(routingShift(t.columns, 1, 2, 0, 0), 0);
    // token 1 active {0} (expert 2 has weight 0) vs token 0 {0,1}: 1 − 1/2
    assert.equal(routingShift(t.columns, 1, 2, 1, 0), 0.5);
    // token 2 {3,2} vs {0}: disjoint
    assert.equal(routingShift(t.columns, 1, 2, 2, 0), 1);
  });
  test("usage counts non-zero weights and stats average them", () => {
    const t = smallTrace();
    assert.deepEqual([...loadMatrix({ ...t.columns, count: 3, L: 1, K: 2, E: 4 })], [2, 1, 1, 1]);
    const s = traceStats(t);
    assert.equal(s.avgActive, 5 / 3);
    assert.equal(s.meanNll, 2);
    assert.ok(Math.abs(s.tracePpl - Math.exp(2)) < 1e-12);
    assert.equal(s.meanShift, (0.5 + 1) / 2);
  });
  test("statistics accumulated batch by batch equal those of the whole trace", () => {
    const t = smallTrace();
    for (const cut of [1, 2]) {
      const acc = new TraceStatsAccumulator(t.header);
      acc.add(sliceBatch(t.columns, 1, 2, 0, 0, cut));
      acc.add(sliceBatch(t.columns, 1, 2, 0, cut, 3));
      assert.deepEqual(acc.result(), traceStats(t), `split after token ${cut}`);
    }
  });
});

describe("exports", () => {
  /** The text smallTrace() is a trace of: its byte spans cover "a", "b,", '"'. */
  const TEXT = 'ab,"';
  type Exported = {
    schema: string;
    version: number;
    tokens: Array<{ text: string; bytes: string; nll: number | null; layers: Array<{ layer: number; experts: number[] }> }>;
    summary: unknown;
  };

  test("JSON export follows the documented schema", async () => {
    const j = JSON.parse(await traceToString("json", smallTrace(), TEXT)) as Exported;
    assert.equal(j.schema, "moe-lens-trace");
    assert.equal(j.version, 1);
    assert.equal(j.tokens.length, 3);
    assert.equal(j.tokens[2].nll, null);
    assert.equal(j.tokens[1].layers[0].layer, 5);
    assert.deepEqual(j.tokens[1].layers[0].experts, [0, 2]);
    assert.equal(Buffer.from(j.tokens[1].bytes, "base64").toString(), "b,");
    assert.deepEqual(Object.keys(j), ["schema", "version", "model", "policy", "k", "moe_layers", "windows", "tokens", "summary"]);
  });

  test("written batch by batch, the export is the same file", async () => {
    const t = smallTrace();
    for (const format of ["json", "csv"] as const) {
      const parts: string[] = [];
      const w = new TraceExportWriter(format, TEXT, (c) => void parts.push(c as string));
      await w.begin(t.header);
      await w.batch(sliceBatch(t.columns, 1, 2, 0, 0, 1));
      await w.batch(sliceBatch(t.columns, 1, 2, 0, 1, 3));
      await w.end(t.summary);
      assert.equal(parts.join(""), await traceToString(format, t, TEXT), format);
    }
  });

  test("CSV quotes commas and quotes, and carries the exact bytes", async () => {
    const csv = (await traceToString("csv", smallTrace(), TEXT)).trim().split("\n");
    assert.equal(csv.length, 4);
    assert.match(csv[0], /,bytes$/);
    assert.match(csv[2], /^1,2,"b,",1,3,/);
    assert.match(csv[2], /,Yiw=$/, "base64 of the bytes b,");
    assert.match(csv[3], /^2,3,"""",3,4,,5,2,/);
  });

  // Issue 17, item 12: byte-level tokens that split a character have a lossy `text` (U+FFFD);
  // the exported bytes are exact, and concatenated they give back the traced text.
  test("tokens that split a character export their exact bytes", async () => {
    const text = "é🌊";
    const bytes = Buffer.from(text, "utf8"); // c3 a9 f0 9f 8c 8a
    const t = smallTrace();
    const spans = [
      [0, 1],
      [1, 2],
      [2, 6],
    ];
    t.columns.byteStart = Int32Array.from(spans.map((s) => s[0]));
    t.columns.byteEnd = Int32Array.from(spans.map((s) => s[1]));
    t.columns.pieces = ["\uFFFD", "\uFFFD", "🌊"];
    const j = JSON.parse(await traceToString("json", t, text)) as Exported;
    assert.deepEqual(
      j.tokens.map((x) => x.text),
      ["\uFFFD", "\uFFFD", "🌊"],
    );
    assert.deepEqual(Buffer.concat(j.tokens.map((x) => Buffer.from(x.bytes, "base64"))), bytes);
    assert.deepEqual(Buffer.from(j.tokens[0].bytes, "base64"), Buffer.from([0xc3]));
  });
});

describe("Ant fitting", () => {
  test("ridge solve recovers a known linear map", () => {
    // A = XᵀX for X = I (3×3), B = [1,2,3]ᵀ → X = B / (1 + λ)
    const A = Float64Array.from([1, 0, 0, 0, 1, 0, 0, 0, 1]);
    const X = solveRidge(A, Float64Array.from([1, 2, 3]), 3, 1, 1);
    [0.5, 1, 1.5].forEach((want, i) => assert.ok(Math.abs(X[i] - want) < 1e-12));
  });
  test("a predictable logit sequence is fitted", () => {
    // z_{t+1} = 0.5·z_t + 1 for one expert; the fit must predict it closely.
    const T = 400,
      E = 1;
    const z = new Float32Array(T);
    z[0] = 3;
    for (let t = 1; t < T; t++) z[t] = 0.5 * z[t - 1] + 1 + 0.05 * Math.sin(t);
    const W = fitLayer(z, T, E, 0.9, 1e-6);
    let err = 0,
      U = 0;
    for (let t = 0; t + 1 < T; t++) {
      U = 0.9 * U + 0.1 * z[t];
      err = Math.max(err, Math.abs(W[0] * z[t] + W[1] * U + W[2] - z[t + 1]));
    }
    assert.ok(err < 0.2, `max error ${err}`);
  });
});

describe("base64 arrays and CLI args", () => {
  test("round trip", () => {
    const a = Float32Array.from([1.5, -2, 3.25]);
    assert.deepEqual(Array.from(b64ToFloat32(float32ToB64(a))), [1.5, -2, 3.25]);
    assert.deepEqual(Array.from(b64ToInt32(Buffer.from(Int32Array.from([7, -1]).buffer).toString("base64"))), [7, -1]);
  });
  test("flags", () => {
    const a = parseArgs(["trace", "f.txt", "--amg", "0.5", "--pi", "--out=x.json"]);
    assert.equal(a.command, "trace");
    assert.deepEqual(a.positional, ["f.txt"]);
    assert.equal(a.flags.get("amg"), "0.5");
    assert.equal(a.flags.get("pi"), true);
    assert.equal(a.flags.get("out"), "x.json");
    assert.throws(() => parseArgs(["trace", "--amg"]), UsageError);
  });
});
