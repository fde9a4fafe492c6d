// The panel at 48 layers (issue 13), in headless Chromium at 1280×800 under its real CSP: the
// policy controls fold to one line and stay folded after a reload (webview state), "fit
// height" fits all 48 MoE layers in the 800 px window, and the editor cursor's highlightToken
// marks its token's column and scrolls to it only when it is out of view, without sending
// anything back (no ping-pong with revealToken).
//
// The trace is a real trace of the fine demo model (k 8 of 64 experts), its layers repeated
// to 48 so the panel has the depth of the models researchers study (qwen3moe: 48 layers).
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { panelBatch, type HostMessage } from "../../shared/protocol";
import type { Trace } from "../../shared/trace";
import { DEMO_MODEL, FINE_MODEL, ROOT, startServer } from "../helpers";
import { openPanel, type PanelPage } from "./harness";

const TEXT = fs.readFileSync(path.join(ROOT, "test", "fixtures", "demo-sample.md"), "utf8").slice(0, 700);
const LAYERS = 48;

let trace: Trace;
let panel: PanelPage;

/** The trace as the host posts it, its MoE layers repeated to LAYERS: start, one batch, end. */
function deepMessages(t: Trace, traceId: string): HostMessage[] {
  const c = t.columns;
  const L0 = t.header.n_moe_layers,
    K = t.header.k,
    n = c.count;
  const experts = new Int32Array(n * LAYERS * K),
    weights = new Float32Array(n * LAYERS * K),
    entropy = new Float32Array(n * LAYERS),
    active = new Uint8Array(n * LAYERS);
  for (let i = 0; i < n; i++)
    for (let l = 0; l < LAYERS; l++) {
      const src = i * L0 + (l % L0),
        dst = i * LAYERS + l;
      experts.set(c.experts.subarray(src * K, src * K + K), dst * K);
      weights.set(c.weights.subarray(src * K, src * K + K), dst * K);
      entropy[dst] = c.entropy[src];
      active[dst] = c.active[src];
    }
  const header = { ...t.header, n_moe_layers: LAYERS, top_n: 0, model: { ...t.header.model, moe_layers: [...Array(LAYERS).keys()] } };
  const batch = {
    start: 0,
    count: n,
    tokenIds: c.tokenIds,
    byteStart: c.byteStart,
    byteEnd: c.byteEnd,
    pieces: c.pieces,
    nll: c.nll,
    experts,
    weights,
    entropy,
    active,
  };
  return [
    { type: "traceStart", traceId, label: "demo-sample.md · 48 layers", header },
    { type: "traceBatch", traceId, batch: panelBatch(batch, header.model.n_expert) },
    { type: "traceEnd", traceId, summary: t.summary! },
  ];
}

interface PanelWindow {
  __state: { controls?: { collapsed?: boolean }; rows?: string } | undefined;
  moeLens: {
    heatmap: {
      cellW: number;
      cellH: number;
      markedToken: number;
      cursor: { t: number };
      canvas: HTMLCanvasElement;
      scroller: HTMLDivElement;
      setZoom(w: number): void;
    };
    current?: { count: number; L: number };
  };
}

before(async () => {
  const server = await startServer(fs.existsSync(FINE_MODEL) ? FINE_MODEL : DEMO_MODEL);
  try {
    trace = await server.client.trace({ text: TEXT });
  } finally {
    await server.stop();
  }
  panel = await openPanel({ width: 1280, height: 800 });
});
after(async () => panel?.close());

async function loadDeepTrace(traceId: string): Promise<void> {
  await panel.send(deepMessages(trace, traceId));
  await panel.page.waitForFunction(
    ([n, L]) => (window as unknown as PanelWindow).moeLens.current?.count === n && (window as unknown as PanelWindow).moeLens.current?.L === L,
    [trace.columns.count, LAYERS],
  );
}

const controlsHeight = () => panel.page.evaluate(() => document.querySelector<HTMLElement>("section.controls")!.getBoundingClientRect().height);

test("the policy controls fold to one line, and stay folded after the panel reloads", async () => {
  const open = await controlsHeight();
  assert.ok(open > 60, `the unfolded controls are several rows (${open} px)`);
  await panel.page.click("#controls-toggle");
  const folded = await controlsHeight();
  assert.ok(folded < 30, `folded to one line (${folded} px)`);
  assert.equal(await panel.page.isVisible("#ctl-amg"), false, "the rows are hidden");
  assert.equal(await panel.page.getAttribute("#controls-toggle", "aria-expanded"), "false");
  assert.equal(await panel.page.evaluate(() => (window as unknown as PanelWindow).__state?.controls?.collapsed), true, "kept in the webview state");
  // VS Code reloads a hidden webview; the harness keeps its state across a reload as VS Code does.
  await panel.page.reload();
  await panel.page.waitForFunction(() => (window as unknown as { __posted: Array<{ type: string }> }).__posted.some((m) => m.type === "ready"));
  assert.ok((await controlsHeight()) < 30, "still folded after the reload");
  assert.deepEqual(panel.consoleErrors, []);
});

test("fit height: all 48 layers fit the 800 px window with the controls folded", async () => {
  await loadDeepTrace("deep-1");
  const bottom = () =>
    panel.page.evaluate(() => {
      const hm = (window as unknown as PanelWindow).moeLens.heatmap;
      return { scroller: hm.scroller.getBoundingClientRect().bottom, canvas: hm.canvas.getBoundingClientRect().height, cellH: hm.cellH };
    });
  const full = await bottom();
  assert.equal(full.cellH, 14);
  assert.ok(full.scroller > 800, `every layer at 14 px does not fit (bottom ${full.scroller} px)`);
  await panel.page.selectOption("#layer-fold", "fit");
  await panel.page.waitForFunction(() => (window as unknown as PanelWindow).moeLens.heatmap.cellH < 14);
  await panel.page.waitForTimeout(100); // one frame for the canvas to take its new height
  const fit = await bottom();
  assert.ok(fit.cellH >= 3, `rows stay visible (${fit.cellH} px)`);
  assert.ok(fit.scroller <= 800, `the heatmap, all ${LAYERS} layers and the NLL strip, ends inside the window (bottom ${fit.scroller} px)`);
  assert.equal(fit.canvas, 28 + LAYERS * fit.cellH + 12, "the canvas draws every layer");
  assert.equal(await panel.page.evaluate(() => (window as unknown as PanelWindow).__state?.rows), "fit", "kept in the webview state");
  // Unfolding the controls pushes the heatmap down: the rows shrink again to fit.
  await panel.page.click("#controls-toggle");
  await panel.page.waitForFunction((h) => (window as unknown as PanelWindow).moeLens.heatmap.cellH < h, fit.cellH, { timeout: 5000 }).catch(() => undefined);
  const unfolded = await bottom();
  assert.ok(unfolded.cellH <= fit.cellH, "rows never grow when the controls take room");
  await panel.page.click("#controls-toggle");
  await panel.page.waitForFunction((h) => (window as unknown as PanelWindow).moeLens.heatmap.cellH === h, fit.cellH, { timeout: 5000 });
  await panel.page.screenshot({ path: path.join(ROOT, "test-artifacts", "webview", "layout-48-layers-fit.png") });
  assert.deepEqual(panel.consoleErrors, []);
});

test("highlightToken (the editor cursor) marks the token's column and scrolls only when it is out of view", async () => {
  const n = trace.columns.count;
  const hm = () =>
    panel.page.evaluate(() => {
      const h = (window as unknown as PanelWindow).moeLens.heatmap;
      return { scroll: h.scroller.scrollLeft, marked: h.markedToken, cursor: h.cursor.t, cellW: h.cellW, width: h.scroller.clientWidth };
    });
  await panel.page.evaluate(() => {
    const h = (window as unknown as PanelWindow).moeLens.heatmap;
    h.setZoom(14);
    h.scroller.scrollLeft = 0;
  });
  const before = await hm();
  assert.ok(n * before.cellW > before.width + 200, `the trace is wider than the panel (${n} tokens)`);
  const postedBefore = (await panel.posted()).length;
  const far = n - 3;
  await panel.send([{ type: "highlightToken", traceId: "deep-1", token: far }]);
  await panel.page.waitForFunction((t) => (window as unknown as PanelWindow).moeLens.heatmap.markedToken === t, far);
  const afterFar = await hm();
  assert.ok(afterFar.scroll > 0, "scrolled to the far token");
  const x = 40 + far * afterFar.cellW - afterFar.scroll;
  assert.ok(x >= 40 && x + afterFar.cellW <= afterFar.width, `the token is in view (x ${x})`);
  assert.equal(afterFar.cursor, far, "the keyboard cursor is on it");
  // The outline: the foreground colour on the column's left edge, in a layer row.
  await panel.page.waitForTimeout(100);
  const pixel = await panel.page.evaluate(
    ([x, y]) => Array.from((window as unknown as PanelWindow).moeLens.heatmap.canvas.getContext("2d")!.getImageData(x, y, 1, 1).data.slice(0, 3)),
    [Math.round(x), 28 + 5 * 14 + 7],
  );
  assert.deepEqual(pixel, [0xcc, 0xcc, 0xcc], "the marked column is outlined in the foreground colour");
  // A neighbour in view: marked, no scroll (following the cursor never jumps).
  await panel.send([{ type: "highlightToken", traceId: "deep-1", token: far - 2 }]);
  await panel.page.waitForFunction((t) => (window as unknown as PanelWindow).moeLens.heatmap.markedToken === t, far - 2);
  assert.equal((await hm()).scroll, afterFar.scroll, "no scroll for a token in view");
  // Back to the start: out of view, so it scrolls back.
  await panel.send([{ type: "highlightToken", traceId: "deep-1", token: 1 }]);
  await panel.page.waitForFunction(() => (window as unknown as PanelWindow).moeLens.heatmap.markedToken === 1);
  assert.equal((await hm()).scroll, 0);
  // A mark for another trace, or past the end, changes nothing.
  await panel.send([
    { type: "highlightToken", traceId: "other", token: 5 },
    { type: "highlightToken", traceId: "deep-1", token: n + 10 },
  ]);
  await panel.page.waitForTimeout(100);
  assert.equal((await hm()).marked, 1);
  // Marks never answer: no revealToken (which would move the editor and loop).
  assert.deepEqual(
    (await panel.posted()).slice(postedBefore).filter((m) => m.type === "revealToken"),
    [],
  );
  assert.deepEqual(panel.consoleErrors, []);
});

test("the fit-to-width overview shows the whole trace; clicking it moves the heatmap (the detail lens) there", async () => {
  const n = trace.columns.count;
  const view = () =>
    panel.page.evaluate(() => {
      const h = (window as unknown as PanelWindow).moeLens.heatmap;
      const canvas = document.querySelector<HTMLCanvasElement>(".overview-canvas")!;
      const lens = document.querySelector<HTMLElement>(".overview-lens")!.getBoundingClientRect();
      const box = canvas.getBoundingClientRect();
      return {
        scroll: h.scroller.scrollLeft,
        cellW: h.cellW,
        shown: h.scroller.clientWidth - 40,
        canvas: { left: box.left, width: box.width, height: box.height, pixels: canvas.width },
        lens: { left: lens.left - box.left, width: lens.width },
      };
    });
  await panel.page.evaluate(() => {
    const h = (window as unknown as PanelWindow).moeLens.heatmap;
    h.setZoom(14);
    h.scroller.scrollLeft = 0;
  });
  await panel.page.waitForTimeout(100);
  const start = await view();
  assert.ok(start.canvas.width > 1000, `the overview spans the panel (${start.canvas.width} px)`);
  assert.equal(start.canvas.pixels, Math.floor(start.canvas.width), "one canvas pixel per CSS pixel of width");
  assert.ok(start.canvas.height >= LAYERS && start.canvas.height <= 96, `every layer a thin row (${start.canvas.height} px)`);
  const shownTokens = start.shown / start.cellW;
  assert.ok(shownTokens < n, "the heatmap shows part of the trace");
  assert.ok(Math.abs(start.lens.width - (shownTokens / n) * start.canvas.width) < 3, `the lens frame is the shown share (${start.lens.width} px)`);
  assert.ok(start.lens.left < 1, "the frame starts at the first token");
  // The overview's pixels are the heatmap's colours: its column for token t, layer 5, equals the heatmap's cell.
  const same = await panel.page.evaluate(() => {
    const h = (window as unknown as PanelWindow & { moeLens: { heatmap: { cellPacked(t: number, m: number): number } } }).moeLens.heatmap;
    const canvas = document.querySelector<HTMLCanvasElement>(".overview-canvas")!;
    const n = (window as unknown as PanelWindow).moeLens.current!.count;
    const rowPx = canvas.height / 48;
    const x = Math.floor(canvas.width / 3);
    const t = Math.floor(((x + 0.5) / canvas.width) * n);
    const rgba = canvas.getContext("2d")!.getImageData(x, Math.floor(5 * rowPx), 1, 1).data;
    const packed = h.cellPacked(t, 5);
    return [Array.from(rgba.slice(0, 3)), [packed & 255, (packed >> 8) & 255, (packed >> 16) & 255]];
  });
  assert.deepEqual(same[0], same[1], "overview pixel = heatmap cell colour");
  // Click at three quarters of the overview: the heatmap's view is centred on that token.
  const box = await panel.page.$eval(".overview-canvas", (c) => {
    const b = c.getBoundingClientRect();
    return { x: b.left, y: b.top, w: b.width, h: b.height };
  });
  await panel.page.mouse.click(box.x + box.w * 0.75, box.y + box.h / 2);
  await panel.page.waitForTimeout(100);
  const moved = await view();
  const centre = (moved.scroll + moved.shown / 2) / moved.cellW;
  assert.ok(Math.abs(centre - 0.75 * n) <= 2, `the heatmap centres token ${Math.round(0.75 * n)} (centre ${centre.toFixed(1)})`);
  assert.ok(Math.abs(moved.lens.left + moved.lens.width / 2 - 0.75 * moved.canvas.width) < 3, "the frame moved with it");
  assert.deepEqual(panel.consoleErrors, []);
});
