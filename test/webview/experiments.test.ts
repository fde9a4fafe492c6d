// The routing panel's experiment table and domain segments, in headless Chromium under the
// real CSP: a real trace of the demo model of a marker-labelled text (top_n = n_expert, as
// the extension host traces), its segments and transitions computed by the host's own
// extension/vscode/segments.ts, then `experiment` messages built by experiment-view.ts.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import type { AblationResult, SweepResult } from "../../extension/core/experiments";
import type { ModelInfo } from "../../shared/wire";
import type { Trace } from "../../shared/trace";
import { experimentMessage } from "../../extension/vscode/experiment-view";
import { saliencyMessage } from "../../extension/vscode/prune-view";
import { editorSegments, type EditorSegments } from "../../extension/vscode/segments";
import { panelBatch, type HostMessage } from "../../shared/protocol";
import { DEMO_MODEL, ROOT, startServer } from "../helpers";
import { ARTIFACTS, openPanel, type PanelPage } from "./harness";
import { syntheticSaliency } from "../prune-helpers";

const MODEL = process.env.MOE_LENS_TEST_MODEL ?? DEMO_MODEL;

/** The first three labelled parts of a transition fixture, marker lines kept (as a document in the editor), lines capped. */
function labelledText(): string {
  const raw = fs.readFileSync(path.join(ROOT, "test", "fixtures", "transitions", "01.txt"), "utf8");
  const parts = raw
    .split(/^(?=<<<domain:)/m)
    .filter(Boolean)
    .slice(0, 3);
  return parts.map((p) => p.split("\n").slice(0, 8).join("\n").replace(/\n?$/, "\n")).join("");
}

function traceMessages(id: string, label: string, t: Trace): HostMessage[] {
  return [
    { type: "traceStart", traceId: id, label, header: t.header },
    { type: "traceBatch", traceId: id, batch: panelBatch(t.columns, t.header.model.n_expert) },
    { type: "traceEnd", traceId: id, summary: t.summary! },
  ];
}

const model = { path: "/models/demo.gguf", architecture: "qwen3moe", n_expert: 8, n_expert_used_trained: 2 } as unknown as ModelInfo;
const sweep: SweepResult = {
  model,
  trainedK: 2,
  nCtx: 64,
  tokens: 1024,
  rows: [
    { config: "k2 baseline", policy: {}, k: 2, threshold: null, ppl: 6.1234, pplErr: 0.2, avgActive: 2, nChunks: 16, nCtx: 64, printed: "" },
    {
      config: "k2 + threshold 0.50",
      policy: { amg: { threshold: 0.5 } },
      k: 2,
      threshold: 0.5,
      ppl: 6.9,
      pplErr: 0.25,
      avgActive: 1.41,
      nChunks: 16,
      nCtx: 64,
      printed: "",
    },
    {
      config: "k2 + threshold 1.00",
      policy: { amg: { threshold: 1 } },
      k: 2,
      threshold: 1,
      ppl: 6.1234,
      pplErr: 0.2,
      avgActive: 2,
      nChunks: 16,
      nCtx: 64,
      printed: "",
    },
    { config: "k4 no gating", policy: { max_k: 4 }, k: 4, threshold: null, ppl: 6.5, pplErr: 0.22, avgActive: 4, nChunks: 16, nCtx: 64, printed: "" },
  ],
};
const st = (mean: number, std = 0.01) => ({ mean, std, n: 2 });
const subsets = [
  [false, false, false],
  [true, false, false],
  [false, true, false],
  [false, false, true],
  [true, true, false],
  [true, false, true],
  [false, true, true],
  [true, true, true],
];
const ablation = {
  model,
  settings: { beta: 0.9, betaForm: "raw", gamma: 0.5, piMomentum: null },
  predictor: { path: null, calibrationTokens: 900, source: "fitted" },
  docs: [
    { name: "01.txt", tokens: 300, transitions: 2, labels: "label" },
    { name: "02.txt", tokens: 280, transitions: 2, labels: "label" },
  ],
  domainExperts: { domains: [], experts: [], usage: [], tokens: [] },
  rows: subsets.map(([beta, pi, ant], i) => ({
    config: [beta ? "β" : "", pi ? "Π" : "", ant ? "Ant" : ""].filter(Boolean).join(" + ") || "Standard",
    subset: { beta, pi, ant },
    policy: {},
    perDoc: [],
    prob: st(0.3 + i / 100),
    deltaProb: st(i / 100),
    k99: st(4),
    k99Pooled: 5,
    k99Affinity: st(11.2),
    top1: st(0.2),
    bpcTransition: st(3 - i / 10),
    deltaBpc: st(-i / 10),
    nllTransition: st(2),
    nllInside: st(1.5),
    bpcInside: st(1.1),
  })),
  traces: [],
} as unknown as AblationResult;

let trace: Trace;
let seg: EditorSegments;
let text: string;
let panel: PanelPage;

before(async () => {
  text = labelledText();
  const server = await startServer(MODEL);
  try {
    const info = await server.client.modelInfo();
    trace = await server.client.trace({ text, top_n: info.n_expert });
  } finally {
    await server.stop();
  }
  seg = editorSegments(trace, text, "plaintext");
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  panel = await openPanel();
});
after(async () => panel?.close());

describe("domain segments in the panel", () => {
  test("the host's segments of a marker-labelled trace: every label listed, one transition row per transition", async () => {
    assert.equal(seg.source, "label");
    assert.equal(seg.partial, false, "the demo model's trace holds the full router distribution");
    assert.deepEqual(
      seg.segments.map((s) => s.domain),
      ["math", "de", "code"],
    );
    assert.equal(seg.transitions.length, 2);
    for (const x of seg.transitions) {
      assert.equal(x.probNewExpert.length, trace.header.n_moe_layers);
      assert.ok(
        x.probNewExpert.every((p) => p >= 0 && p <= 1),
        "probabilities known for every layer",
      );
      assert.ok(x.rankNewExpert.every((r) => r >= 1 && r <= trace.header.model.n_expert));
    }
    await panel.send([
      ...traceMessages("t1", "01.txt · baseline", trace),
      { type: "segments", traceId: "t1", segments: seg.segments, transitions: seg.transitions },
    ]);
    await panel.page.waitForSelector("#segments li");
    const items = await panel.page.$$eval("#segments li", (li) =>
      li.map((e) => ({ domain: (e as HTMLElement).dataset.domain, source: (e as HTMLElement).dataset.source, text: e.textContent })),
    );
    assert.deepEqual(
      items.map((i) => i.domain),
      ["math", "de", "code"],
    );
    assert.ok(items.every((i) => i.source === "label"));
    assert.match(items[1].text!, new RegExp(`tokens ${seg.segments[1].start}–${seg.segments[1].end - 1}`));
    const rows = await panel.page.$$eval("#transition-table tr", (trs) => trs.map((tr) => Array.from(tr.children, (c) => c.textContent)));
    assert.equal(rows.length, 1 + seg.transitions.length, "header + one row per transition");
    assert.deepEqual(
      rows.slice(1).map((r) => r[1]),
      ["math → de", "de → code"],
    );
    rows.slice(1).forEach((r, i) => {
      assert.equal(r[0], String(seg.transitions[i].token));
      const p = seg.transitions[i].probNewExpert;
      assert.equal(r[2], (p.reduce((a, b) => a + b, 0) / p.length).toFixed(3));
      assert.equal(r[4], seg.transitions[i].nll.toFixed(3));
    });
    // The heatmap has the segments too (it draws their boundaries and labels).
    const n = await panel.page.evaluate(() => (window as unknown as { moeLens: { current: { segments: unknown[] } } }).moeLens.current.segments.length);
    assert.equal(n, 3);
  });

  test("unknown probabilities (a capped top-N) show as –", async () => {
    const partial = seg.transitions.map((x) => ({ ...x, probNewExpert: x.probNewExpert.map(() => NaN), rankNewExpert: x.rankNewExpert.map(() => NaN) }));
    await panel.send([{ type: "segments", traceId: "t1", segments: seg.segments, transitions: partial }]);
    await panel.page.waitForFunction(() => document.querySelector("#transition-table tr:nth-child(2) td:nth-child(3)")?.textContent === "–");
    const cells = await panel.page.$$eval("#transition-table tr:nth-child(2) td", (tds) => tds.map((c) => c.textContent));
    assert.deepEqual([cells[2], cells[3]], ["–", "–"]);
    assert.notEqual(cells[4], "–", "NLL is always known");
    await panel.send([{ type: "segments", traceId: "t1", segments: seg.segments, transitions: seg.transitions }]);
  });
});

describe("experiment table in the panel", () => {
  test("an AMG sweep: title, the CLI's columns, one row per configuration, note, Export… posts exportExperiment", async () => {
    const m = experimentMessage({ kind: "sweep", result: sweep, subtitle: "doc.md on demo.gguf" });
    await panel.send([m]);
    await panel.page.waitForSelector("#experiment-table");
    assert.equal(await panel.page.isVisible("#experiment"), true);
    assert.equal(await panel.page.getAttribute("#experiment-table", "data-kind"), "sweep");
    assert.match((await panel.page.textContent("#experiment h3"))!, /^AMG sweep: doc\.md on demo\.gguf/);
    const head = await panel.page.$$eval("#experiment-table thead th", (th) => th.map((e) => e.textContent));
    assert.deepEqual(head, ["Config", "PPL", "±σ", "Avg experts active"]);
    const rows = await panel.page.$$eval("#experiment-table tbody tr", (trs) => trs.map((tr) => Array.from(tr.children, (c) => c.textContent)));
    assert.deepEqual(rows, m.rows);
    assert.deepEqual(rows[0], ["k2 baseline", "6.1234", "±0.200", "2.00/2"]);
    assert.equal(rows[2][1], rows[0][1], "threshold 1.0 row equals the baseline row");
    assert.match((await panel.page.textContent(".experiment-note"))!, /n_ctx = 64/);
    await panel.page.click("#experiment-export");
    const posted = await panel.posted();
    assert.ok(posted.some((p) => p.type === "exportExperiment"));
    await panel.page.screenshot({ path: path.join(ARTIFACTS, "experiment-sweep.png"), fullPage: true });
  });

  test("an ablation replaces it: eight subsets in the order of the Affinity table, Δ – for Standard", async () => {
    const m = experimentMessage({ kind: "ablation", result: ablation, subtitle: "2 documents on demo.gguf" });
    await panel.send([m]);
    await panel.page.waitForFunction(() => document.querySelector("#experiment-table")?.getAttribute("data-kind") === "ablation");
    assert.equal(await panel.page.$$eval("#experiment-table", (t) => t.length), 1, "one table at a time");
    const head = await panel.page.$$eval("#experiment-table thead th", (th) => th.map((e) => e.textContent));
    assert.deepEqual(head, m.columns);
    assert.equal(head[0], "Gate");
    const rows = await panel.page.$$eval("#experiment-table tbody tr", (trs) => trs.map((tr) => Array.from(tr.children, (c) => c.textContent)));
    assert.equal(rows.length, 8);
    assert.deepEqual(
      rows.map((r) => r[0]),
      ["Standard", "β", "Π", "Ant", "β + Π", "β + Ant", "Π + Ant", "β + Π + Ant"],
    );
    assert.equal(rows[0][5], "–");
    assert.deepEqual(rows[7].slice(1, 4), ["✓", "✓", "✓"]);
    assert.match((await panel.page.textContent(".experiment-note"))!, /over 2 documents/);
    await panel.page.screenshot({ path: path.join(ARTIFACTS, "experiment-ablation.png"), fullPage: true });
  });

  test("the Prune Experts… preview: per-layer experts by score, kept in blue left of the red cut line, removed listed, Export… posts exportSaliency", async () => {
    const layer = (l: number, reap: number[]) => ({ layer: l, frequency: reap.map((x) => x + 1), weight: reap.map((x) => x / 2), reap });
    const sal = syntheticSaliency([layer(0, [1, 8, 2, 7, 3, 6, 4, 5]), layer(3, [0, 0, 9, 1, 0, 4, 0, 2])], { name: "notes.md", tokens: 900 });
    const choice = {
      kept: new Map([
        [0, [1, 3, 5]],
        [3, [2, 5, 7]],
      ]),
      uncalibrated: [],
    };
    await panel.send([saliencyMessage(sal, choice, "reap", 0.375)]);
    await panel.page.waitForSelector("#saliency-chart");
    assert.equal(await panel.page.isVisible("#saliency"), true);
    const data = await panel.page.$eval("#saliency-chart", (c) => ({ ...(c as HTMLElement).dataset }));
    assert.deepEqual(data, { layers: "2", experts: "8", kept: "3" });
    assert.match((await panel.page.textContent("#saliency h3"))!, /keep 3 of 8 experts per layer \(reap, keep 0\.375\)/);
    assert.match((await panel.page.textContent("#saliency-legend"))!, /highest per layer: 0: 8\.00, 3: 9\.00/);
    // Pixels: the first (most salient) cell of a row is kept (blue), the last removed (grey), the cut line red.
    const px = await panel.page.$eval("#saliency-chart", (c) => {
      const ctx = (c as HTMLCanvasElement).getContext("2d")!;
      const at = (x: number, y: number) => Array.from(ctx.getImageData(x, y, 1, 1).data.slice(0, 3));
      const cellW = 12,
        labelW = 56,
        y = 2 + 6;
      return { first: at(labelW + 2, y), last: at(labelW + 7 * cellW + 2, y), cut: at(labelW + 3 * cellW - 1, y) };
    });
    assert.ok(px.first[2] > px.first[0] + 40, `kept cell is blue: ${px.first}`);
    assert.ok(Math.abs(px.last[0] - px.last[2]) < 4 && Math.abs(px.last[0] - px.last[1]) < 4, `removed cell is grey: ${px.last}`);
    assert.ok(px.cut[0] > 150 && px.cut[1] < 120, `cut line is red: ${px.cut}`);
    const removed = await panel.page.$$eval("#saliency-table tbody tr", (trs) => trs.map((tr) => Array.from(tr.children, (c) => c.textContent)));
    assert.deepEqual(removed, [
      ["0", "0, 2, 4, 6, 7"],
      ["3", "0, 1, 3, 4, 6"],
    ]);
    await panel.page.click("#saliency-export");
    assert.ok((await panel.posted()).some((p) => p.type === "exportSaliency"));
    await panel.page.screenshot({ path: path.join(ARTIFACTS, "prune-preview.png"), fullPage: true });
  });

  test("no CSP violations or console errors", () => {
    assert.deepEqual(panel.cspViolations, []);
    assert.deepEqual(panel.consoleErrors, []);
  });
});
