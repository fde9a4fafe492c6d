// The built routing panel in headless Chromium under its real CSP, fed a real trace of the
// demo model (recorded from moe-lens-server at the start of the suite): DOM, canvas pixels
// for every colour mode, details on click, live policy controls, and the compare view.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { sliceBatch } from "../../extension/core/trace-store";
import type { Trace } from "../../shared/trace";
import { expertRgb, rampRgb, type Rgb } from "../../webview/colors";
import { panelBatch, type DomainSegment, type HostMessage } from "../../shared/protocol";
import { DEMO_MODEL, ROOT, startServer } from "../helpers";
import { ARTIFACTS, openPanel, type PanelPage } from "./harness";

const MODEL = process.env.MOE_LENS_TEST_MODEL ?? DEMO_MODEL;
const SAMPLE = fs.readFileSync(path.join(ROOT, "test", "fixtures", "demo-sample.md"), "utf8");

let base: Trace, amg: Trace;
let panel: PanelPage;

function messages(id: string, label: string, t: Trace, batch = 48): HostMessage[] {
  const out: HostMessage[] = [{ type: "traceStart", traceId: id, label, header: t.header }];
  const { n_moe_layers: L, k: K, top_n: N, model } = t.header;
  for (let s = 0; s < t.columns.count; s += batch) {
    const part = sliceBatch(t.columns, L, K, N, s, Math.min(t.columns.count, s + batch), model.n_expert);
    out.push({ type: "traceBatch", traceId: id, batch: panelBatch(part, model.n_expert) });
  }
  out.push({ type: "traceEnd", traceId: id, summary: t.summary! });
  return out;
}

/** Segments from the sample's markdown fences (prose / code), by token byte spans. */
function fenceSegments(t: Trace): DomainSegment[] {
  const bytes = Buffer.from(SAMPLE, "utf8");
  const fences: number[] = [];
  for (let i = bytes.indexOf("```"); i >= 0; i = bytes.indexOf("```", i + 3)) fences.push(i);
  const tokenAt = (b: number) => {
    let i = 0;
    while (i < t.columns.count && t.columns.byteEnd[i] <= b) i++;
    return i;
  };
  const segs: DomainSegment[] = [];
  let start = 0,
    inCode = false;
  for (const f of fences) {
    const tok = tokenAt(f);
    if (tok > start) segs.push({ start, end: tok, domain: inCode ? "code" : "prose", source: "fence" });
    start = tok;
    inCode = !inCode;
  }
  segs.push({ start, end: t.columns.count, domain: inCode ? "code" : "prose", source: "fence" });
  return segs;
}

before(async () => {
  const server = await startServer(MODEL);
  try {
    const info = await server.client.modelInfo();
    base = await server.client.trace({ text: SAMPLE, top_n: info.n_expert });
    amg = await server.client.trace({ text: SAMPLE, top_n: info.n_expert, policy: { amg: { threshold: 0.5 } } });
  } finally {
    await server.stop();
  }
  const L = base.header.n_moe_layers;
  CELLS = [
    [1, 0],
    [5, Math.min(1, L - 1)],
    [12, Math.min(2, L - 1)],
    [20, Math.min(3, L - 1)],
  ];
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  panel = await openPanel();
  await panel.send(messages("base", "demo-sample.md · baseline", base));
  await panel.send([
    { type: "segments", traceId: "base", segments: fenceSegments(base), transitions: [] },
    { type: "policy", policy: {}, trainedK: base.header.k, maxK: base.header.k, antAvailable: false, routerPacks: [], routerPack: null },
  ]);
  await panel.page.waitForFunction((n) => (window as unknown as { moeLens: { current?: { count: number } } }).moeLens.current?.count === n, base.columns.count);
});
after(async () => panel?.close());

async function pixel(t: number, m: number): Promise<Rgb> {
  return panel.page.evaluate(
    ([t, m]) => {
      const h = (window as unknown as { moeLens: { heatmap: { canvas: HTMLCanvasElement; cellCenter(t: number, m: number): { x: number; y: number } } } })
        .moeLens.heatmap;
      const c = h.cellCenter(t, m);
      const d = h.canvas.getContext("2d")!.getImageData(Math.round(c.x), Math.round(c.y), 1, 1).data;
      return [d[0], d[1], d[2]] as [number, number, number];
    },
    [t, m],
  );
}

async function setMode(mode: string): Promise<void> {
  await panel.page.selectOption("#color-mode", mode);
  await panel.page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
}

function top1(t: Trace, i: number, m: number): number {
  const L = t.header.n_moe_layers,
    K = t.header.k,
    at = (i * L + m) * K;
  let best = 0;
  for (let j = 1; j < K; j++) if (t.columns.weights[at + j] > t.columns.weights[at + best]) best = j;
  return t.columns.experts[at + best];
}

let CELLS: Array<[number, number]> = [];

describe("routing panel", () => {
  test("loads under the strict CSP and shows the streamed trace", async () => {
    assert.deepEqual(panel.cspViolations, []);
    assert.deepEqual(panel.consoleErrors, []);
    const summary = await panel.page.textContent("#summary");
    assert.match(summary!, new RegExp(`${base.columns.count} tokens`));
    assert.match(summary!, /avg active \d\.\d\d\/\d/);
    const csp = await panel.page.getAttribute('meta[http-equiv="Content-Security-Policy"]', "content");
    assert.match(csp!, /default-src 'none'/);
    assert.match(csp!, /script-src 'nonce-/);
    assert.equal(await panel.page.$$eval("[onclick],[onload],[onerror]", (e) => e.length), 0);
  });

  test("top-1 expert mode paints each cell in its expert's colour", async () => {
    await setMode("top1");
    for (const [t, m] of CELLS) assert.deepEqual(await pixel(t, m), expertRgb(top1(base, t, m)), `cell ${t},${m}`);
    await panel.page.screenshot({ path: path.join(ARTIFACTS, "mode-top1.png"), fullPage: true });
  });

  test("sequential modes follow the recorded numbers", async () => {
    const L = base.header.n_moe_layers,
      K = base.header.k,
      E = base.header.model.n_expert;
    const c = base.columns;
    const expert = top1(base, 5, 1);
    await panel.page.fill("#expert", String(expert));
    await panel.page.dispatchEvent("#expert", "change");
    // Weight and entropy are auto-ranged (webview/scale.ts): the ramp spans the range the legend shows.
    type Range = { min: number; max: number };
    let scales: { weight: Range; entropy: Range } = { weight: { min: 0, max: 1 }, entropy: { min: 0, max: Math.log(E) } };
    const along = (x: number, r: Range) => (r.max > r.min ? Math.max(0, Math.min(1, (x - r.min) / (r.max - r.min))) : 1);
    const expectations: Record<string, (t: number, m: number) => Rgb> = {
      weight: (t, m) => {
        const at = (t * L + m) * K;
        let w = 0;
        for (let j = 0; j < K; j++) if (c.experts[at + j] === expert) w = c.weights[at + j];
        return w > 0 ? rampRgb(along(w, scales.weight)) : rampRgb(NaN);
      },
      entropy: (t, m) => rampRgb(along(c.entropy[t * L + m], scales.entropy)),
      active: (t, m) => rampRgb(c.active[t * L + m] / K),
      shift: (t, m) => {
        const set = (i: number) =>
          new Set(Array.from(c.experts.subarray((i * L + m) * K, (i * L + m + 1) * K)).filter((_, j) => c.weights[(i * L + m) * K + j] !== 0));
        const a = set(t),
          b = set(t - 1);
        const inter = [...a].filter((e) => b.has(e)).length;
        return rampRgb(1 - inter / (a.size + b.size - inter));
      },
    };
    for (const [mode, expect] of Object.entries(expectations)) {
      await setMode(mode);
      scales = await panel.page.evaluate(() => {
        const h = (window as unknown as { moeLens: { heatmap: { weightScale: Range; entropyScale: Range } } }).moeLens.heatmap;
        return { weight: h.weightScale, entropy: h.entropyScale };
      });
      if (mode === "weight" || mode === "entropy") {
        const legend = await panel.page.$eval("#legend-mode", (l) => [Number(l.getAttribute("data-min")), Number(l.getAttribute("data-max"))]);
        assert.deepEqual(legend, [scales[mode].min, scales[mode].max], `${mode}: the legend shows the fitted range`);
      }
      for (const [t, m] of CELLS) {
        const got = await pixel(t, m),
          want = expect(t, m);
        for (let i = 0; i < 3; i++) assert.ok(Math.abs(got[i] - want[i]) <= 1, `${mode} cell ${t},${m}: ${got} vs ${want}`);
      }
      await panel.page.screenshot({ path: path.join(ARTIFACTS, `mode-${mode}.png`), fullPage: true });
    }
    const state = await panel.page.evaluate(() => (window as unknown as { __state: { mode: string } }).__state);
    assert.equal(state.mode, "shift", "UI state is saved for restore");
    await setMode("top1");
  });

  test("clicking a cell shows its experts and weights, asks the host for its router probabilities, shows them and reveals the token", async () => {
    const [t, m] = [5, 1];
    const pos = await panel.page.evaluate(
      ([t, m]) =>
        (window as unknown as { moeLens: { heatmap: { cellCenter(t: number, m: number): { x: number; y: number } } } }).moeLens.heatmap.cellCenter(t, m),
      [t, m],
    );
    await panel.page.click("canvas.heatmap", { position: { x: pos.x, y: pos.y } });
    const L = base.header.n_moe_layers,
      K = base.header.k,
      N = base.header.top_n;
    const asked = (await panel.posted()).filter((p) => p.type === "routerTop");
    assert.deepEqual(asked.at(-1), { type: "routerTop", traceId: "base", token: t, layer: m });
    const at = (t * L + m) * N;
    const topProbs = Array.from(base.columns.topProbs!.subarray(at, at + N));
    // as the host answers (extension/core/trace-store.ts routerTop); an answer for another cell is ignored
    await panel.send([
      { type: "routerTop", traceId: "base", token: t + 1, layer: m, ids: [99], probs: [0.123456] },
      { type: "routerTop", traceId: "base", token: t, layer: m, ids: Array.from(base.columns.topIds!.subarray(at, at + N)), probs: topProbs },
    ]);
    const text = (await panel.page.textContent("#details"))!;
    for (let j = 0; j < K; j++) {
      assert.ok(text.includes(`e${base.columns.experts[(t * L + m) * K + j]}`));
      assert.ok(text.includes(base.columns.weights[(t * L + m) * K + j].toFixed(4)));
    }
    assert.ok(text.includes(topProbs[0].toFixed(4)), "top router probability shown");
    assert.ok(!text.includes("0.1235"), "the answer for another cell is not shown");
    assert.equal(await panel.page.locator("#details table.top-probs tr").count(), N + 1);
    assert.match(text, new RegExp(`Token ${t} `));
    const posted = await panel.posted();
    assert.ok(posted.some((p) => p.type === "revealToken" && p.token === t && p.traceId === "base"));
    await panel.page.screenshot({ path: path.join(ARTIFACTS, "details.png"), fullPage: true });
  });

  test("keyboard moves the cell cursor and Enter opens details", async () => {
    await panel.page.focus("canvas.heatmap");
    await panel.page.keyboard.press("ArrowRight");
    await panel.page.keyboard.press("ArrowDown");
    await panel.page.keyboard.press("Enter");
    assert.match((await panel.page.textContent("#details"))!, /Token 6 .*layer/);
  });

  test("policy controls post a validated policy for a live re-trace", async () => {
    await panel.page.click("#ctl-amg");
    await panel.page.waitForFunction(
      () => (window as unknown as { __posted: Array<{ type: string }> }).__posted.some((m) => m.type === "applyPolicy"),
      undefined,
      { timeout: 5000 },
    );
    const applied = (await panel.posted()).filter((p) => p.type === "applyPolicy").pop() as unknown as { policy: { amg?: { threshold: number } } };
    assert.equal(applied.policy.amg?.threshold, 0.9);
    // The τ slider drives the same field and re-applies.
    const before = (await panel.posted()).length;
    await panel.page.$eval("#ctl-threshold-slider", (s: HTMLInputElement) => {
      s.value = "0.6";
      s.dispatchEvent(new Event("input", { bubbles: true }));
    });
    await panel.page.waitForFunction((n) => (window as unknown as { __posted: unknown[] }).__posted.length > n, before, { timeout: 5000 });
    const slid = (await panel.posted()).filter((p) => p.type === "applyPolicy").pop() as unknown as { policy: { amg?: { threshold: number } } };
    assert.equal(slid.policy.amg?.threshold, 0.6);
    assert.equal(
      await panel.page.evaluate(() => (document.getElementById("ctl-ant") as HTMLElement & { disabled: boolean }).disabled),
      true,
      "Ant is disabled without a predictor",
    );
  });

  test("β mix and θ and Π momentum reach the posted policy; an out-of-range value is refused", async () => {
    type Posted = {
      type: string;
      policy?: { amg?: unknown; beta?: { beta: number; mix?: number; theta?: number; form?: string }; pi?: { momentum?: number } };
    };
    const lastApplied = async () => (await panel.posted()).filter((p) => p.type === "applyPolicy").pop() as unknown as Posted;
    const setField = (id: string, value: string) =>
      panel.page.$eval(
        `#ctl-${id}`,
        (f, v) => {
          (f as HTMLElement & { value: string }).value = v as string;
          f.dispatchEvent(new Event("change", { bubbles: true }));
        },
        value,
      );
    const settle = async () => {
      const n = (await panel.posted()).length;
      await panel.page.waitForFunction((n) => (window as unknown as { __posted: unknown[] }).__posted.length > n, n, { timeout: 5000 }).catch(() => undefined);
    };
    await panel.page.click("#ctl-amg"); // off again: only β and Π below
    await panel.page.click("#ctl-beta");
    await panel.page.click("#ctl-pi");
    await panel.page.$eval("#ctl-betaMix-slider", (s: HTMLInputElement) => {
      s.value = "0.5";
      s.dispatchEvent(new Event("input", { bubbles: true }));
    });
    await setField("betaTheta", "2");
    await setField("piMomentum", "0.8");
    await settle();
    const p = (await lastApplied()).policy!;
    assert.deepEqual(p.beta, { beta: 0.9, form: "raw", mix: 0.5, theta: 2 });
    assert.deepEqual(p.pi, { momentum: 0.8 });
    assert.equal(p.amg, undefined);
    const count = (await panel.posted()).filter((m) => m.type === "applyPolicy").length;
    await setField("betaMix", "1.5");
    await panel.page.waitForFunction(() => /mix α must be a number in \[0, 1\]/.test(document.querySelector(".control-error")?.textContent ?? ""), undefined, {
      timeout: 5000,
    });
    await panel.page.waitForTimeout(400); // past the debounce: nothing was posted
    assert.equal((await panel.posted()).filter((m) => m.type === "applyPolicy").length, count);
    // Back to the state the later tests expect: AMG on, β and Π off.
    await setField("betaMix", "1");
    await panel.page.click("#ctl-beta");
    await panel.page.click("#ctl-pi");
    await panel.page.click("#ctl-amg");
    await settle();
  });

  test("compare view shows both policies side by side with their difference", async () => {
    await panel.send(messages("amg", "demo-sample.md · AMG τ=0.5", amg));
    await panel.send([{ type: "segments", traceId: "amg", segments: fenceSegments(amg), transitions: [] }]);
    await panel.send([{ type: "compare", leftTraceId: "base", rightTraceId: "amg" }]);
    await panel.page.waitForSelector("#compare-summary");
    const rows = await panel.page.$$eval("#compare-summary tr", (trs) => trs.map((r) => Array.from(r.children).map((c) => c.textContent ?? "")));
    const active = rows.find((r) => r[0] === "avg active experts")!;
    assert.equal(Number(active[1]), Number(base.summary!.avg_active.toFixed(2)));
    assert.equal(Number(active[2]), Number(amg.summary!.avg_active.toFixed(2)));
    assert.ok(Number(active[3]) < 0, "AMG lowers the active experts");
    assert.equal(await panel.page.$$eval("#compare canvas.heatmap", (c) => c.length), 3, "left, right and their difference");
    // In a wide panel the two policies sit side by side, the difference below them.
    const boxes = await panel.page.$$eval("#compare .heatmap-scroller", (els) =>
      els.map((e) => {
        const r = e.getBoundingClientRect();
        return { x: r.x, y: r.y, w: r.width };
      }),
    );
    assert.equal(boxes[0].y, boxes[1].y, "left and right heatmaps on one row");
    assert.ok(boxes[1].x >= boxes[0].x + boxes[0].w, `right heatmap to the right of the left one: ${JSON.stringify(boxes)}`);
    assert.ok(boxes[2].y > boxes[0].y, "difference below");
    // Scrolling one compare heatmap scrolls the others to the same token column.
    await panel.page.$eval("#compare .heatmap-scroller", (e) => {
      e.scrollLeft = 120;
    });
    await panel.page.waitForFunction(() => Array.from(document.querySelectorAll<HTMLElement>("#compare .heatmap-scroller")).every((e) => e.scrollLeft === 120));
    // Zooming one (the + key) zooms all three: their scroll widths grow together.
    const widths = () => panel.page.$$eval("#compare .heatmap-scroller", (els) => els.map((e) => e.scrollWidth));
    const before = await widths();
    await panel.page.focus("#compare-difference");
    await panel.page.keyboard.press("+");
    await panel.page.waitForFunction(
      (w0) => Array.from(document.querySelectorAll<HTMLElement>("#compare .heatmap-scroller")).every((e, i) => e.scrollWidth > w0[i]),
      before,
    );
    const after = await widths();
    assert.ok(
      after.every((w) => w === after[0]),
      `same width: ${after}`,
    );
    await panel.page.keyboard.press("-");
    // A second compare replaces the first (no heatmaps left behind).
    await panel.send([{ type: "compare", leftTraceId: "base", rightTraceId: "amg" }]);
    assert.equal(await panel.page.$$eval("#compare canvas.heatmap", (c) => c.length), 3);
    await panel.page.waitForTimeout(800); // charts follow the current trace at most every 0.5 s
    await panel.page.screenshot({ path: path.join(ARTIFACTS, "compare.png"), fullPage: true });
  });

  test("UI state is restored when the panel is shown again", async () => {
    await setMode("entropy");
    await panel.page.reload();
    await panel.page.waitForFunction(() => (window as unknown as { __posted: Array<{ type: string }> }).__posted.some((m) => m.type === "ready"));
    assert.equal(await panel.page.inputValue("#color-mode"), "entropy");
    // The host replays the trace on `ready`, as extension/vscode/panel.ts does.
    await panel.send([
      ...messages("base", "demo-sample.md · baseline", base),
      { type: "segments", traceId: "base", segments: fenceSegments(base), transitions: [] },
    ]);
    await panel.page.waitForFunction(
      (n) => (window as unknown as { moeLens: { current?: { count: number } } }).moeLens.current?.count === n,
      base.columns.count,
    );
    await setMode("top1");
  });

  test("charts render", async () => {
    await panel.page.waitForFunction(() => document.querySelectorAll(".charts canvas").length >= 4, undefined, { timeout: 5000 });
    assert.deepEqual(panel.cspViolations, []);
    assert.deepEqual(panel.consoleErrors, []);
  });

  test("the controls follow the host's policy (Toggle AMG, Set Policy…) and keep the fields they do not show", async () => {
    type Ctl = HTMLElement & { value: string; checked: boolean };
    const controls = () =>
      panel.page.evaluate(() => {
        const v = (id: string) => document.getElementById(`ctl-${id}`) as unknown as Ctl;
        return {
          amg: v("amg").checked,
          threshold: v("threshold").value,
          slider: (document.getElementById("ctl-threshold-slider") as HTMLInputElement).value,
          minK: v("minK").value,
          amgMode: v("amgMode").value,
          maxK: v("maxK").value,
          beta: v("beta").checked,
          betaValue: v("betaValue").value,
          betaForm: v("betaForm").value,
          betaMix: v("betaMix").value,
          betaTheta: v("betaTheta").value,
          pi: v("pi").checked,
          piMomentum: v("piMomentum").value,
        };
      });
    const applied = async () => (await panel.posted()).filter((p) => p.type === "applyPolicy") as unknown as Array<{ policy: Record<string, unknown> }>;
    const before = (await applied()).length;
    // What the host posts after "Set Gating Policy…" (the server's float32 echo of 0.7 included).
    await panel.send([
      {
        type: "policy",
        trainedK: 2,
        maxK: 8,
        antAvailable: false,
        routerPacks: [],
        routerPack: null,
        policy: {
          amg: { threshold: 0.699999988079071, min_k: 2, mode: "full" },
          max_k: 4,
          beta: { beta: 0.8, form: "scale_preserving", mix: 0.5, theta: null },
          pi: { momentum: 0.9 },
          disable: [[0, 1]],
        },
      },
    ]);
    await panel.page.waitForFunction(
      () =>
        (document.getElementById("ctl-amg") as unknown as { checked: boolean }).checked &&
        (document.getElementById("ctl-maxK") as unknown as { value: string }).value === "4",
    );
    assert.deepEqual(await controls(), {
      amg: true,
      threshold: "0.7",
      slider: "0.7",
      minK: "2",
      amgMode: "full",
      maxK: "4",
      beta: true,
      betaValue: "0.8",
      betaForm: "scale_preserving",
      betaMix: "0.5",
      betaTheta: "",
      pi: true,
      piMomentum: "0.9",
    });
    await panel.page.waitForTimeout(400); // past the debounce: showing the host's policy posts nothing back
    assert.equal((await applied()).length, before);
    // A change by the user posts the shown policy with it, and the disabled expert the controls do not show.
    await panel.page.click("#ctl-pi");
    await panel.page.waitForFunction(
      (n) => (window as unknown as { __posted: Array<{ type: string }> }).__posted.filter((m) => m.type === "applyPolicy").length > n,
      before,
      { timeout: 5000 },
    );
    assert.deepEqual((await applied()).pop()!.policy, {
      amg: { threshold: 0.7, min_k: 2, mode: "full" },
      max_k: 4,
      beta: { beta: 0.8, form: "scale_preserving", mix: 0.5 },
      disable: [[0, 1]],
    });
    // "Toggle AMG" off: the host posts the policy without amg, and the AMG box follows.
    await panel.send([{ type: "policy", trainedK: 2, maxK: 8, antAvailable: false, routerPacks: [], routerPack: null, policy: { max_k: 4 } }]);
    await panel.page.waitForFunction(() => !(document.getElementById("ctl-amg") as unknown as { checked: boolean }).checked);
    const off = await controls();
    assert.deepEqual([off.amg, off.beta, off.pi, off.maxK], [false, false, false, "4"]);
    assert.equal(off.threshold, "0.7", "τ keeps its last value for when AMG comes back on");
    // max k is bounded by the model's expert count from the same message.
    await panel.page.$eval("#ctl-maxK", (f) => {
      (f as unknown as { value: string }).value = "9";
      f.dispatchEvent(new Event("change", { bubbles: true }));
    });
    await panel.page.waitForFunction(
      () => /max k must be an integer in \[1, 8\]/.test(document.querySelector(".control-error")?.textContent ?? ""),
      undefined,
      { timeout: 5000 },
    );
    await panel.send([{ type: "policy", trainedK: 2, maxK: 8, antAvailable: false, routerPacks: [], routerPack: null, policy: {} }]);
  });

  test("router packs: offered when the model has some, the host's choice shown, a pick posted at once", async () => {
    const hidden = () => panel.page.$eval("#ctl-routerPack", (s) => (s.closest("label") as HTMLElement).hidden);
    assert.equal(await hidden(), true, "no packs: no router choice");
    const packs = [
      { name: "entropy", path: "/m/packs/demo/entropy.gguf", mechanisms: "", description: "router-only fine-tune" },
      { name: "beta+ant", path: "/m/packs/demo/beta+ant.gguf", mechanisms: "beta+ant", description: "β and Ant" },
    ];
    await panel.send([{ type: "policy", trainedK: 2, maxK: 8, antAvailable: false, routerPacks: packs, routerPack: packs[0].path, policy: {} }]);
    await panel.page.waitForFunction(() => !(document.getElementById("ctl-routerPack")!.closest("label") as HTMLElement).hidden);
    const options = await panel.page.$$eval("#ctl-routerPack vscode-option", (os) => os.map((o) => [o.getAttribute("value"), o.textContent]));
    assert.deepEqual(options, [
      ["", "model's own routers"],
      [packs[0].path, "entropy"],
      [packs[1].path, "beta+ant (trained beta + ant)"],
    ]);
    assert.equal(await panel.page.$eval("#ctl-routerPack", (s) => (s as unknown as { value: string }).value), packs[0].path);
    const before = (await panel.posted()).length;
    await panel.page.$eval(
      "#ctl-routerPack",
      (s, v) => {
        (s as unknown as { value: string }).value = v;
        s.dispatchEvent(new Event("change", { bubbles: true }));
      },
      packs[1].path,
    );
    await panel.page.waitForFunction((n) => (window as unknown as { __posted: unknown[] }).__posted.length > n, before, { timeout: 5000 });
    const sent = (await panel.posted()).slice(before);
    assert.deepEqual(sent, [{ type: "selectRouterPack", path: packs[1].path }], "posted at once, without Apply, and no policy change");
    await panel.send([{ type: "policy", trainedK: 2, maxK: 8, antAvailable: false, routerPacks: [], routerPack: null, policy: {} }]);
    assert.equal(await hidden(), true);
  });

  test("a trace made with another model than the one the server runs now is marked stale", async () => {
    const summary = () => panel.page.$eval("header.summary", (h) => h.textContent ?? "");
    const policy = { type: "policy" as const, trainedK: 2, maxK: 8, antAvailable: false, routerPacks: [], routerPack: null, policy: {} };
    await panel.send([{ ...policy, modelPath: base.header.model.path }]);
    assert.doesNotMatch(await summary(), /stale/);
    await panel.send([{ ...policy, modelPath: "/models/demo-moe-fine.gguf" }]);
    await panel.page.waitForFunction(() => /stale/.test(document.querySelector("header.summary")?.textContent ?? ""));
    assert.match(await summary(), /stale: traced with demo-moe\.gguf; the server now runs demo-moe-fine\.gguf/);
    await panel.send([{ ...policy, modelPath: base.header.model.path }]);
    await panel.page.waitForFunction(() => !/stale/.test(document.querySelector("header.summary")?.textContent ?? ""));
  });
  test("charts: usage by domain is one layer's (the chosen one); off screen they wait, scrolled to they draw", async () => {
    type Lens = { moeLens: { current?: { id: string; count: number }; expertViews: { selectLayer(m: number): void } } };
    const captions = () => panel.page.$$eval(".charts figcaption", (f) => f.map((x) => x.textContent ?? ""));
    await panel.page.waitForFunction(() => document.querySelectorAll(".charts canvas").length >= 4, undefined, { timeout: 5000 });
    const layers = base.header.model.moe_layers;
    await panel.page.evaluate(() => (window as unknown as Lens).moeLens.expertViews.selectLayer(1));
    await panel.page.waitForFunction(
      (name) => Array.from(document.querySelectorAll(".charts figcaption")).some((f) => f.textContent?.includes(`by domain in layer ${name} `)),
      `L${layers[1]}`,
      {
        timeout: 5000,
      },
    );
    assert.ok(!(await captions()).some((c) => /all layers/.test(c)), "no chart adds experts up across layers");
    // A short window: the charts are below the fold.
    await panel.page.setViewportSize({ width: 1100, height: 300 });
    await panel.page.evaluate(() => document.scrollingElement!.scrollTo(0, 0));
    assert.ok(await panel.page.$eval(".charts", (c) => c.getBoundingClientRect().top > window.innerHeight + 200), "the charts are off screen");
    await panel.page.evaluate(() => document.querySelectorAll<HTMLCanvasElement>(".charts canvas").forEach((c) => (c.dataset.before = "1")));
    await panel.send(messages("again", "demo-sample.md · again", base));
    await panel.page.waitForFunction(
      (n) => (window as unknown as Lens).moeLens.current?.id === "again" && (window as unknown as Lens).moeLens.current?.count === n,
      base.columns.count,
    );
    await panel.page.waitForTimeout(1200);
    assert.ok(await panel.page.$$eval(".charts canvas", (cs) => cs.length > 0 && cs.every((c) => c.dataset.before === "1")), "not redrawn while off screen");
    await panel.page.$eval(".charts", (c) => c.scrollIntoView());
    await panel.page.waitForFunction(
      () => {
        const cs = Array.from(document.querySelectorAll<HTMLCanvasElement>(".charts canvas"));
        return cs.length >= 3 && cs.every((c) => c.dataset.before === undefined);
      },
      undefined,
      { timeout: 5000 },
    );
    await panel.page.setViewportSize({ width: 1100, height: 900 });
    assert.deepEqual(panel.consoleErrors, []);
  });
});
