// Both experiments end to end on the demo model: the AMG sweep (“Adaptive Mixture of Experts Gate (AMG)”'s table) and the
// 2³ ablation of {β, Π, Ant} at labelled transitions (“Affinity is not enough”'s table), checked for
// shape and internal consistency; plus the `moe-lens transitions` command. Kept small (short
// perplexity context, two short documents) so it runs in about a minute on two busy cores.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { PREDICTOR_FORMAT, predictorPathFor } from "../../extension/core/ant";
import {
  ABLATION_SUBSETS,
  ablationTable,
  ablationToCsv,
  experimentToJson,
  renderExperimentReport,
  runAblation,
  runAmgSweep,
  subsetName,
  sweepTable,
  sweepToCsv,
  type AblationResult,
  type SweepResult,
} from "../../extension/core/experiments";
import type { ServerProcess } from "../../extension/core/server-process";
import { QUICK_SPEED_OPTIONS } from "../../extension/core/speed";
import type { ModelInfo } from "../../shared/wire";
import { analyzeTransitions, labelText, spansToSegments } from "../../extension/core/transitions";
import { DEMO_MODEL, llamaPerplexity, requireFile, ROOT, startServer } from "../helpers";

const MODEL = process.env.MOE_LENS_TEST_MODEL ?? DEMO_MODEL;
const SAMPLE = path.join(ROOT, "test", "fixtures", "demo-sample.md");
const FIXTURES = path.join(ROOT, "test", "fixtures", "transitions");

/** The first `n` labelled segments of a fixture (marker lines kept), to keep the run short. */
function firstSegments(file: string, n: number): string {
  return fs
    .readFileSync(file, "utf8")
    .split(/(?=^<<<domain:)/m)
    .filter(Boolean)
    .slice(0, n)
    .join("");
}

let server: ServerProcess;
let info: ModelInfo;
before(async () => {
  requireFile(MODEL, "the demo model is built by tools/train (see README)");
  server = await startServer(MODEL);
  info = await server.client.modelInfo();
});
after(async () => server?.stop());

describe("AMG sweep", () => {
  let r: SweepResult;
  before(async () => {
    r = await runAmgSweep(server.client, fs.readFileSync(SAMPLE, "utf8"), { thresholds: [0.5, 1.0] });
  });

  test("rows in the AMG table's form: baseline, thresholds, k and 2k", () => {
    const k = info.n_expert_used_trained,
      k2 = Math.min(info.n_expert, 2 * k);
    assert.deepEqual(
      r.rows.map((x) => x.config),
      [`k${k} baseline`, `k${k} + threshold 0.50`, `k${k} + threshold 1.00`, `k${k2} no gating`, `k${k2} + threshold 0.50`, `k${k2} + threshold 1.00`],
    );
    const t = sweepTable(r);
    assert.deepEqual(t.header, ["Config", "PPL", "±σ", "Avg experts active", `Speed and quality vs k${k} baseline`]);
    for (const [i, row] of t.rows.entries()) {
      assert.equal(row.length, 5);
      assert.match(row[2], /^±\d+\.\d{3}$/);
      assert.match(row[3], new RegExp(`^\\d+\\.\\d\\d/${r.rows[i].k}$`));
      assert.match(row[4], /^\d+\.\d\d× decode, \d+\.\d\d× prefill at \d+\.\d\d\/\d+ active, (±0|[+−]\d+\.\d) % PPL$/, row[4]);
    }
    assert.equal(sweepToCsv(r).trim().split("\n").length, 7);
  });

  test("each row's speed is measured against the baseline row, with the experts it kept", () => {
    const [base, half, one] = r.rows;
    assert.equal(base.speed?.decode_ratio, 1);
    assert.equal(base.speed?.prefill_ratio, 1);
    for (const x of r.rows) assert.ok(x.speed && x.speed.decode_tps > 0 && x.speed.prefill_tps > 0 && x.speed.reps === QUICK_SPEED_OPTIONS.reps, x.config);
    assert.ok(half.speed!.avg_active_experts < one.speed!.avg_active_experts, "threshold 0.5 keeps fewer experts in the timed runs too");
    assert.equal(one.speed!.avg_active_experts, info.n_expert_used_trained);
  });

  test("at least four chunks; the baseline row is llama-perplexity's number", () => {
    for (const x of r.rows) {
      assert.ok(x.nChunks >= 4, `${x.config}: ${x.nChunks} chunks`);
      assert.equal(x.nCtx, r.nCtx);
      assert.ok(Number.isFinite(x.ppl) && x.ppl > 1 && x.pplErr > 0);
    }
    const ref = llamaPerplexity(MODEL, SAMPLE, r.nCtx);
    assert.equal(r.rows[0].ppl.toFixed(4), ref.ppl);
  });

  test("threshold 1.0 equals no gating; active counts follow the threshold", () => {
    const k = info.n_expert_used_trained;
    const [base, half, one, big, bigHalf, bigOne] = r.rows;
    for (const [a, b] of [
      [base, one],
      [big, bigOne],
    ]) {
      assert.equal(b.ppl, a.ppl, `${b.config} vs ${a.config}`);
      assert.equal(b.pplErr, a.pplErr);
      assert.equal(b.avgActive, a.avgActive);
    }
    assert.equal(base.k, k);
    assert.equal(base.avgActive, k);
    assert.equal(big.k, Math.min(info.n_expert, 2 * k));
    assert.equal(big.avgActive, big.k, "k above the trained k: the reload reports the override");
    assert.ok(half.avgActive >= 1 && half.avgActive < k);
    assert.ok(bigHalf.avgActive >= 1 && bigHalf.avgActive < big.k);
  });
});

describe("ablation of {β, Π, Ant} at transitions", () => {
  let r: AblationResult;
  let docs: Array<{ name: string; text: string; spans: ReturnType<typeof labelText>["spans"] }>;
  const outDir = fs.mkdtempSync(path.join(os.tmpdir(), "moe-lens-ablation-"));
  const predictorOut = path.join(outDir, "fit.moe-ant.json");
  const besideModel = fs.existsSync(predictorPathFor(MODEL)) ? fs.statSync(predictorPathFor(MODEL)).mtimeMs : null;

  before(async () => {
    docs = ["01.txt", "02.txt"].map((f) => {
      const l = labelText(firstSegments(path.join(FIXTURES, f), 4));
      return { name: f, text: l.text, spans: l.spans };
    });
    r = await runAblation(server.client, docs, { calibrationText: fs.readFileSync(SAMPLE, "utf8"), predictorOut, beta: 0.9, gamma: 0.5 });
  });

  test("eight rows, Standard first, in the form of the Affinity table", () => {
    assert.deepEqual(
      r.rows.map((x) => x.config),
      ABLATION_SUBSETS.map(subsetName),
    );
    assert.equal(r.rows.length, 8);
    const t = ablationTable(r);
    assert.equal(t.rows.length, 8);
    for (const row of t.rows) assert.equal(row.length, t.header.length);
    assert.equal(r.rows[0].deltaProb.mean, 0);
    assert.equal(r.rows[0].deltaBpc.mean, 0);
    assert.equal(r.docs.length, 2);
    for (const d of r.docs) assert.equal(d.transitions, 3, `${d.name}: four segments, three transitions`);
  });

  test("the all-off row equals a plain trace's metrics", async () => {
    for (const [i, doc] of docs.entries()) {
      const t = await server.client.trace({ text: doc.text, top_n: info.n_expert });
      const plain = analyzeTransitions(t, spansToSegments(t, doc.spans), { experts: r.domainExperts, text: doc.text }).summary;
      const { doc: _name, tokens, ...fromRow } = r.rows[0].perDoc[i];
      assert.equal(tokens, t.columns.count);
      assert.deepEqual(fromRow, plain);
    }
  });

  test("metrics are in range and the policies change routing", () => {
    for (const row of r.rows) {
      for (const d of row.perDoc) {
        assert.ok(d.k99 >= 1 && d.k99 <= info.n_expert, `${row.config} ${d.doc}: K99 ${d.k99}`);
        assert.ok(d.meanProb > 0 && d.meanProb <= 1);
        assert.ok(d.top1 >= 0 && d.top1 <= 1);
        assert.ok(Number.isFinite(d.nllTransition) && Number.isFinite(d.nllInside) && Number.isFinite(d.bpcTransition));
        assert.equal(d.cases, d.transitions * info.moe_layers.length);
      }
      assert.ok(row.k99Pooled >= 1 && row.k99Pooled <= info.n_expert);
      assert.equal(row.prob.n, 2);
    }
    for (const d of r.domainExperts.experts.flat()) assert.ok(d >= 0 && d < info.n_expert);
    assert.notEqual(r.rows[1].prob.mean, r.rows[0].prob.mean, "β changes the router's distribution");
    assert.notEqual(r.rows[3].prob.mean, r.rows[0].prob.mean, "Ant changes the router's distribution");
  });

  test("the predictor was fitted to the given temp path, not beside the model", () => {
    assert.equal(r.predictor!.path, predictorOut);
    assert.equal(r.predictor!.source, "fitted");
    const fit = JSON.parse(fs.readFileSync(predictorOut, "utf8"));
    assert.equal(fit.format, PREDICTOR_FORMAT);
    assert.ok(r.predictor!.calibrationTokens! > 100);
    const now = fs.existsSync(predictorPathFor(MODEL)) ? fs.statSync(predictorPathFor(MODEL)).mtimeMs : null;
    assert.equal(now, besideModel);
  });

  test("CSV, JSON and the HTML report", () => {
    assert.equal(ablationToCsv(r).trim().split("\n").length, 9);
    const j = JSON.parse(experimentToJson("ablation", r));
    assert.equal(j.schema, "moe-lens-experiment");
    assert.equal(j.kind, "ablation");
    assert.equal(j.rows.length, 8);
    const html = renderExperimentReport({ title: "t", subtitle: "s", ablation: r });
    assert.match(html, /Ablation of \{β, Π, Ant\}/);
    assert.match(html, /<svg[^>]*aria-label="P\(correct expert\)/);
    assert.doesNotMatch(html, /<script/);
  });
});

describe("moe-lens transitions", () => {
  test("per-transition metrics of a labelled text as JSON", () => {
    const cli = process.env.MOE_LENS_CLI ?? path.join(ROOT, "out", "cli.js");
    requireFile(cli, "run `npm run build`");
    const file = path.join(os.tmpdir(), `moe-lens-transitions-${process.pid}.txt`);
    fs.writeFileSync(file, firstSegments(path.join(FIXTURES, "03.txt"), 3));
    const p = spawnSync(process.execPath, [cli, "transitions", file, "--model", MODEL, "--threads", "2", "--json"], { encoding: "utf8", timeout: 60_000 });
    assert.equal(p.status, 0, p.stderr);
    const j = JSON.parse(p.stdout);
    assert.equal(j.labels, "label");
    assert.equal(j.transitions.length, 2);
    for (const t of j.transitions) {
      assert.equal(t.rankNewExpert.length, info.moe_layers.length);
      assert.ok(t.rankNewExpert.every((x: number) => x >= 1 && x <= info.n_expert));
    }
    assert.ok(j.summary.k99 >= 1 && j.summary.k99 <= info.n_expert);
  });
});
