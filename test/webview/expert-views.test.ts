// The per-layer expert views of the built panel in Chromium (issue 13), at the shape
// researchers study: a synthetic 48-layer × 128-expert × k = 8 trace of 5,120 tokens with
// known routing, streamed as the host streams real traces (traceStart, 512-token batches,
// segments, traceEnd). Known answers: in layer 3 the "prose" half routes to experts 0–7 and
// the "code" half to experts 8–127; layer 7 uses only experts 0–63; in layer 10 number
// tokens (every 16th) and only they select expert 100; in layer 20 slot 7 is dropped
// (weight 0); gate weights are 0.17 … 0.11. The tests check what each view draws and lists
// (the per-layer usage chart included), and print how long each view's first render took.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { panelBatch, type DomainSegment, type HostMessage } from "../../shared/protocol";
import type { TraceBatch } from "../../shared/trace";
import type { TraceHeader, TraceSummary } from "../../shared/wire";
import { rampRgb, type Rgb } from "../../webview/colors";
import { ARTIFACTS, openPanel, type PanelPage } from "./harness";

const N = Number(process.env.MOE_LENS_EXPERT_VIEWS_TOKENS ?? 5120),
  L = 48,
  K = 8,
  E = 128,
  HALF = N / 2,
  BATCH = 512;
const WEIGHTS = Array.from({ length: K }, (_, j) => 0.17 - (0.06 * j) / (K - 1));

/** The synthetic trace's columns, built once: [token][layer][slot]. */
function buildColumns() {
  const experts = new Int32Array(N * L * K),
    weights = new Float32Array(N * L * K),
    entropy = new Float32Array(N * L),
    active = new Uint8Array(N * L),
    nll = new Float32Array(N);
  const pieces: string[] = [];
  for (let t = 0; t < N; t++) {
    const isNumber = t % 16 === 0;
    pieces.push(isNumber ? String(t) : t < HALF ? ` word${t % 37}` : `{x${t % 11}`);
    nll[t] = t === N - 1 ? NaN : 1 + (t % 10) * 0.3;
    for (let m = 0; m < L; m++) {
      const at = (t * L + m) * K;
      for (let j = 0; j < K; j++) {
        let e: number;
        if (m === 3) e = t < HALF ? j : 8 + ((t + j * 15) % 120);
        else if (m === 7) e = (t * 3 + j * 8) % 64;
        else {
          e = (t * 3 + m * 5 + j * 16) % 128;
          if (m === 10 && e === 100) e = 101;
        }
        experts[at + j] = e;
        weights[at + j] = m === 20 && j === K - 1 ? 0 : WEIGHTS[j];
      }
      if (m === 10 && isNumber) experts[at] = 100;
      entropy[t * L + m] = 2 + Math.sin(t / 50 + m);
      active[t * L + m] = m === 20 ? K - 1 : K;
    }
  }
  return { experts, weights, entropy, active, nll, pieces };
}

const cols = buildColumns();
const SEGMENTS: DomainSegment[] = [
  { start: 0, end: HALF, domain: "prose", source: "fence" },
  { start: HALF, end: N, domain: "code", source: "fence" },
];

function header(L: number, E: number, K: number, N: number): TraceHeader {
  const model = {
    path: "/models/random-48x128.gguf",
    architecture: "qwen3moe",
    description: "synthetic 48 × 128, k = 8",
    n_layer: L,
    moe_layers: Array.from({ length: L }, (_, m) => m),
    n_expert: E,
    n_expert_used: K,
    n_expert_used_trained: K,
    n_expert_shared: 0,
    gating: "softmax",
    weights_norm: true,
    weights_scale: 1,
    n_ctx: 8192,
    n_ctx_train: 8192,
    n_vocab: 1000,
    add_bos: false,
    bos: 1,
    vocab_type: "bpe",
    size_bytes: 1,
    n_params: 1,
    capabilities: [],
    skip_supported: false,
    router_pack: null,
    router_devices: [],
  };
  return { model, policy: {}, n_moe_layers: L, k: K, top_n: 0, n_tokens: N, windows: [], kv_shift: 0, probs: false } as unknown as TraceHeader;
}

function batch(s: number, e: number): TraceBatch {
  return {
    start: s,
    count: e - s,
    tokenIds: Int32Array.from({ length: e - s }, (_, i) => s + i),
    byteStart: new Int32Array(e - s),
    byteEnd: new Int32Array(e - s),
    pieces: cols.pieces.slice(s, e),
    nll: cols.nll.slice(s, e),
    experts: cols.experts.slice(s * L * K, e * L * K),
    weights: cols.weights.slice(s * L * K, e * L * K),
    entropy: cols.entropy.slice(s * L, e * L),
    active: cols.active.slice(s * L, e * L),
  };
}

/** Selections (weight > 0) per expert in one layer, counted here from the columns. */
function expectedLoad(m: number): number[] {
  const load = new Array<number>(E).fill(0);
  for (let t = 0; t < N; t++) for (let j = 0; j < K; j++) if (cols.weights[(t * L + m) * K + j] > 0) load[cols.experts[(t * L + m) * K + j]]++;
  return load;
}

/** CV, max/mean, normalised entropy and dead experts of a load vector (docs/metrics.md), worked out independently. */
function expectedBalance(load: number[]): { cv: number; maxOverMean: number; entropy: number; dead: number } {
  const total = load.reduce((a, b) => a + b, 0),
    mean = total / load.length;
  const std = Math.sqrt(load.reduce((a, x) => a + (x - mean) ** 2, 0) / load.length);
  const entropy = -load.reduce((a, x) => (x > 0 ? a + (x / total) * Math.log2(x / total) : a), 0) / Math.log2(load.length);
  return { cv: std / mean, maxOverMean: Math.max(...load) / mean, entropy, dead: load.filter((x) => x === 0).length };
}

let panel: PanelPage;
const timings: Record<string, number> = {};

type Win = { moeLens: { expertViews: Record<string, unknown> & { timings: Record<string, number> }; heatmap: Record<string, unknown> } };

/**
 * Posts host messages into the panel as the extension host's arrive (window message events,
 * typed arrays binary). The harness's send() moves typed arrays as JSON number lists, which
 * takes over a minute for 4 M values on two cores; here they cross as base64 and are rebuilt
 * in the page, then posted the same way.
 */
async function post(messages: HostMessage[]): Promise<void> {
  const tag = (v: unknown): unknown => {
    if (ArrayBuffer.isView(v)) return { __b64: v.constructor.name, data: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64") };
    if (Array.isArray(v)) return v.map(tag);
    if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, tag(x)]));
    return v;
  };
  await panel.page.evaluate(
    (ms) => {
      const revive = (v: unknown): unknown => {
        if (Array.isArray(v)) return v.map(revive);
        if (v && typeof v === "object") {
          const o = v as { __b64?: string; data?: string };
          if (o.__b64) {
            const bytes = Uint8Array.from(atob(o.data!), (ch) => ch.charCodeAt(0));
            return new (globalThis as unknown as Record<string, new (b: ArrayBuffer) => unknown>)[o.__b64](bytes.buffer);
          }
          return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, revive(x)]));
        }
        return v;
      };
      for (const m of ms) window.postMessage(revive(m), "*");
    },
    tag(messages) as unknown[],
  );
}

async function frames(): Promise<void> {
  await panel.page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
}

/** Opens a view's <details> and returns the wall time until its first render finished (ms), and the view's own draw time. */
async function openView(id: string, timingKey: string): Promise<void> {
  const [wall, own] = await panel.page.evaluate(
    ([id, key]) =>
      new Promise<[number, number]>((resolve) => {
        const views = (window as unknown as Win).moeLens.expertViews;
        delete views.timings[key];
        const t0 = performance.now();
        const section = document.getElementById(id) as HTMLDetailsElement;
        // The layer view starts open (it drew while the trace streamed): ask for a fresh draw.
        if (section.open) (views.requestDraw as () => void).call(views);
        section.open = true;
        const poll = () =>
          views.timings[key] !== undefined
            ? resolve([performance.now() - t0, views.timings[key]])
            : performance.now() - t0 > 30000
              ? resolve([-1, -1])
              : requestAnimationFrame(poll);
        requestAnimationFrame(poll);
      }),
    [id, timingKey],
  );
  assert.ok(wall >= 0, `${id} did not draw within 30 s: ${panel.consoleErrors.join("; ")}`);
  timings[`${id} (open → drawn, ms)`] = Math.round(wall);
  timings[`${id} (draw, ms)`] = Math.round(own);
  console.log(
    `first render of ${id}: ${Math.round(wall)} ms from opening (its draw: ${own.toFixed(1)} ms) at ${N} tokens × ${L} layers × k ${K}, ${E} experts`,
  );
}

async function setLayer(select: string, m: number): Promise<void> {
  await panel.page.selectOption(select, String(m));
  await frames();
}

async function text(selector: string): Promise<string> {
  return (await panel.page.textContent(selector)) ?? "";
}

function close(got: Rgb, want: Rgb, what: string): void {
  for (let i = 0; i < 3; i++) assert.ok(Math.abs(got[i] - want[i]) <= 2, `${what}: ${got} vs ${want}`);
}

async function layerViewPixel(t: number, expert: number): Promise<Rgb> {
  return panel.page.evaluate(
    ([t, e]) => {
      const lv = (window as unknown as Win).moeLens.expertViews.layerView as {
        canvas: HTMLCanvasElement;
        cellCenter(t: number, e: number): { x: number; y: number };
      };
      const c = lv.cellCenter(t, e);
      const d = lv.canvas.getContext("2d")!.getImageData(Math.round(c.x - 0.5), Math.floor(c.y), 1, 1).data;
      return [d[0], d[1], d[2]] as Rgb;
    },
    [t, expert],
  );
}

/**
 * Pixels of text (light grey: the dark theme's foreground #cccccc, antialiased) in the bottom
 * `band` pixels of a canvas, right of `left` (the row labels): where a matrix's expert-id
 * labels go. The matrices' colour ramp has no such greys, and blank cells are the dark
 * background.
 */
async function labelInkUnder(selector: string, left: number, band = 11): Promise<number> {
  return panel.page.$eval(
    selector,
    (c, [left, band]) => {
      const canvas = c as HTMLCanvasElement;
      const d = canvas.getContext("2d")!.getImageData(left, canvas.height - band, canvas.width - left, band).data;
      let ink = 0;
      for (let i = 0; i < d.length; i += 4)
        if (Math.min(d[i], d[i + 1], d[i + 2]) > 120 && Math.max(d[i], d[i + 1], d[i + 2]) - Math.min(d[i], d[i + 1], d[i + 2]) < 16) ink++;
      return ink;
    },
    [left, band],
  );
}

before(async () => {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  panel = await openPanel({ width: 1280, height: 1000 });
  const t0 = Date.now();
  await post([{ type: "traceStart", traceId: "big", label: "random 48×128 · 5,120 tokens", header: header(L, E, K, N) }]);
  for (let s = 0; s < N; s += BATCH) await post([{ type: "traceBatch", traceId: "big", batch: panelBatch(batch(s, Math.min(N, s + BATCH)), E) }]);
  const summary: TraceSummary = { n_tokens: N, ppl: null, mean_nll: null, avg_active: K, avg_active_per_layer: [], usage: [], elapsed_ms: 0 };
  const end: HostMessage[] = [
    { type: "segments", traceId: "big", segments: SEGMENTS, transitions: [] },
    { type: "traceEnd", traceId: "big", summary },
  ];
  await post(end);
  await panel.page.waitForFunction((n) => (window as unknown as { moeLens: { current?: { count: number } } }).moeLens.current?.count === n, N);
  console.log(`streamed ${N} tokens × ${L} layers × k ${K} into the panel in ${Date.now() - t0} ms (including the test's own transfer)`);
  await frames();
});
after(async () => {
  if (panel) {
    fs.writeFileSync(path.join(ARTIFACTS, "expert-views-timings.json"), JSON.stringify(timings, null, 2));
    await panel.close();
  }
});

describe("per-layer expert views at 48 layers × 128 experts × k 8", () => {
  test("layer view: 48 layers to pick, all k selections shaded on an auto-ranged weight scale, dropped slots in red", async () => {
    await openView("layer-view", "layerView");
    assert.equal(await panel.page.$$eval("#layer-picker option", (o) => o.length), L);
    await setLayer("#layer-picker", 3);
    const newLayer = await panel.page.evaluate(() => (window as unknown as Win).moeLens.expertViews.timings.layerView);
    timings["layer-view (another layer: scale and order refitted, draw ms)"] = Math.round(newLayer);
    console.log(`layer view switched to another layer (its weight scale refitted): ${newLayer.toFixed(1)} ms`);
    // Token 0 is prose: experts 0..7, slot j weight WEIGHTS[j]; 0.17 is the top of the ramp, 0.11 the bottom.
    close(await layerViewPixel(0, 0), rampRgb(1), "token 0, e0 (weight 0.17)");
    close(await layerViewPixel(0, 7), rampRgb(0), "token 0, e7 (weight 0.11)");
    close(await layerViewPixel(0, 3), rampRgb((WEIGHTS[3] - 0.11) / 0.06), "token 0, e3");
    const legend = await panel.page.$eval("#layer-view-legend .scale-legend", (l) => ({
      min: l.querySelector(".scale-min")!.textContent,
      max: l.querySelector(".scale-max")!.textContent,
    }));
    assert.deepEqual(legend, { min: "0.11", max: "0.17" }, "the legend gives the fitted range, not 0 → 1");
    await setLayer("#layer-picker", 20);
    const dropped = cols.experts[(0 * L + 20) * K + K - 1];
    close(await layerViewPixel(0, dropped), [230, 40, 60], `token 0's dropped slot (e${dropped}) in layer 20`);
    // Load order: in layer 7 the 64 used experts come first.
    await setLayer("#layer-picker", 7);
    await panel.page.selectOption("#layer-order", "load");
    await frames();
    const rows = await panel.page.evaluate(() =>
      Array.from(((window as unknown as Win).moeLens.expertViews.layerView as { expertAtRow: Int32Array }).expertAtRow),
    );
    assert.ok(rows.slice(0, 64).every((e) => e < 64) && rows.slice(64).every((e) => e >= 64), "busiest experts first");
    await panel.page.selectOption("#layer-order", "id");
    // Clicking a heatmap cell chooses its layer.
    const pos = await panel.page.evaluate(() =>
      ((window as unknown as Win).moeLens.heatmap as { cellCenter(t: number, m: number): { x: number; y: number } }).cellCenter(5, 3),
    );
    await panel.page.click("canvas.heatmap", { position: pos });
    await frames();
    assert.equal(await panel.page.$eval("#layer-picker", (s: HTMLSelectElement) => s.value), "3", "a heatmap click selects its layer");
    await panel.page.screenshot({ path: path.join(ARTIFACTS, "expert-layer-view.png"), fullPage: true });
  });

  test("expert search: '0-7' marks those rows and heatmap cells; a bad id is named, the text kept", async () => {
    await panel.page.fill("#expert-search", "0-7");
    await panel.page.dispatchEvent("#expert-search", "change");
    await frames();
    const marked = await panel.page.evaluate(() => ((window as unknown as Win).moeLens.expertViews.layerView as { markedExperts: number[] }).markedExperts);
    assert.deepEqual(marked, [0, 1, 2, 3, 4, 5, 6, 7]);
    assert.match(await text("#expert-search-note"), /8 of 128 experts marked/);
    const set = await panel.page.evaluate(() => Array.from(((window as unknown as Win).moeLens.heatmap.highlightSet as Uint8Array) ?? []));
    assert.equal(set.filter(Boolean).length, 8, "the heatmap outlines cells selecting 0-7");
    await panel.page.fill("#expert-search", "3, 200");
    await panel.page.dispatchEvent("#expert-search", "change");
    assert.match(await text("#expert-search-note"), /expert 200 does not exist: ids run from 0 to 127/);
    assert.equal(await panel.page.inputValue("#expert-search"), "3, 200");
    await panel.page.fill("#expert-search", "0-7");
    await panel.page.dispatchEvent("#expert-search", "change");
  });

  test("load map and balance table: per-layer figures, sortable", async () => {
    await openView("load-map", "loadMap");
    const rowOf = (m: number) =>
      panel.page.$eval(`#balance-table tr[data-layer="${m}"]`, (r) => Array.from(r.querySelectorAll("td")).map((c) => c.textContent ?? ""));
    for (const m of [3, 7, 20]) {
      const want = expectedBalance(expectedLoad(m));
      assert.deepEqual(await rowOf(m), [`L${m}`, want.cv.toFixed(3), want.maxOverMean.toFixed(2), want.entropy.toFixed(3), String(want.dead)], `layer ${m}`);
    }
    assert.equal((await rowOf(7))[4], "64", "layer 7 never uses experts 64-127");
    await panel.page.click('#balance-table button[data-column="cv"]');
    const firstLayer = await panel.page.$eval("#balance-table tr[data-layer]", (r) => r.getAttribute("data-layer"));
    let worst = 0;
    for (let m = 1; m < L; m++) if (expectedBalance(expectedLoad(m)).cv > expectedBalance(expectedLoad(worst)).cv) worst = m;
    assert.equal(firstLayer, String(worst), "sorted by CV, the least even layer first");
    const legend = await panel.page.$eval("#load-map-legend .scale-legend", (l) => [Number(l.getAttribute("data-min")), Number(l.getAttribute("data-max"))]);
    const all: number[] = [];
    for (let m = 0; m < L; m++) all.push(...expectedLoad(m));
    all.sort((a, b) => a - b);
    assert.deepEqual(legend, [all[0], all[Math.ceil(0.99 * (all.length - 1))]], "the load scale spans the observed counts up to their 99th percentile");
    await panel.page.screenshot({ path: path.join(ARTIFACTS, "expert-load-map.png"), fullPage: true });
  });

  test("specialisation: MI per layer peaks at the layer that splits prose from code; lift; top experts for a regex and a heatmap selection", async () => {
    await openView("specialisation", "specialisation");
    await setLayer("#spec-layer", 3);
    assert.match(await text("#spec-mi figcaption"), /highest 1\.000 bits in L3; L3 1\.000 bits/);
    const lift = await panel.page.evaluate(() => {
      const s = (window as unknown as Win).moeLens.expertViews.specialisation as { perLayer: Array<{ lift: Float64Array }>; classes: { names: string[] } };
      return { prose: s.perLayer[3].lift[0], names: s.classes.names };
    });
    assert.deepEqual(lift.names, ["prose", "code"]);
    // Expert ids under the lift matrix (without the search's marks, which are drawn in the same grey).
    const search = async (ids: string) => {
      await panel.page.fill("#expert-search", ids);
      await panel.page.dispatchEvent("#expert-search", "change");
      await frames();
    };
    await search("");
    assert.ok((await labelInkUnder("#spec-lift canvas", 84)) > 0, "the lift matrix's columns carry expert ids");
    await search("0-7");
    assert.ok(Math.abs(lift.prose - 2) < 1e-9, `prose lift of e0 in L3 is 2, got ${lift.prose}`);
    // A regex: number tokens, and in layer 10 only they select e100.
    await setLayer("#spec-layer", 10);
    await panel.page.fill("#spec-regex", "^\\d+$");
    await panel.page.dispatchEvent("#spec-regex", "change");
    await frames();
    // e100 is the one expert every number token selects (their other selections also happen to be theirs alone: lift ∞ but fewer inside).
    assert.match(await text("#spec-top"), new RegExp(`^e100 lift ∞ · ${N / 16} inside, 0 outside`));
    await panel.page.selectOption("#spec-classes", "regex");
    await frames();
    assert.deepEqual(
      await panel.page.evaluate(() => ((window as unknown as Win).moeLens.expertViews.specialisation as { classes: { names: string[] } }).classes.names),
      ["match", "rest"],
    );
    // A heatmap selection: click token 5, shift-click token 9 (both prose) in layer 3.
    await panel.page.fill("#spec-regex", "");
    await panel.page.dispatchEvent("#spec-regex", "change");
    const at = (t: number) =>
      panel.page.evaluate(
        (t) => ((window as unknown as Win).moeLens.heatmap as { cellCenter(t: number, m: number): { x: number; y: number } }).cellCenter(t, 3),
        t,
      );
    await panel.page.click("canvas.heatmap", { position: await at(5) });
    await panel.page.click("canvas.heatmap", { position: await at(9), modifiers: ["Shift"] });
    await frames();
    assert.equal(await panel.page.inputValue("#spec-tokens"), "5-9");
    const top = await panel.page.$$eval("#spec-top li", (l) => l.map((x) => Number(x.getAttribute("data-expert"))));
    assert.deepEqual(top, [0, 1, 2, 3, 4, 5, 6, 7], "tokens 5-9 of prose select e0-e7 in L3");
    // Co-activation and transitions: drawn, with numeric legends.
    const coactMax = await panel.page.$eval("#spec-coact .scale-legend", (l) => Number(l.getAttribute("data-max")));
    assert.equal(coactMax, HALF, "in L3 each pair of e0-e7 is co-selected by every prose token");
    assert.ok(await panel.page.$eval("#spec-trans .scale-legend", (l) => Number(l.getAttribute("data-max")) > 0));
    for (const m of ["#spec-coact canvas", "#spec-trans canvas"]) assert.ok((await labelInkUnder(m, 30)) > 0, `${m}: the columns carry expert ids`);
    // The tooltip names a cell and its count: e0 and e1 are co-selected by every prose token in L3.
    const cell = await panel.page.$eval("#spec-coact canvas", (c) => (c.clientWidth - 32) / 128);
    await panel.page.hover("#spec-coact canvas", { position: { x: 30 + 1.5 * cell, y: 1 + 0.5 * cell } });
    assert.equal(await panel.page.getAttribute("#spec-coact canvas", "title"), `e0 · e1: ${HALF} tokens selecting both`);
    await panel.page.selectOption("#spec-classes", "tokens");
    await frames();
    assert.equal(await text("#spec-error"), "");
    await panel.page.screenshot({ path: path.join(ARTIFACTS, "expert-specialisation.png"), fullPage: true });
  });

  test("a 320 px side bar: the views fit its width (the matrices shrink, tables wrap below)", async () => {
    await panel.page.setViewportSize({ width: 320, height: 900 });
    await frames();
    await frames();
    const overflow = await panel.page.$eval("#expert-views", (v) => ({ scroll: v.scrollWidth, client: v.clientWidth }));
    assert.ok(overflow.scroll <= overflow.client + 1, `the views are ${overflow.scroll} px wide in a ${overflow.client} px panel`);
    const map = await panel.page.$eval("#load-map canvas", (c) => c.clientWidth);
    assert.ok(map <= 320 && map >= 128 + 34, `load map ${map} px: 128 experts at 1 px or more`);
    await panel.page.screenshot({ path: path.join(ARTIFACTS, "expert-views-320px.png"), fullPage: true });
    await panel.page.setViewportSize({ width: 1280, height: 1000 });
    await frames();
  });

  test("heatmap legends: the expert hues say how many are not shown; weight, entropy and NLL scales carry numbers", async () => {
    await panel.page.selectOption("#color-mode", "top1");
    await frames();
    assert.match(await text("#legend-more"), /\+ 96 more experts not shown/);
    await panel.page.fill("#expert", "0");
    await panel.page.dispatchEvent("#expert", "change");
    await panel.page.selectOption("#color-mode", "weight");
    await frames();
    const weight = await panel.page.$eval("#legend-mode", (l) => [l.querySelector(".scale-min")!.textContent, l.querySelector(".scale-max")!.textContent]);
    assert.deepEqual(weight, ["0.11", "0.17"], "k = 8 weights of 0.11–0.17 span the whole ramp");
    await panel.page.selectOption("#color-mode", "entropy");
    await frames();
    const entropy = await panel.page.$eval("#legend-mode", (l) => [Number(l.getAttribute("data-min")), Number(l.getAttribute("data-max"))]);
    let lo = Infinity,
      hi = -Infinity;
    for (const x of cols.entropy) {
      lo = Math.min(lo, x);
      hi = Math.max(hi, x);
    }
    assert.deepEqual(entropy, [lo, hi]);
    const nll = await panel.page.$eval("#legend-nll", (l) => l.textContent ?? "");
    assert.match(nll, /NLL strip \(nats\)/);
    assert.match(nll, /3\.7/, "the strip's range reaches the highest NLL (3.7)");
    await panel.page.selectOption("#color-mode", "top1");
    // The views' choices are in the panel's saved state (restored after hide/show).
    const saved = await panel.page.evaluate(() => (window as unknown as { __state: { expertViews?: Record<string, unknown> } }).__state.expertViews);
    assert.equal(saved?.search, "0-7");
    assert.equal(saved?.classes, "tokens");
    assert.deepEqual(saved?.open, { layerView: true, loadMap: true, specialisation: true });
    assert.deepEqual(panel.cspViolations, []);
    assert.deepEqual(panel.consoleErrors, []);
  });

  test("charts: usage per layer stacks each layer's own most used experts by rank, not ids pooled across layers", async () => {
    type Series = Array<{ label: string; data: number[] }>;
    await panel.page.$eval(".charts", (c) => c.scrollIntoView());
    const usage = (await panel.page.waitForFunction(
      () => (window as unknown as { moeLens: { charts: { series(c: string): unknown } } }).moeLens.charts.series("Expert usage per layer"),
      undefined,
      { timeout: 5000 },
    )) as unknown as { jsonValue(): Promise<Series> };
    const series = await usage.jsonValue();
    assert.deepEqual(
      series.map((s) => s.label),
      [...["1st", "2nd", "3rd"], ...Array.from({ length: 13 }, (_, i) => `${i + 4}th`), "other"],
    );
    const at = (rank: number, m: number) => series[rank - 1].data[m];
    const other = series[16].data;
    // Layer 3: experts 0–7 take every prose token's 8 slots, 6.25 % each; the code half's 120 experts share the rest.
    for (let r = 1; r <= 8; r++) assert.equal(at(r, 3), 6.25, `layer 3, rank ${r}`);
    assert.ok(at(9, 3) < 1, `layer 3, rank 9 is one of the code half's 120 experts (${at(9, 3)} %)`);
    // Layer 7: 64 experts evenly, so 16 ranks of 1.5625 % and 75 % for the other 48.
    for (let r = 1; r <= 16; r++) assert.ok(Math.abs(at(r, 7) - 1.5625) < 0.01, `layer 7, rank ${r}: ${at(r, 7)} %`);
    assert.equal(other[7], 75);
    for (let m = 0; m < L; m++) {
      const sum = series.reduce((s, x) => s + x.data[m], 0);
      assert.ok(Math.abs(sum - 100) < 0.1, `layer ${m}'s bar adds up to 100 % (${sum})`);
    }
  });

  test("a second trace of another shape (4 layers × 16 experts, k 2) replaces the first in every view", async () => {
    const n = 64,
      l = 4,
      e = 16,
      k = 2;
    const experts = Int32Array.from({ length: n * l * k }, (_, i) => (i * 5) % e),
      weights = new Float32Array(n * l * k).fill(0.5);
    await post([
      { type: "traceStart", traceId: "small", label: "small", header: header(l, e, k, n) },
      {
        type: "traceBatch",
        traceId: "small",
        batch: panelBatch(
          {
            start: 0,
            count: n,
            tokenIds: new Int32Array(n),
            pieces: Array.from({ length: n }, (_, t) => `t${t}`),
            nll: new Float32Array(n).fill(1),
            experts,
            weights,
            entropy: new Float32Array(n * l).fill(1),
            active: new Uint8Array(n * l).fill(k),
          },
          e,
        ),
      },
    ]);
    await panel.page.waitForFunction(() => (window as unknown as { moeLens: { current?: { id: string; count: number } } }).moeLens.current?.count === 64);
    await panel.page.waitForFunction(() => document.querySelectorAll("#balance-table tr[data-layer]").length === 4, undefined, { timeout: 5000 });
    assert.equal(await panel.page.$$eval("#layer-picker option", (o) => o.length), l);
    assert.equal(await panel.page.inputValue("#spec-tokens"), "", "the old trace's token selection is cleared");
    assert.match(await text("#expert-search-note"), /8 of 16 experts marked/, "the search applies to the new trace's experts");
    assert.deepEqual(panel.consoleErrors, []);
  });
});
