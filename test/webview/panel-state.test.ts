// The routing panel's state around its traces (issue 13), in headless Chromium under its
// real CSP, fed a real trace of the demo model: before the first trace it says how to make
// one, and a VS Code theme change (new colour variables on <html>, a new theme class and
// data-vscode-theme-kind on <body>) redraws the heatmap and the charts in the new colours.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { panelBatch, type HostMessage } from "../../shared/protocol";
import type { Trace } from "../../shared/trace";
import { DEMO_MODEL, ROOT, startServer } from "../helpers";
import { openPanel, type PanelPage } from "./harness";

const TEXT = fs.readFileSync(path.join(ROOT, "test", "fixtures", "demo-sample.md"), "utf8").slice(0, 600);

let trace: Trace;
let panel: PanelPage;

/** The trace as the host posts it: start, its columns in one batch, end. */
function messages(t: Trace): HostMessage[] {
  const c = t.columns;
  const batch = {
    start: 0,
    count: c.count,
    tokenIds: c.tokenIds,
    byteStart: c.byteStart,
    byteEnd: c.byteEnd,
    pieces: c.pieces,
    nll: c.nll,
    experts: c.experts,
    weights: c.weights,
    entropy: c.entropy,
    active: c.active,
  };
  return [
    { type: "traceStart", traceId: "t1", label: "demo-sample.md · baseline", header: t.header },
    { type: "traceBatch", traceId: "t1", batch: panelBatch(batch, t.header.model.n_expert) },
    { type: "traceEnd", traceId: "t1", summary: t.summary! },
  ];
}

before(async () => {
  const server = await startServer(DEMO_MODEL);
  try {
    trace = await server.client.trace({ text: TEXT });
  } finally {
    await server.stop();
  }
  panel = await openPanel({ theme: "dark" });
});
after(async () => panel?.close());

interface PanelWindow {
  moeLens: { heatmap: { frames: number; canvas: HTMLCanvasElement }; current?: { count: number } };
}

/** The heatmap's top-left pixel: the canvas background (the editor background variable). */
async function cornerPixel(): Promise<number[]> {
  return panel.page.evaluate(() =>
    Array.from((window as unknown as PanelWindow).moeLens.heatmap.canvas.getContext("2d")!.getImageData(0, 0, 1, 1).data.slice(0, 3)),
  );
}

test("before the first trace the panel says how to trace; the first trace hides it", async () => {
  assert.equal(await panel.page.isVisible("#empty-state"), true);
  const text = (await panel.page.textContent("#empty-state")) ?? "";
  assert.match(text, /MoE Lens: Trace Document/);
  assert.match(text, /MoE Lens: Trace Selection/);
  await panel.send(messages(trace));
  await panel.page.waitForFunction((n) => (window as unknown as PanelWindow).moeLens.current?.count === n, trace.columns.count);
  assert.equal(await panel.page.isVisible("#empty-state"), false);
  assert.deepEqual(panel.consoleErrors, []);
});

test("a theme change redraws the heatmap and the charts in the new colours", async () => {
  await panel.page.waitForFunction(() => document.querySelectorAll(".charts canvas").length >= 3, undefined, { timeout: 5000 });
  assert.deepEqual(await cornerPixel(), [0x1e, 0x1e, 0x1e], "dark background before");
  const framesBefore = await panel.page.evaluate(() => {
    document.querySelectorAll<HTMLCanvasElement>(".charts canvas").forEach((c) => (c.dataset.theme = "dark"));
    return (window as unknown as PanelWindow).moeLens.heatmap.frames;
  });
  // What VS Code does when the user picks a light theme.
  await panel.page.evaluate(() => {
    const s = document.documentElement.style;
    s.setProperty("--vscode-foreground", "#333333");
    s.setProperty("--vscode-editor-background", "#ffffff");
    document.body.classList.replace("vscode-dark", "vscode-light");
    document.body.dataset.vscodeThemeKind = "vscode-light";
  });
  await panel.page.waitForFunction((n) => (window as unknown as PanelWindow).moeLens.heatmap.frames > n, framesBefore, { timeout: 5000 });
  assert.deepEqual(await cornerPixel(), [0xff, 0xff, 0xff], "light background after");
  // The charts are built again (with the new foreground), not left as drawn.
  await panel.page.waitForFunction(
    () => {
      const canvases = document.querySelectorAll<HTMLCanvasElement>(".charts canvas");
      return canvases.length >= 3 && Array.from(canvases).every((c) => c.dataset.theme === undefined);
    },
    undefined,
    { timeout: 5000 },
  );
  assert.deepEqual(panel.consoleErrors, []);
});
