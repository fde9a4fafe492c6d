// atlasView (extension/core/atlas.ts): the expert atlas → the panel's `atlas` message, on
// synthetic atlases with known answers (MI of 1 bit where two equal classes pick disjoint
// experts, 0 where they pick the same; lifts, selections, balance), its size at 48 layers ×
// 128 experts (no counts travel), and folderClassOf, the "classes by folder" of the CLI and
// the command. Also tokenRangeMask, which the panel's usage over a token range uses.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { atlasView, folderClassOf } from "../../extension/core/atlas";
import { ExpertAtlas, loadMatrix, tokenRangeMask, type RoutingColumns } from "../../shared/expert-stats";

/** A trace of n tokens with k = 1 that picks expert experts[layer] in every layer, weight 1. */
function oneExpertPerLayer(n: number, experts: number[], E: number): RoutingColumns {
  const L = experts.length;
  const ids = new Int32Array(n * L),
    weights = new Float32Array(n * L).fill(1);
  for (let t = 0; t < n; t++) for (let l = 0; l < L; l++) ids[t * L + l] = experts[l];
  return { count: n, L, K: 1, E, experts: ids, weights };
}

function twoClassAtlas(): ExpertAtlas {
  const atlas = new ExpertAtlas(2, 1, 4);
  // Layer 0: class a → e0, class b → e1 (disjoint, 1 bit); layer 1: both → e2 (0 bits).
  atlas.add(oneExpertPerLayer(10, [0, 2], 4), new Int32Array(10), ["a"]);
  atlas.add(oneExpertPerLayer(10, [1, 2], 4), new Int32Array(10), ["b"]);
  return atlas;
}

describe("atlasView: the atlas as the panel's atlas message (issue 13)", () => {
  test("MI, top experts by lift with selections, balance and class tokens, per layer", () => {
    const v = atlasView(twoClassAtlas(), "two classes", 3);
    assert.equal(v.title, "two classes");
    assert.deepEqual([v.documents, v.tokens, v.L, v.K, v.E, v.topN], [2, 20, 2, 1, 4, 3]);
    assert.deepEqual(v.classes, ["a", "b"]);
    assert.deepEqual(v.classTokens, [10, 10]);
    assert.equal(v.layers.length, 2);
    assert.ok(Math.abs(v.layers[0].miBits - 1) < 1e-12, String(v.layers[0].miBits));
    assert.equal(v.layers[1].miBits, 0);
    // P(e0 | a) = 1, P(e0) = 1/2: lift 2; only the experts a class selected are listed.
    assert.deepEqual(v.layers[0].top, [[{ expert: 0, selections: 10, lift: 2 }], [{ expert: 1, selections: 10, lift: 2 }]]);
    assert.deepEqual(v.layers[1].top, [[{ expert: 2, selections: 10, lift: 1 }], [{ expert: 2, selections: 10, lift: 1 }]]);
    // Load [10, 10, 0, 0] in layer 0 and [0, 0, 20, 0] in layer 1.
    assert.deepEqual([v.layers[0].balance.dead, v.layers[0].balance.maxOverMean, v.layers[0].balance.total], [2, 2, 20]);
    assert.deepEqual([v.layers[1].balance.dead, v.layers[1].balance.maxOverMean, v.layers[1].balance.normalisedEntropy], [3, 4, 0]);
  });

  test("at most topN experts per class, ranked by lift; a bad topN is refused", () => {
    const atlas = new ExpertAtlas(1, 2, 8);
    // Class x picks e0 and e1 (k = 2), class y picks e1 and e2.
    const cols = (a: number, b: number, n: number): RoutingColumns => ({
      count: n,
      L: 1,
      K: 2,
      E: 8,
      experts: Int32Array.from({ length: 2 * n }, (_, i) => (i % 2 ? b : a)),
      weights: new Float32Array(2 * n).fill(0.5),
    });
    atlas.add(cols(0, 1, 4), new Int32Array(4), ["x"]);
    atlas.add(cols(1, 2, 4), new Int32Array(4), ["y"]);
    const v = atlasView(atlas, "t", 1);
    // P(e0 | x) = 1/2, P(e0) = 1/4: lift 2 beats e1's 1.
    assert.deepEqual(v.layers[0].top, [[{ expert: 0, selections: 4, lift: 2 }], [{ expert: 2, selections: 4, lift: 2 }]]);
    assert.equal(atlasView(atlas, "t", 2).layers[0].top[0][1].expert, 1);
    assert.throws(() => atlasView(atlas, "t", 0), /top experts per class must be a positive integer, got 0/);
  });

  test("48 layers × 128 experts, 12 classes: about 100 kB, a quarter of the numbers of the L × classes × E counts at most", () => {
    const atlas = new ExpertAtlas(48, 1, 128);
    // Each class's tokens spread over many experts, so every class lists its full top 5.
    const spread = (c: number): RoutingColumns => ({
      count: 200,
      L: 48,
      K: 1,
      E: 128,
      experts: Int32Array.from({ length: 200 * 48 }, (_, i) => (c * 7 + i * 13 + (i % 48) * (c + 1)) % 128),
      weights: new Float32Array(200 * 48).fill(1),
    });
    for (let c = 0; c < 12; c++) atlas.add(spread(c), new Int32Array(200), [`class${c}`]);
    const v = atlasView(atlas, "big", 5);
    assert.ok(v.layers.every((l) => l.top.every((t) => t.length === 5)));
    const bytes = JSON.stringify(v).length;
    assert.ok(bytes < 200_000, `${bytes} bytes`);
    // Numbers sent: per layer, 5 entries × 3 numbers per class and the balance; the counts would be 48 × 12 × 128 = 73,728.
    const numbers = JSON.stringify(v).match(/-?\d+(\.\d+)?(e-?\d+)?/g)!.length;
    assert.ok(numbers < (48 * 12 * 128) / 4, `${numbers} numbers`);
  });
});

describe("folderClassOf and tokenRangeMask", () => {
  test("a file's class is its first folder under DIR, '.' directly in it", () => {
    assert.equal(folderClassOf("code/a/b.py"), "code");
    assert.equal(folderClassOf("README.md"), ".");
  });
  test("usage over tokens [from, to) is the load of those tokens only", () => {
    assert.deepEqual([...tokenRangeMask(5, 1, 3)], [0, 1, 1, 0, 0]);
    assert.deepEqual([...tokenRangeMask(3, -2, 9)], [1, 1, 1]);
    const c: RoutingColumns = { count: 3, L: 1, K: 1, E: 3, experts: Int32Array.from([0, 1, 2]), weights: new Float32Array(3).fill(1) };
    assert.deepEqual([...loadMatrix(c, tokenRangeMask(3, 1, 3))], [0, 1, 1]);
  });
});
