// The editor's transition analysis and the experiment commands' pure helpers
// (extension/vscode/segments.ts, experiment-view.ts; no `vscode` import): top_n choice,
// marker labels kept in place, label-source order, partial top-N metrics, the panel's
// experiment message, the export writers, folder listing and input parsing.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { AblationResult, SweepResult } from "../../extension/core/experiments";
import { finiteMean } from "../../shared/metrics";
import type { ModelInfo } from "../../shared/wire";
import type { Trace } from "../../shared/trace";
import { analyzeTransitions } from "../../extension/core/transitions";
import {
  defaultExportName,
  evaluationFiles,
  experimentExport,
  experimentMessage,
  parseMaxK,
  parseThresholds,
  type ExperimentRun,
} from "../../extension/vscode/experiment-view";
import {
  editorSegments,
  labelEditorText,
  markerSpansInPlace,
  partialTransitions,
  TOP_N_CAP,
  traceTopN,
  transitionLabel,
} from "../../extension/vscode/segments";

/**
 * A trace of `text` with one token per line (byte spans from the text), L layers, E experts,
 * K = 2; every token of a line routed to `expertOf(line)` first with probability 0.7.
 */
/** lineTrace's router distribution as IEEE half-precision bits ([token][layer][expert]), as the server's `probs` sends it. */
function halfProbs(text: string, E: number, L: number, expertOf: (line: string) => number): Uint16Array {
  const lines = text.split(/(?<=\n)/);
  const out = new Uint16Array(lines.length * L * E);
  const f32 = new Float32Array(1),
    u32 = new Uint32Array(f32.buffer);
  const toHalf = (v: number) => {
    // normal values only (all of lineTrace's are): sign, rebiased exponent, 10 mantissa bits rounded
    f32[0] = v;
    const x = u32[0];
    return (((x >>> 16) & 0x8000) | ((((x >>> 23) & 0xff) - 112) << 10) | ((x >>> 13) & 0x3ff)) + ((x >>> 12) & 1);
  };
  lines.forEach((line, t) => {
    const e = expertOf(line),
      second = (e + 1) % E;
    for (let m = 0; m < L; m++) for (let x = 0; x < E; x++) out[(t * L + m) * E + x] = toHalf(x === e ? 0.7 : x === second ? 0.2 : 0.1 / (E - 2));
  });
  return out;
}

function lineTrace(text: string, E: number, L: number, expertOf: (line: string) => number, topN = E): Trace {
  const lines = text.split(/(?<=\n)/);
  const T = lines.length,
    K = 2,
    N = topN;
  const experts = new Int32Array(T * L * K),
    weights = new Float32Array(T * L * K);
  const topIds = new Int32Array(T * L * N),
    topProbs = new Float32Array(T * L * N);
  const byteStart = new Int32Array(T),
    byteEnd = new Int32Array(T);
  let at = 0;
  lines.forEach((line, t) => {
    byteStart[t] = at;
    at += Buffer.byteLength(line);
    byteEnd[t] = at;
    const e = expertOf(line),
      second = (e + 1) % E;
    const probs = Array.from({ length: E }, (_, x) => (x === e ? 0.7 : x === second ? 0.2 : 0.1 / (E - 2)));
    const order = probs.map((_, x) => x).sort((a, b) => probs[b] - probs[a] || a - b);
    for (let m = 0; m < L; m++) {
      experts[(t * L + m) * K] = e;
      experts[(t * L + m) * K + 1] = second;
      weights[(t * L + m) * K] = 0.78;
      weights[(t * L + m) * K + 1] = 0.22;
      for (let i = 0; i < N; i++) {
        topIds[(t * L + m) * N + i] = order[i];
        topProbs[(t * L + m) * N + i] = probs[order[i]];
      }
    }
  });
  const model = { moe_layers: Array.from({ length: L }, (_, m) => m), n_expert: E, architecture: "qwen3moe" } as unknown as ModelInfo;
  return {
    header: { model, policy: {}, n_moe_layers: L, k: K, top_n: N, n_tokens: T, windows: [], kv_shift: 0, probs: false },
    columns: {
      start: 0,
      count: T,
      tokenIds: Int32Array.from(lines.map((_, i) => i)),
      byteStart,
      byteEnd,
      pieces: lines,
      nll: Float32Array.from(lines.map((_, i) => (i === T - 1 ? NaN : 1 + i / 100))),
      experts,
      weights,
      entropy: new Float32Array(T * L),
      active: new Uint8Array(T * L).fill(K),
      topIds: N ? topIds : undefined,
      topProbs: N ? topProbs : undefined,
    },
  };
}

describe("top_n for editor traces", () => {
  test("the full distribution for small models, capped for many experts and long texts", () => {
    assert.equal(traceTopN(8, 4, 10_000), 8, "demo model: all 8 experts");
    assert.equal(traceTopN(128, 48, 1000), TOP_N_CAP, "many experts: capped at 64");
    assert.equal(traceTopN(64, 48, 1000), 64);
    const long = traceTopN(128, 48, 2_000_000);
    assert.ok(long >= 8 && long < TOP_N_CAP, `a very long text gets fewer (${long})`);
    assert.ok(1_000_000 * 48 * long * 8 <= 64 * 1024 * 1024 || long === 8, "within the memory budget");
    assert.equal(traceTopN(4, 48, 10_000_000), 4, "never more than n_expert, never below min(n_expert, 8)");
    assert.equal(traceTopN(0, 4, 100), 0);
  });
});

describe("editor labels", () => {
  test("marker lines stay in the text and belong to the domain before them", () => {
    const raw = "<<<domain:en>>>\nHello\n<<<domain:de>>>\nGrüße\n<<<domain:en>>>\nBye\n";
    const l = markerSpansInPlace(raw)!;
    assert.equal(l.text, raw);
    const b = (s: string) => Buffer.byteLength(s);
    const m1 = b("<<<domain:en>>>\n"),
      hello = b("Hello\n"),
      m2 = b("<<<domain:de>>>\n"),
      gr = b("Grüße\n"),
      m3 = b("<<<domain:en>>>\n");
    assert.deepEqual(l.spans, [
      { start: m1, end: m1 + hello + m2, domain: "en", source: "label" },
      { start: m1 + hello + m2, end: m1 + hello + m2 + gr + m3, domain: "de", source: "label" },
      { start: m1 + hello + m2 + gr + m3, end: b(raw), domain: "en", source: "label" },
    ]);
    assert.equal(markerSpansInPlace("plain\ntext\n"), null);
    // Two markers in a row: the empty domain is dropped.
    const twice = markerSpansInPlace("<<<domain:a>>>\n<<<domain:b>>>\nx\n")!;
    assert.deepEqual(
      twice.spans.map((s) => s.domain),
      ["b"],
    );
  });

  test("markers first, then fences, else none", () => {
    assert.equal(labelEditorText("<<<domain:a>>>\n```py\nx\n```\n").source, "label");
    assert.equal(labelEditorText("Prose\n```py\nx = 1\n```\nMore\n").source, "fence");
    assert.equal(labelEditorText("just text\n").source, "none");
  });
});

describe("editor segments and transitions", () => {
  const raw = "<<<domain:math>>>\n" + "1+1=2\n".repeat(5) + "<<<domain:code>>>\n" + "x = 1\n".repeat(5) + "<<<domain:math>>>\n" + "2+2=4\n".repeat(5);
  const expertOf = (line: string) => (line.startsWith("x") ? 5 : line.startsWith("<") ? 3 : 1);

  test("marker-labelled text: three segments, two transitions at the marker lines, metrics as analyzeTransitions", () => {
    const tr = lineTrace(raw, 8, 2, expertOf);
    const s = editorSegments(tr, raw, "plaintext");
    assert.equal(s.source, "label");
    assert.equal(s.partial, false);
    assert.deepEqual(
      s.segments.map((x) => [x.domain, x.start, x.end]),
      [
        ["math", 1, 7],
        ["code", 7, 13],
        ["math", 13, 18],
      ],
    );
    assert.deepEqual(
      s.transitions.map((x) => [x.token, x.from, x.to]),
      [
        [6, "math", "code"],
        [12, "code", "math"],
      ],
    );
    const ref = analyzeTransitions(tr, s.segments, { text: raw }).transitions;
    assert.deepEqual(
      s.transitions.map((x) => x.probNewExpert),
      ref.map((x) => x.probNewExpert),
    );
    // The step token is the marker line (routed to expert 3): the new domain's expert (5, then 1) is second or third.
    for (const x of s.transitions) for (const r of x.rankNewExpert) assert.ok(r > 1);
    assert.match(transitionLabel(s.transitions[0]), /^math → code · NLL 1\.06 · P\(new expert\) 0\.\d\d$/);
  });

  test("capped top-N: probability and rank where the new expert is recorded, NaN where not, NLL always", () => {
    const full = lineTrace(raw, 8, 2, expertOf);
    const capped = lineTrace(raw, 8, 2, expertOf, 2); // only the top 2 of 8
    const s = editorSegments(capped, raw, "plaintext");
    assert.equal(s.partial, true);
    const ref = editorSegments(full, raw, "plaintext");
    assert.equal(s.transitions.length, ref.transitions.length);
    s.transitions.forEach((x, i) => {
      assert.equal(x.nll, ref.transitions[i].nll);
      x.rankNewExpert.forEach((r, m) => {
        if (ref.transitions[i].rankNewExpert[m] <= 2) {
          assert.equal(r, ref.transitions[i].rankNewExpert[m]);
          assert.equal(x.probNewExpert[m], ref.transitions[i].probNewExpert[m]);
        } else {
          assert.ok(Number.isNaN(r) && Number.isNaN(x.probNewExpert[m]));
        }
      });
    });
    // The full f16 distribution recorded beside the capped top-N: exact for every expert, also outside the top 2.
    const withProbs = lineTrace(raw, 8, 2, expertOf, 2);
    withProbs.columns.routerProbs = halfProbs(raw, 8, 2, expertOf);
    const exact = partialTransitions(withProbs, s.segments);
    exact.forEach((x, i) => {
      assert.deepEqual(x.rankNewExpert, ref.transitions[i].rankNewExpert, "ranks from the full distribution");
      x.probNewExpert.forEach((p, m) => assert.ok(Math.abs(p - ref.transitions[i].probNewExpert[m]) < 1e-3, `f16 probability ${p}`));
    });
    assert.ok(
      exact.some((x) => x.rankNewExpert.some((r) => r > 2)),
      "some new-domain expert lies outside the recorded top 2",
    );
    // Nothing recorded at all: every probability unknown, still one row per transition.
    const none = partialTransitions(lineTrace(raw, 8, 2, expertOf, 0), s.segments);
    assert.equal(none.length, 2);
    assert.ok(none.every((x) => x.probNewExpert.every(Number.isNaN)));
  });

  test("fences label markdown; unlabelled text: change points, else one segment named after the language", () => {
    const md = "Some prose here.\n".repeat(3) + "```python\n" + "x = 1\n".repeat(3) + "```\n" + "Prose again.\n";
    const f = editorSegments(
      lineTrace(md, 8, 2, (l) => (l.startsWith("x") ? 5 : 1)),
      md,
      "markdown",
    );
    assert.equal(f.source, "fence");
    assert.deepEqual(
      f.segments.map((s) => s.domain),
      ["prose", "python", "prose"],
    );
    assert.equal(f.transitions.length, 2);

    const shift = "aaa\n".repeat(150) + "bbb\n".repeat(150); // long enough that the default threshold is the 0.3 floor
    const cp = editorSegments(
      lineTrace(shift, 8, 2, (l) => (l.startsWith("a") ? 1 : 6)),
      shift,
      "plaintext",
    );
    assert.equal(cp.source, "change-point");
    assert.deepEqual(
      cp.segments.map((s) => [s.domain, s.start]),
      [
        ["segment 1", 0],
        ["segment 2", 150],
      ],
    );
    assert.equal(cp.transitions[0].token, 149);

    const flat = "x = 1\n".repeat(10);
    const one = editorSegments(
      lineTrace(flat, 8, 2, () => 2),
      flat,
      "python",
    );
    assert.deepEqual(one.segments, [{ start: 0, end: 10, domain: "python", source: "language" }]);
    assert.deepEqual(one.transitions, []);
  });

  test("finiteMean skips NaN", () => {
    assert.equal(finiteMean([1, NaN, 3]), 2);
    assert.ok(Number.isNaN(finiteMean([NaN])));
  });
});

const model = { path: "/m/demo.gguf", architecture: "qwen3moe", n_expert: 8, n_expert_used_trained: 2 } as unknown as ModelInfo;
const sweep: SweepResult = {
  model,
  trainedK: 2,
  nCtx: 64,
  tokens: 512,
  rows: [
    { config: "k2 baseline", policy: {}, k: 2, threshold: null, ppl: 5.4321, pplErr: 0.123, avgActive: 2, nChunks: 8, nCtx: 64, printed: "" },
    {
      config: "k2 + threshold 1.00",
      policy: { amg: { threshold: 1 } },
      k: 2,
      threshold: 1,
      ppl: 5.4321,
      pplErr: 0.123,
      avgActive: 2,
      nChunks: 8,
      nCtx: 64,
      printed: "",
    },
  ],
};

describe("experiment view", () => {
  const run: ExperimentRun = { kind: "sweep", result: sweep, subtitle: "doc.md on demo.gguf" };

  test("the panel message carries the CLI's table", () => {
    const m = experimentMessage(run);
    assert.equal(m.type, "experiment");
    assert.equal(m.kind, "sweep");
    assert.deepEqual(m.columns, ["Config", "PPL", "±σ", "Avg experts active"]);
    assert.deepEqual(m.rows[0], ["k2 baseline", "5.4321", "±0.123", "2.00/2"]);
    assert.match(m.title, /AMG sweep: doc\.md on demo\.gguf/);
    assert.match(m.note ?? "", /n_ctx = 64/);
  });

  test("exports: CSV, JSON (schema v1), standalone HTML", () => {
    const csv = experimentExport(run, "csv").trim().split("\n");
    assert.equal(csv.length, 3);
    assert.match(csv[0], /^config,max_k,k,threshold,ppl/);
    const json = JSON.parse(experimentExport(run, "json")) as { schema: string; version: number; kind: string; rows: unknown[] };
    assert.deepEqual([json.schema, json.version, json.kind, json.rows.length], ["moe-lens-experiment", 1, "amg-sweep", 2]);
    const html = experimentExport(run, "html");
    assert.match(html, /^<!DOCTYPE html>/i);
    assert.match(html, /k2 baseline/);
    assert.doesNotMatch(html, /<script[^>]*src=/i, "standalone: no external scripts");
    assert.equal(defaultExportName(run, "html"), "moe-lens-amg-sweep.html");
    assert.equal(defaultExportName({ kind: "ablation", result: {} as AblationResult, subtitle: "" }, "csv"), "moe-lens-ablation.csv");
  });

  test("folder listing and input parsing", () => {
    assert.deepEqual(evaluationFiles(["b.md", "index.json", "a.txt", "c.MARKDOWN", "d.py"]), ["a.txt", "b.md", "c.MARKDOWN"]);
    assert.deepEqual(parseThresholds("0.5, 0.75,1"), [0.5, 0.75, 1]);
    assert.equal(typeof parseThresholds("0, 0.5"), "string");
    assert.equal(typeof parseThresholds("1.5"), "string");
    assert.equal(typeof parseThresholds(""), "string");
    assert.deepEqual(parseMaxK("2, 4", 8), [2, 4]);
    assert.equal(typeof parseMaxK("9", 8), "string");
    assert.equal(typeof parseMaxK("2.5", 8), "string");
  });
});
