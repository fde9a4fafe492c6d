// Per-layer expert figures (shared/expert-stats.ts) on small synthetic traces whose answers
// are worked out by hand: load and weight mass, balance (uniform, one expert takes all), a
// layer's experts ranked by load,
// class specialisation (lift, mutual information), top experts for a selection,
// co-activation, layer transitions, dropped slots (weight 0) not counted, the same expert id
// in two layers never pooled, the token classifier, regex masks, and the ExpertAtlas
// (add, merge, JSON round trip, agreement with specialisation() on one trace); and the
// atlas's folder walk (globs, skipped folders, language ids by extension).
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, test } from "node:test";
import { languageIdOf, listCorpusFiles } from "../../extension/core/atlas";
import {
  balance,
  coActivation,
  ExpertAtlas,
  layerLoad,
  layerTransitions,
  layerWeightMass,
  loadMatrix,
  rankedLoad,
  regexMask,
  specialisation,
  TOKEN_CLASSES,
  tokenClass,
  tokenClassLabels,
  topExpertsByClass,
  topExpertsFor,
  type RoutingColumns,
} from "../../shared/expert-stats";

/** Columns from rows[token][layer] = [[expert, weight], …] (K slots each). */
function columns(E: number, rows: [number, number][][][]): RoutingColumns {
  const count = rows.length,
    L = rows[0].length,
    K = rows[0][0].length;
  const experts = new Int32Array(count * L * K),
    weights = new Float32Array(count * L * K);
  rows.forEach((tok, t) =>
    tok.forEach((slots, l) => {
      assert.equal(slots.length, K);
      slots.forEach(([e, w], j) => {
        experts[(t * L + l) * K + j] = e;
        weights[(t * L + l) * K + j] = w;
      });
    }),
  );
  return { count, L, K, E, experts, weights };
}

const half = (e1: number, e2: number): [number, number][] => [
  [e1, 0.5],
  [e2, 0.5],
];

// 2 layers, 4 experts, k = 2. Tokens 0,1 are class A, tokens 2,3 class B.
// Layer 0: A uses {0,1}, B uses {2,3}. Layer 1: A uses {2,3}, B uses {0,1} (the ids swap,
// so pooling the layers would make every expert look class-neutral).
const AB = columns(4, [
  [half(0, 1), half(2, 3)],
  [half(1, 0), half(3, 2)],
  [half(2, 3), half(0, 1)],
  [half(3, 2), half(1, 0)],
]);
const AB_LABELS = Int32Array.from([0, 0, 1, 1]);

const close = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) < 1e-12, `${what}: ${a} ≠ ${b}`);

describe("load and weight mass", () => {
  test("per layer, masked, and the load matrix rows are the layers", () => {
    assert.deepEqual([...layerLoad(AB, 0)], [2, 2, 2, 2]);
    assert.deepEqual([...layerLoad(AB, 0, Uint8Array.from([1, 1, 0, 0]))], [2, 2, 0, 0]);
    assert.deepEqual([...layerLoad(AB, 1, Uint8Array.from([1, 1, 0, 0]))], [0, 0, 2, 2]);
    assert.deepEqual([...loadMatrix(AB, Uint8Array.from([1, 0, 0, 0]))], [1, 1, 0, 0, 0, 0, 1, 1]);
    assert.deepEqual([...layerWeightMass(AB, 0, Uint8Array.from([1, 1, 0, 0]))], [1, 1, 0, 0]);
  });

  test("dropped slots (weight 0) and out-of-range ids are not selections", () => {
    const c = columns(4, [
      [
        [
          [0, 0.625],
          [1, 0],
        ],
      ],
      [
        [
          [0, 0.25],
          [-1, 0.75],
        ],
      ],
    ]);
    assert.deepEqual([...layerLoad(c, 0)], [2, 0, 0, 0]);
    const mass = layerWeightMass(c, 0);
    assert.equal(mass[0], 0.875);
    assert.equal(mass[1], 0);
    assert.equal(balance(layerLoad(c, 0)).dead, 3);
    // A dropped slot is not a co-activation nor a transition source.
    assert.deepEqual([...coActivation(c, 0)].slice(0, 4), [2, 0, 0, 0]);
  });

  test("bad input is named", () => {
    assert.throws(() => layerLoad(AB, 2), /layer 2 is out of range: the trace has 2 MoE layers/);
    assert.throws(() => layerLoad(AB, 0, new Uint8Array(3)), /mask has 3 entries, the trace has 4 tokens/);
    assert.throws(() => layerTransitions(AB, 1), /last MoE layer/);
    assert.throws(() => specialisation(AB, 0, Int32Array.from([0, 0, 2, 1]), 2), /class label 2 of token 2 is out of range/);
  });
});

describe("balance", () => {
  test("uniform load: cv 0, max/mean 1, entropy log2 E, no dead experts", () => {
    const b = balance([5, 5, 5, 5, 5, 5, 5, 5]);
    assert.deepEqual({ ...b }, { total: 40, mean: 5, cv: 0, maxOverMean: 1, entropyBits: 3, normalisedEntropy: 1, dead: 0 });
  });

  test("one expert takes all: max/mean = E, dead = E − 1, entropy 0, cv = sqrt(E − 1)", () => {
    const b = balance([0, 0, 12, 0]);
    assert.equal(b.maxOverMean, 4);
    assert.equal(b.dead, 3);
    assert.equal(b.entropyBits, 0);
    assert.equal(b.normalisedEntropy, 0);
    // mean 3, deviations 3,3,9,3 → variance (9+9+81+9)/4 = 27, std = 3√3, cv = √3.
    close(b.cv, Math.sqrt(3), "cv");
  });

  test("half on two of four experts: 1 bit, normalised 0.5, cv 1, max/mean 2", () => {
    const b = balance([3, 3, 0, 0]);
    assert.equal(b.entropyBits, 1);
    assert.equal(b.normalisedEntropy, 0.5);
    assert.equal(b.cv, 1);
    assert.equal(b.maxOverMean, 2);
    assert.equal(b.dead, 2);
  });

  test("empty load is 0/NaN-safe", () => {
    assert.deepEqual({ ...balance(new Float64Array(6)) }, { total: 0, mean: 0, cv: 0, maxOverMean: 0, entropyBits: 0, normalisedEntropy: 0, dead: 6 });
    assert.deepEqual({ ...balance([]) }, { total: 0, mean: 0, cv: 0, maxOverMean: 0, entropyBits: 0, normalisedEntropy: 0, dead: 0 });
  });
});

describe("rankedLoad", () => {
  test("a layer's experts by load, highest first (ties by id), as shares, and the rest as other", () => {
    // total 20: e3 8, e0 and e5 4 each (tie: e0 first), e1 2, e2 1, e4 1
    const r = rankedLoad([4, 2, 1, 8, 1, 4], 3);
    assert.deepEqual(r.experts, [3, 0, 5]);
    assert.deepEqual(r.shares, [0.4, 0.2, 0.2]);
    close(r.otherShare, 0.2, "other");
  });

  test("all experts fit: no other share; unused experts are not ranked", () => {
    const r = rankedLoad([0, 3, 1, 0], 16);
    assert.deepEqual(r.experts, [1, 2]);
    assert.deepEqual(r.shares, [0.75, 0.25]);
    assert.equal(r.otherShare, 0);
  });

  test("an empty load ranks nothing", () => {
    assert.deepEqual(rankedLoad([0, 0, 0], 2), { experts: [], shares: [], otherShare: 0 });
  });
});

describe("specialisation", () => {
  test("class A on {0,1}, B on {2,3}: MI = 1 bit, lift 2 / 0, per layer", () => {
    for (const layer of [0, 1]) {
      const s = specialisation(AB, layer, AB_LABELS, 2);
      close(s.miBits, 1, `MI of layer ${layer}`);
      assert.deepEqual([...s.classTokens], [2, 2]);
      const [aExperts, bExperts] =
        layer === 0
          ? [
              [0, 1],
              [2, 3],
            ]
          : [
              [2, 3],
              [0, 1],
            ];
      for (const e of aExperts) assert.equal(s.lift[0 * 4 + e], 2);
      for (const e of bExperts) assert.equal(s.lift[0 * 4 + e], 0);
      for (const e of bExperts) assert.equal(s.lift[1 * 4 + e], 2);
      assert.equal(s.counts[0 * 4 + aExperts[0]], 2);
    }
  });

  test("pooling the layers would hide it: per layer MI is 1 bit, the ids mixed across layers give 0", () => {
    // Pooled over both layers (each token-layer row as one observation of its token's class):
    // A selects every expert twice, B too → class and expert look independent.
    const pooled = columns(4, [[half(0, 1)], [half(2, 3)], [half(1, 0)], [half(3, 2)], [half(2, 3)], [half(0, 1)], [half(3, 2)], [half(1, 0)]]);
    const s = specialisation(pooled, 0, Int32Array.from([0, 0, 0, 0, 1, 1, 1, 1]), 2);
    close(s.miBits, 0, "pooled MI");
    assert.deepEqual([...s.lift], [1, 1, 1, 1, 1, 1, 1, 1]);
    close(specialisation(AB, 1, AB_LABELS, 2).miBits, 1, "per-layer MI");
  });

  test("independent classes: MI 0, every lift 1; tokens labelled -1 are not counted", () => {
    const c = columns(2, [[[[0, 1]]], [[[1, 1]]], [[[0, 1]]], [[[1, 1]]], [[[0, 1]]]]);
    const s = specialisation(c, 0, Int32Array.from([0, 0, 1, 1, -1]), 2);
    assert.equal(s.miBits, 0);
    assert.deepEqual([...s.lift], [1, 1, 1, 1]);
    assert.deepEqual([...s.classTokens], [2, 2]);
  });

  test("a class with no selections has NaN lifts; MI stays within [0, log2 min(classes, E)]", () => {
    const c = columns(3, [[[[0, 1]]], [[[1, 1]]], [[[2, 0]]]]);
    const s = specialisation(c, 0, Int32Array.from([0, 1, 2]), 3);
    assert.ok([0, 1, 2].every((e) => Number.isNaN(s.lift[2 * 3 + e])));
    assert.ok(Number.isNaN(s.lift[0 * 3 + 2]), "expert 2 never selected: P(e) = 0");
    close(s.miBits, 1, "two classes each on their own expert");
  });
});

describe("top experts for a selection", () => {
  test("ranked by lift, ties by inside count, Infinity when never used outside", () => {
    // Layer 0, k = 1, 4 experts. Inside tokens: e0 ×2, e1 ×1, e2 ×1. Outside: e1 ×1, e2 ×3.
    const c = columns(4, [[[[0, 1]]], [[[0, 1]]], [[[1, 1]]], [[[2, 1]]], [[[1, 1]]], [[[2, 1]]], [[[2, 1]]], [[[2, 1]]]]);
    const mask = Uint8Array.from([1, 1, 1, 1, 0, 0, 0, 0]);
    const top = topExpertsFor(c, 0, mask, 10);
    assert.deepEqual(top, [
      { expert: 0, inside: 2, outside: 0, lift: Infinity },
      { expert: 1, inside: 1, outside: 1, lift: 1 }, // (1/4) / (1/4)
      { expert: 2, inside: 1, outside: 3, lift: 1 / 3 }, // (1/4) / (3/4)
    ]);
    assert.equal(topExpertsFor(c, 0, mask, 1).length, 1);
  });
});

describe("co-activation and transitions", () => {
  test("co-activation counts tokens per pair, symmetric, diagonal = load", () => {
    // k = 3: token 0 {0,1,2}, token 1 {0,1,3}, token 2 {0,2,x dropped}.
    const c = columns(4, [
      [
        [
          [0, 0.5],
          [1, 0.3],
          [2, 0.2],
        ],
      ],
      [
        [
          [0, 0.4],
          [1, 0.4],
          [3, 0.2],
        ],
      ],
      [
        [
          [0, 0.6],
          [2, 0.4],
          [3, 0],
        ],
      ],
    ]);
    const m = coActivation(c, 0);
    // prettier-ignore
    assert.deepEqual([...m], [
      3, 2, 2, 1,
      2, 2, 1, 1,
      2, 1, 2, 0,
      1, 1, 0, 1,
    ]);
    assert.deepEqual(
      [0, 1, 2, 3].map((e) => m[e * 4 + e]),
      [...layerLoad(c, 0)],
    );
  });

  test("transitions count every kept (layer l, layer l+1) pair, K×K per token", () => {
    const m = layerTransitions(AB, 0, Uint8Array.from([1, 0, 0, 0]));
    // Token 0: {0,1} in layer 0 → {2,3} in layer 1.
    // prettier-ignore
    assert.deepEqual([...m], [
      0, 0, 1, 1,
      0, 0, 1, 1,
      0, 0, 0, 0,
      0, 0, 0, 0,
    ]);
    assert.equal(
      layerTransitions(AB, 0).reduce((s, x) => s + x, 0),
      4 * 2 * 2,
    );
  });
});

describe("token classes and regex masks", () => {
  test("the classifier", () => {
    const cls = (p: string) => TOKEN_CLASSES[tokenClass(p)];
    assert.equal(cls(" the"), "word");
    assert.equal(cls("don't"), "word");
    assert.equal(cls("foo_bar"), "word");
    assert.equal(cls("Über"), "word");
    assert.equal(cls(" 42"), "number");
    assert.equal(cls("3.14"), "number");
    assert.equal(cls("1,000"), "number");
    assert.equal(cls("."), "punctuation");
    assert.equal(cls(' ("'), "punctuation");
    assert.equal(cls("—"), "punctuation");
    assert.equal(cls("\n\n"), "whitespace");
    assert.equal(cls("  "), "whitespace");
    assert.equal(cls(" {"), "code symbol");
    assert.equal(cls("=>"), "code symbol");
    assert.equal(cls("#"), "code symbol");
    assert.equal(cls(""), "other");
    assert.equal(cls("x+1"), "other");
    assert.equal(cls("🙂"), "other");
    assert.deepEqual([...tokenClassLabels(["a", "1", "\n"])], [0, 1, 3]);
  });

  test("regexMask tests each piece afresh, also with a /g regex", () => {
    assert.deepEqual([...regexMask(["foo", "foo", "bar", " food"], /foo/g)], [1, 1, 0, 1]);
  });
});

describe("ExpertAtlas", () => {
  test("one document gives the same specialisation as specialisation(); totals are tokens × k", () => {
    const atlas = new ExpertAtlas(2, 2, 4);
    atlas.add(AB, AB_LABELS, ["A", "B"]);
    for (const layer of [0, 1]) {
      const a = atlas.specialisation(layer),
        s = specialisation(AB, layer, AB_LABELS, 2);
      assert.deepEqual([...a.counts], [...s.counts]);
      assert.deepEqual([...a.lift], [...s.lift]);
      assert.equal(a.miBits, s.miBits);
      assert.equal(
        atlas.layerLoad(layer).reduce((x, y) => x + y, 0),
        4 * 2,
      );
      assert.equal(atlas.layerTokens(layer), 4);
    }
  });

  test("classes are matched by name across documents and merges; JSON round-trips", () => {
    const one = new ExpertAtlas(2, 2, 4);
    one.add(AB, AB_LABELS, ["A", "B"]);
    const two = new ExpertAtlas(2, 2, 4);
    // Same trace, names given in the other order: B is id 0 here.
    two.add(AB, Int32Array.from([1, 1, 0, 0]), ["B", "A"]);
    one.merge(two);
    assert.deepEqual(one.classNames, ["A", "B"]);
    assert.equal(one.documents, 2);
    const s = one.specialisation(0);
    assert.deepEqual([...s.classTokens], [4, 4]);
    assert.deepEqual([...s.counts], [4, 4, 0, 0, 0, 0, 4, 4]);
    close(s.miBits, 1, "merged MI");
    const back = ExpertAtlas.fromJSON(JSON.parse(JSON.stringify(one)));
    assert.deepEqual(back.toJSON(), one.toJSON());
  });

  test("bad input is named", () => {
    const atlas = new ExpertAtlas(2, 2, 4);
    assert.throws(
      () => atlas.add(columns(4, [[half(0, 1)]]), Int32Array.from([0]), ["A"]),
      /atlas is for 2 layers × 4 experts, k = 2; the trace has 1 × 4, k = 2/,
    );
    assert.throws(() => atlas.merge(new ExpertAtlas(2, 2, 8)), /cannot merge/);
    assert.throws(() => ExpertAtlas.fromJSON({ format: "x" }), /not an expert atlas/);
    assert.throws(
      () => ExpertAtlas.fromJSON({ ...atlas.toJSON(), classes: [{ name: "A", tokens: [1], selections: [] }] }),
      /class "A" must have 2 non-negative token counts/,
    );
    assert.throws(() => new ExpertAtlas(0, 2, 4), /L \(MoE layers\) must be a positive integer/);
  });
});

describe("top experts by class", () => {
  test("each class's experts by lift, only those it selected", () => {
    const top = topExpertsByClass(specialisation(AB, 0, AB_LABELS, 2), 1);
    assert.deepEqual(top, [[{ expert: 0, selections: 2, lift: 2 }], [{ expert: 2, selections: 2, lift: 2 }]]);
  });
});

describe("the folder walk of the atlas (extension/core/atlas.ts)", () => {
  test("globs, skipped folders, language ids", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "moe-lens-atlas-"));
    try {
      for (const f of ["a.py", "src/b.ts", "src/deep/c.ts", "docs/readme.md", ".hidden/x.ts", "node_modules/y.ts", "NOTES"]) {
        fs.mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
        fs.writeFileSync(path.join(dir, f), "x");
      }
      assert.deepEqual(listCorpusFiles(dir), ["NOTES", "a.py", "docs/readme.md", "src/b.ts", "src/deep/c.ts"]);
      assert.deepEqual(listCorpusFiles(dir, ["*.ts"]), ["src/b.ts", "src/deep/c.ts"]);
      assert.deepEqual(listCorpusFiles(dir, ["src/*.ts", "*.md"]), ["docs/readme.md", "src/b.ts"]);
      assert.deepEqual(listCorpusFiles(dir, ["src/**/*.ts"]), ["src/b.ts", "src/deep/c.ts"]);
      assert.deepEqual(listCorpusFiles(dir, ["?.py"]), ["a.py"]);
      assert.throws(() => listCorpusFiles(path.join(dir, "missing")), /no such folder/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    assert.deepEqual(["a.py", "b.TS", "c.md", "d.txt", "e.weird", "Makefile"].map(languageIdOf), [
      "python",
      "typescript",
      "markdown",
      "plaintext",
      "weird",
      "plaintext",
    ]);
  });
});
