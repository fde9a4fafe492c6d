// The Prune Experts… command's pure parts: the panel's saliency chart message (per layer, by
// the method's criterion, the kept experts exactly those chooseExperts keeps) and the preview's
// size estimate, checked against a file really written from the demo model.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, test } from "node:test";
import { chooseExperts, keptExpertCount, openForPruning, writePrunedModel } from "../../extension/core/prune";
import type { SaliencyFile } from "../../extension/core/saliency";
import { chartCriterion, expertBytes, prunePreview, saliencyMessage } from "../../extension/vscode/prune-view";
import { DEMO_MODEL } from "../helpers";
import { syntheticSaliency } from "../prune-helpers";

/** Two layers of 8 experts whose criteria disagree on purpose: frequency favours 0…3, weight 4…7, REAP the even ids. */
function saliency(withReap: boolean): SaliencyFile {
  const layer = (l: number) => ({
    layer: l,
    frequency: [8, 7, 6, 5, 1, 1, 1, 1],
    weight: [0.1, 0.1, 0.1, 0.1, 4, 3, 2, 1],
    reap: withReap ? [5, 0, 4, 0, 3, 0, 2, 0] : null,
  });
  return syntheticSaliency([layer(0), layer(1), layer(2), layer(3)], { name: "/texts/calibration.md", tokens: 1234 });
}

describe("Prune Experts… preview", () => {
  const { layout, structure } = openForPruning(DEMO_MODEL);

  test("the chart ranks by the method's criterion and keeps exactly chooseExperts' experts, per layer", () => {
    const s = saliency(true);
    for (const [method, expected] of [
      ["frequency", [0, 1, 2, 3]],
      ["weight", [4, 5, 6, 7]],
      ["reap", [0, 2, 4, 6]],
    ] as const) {
      const choice = chooseExperts(structure, 4, method, s);
      const m = saliencyMessage(s, choice, method, 0.5);
      assert.equal(m.criterion, method);
      assert.equal(m.layers.length, 4);
      for (const l of m.layers) {
        assert.deepEqual(l.kept, expected, `${method}, layer ${l.layer}`);
        assert.deepEqual(l.scores, method === "reap" ? s.layers[0].reap : s.layers[0][method]);
      }
      assert.match(m.title, /keep 4 of 8 experts per layer/);
      assert.match(m.note, /1,234 tokens of calibration\.md, per layer/);
    }
  });

  test("random keeps its seeded set and shows REAP, or gate weight without norms, for reference", () => {
    const choice = chooseExperts(structure, 4, "random", undefined, 7);
    const m = saliencyMessage(saliency(true), choice, "random", 0.5, 7);
    assert.equal(m.criterion, "reap");
    assert.deepEqual(
      m.layers.map((l) => l.kept),
      structure.moeBlocks.map((b) => choice.kept.get(b)),
    );
    assert.match(m.title, /random \(seed 7\)/);
    assert.equal(chartCriterion("random", saliency(false)), "weight");
  });

  test("the preview's size estimate is within 1 % of the file pruning writes", async () => {
    const n = keptExpertCount(structure, 0.5);
    const text = prunePreview({ modelFile: DEMO_MODEL, modelBytes: layout.fileSize, structure, kept: n, method: "random" });
    assert.match(text, /^Remove 4 of 8 experts in each of 4 MoE layers of demo-moe\.gguf \(random\), keeping 4: about [\d.]+ MB instead of [\d.]+ MB/);
    const estimate = layout.fileSize - expertBytes(structure) / 2;
    const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "moe-lens-prune-view-")), "half.gguf");
    // A second read of the file: the structure is matched to it by tensor names.
    const summary = await writePrunedModel(openForPruning(DEMO_MODEL).layout, structure, chooseExperts(structure, n, "random", undefined, 1), out, {
      method: "random",
      keep: 0.5,
      seed: 1,
      sourceSha256: "0".repeat(64),
    });
    assert.ok(Math.abs(summary.sizes.out_bytes - estimate) / summary.sizes.out_bytes < 0.01, `${summary.sizes.out_bytes} vs ${estimate}`);
    assert.ok(summary.sizes.out_bytes < layout.fileSize * 0.75, "half the experts is a much smaller file");
  });
});
