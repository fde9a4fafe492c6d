// Domain transitions and the experiment tables on hand-built traces with known answers:
// labels (markers, fences), byte → token mapping, domain experts, ranks, K99, NLL/BPC,
// change points; and the pure parts of the experiments (sweep plan, n_ctx, stats, writers).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  ABLATION_SUBSETS,
  ablationPacks,
  ablationSubtitle,
  ablationTable,
  ablationToCsv,
  chooseNCtx,
  markdownTable,
  stat,
  subsetName,
  subsetPackName,
  subsetPolicy,
  sweepPolicies,
  sweepTable,
  sweepToCsv,
  type AblationResult,
  type SweepResult,
} from "../../extension/core/experiments";
import type { ModelInfo } from "../../shared/wire";
import type { Trace } from "../../shared/trace";
import {
  affinityK99,
  analyzeTransitions,
  changePointSegments,
  concatLabelled,
  detectChangePoints,
  domainExperts,
  kCoverage,
  labelText,
  markdownFenceSpans,
  parseDomainMarkers,
  routerDistribution,
  spansToSegments,
  tokenSpanIndex,
  transitionSteps,
  type DomainSegment,
} from "../../extension/core/transitions";

interface Tok {
  bytes: [number, number];
  piece?: string;
  nll?: number;
  /** Per layer: selected experts (descending) and their weights; `probs`: full distribution. */
  layers: Array<{ experts: number[]; weights?: number[]; probs?: number[] }>;
}

/** A trace with E experts, K slots, one row per token; `top_n` = E when every token has probs. */
function buildTrace(E: number, K: number, toks: Tok[]): Trace {
  const T = toks.length,
    L = toks[0].layers.length;
  const full = toks.every((t) => t.layers.every((l) => l.probs));
  const N = full ? E : 0;
  const experts = new Int32Array(T * L * K),
    weights = new Float32Array(T * L * K);
  const topIds = new Int32Array(T * L * N),
    topProbs = new Float32Array(T * L * N);
  toks.forEach((tok, t) =>
    tok.layers.forEach((l, m) => {
      for (let j = 0; j < K; j++) {
        experts[(t * L + m) * K + j] = l.experts[j];
        weights[(t * L + m) * K + j] = l.weights?.[j] ?? 1 / K;
      }
      if (full) {
        const order = l.probs!.map((_, e) => e).sort((a, b) => l.probs![b] - l.probs![a]);
        order.forEach((e, i) => {
          topIds[(t * L + m) * N + i] = e;
          topProbs[(t * L + m) * N + i] = l.probs![e];
        });
      }
    }),
  );
  const model = { moe_layers: Array.from({ length: L }, (_, m) => 2 * m), n_expert: E, architecture: "qwen3moe" } as unknown as ModelInfo;
  return {
    header: { model, policy: {}, n_moe_layers: L, k: K, top_n: N, n_tokens: T, windows: [], kv_shift: 0, probs: false },
    columns: {
      start: 0,
      count: T,
      tokenIds: Int32Array.from(toks.map((_, i) => i)),
      byteStart: Int32Array.from(toks.map((t) => t.bytes[0])),
      byteEnd: Int32Array.from(toks.map((t) => t.bytes[1])),
      pieces: toks.map((t) => t.piece ?? "x".repeat(t.bytes[1] - t.bytes[0])),
      nll: Float32Array.from(toks.map((t, i) => (i === T - 1 ? NaN : (t.nll ?? 1)))),
      experts,
      weights,
      entropy: new Float32Array(T * L),
      active: new Uint8Array(T * L).fill(K),
      topIds: N ? topIds : undefined,
      topProbs: N ? topProbs : undefined,
    },
  };
}

/** One-hot-ish distribution over E experts: `p` on `e`, the rest shared. */
function peaked(E: number, e: number, p: number): number[] {
  return Array.from({ length: E }, (_, i) => (i === e ? p : (1 - p) / (E - 1)));
}

describe("labels", () => {
  test("marker lines: removed from the text, spans in UTF-8 bytes", () => {
    const raw = "<<<domain:en>>>\nHello\n<<<domain:de>>>\nHallo Grüße\n<<<domain:en>>>\nBye\n";
    const l = parseDomainMarkers(raw)!;
    assert.equal(l.text, "Hello\nHallo Grüße\nBye\n");
    assert.equal(l.source, "label");
    assert.deepEqual(l.spans, [
      { start: 0, end: 6, domain: "en", source: "label" },
      { start: 6, end: 6 + Buffer.byteLength("Hallo Grüße\n"), domain: "de", source: "label" },
      { start: 6 + Buffer.byteLength("Hallo Grüße\n"), end: Buffer.byteLength(l.text), domain: "en", source: "label" },
    ]);
    assert.equal(parseDomainMarkers("no markers here\n"), null);
    // The README's one-line parser gives the same segments.
    const parts = raw.split(/^<<<domain:(\w+)>>>\n/m);
    assert.deepEqual(parts, ["", "en", "Hello\n", "de", "Hallo Grüße\n", "en", "Bye\n"]);
  });

  test("text before the first marker stays unlabelled", () => {
    const l = parseDomainMarkers("preamble\n<<<domain:code>>>\nx = 1\n")!;
    assert.equal(l.text, "preamble\nx = 1\n");
    assert.deepEqual(l.spans, [{ start: 9, end: 15, domain: "code", source: "label" }]);
  });

  test("markdown fences: prose, the fence language, prose; fence lines as in format.ts", () => {
    const text = "Intro é\n```python\nx = 1\n```\nAfter\n";
    const l = markdownFenceSpans(text)!;
    const b = (s: string) => Buffer.byteLength(s);
    assert.deepEqual(
      l.spans.map((s) => [s.domain, s.start, s.end]),
      [
        ["prose", 0, b("Intro é\n```python\n")],
        ["python", b("Intro é\n```python\n"), b("Intro é\n```python\nx = 1\n```\n")],
        ["prose", b("Intro é\n```python\nx = 1\n```\n"), b(text)],
      ],
    );
    assert.equal(markdownFenceSpans("plain text\n"), null);
  });

  test("fences without a language are code; trailing whitespace joins the span before", () => {
    const text = "Text\n```\na\n```\n\n~~~json\n{}\n~~~\n";
    const l = markdownFenceSpans(text)!;
    // The prose between the blocks is the blank line and the next opening fence line.
    assert.deepEqual(
      l.spans.map((s) => s.domain),
      ["prose", "code", "prose", "json"],
    );
    assert.equal(l.spans[0].start, 0);
    assert.equal(l.spans[3].end, Buffer.byteLength(text));
    const tail = markdownFenceSpans("x\n```\na\n```\n\n  \n")!;
    assert.deepEqual(
      tail.spans.map((s) => [s.domain, s.start, s.end]),
      [
        ["prose", 0, 6],
        ["code", 6, 16],
      ],
    );
  });

  test("labelText prefers markers, then fences, else none; concatLabelled for cells", () => {
    assert.equal(labelText("<<<domain:a>>>\n```py\nx\n```\n").source, "label");
    assert.equal(labelText("t\n```py\nx\n```\n").source, "fence");
    assert.deepEqual(labelText("just text"), { text: "just text", spans: [], source: "none" });
    const c = concatLabelled([
      { text: "print(1)\n", domain: "python" },
      { text: "# Title\n", domain: "markdown" },
    ]);
    assert.equal(c.text, "print(1)\n# Title\n");
    assert.deepEqual(
      c.spans.map((s) => [s.domain, s.start, s.end, s.source]),
      [
        ["python", 0, 9, "language"],
        ["markdown", 9, 17, "language"],
      ],
    );
  });
});

describe("byte → token mapping", () => {
  // Text "ab\ncd\n": spans a = [0,3), b = [3,6). Tokens: BOS [0,0), "ab" [0,2), "\nc" [2,4) straddles, "d" [4,5), "\n" [5,6).
  const l = {
    spans: [
      { start: 0, end: 3, domain: "A", source: "label" as const },
      { start: 3, end: 6, domain: "B", source: "label" as const },
    ],
  };
  const lay = [{ experts: [0, 1] }];
  const trace = buildTrace(4, 2, [
    { bytes: [0, 0], layers: lay },
    { bytes: [0, 2], layers: lay },
    { bytes: [2, 4], layers: lay },
    { bytes: [4, 5], layers: lay },
    { bytes: [5, 6], layers: lay },
  ]);

  test("a token belongs to the span of its last byte; BOS to the span at its start", () => {
    assert.deepEqual(Array.from(tokenSpanIndex(trace, l.spans)), [0, 0, 1, 1, 1]);
  });

  test("segments are runs of tokens; the transition step is the old domain's last token", () => {
    const segs = spansToSegments(trace, l.spans);
    assert.deepEqual(segs, [
      { start: 0, end: 2, domain: "A", source: "label" },
      { start: 2, end: 5, domain: "B", source: "label" },
    ]);
    assert.deepEqual(transitionSteps(segs), [{ token: 1, from: "A", to: "B", fromSegment: 0, toSegment: 1 }]);
  });

  test("unlabelled tokens break segments; same-domain neighbours merge; no transition across a gap", () => {
    const spans = [
      { start: 0, end: 2, domain: "A", source: "label" as const },
      { start: 4, end: 6, domain: "B", source: "label" as const },
    ];
    const segs = spansToSegments(trace, spans);
    assert.deepEqual(
      segs.map((s) => [s.start, s.end, s.domain]),
      [
        [0, 2, "A"],
        [3, 5, "B"],
      ],
    );
    assert.deepEqual(transitionSteps(segs), []);
    const same = spansToSegments(trace, [
      { start: 0, end: 3, domain: "A", source: "label" },
      { start: 3, end: 6, domain: "A", source: "label" },
    ]);
    assert.deepEqual(
      same.map((s) => [s.start, s.end]),
      [[0, 5]],
    );
  });
});

describe("transition metrics", () => {
  // 2 layers, 4 experts, k = 2. Domain A (tokens 0–4) uses {0, 1}; domain B (tokens 5–9) uses {2, 1}.
  // Layer 0 and layer 1 route the same way, but the transition step's distributions differ.
  const E = 4;
  const aTok = (i: number): Tok => ({
    bytes: [i, i + 1],
    nll: 1,
    layers: [
      { experts: [0, 1], probs: peaked(E, 0, 0.7) },
      { experts: [0, 1], probs: peaked(E, 0, 0.7) },
    ],
  });
  const bTok = (i: number): Tok => ({
    bytes: [i, i + 1],
    nll: 2,
    layers: [
      { experts: [2, 1], probs: peaked(E, 2, 0.7) },
      { experts: [2, 1], probs: peaked(E, 2, 0.7) },
    ],
  });
  const toks = [0, 1, 2, 3, 4].map(aTok).concat([5, 6, 7, 8, 9].map(bTok));
  // Transition step = token 4 (last A). Layer 0: p(2) = 0.3, second after expert 0; layer 1: p(2) = 0.05, last.
  toks[4] = {
    bytes: [4, 5],
    nll: 6,
    layers: [
      { experts: [0, 2], probs: [0.6, 0.05, 0.3, 0.05] },
      { experts: [0, 1], probs: [0.5, 0.3, 0.05, 0.15] },
    ],
  };
  toks[5].piece = "xy"; // the predicted token: two characters
  toks[5].bytes = [5, 7];
  const trace = buildTrace(E, 2, toks);
  const segs: DomainSegment[] = [
    { start: 0, end: 5, domain: "A", source: "label" },
    { start: 5, end: 10, domain: "B", source: "label" },
  ];

  test("domain experts: largest usage difference, per layer", () => {
    const de = domainExperts([{ trace, segments: segs }]);
    assert.deepEqual(de.domains, ["A", "B"]);
    // Expert 1 is used by both domains (difference ≈ 0); 0 is A's, 2 is B's.
    assert.deepEqual(de.experts, [
      [0, 2],
      [0, 2],
    ]);
    assert.deepEqual(de.tokens, [5, 5]);
    assert.equal(de.usage[0][1][2], 1);
  });

  test("probability and rank of the new domain's expert at the step; K99; NLL and BPC", () => {
    const a = analyzeTransitions(trace, segs);
    assert.equal(a.transitions.length, 1);
    const x = a.transitions[0];
    assert.equal(x.token, 4);
    assert.deepEqual([x.from, x.to], ["A", "B"]);
    assert.deepEqual(x.newExpert, [2, 2]);
    assert.deepEqual(
      x.probNewExpert.map((p) => +p.toFixed(4)),
      [0.3, 0.05],
    );
    assert.deepEqual(x.rankNewExpert, [2, 4]);
    assert.equal(x.nll, 6);
    assert.equal(x.chars, 2);
    assert.ok(Math.abs(x.bpc - 6 / Math.LN2 / 2) < 1e-6);
    assert.equal(x.byte, 5);
    const s = a.summary;
    assert.equal(s.cases, 2);
    assert.equal(s.k99, 4);
    // the Affinity text's K99 from the mean probability (0.3 + 0.05) / 2 = 0.175
    assert.ok(Math.abs(s.k99Affinity - Math.log(0.01) / Math.log(1 - 0.175)) < 1e-3, `K99 (Affinity) ${s.k99Affinity}`);
    assert.equal(s.top1, 0);
    assert.ok(Math.abs(s.meanProb - 0.175) < 1e-6);
    assert.equal(s.meanRank, 3);
    // Inside: A tokens 0–3 (nll 1) and B tokens 5–8 (nll 2); B's last token has no successor.
    assert.equal(s.insideTokens, 8);
    assert.ok(Math.abs(s.nllInside - 1.5) < 1e-9);
    assert.equal(s.nllTransition, 6);
    // Inside BPC: 12 nats over the characters of tokens 1–4 (1 each) and 6–9 (1 each).
    assert.ok(Math.abs(s.bpcInside - 12 / Math.LN2 / 8) < 1e-6);
  });

  test("fixed domain experts from another trace are used as given", () => {
    const de = domainExperts([{ trace, segments: segs }]);
    const forced = {
      ...de,
      experts: [
        [0, 3],
        [0, 3],
      ],
    };
    const x = analyzeTransitions(trace, segs, { experts: forced }).transitions[0];
    // Layer 0: p(3) = 0.05 ties with expert 1; rank counts only strictly larger probabilities.
    assert.deepEqual(x.rankNewExpert, [3, 3]);
    assert.deepEqual(
      x.probNewExpert.map((p) => +p.toFixed(4)),
      [0.05, 0.15],
    );
  });

  test("exact character counts come from the text's bytes when given", () => {
    const text = "abcdeüfghij"; // 'ü' = bytes 5–6: the predicted token [5,7) is one character
    const x = analyzeTransitions(trace, segs, { text }).transitions[0];
    assert.equal(x.chars, 1);
  });

  test("without the full router distribution the metrics refuse with a clear message", () => {
    const partial = buildTrace(
      E,
      2,
      toks.map((t) => ({ ...t, layers: t.layers.map((l) => ({ experts: l.experts })) })),
    );
    assert.throws(() => routerDistribution(partial, 4, 0), /top_n = n_expert/);
    assert.throws(() => analyzeTransitions(partial, segs), /top_n = n_expert/);
  });

  test("K99 is the smallest K covering 99% of the cases", () => {
    assert.equal(kCoverage([1, 1, 2, 5]), 5);
    assert.equal(kCoverage([...new Array(99).fill(1), 8]), 1);
    assert.equal(kCoverage([...new Array(98).fill(1), 3, 8]), 3);
    assert.equal(kCoverage([2, 1, 3], 0.5), 2);
    assert.ok(Number.isNaN(kCoverage([])));
  });
});

describe("change points", () => {
  const E = 4;
  const tok = (i: number, a: number, b: number): Tok => ({
    bytes: [i, i + 1],
    layers: [
      { experts: [a, b], weights: [0.6, 0.4] },
      { experts: [a, b], weights: [0.6, 0.4] },
    ],
  });

  test("a clean switch of experts is found at its first token", () => {
    const trace = buildTrace(
      E,
      2,
      Array.from({ length: 60 }, (_, i) => (i < 25 ? tok(i, 0, 1) : tok(i, 2, 3))),
    );
    const cp = detectChangePoints(trace, { window: 8 });
    assert.deepEqual(cp.points, [25]);
    assert.ok(Math.abs(cp.scores[25] - 1) < 1e-6);
    assert.ok(Math.abs(cp.scores[21] - 0.5) < 1e-6, "the score falls off linearly over the window");
    assert.ok(Number.isNaN(cp.scores[3]));
    assert.deepEqual(changePointSegments(60, cp.points), [
      { start: 0, end: 25, domain: "segment 1", source: "change-point" },
      { start: 25, end: 60, domain: "segment 2", source: "change-point" },
    ]);
  });

  test("two switches, a minimum gap, and none in steady routing", () => {
    const trace = buildTrace(
      E,
      2,
      Array.from({ length: 90 }, (_, i) => (i < 30 ? tok(i, 0, 1) : i < 60 ? tok(i, 2, 3) : tok(i, 0, 3))),
    );
    assert.deepEqual(detectChangePoints(trace, { window: 8 }).points, [30, 60]);
    // The second switch moves only the first expert's share (0.6 of the mass): it scores 0.6.
    assert.ok(Math.abs(detectChangePoints(trace, { window: 8 }).scores[60] - 0.6) < 1e-6);
    assert.deepEqual(detectChangePoints(trace, { window: 8, threshold: 0.8 }).points, [30]);
    const steady = buildTrace(
      E,
      2,
      Array.from({ length: 40 }, (_, i) => tok(i, i % 2, 2 + (i % 2))),
    );
    assert.deepEqual(detectChangePoints(steady, { window: 8 }).points, []);
  });
});

describe("experiment tables (pure parts)", () => {
  test("n_ctx gives at least four chunks", () => {
    assert.equal(chooseNCtx(838, 1024), 128);
    assert.equal(chooseNCtx(10_000, 256), 256);
    assert.equal(chooseNCtx(64, 1024), 16);
    assert.throws(() => chooseNCtx(40, 1024), /too short/);
  });

  test("the sweep plan: baseline, thresholds incl. 1.0, and k above the trained k", () => {
    const plan = sweepPolicies(8, [0.75], [8, 12]);
    assert.deepEqual(
      plan.map((p) => p.config),
      ["k8 baseline", "k8 + threshold 0.75", "k8 + threshold 1.00", "k12 no gating", "k12 + threshold 0.75", "k12 + threshold 1.00"],
    );
    assert.deepEqual(plan[0].policy, {});
    assert.deepEqual(plan[2].policy, { amg: { threshold: 1 } });
    assert.deepEqual(plan[4].policy, { max_k: 12, amg: { threshold: 0.75 } });
    assert.equal(sweepPolicies(2, [0.5], [1])[0].config, "k1 (cap) no gating");
  });

  test("the sweep table has the AMG table's columns", () => {
    const r = {
      trainedK: 8,
      nCtx: 512,
      tokens: 5000,
      model: { architecture: "qwen3moe" },
      rows: [
        { config: "k8 baseline", policy: {}, k: 8, threshold: null, ppl: 11.3277, pplErr: 0.143, avgActive: 8, nChunks: 9, nCtx: 512, printed: "" },
        {
          config: "k12 + threshold 0.90",
          policy: { max_k: 12, amg: { threshold: 0.9 } },
          k: 12,
          threshold: 0.9,
          ppl: 11.2925,
          pplErr: 0.143,
          avgActive: 10.31,
          nChunks: 9,
          nCtx: 512,
          printed: "",
        },
      ],
    } as unknown as SweepResult;
    const t = sweepTable(r);
    assert.deepEqual(t.header, ["Config", "PPL", "±σ", "Avg experts active"]);
    assert.deepEqual(t.rows[1], ["k12 + threshold 0.90", "11.2925", "±0.143", "10.31/12"]);
    assert.match(markdownTable(t), /^\| Config \| PPL \| ±σ \| Avg experts active \|\n\|---\|---\|---\|---\|\n\| k8 baseline/);
    const csv = sweepToCsv(r).split("\n");
    assert.equal(csv[0], "config,max_k,k,threshold,ppl,ppl_err,avg_active,n_chunks,n_ctx,policy,prefill_tps,decode_tps,prefill_ratio,decode_ratio");
    assert.equal(csv[2], "k12 + threshold 0.90,12,12,0.9,11.2925,0.143,10.31,9,512,k=12 + AMG τ=0.9,,,,");
  });

  test("with speed measured, the sweep table reads speed and quality together", () => {
    const speed = (decode: number, prefill: number, active: number) => ({
      decode_ratio: decode,
      prefill_ratio: prefill,
      avg_active_experts: active,
      k: 8,
      prefill_tps: 100 * prefill,
      decode_tps: 10 * decode,
    });
    const r = {
      trainedK: 8,
      nCtx: 512,
      tokens: 5000,
      model: { architecture: "qwen3moe" },
      rows: [
        {
          config: "k8 baseline",
          policy: {},
          k: 8,
          threshold: null,
          ppl: 10,
          pplErr: 0.1,
          avgActive: 8,
          nChunks: 9,
          nCtx: 512,
          printed: "",
          speed: speed(1, 1, 8),
        },
        {
          config: "k8 + threshold 0.50",
          policy: { amg: { threshold: 0.5 } },
          k: 8,
          threshold: 0.5,
          ppl: 10.08,
          pplErr: 0.1,
          avgActive: 4.1,
          nChunks: 9,
          nCtx: 512,
          printed: "",
          speed: speed(1.42, 1.3, 4.1),
        },
      ],
    } as unknown as SweepResult;
    const t = sweepTable(r);
    assert.deepEqual(t.header, ["Config", "PPL", "±σ", "Avg experts active", "Speed and quality vs k8 baseline"]);
    assert.equal(t.rows[1][4], "1.42× decode, 1.30× prefill at 4.10/8 active, +0.8 % PPL");
    assert.equal(sweepToCsv(r).split("\n")[2].split(",").slice(-4).join(), "130,14.2,1.3,1.42");
  });

  test("the ablation has all 2³ subsets, Standard first, and mean ± sample std", () => {
    assert.equal(ABLATION_SUBSETS.length, 8);
    assert.equal(new Set(ABLATION_SUBSETS.map((s) => `${s.beta}${s.pi}${s.ant}`)).size, 8);
    assert.deepEqual(ABLATION_SUBSETS.map(subsetName), ["Standard", "β", "Π", "Ant", "β + Π", "β + Ant", "Π + Ant", "β + Π + Ant"]);
    assert.deepEqual(subsetPolicy(ABLATION_SUBSETS[0]), {});
    assert.deepEqual(subsetPolicy(ABLATION_SUBSETS[7], { beta: 0.8, gamma: 0.3, betaForm: "scale_preserving" }), {
      beta: { beta: 0.8, form: "scale_preserving" },
      pi: {},
      ant: { gamma: 0.3 },
    });
    const s = stat([1, 2, 3, NaN]);
    assert.equal(s.mean, 2);
    assert.equal(s.std, 1);
    assert.equal(s.n, 3);
    assert.deepEqual(stat([5]), { mean: 5, std: 0, n: 1 });
  });

  test("the ablation table and CSV have one row per subset", () => {
    const st = (m: number) => ({ mean: m, std: 0.01, n: 2 });
    const rows = ABLATION_SUBSETS.map((subset, i) => ({
      config: subsetName(subset),
      subset,
      policy: subsetPolicy(subset),
      perDoc: [],
      prob: st(0.1 * (i + 1)),
      deltaProb: st(0.1 * i),
      k99: st(4),
      k99Pooled: 4,
      k99Affinity: st(6.5),
      top1: st(0.5),
      bpcTransition: st(3),
      deltaBpc: st(0),
      nllTransition: st(2),
      nllInside: st(1),
      bpcInside: st(1),
    }));
    const r = {
      rows,
      settings: { beta: 0.9, betaForm: "raw", gamma: 0.5, piMomentum: null },
      docs: [],
      predictor: { source: "fitted" },
    } as unknown as AblationResult;
    const t = ablationTable(r);
    assert.equal(t.rows.length, 8);
    assert.equal(t.header[0], "Gate");
    assert.deepEqual(t.rows[0].slice(0, 6), ["Standard", "", "", "", "0.100 ± 0.010", "–"]);
    assert.deepEqual(t.rows[7].slice(0, 6), ["β + Π + Ant", "✓", "✓", "✓", "0.800 ± 0.010", "+0.700 ± 0.010"]);
    assert.ok(t.header.includes("K99 (rank)") && t.header.includes("K99 (rank) pooled") && t.header.includes("K99 (Affinity)"), `${t.header}`);
    assert.equal(t.rows[0][t.header.indexOf("K99 (Affinity)")], "6.5 ± 0.0");
    const csv = ablationToCsv(r).trim().split("\n");
    assert.equal(csv.length, 9);
    assert.match(csv[0], /^config,beta,pi,ant,prob_mean,prob_std,delta_prob_mean/);
  });

  test("affinityK99: draws needed to find the expert with probability 99%", () => {
    assert.ok(Math.abs(affinityK99(0.5) - Math.log(0.01) / Math.log(0.5)) < 1e-12);
    assert.equal(affinityK99(1), 1);
    assert.equal(affinityK99(0), Infinity);
    assert.ok(Number.isNaN(affinityK99(NaN)));
    assert.ok(affinityK99(0.006) > 700 && affinityK99(0.748) < 4, "the Affinity text's transition probabilities 0.006 and 0.748");
  });

  test("ablationPacks matches the eight trained packs by name and checks their mechanisms", () => {
    const pack = (name: string, mechanisms = name) => ({ name, mechanisms, path: `/p/${name}.gguf`, description: "" });
    const all = ["beta", "pi", "ant", "beta+pi", "beta+ant", "pi+ant", "beta+pi+ant"].map((n) => pack(n));
    const packs = ablationPacks([pack("entropy", ""), pack("standard", ""), ...[...all].reverse()]);
    assert.deepEqual(
      packs.map((p) => p.name),
      ABLATION_SUBSETS.map(subsetPackName),
    );
    assert.deepEqual(packs[5].subset, { beta: true, pi: false, ant: true });
    assert.throws(() => ablationPacks([pack("standard", ""), ...all.filter((p) => p.name !== "beta+pi+ant")]), /missing: .*beta\+pi\+ant/);
    assert.throws(() => ablationPacks([pack("standard", "beta"), ...all]), /named standard but declares mechanisms "beta"/);
  });

  test("the ablation's subtitle names the model and how the rows route", () => {
    const model = { path: "/m/demo-moe-fine.gguf", architecture: "qwen3moe", n_expert: 64, n_expert_used_trained: 8 };
    const posthoc = { model, packs: null } as unknown as AblationResult;
    assert.equal(ablationSubtitle(13, posthoc, "/t/sample.md"), "13 documents on demo-moe-fine.gguf (qwen3moe, 64 experts, k=8); Ant fitted on sample.md");
    assert.equal(
      ablationSubtitle(1, { ...posthoc, packs: [] } as AblationResult),
      "1 document on demo-moe-fine.gguf (qwen3moe, 64 experts, k=8); trained router packs",
    );
  });
});
