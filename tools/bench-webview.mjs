#!/usr/bin/env node
// Routing-panel benchmark (part of `npm run bench`, not a test): the built panel in headless
// Chromium, fed a synthetic 20,000-token × 48-layer × k=8 (128 experts) trace in binary
// batches of 512 tokens, as the extension host streams it. Prints:
//   - ingest: time to take in all batches (tokens/s), to set against the server's token rate
//   - first full frame: from the last batch being present to the first frame drawn
//   - scrolling and zooming: frames per second over programmatic scroll/zoom steps
//   - JS heap after ingest (CDP Performance.getMetrics)
/* global window, requestAnimationFrame -- used inside page.evaluate(), which runs in the browser */
import fs from "node:fs";
import http from "node:http";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import * as esbuild from "esbuild";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const dir = path.join(root, "out", "webview");
if (!fs.existsSync(path.join(dir, "panel.js"))) throw new Error("out/webview/panel.js is missing: run `npm run build`");
// Gate weights go to the panel as halves (shared/protocol.ts PanelBatch): shared/half.ts, bundled.
const halfBundle = path.join(root, "out", "bench-webview", "half.cjs");
await esbuild.build({
  stdin: { contents: `export { toHalves } from "./shared/half";`, resolveDir: root, loader: "ts" },
  outfile: halfBundle,
  bundle: true,
  platform: "node",
  format: "cjs",
  logLevel: "warning",
});
const { toHalves } = createRequire(import.meta.url)(halfBundle);
const T = 20000,
  L = 48,
  K = 8,
  E = 128,
  BATCH = 512;

const server = http.createServer((req, res) => {
  const name = path.basename(new URL(req.url, "http://x").pathname);
  if (name === "") {
    res.writeHead(200, { "Content-Type": "text/html" });
    res.end(
      `<!DOCTYPE html><html><head><meta charset="utf-8"><link rel="stylesheet" href="/panel.css"></head><body><main id="app"></main><script src="/panel.js"></script></body></html>`,
    );
  } else if (name === "favicon.ico") {
    res.writeHead(204).end();
  } else if (fs.existsSync(path.join(dir, name))) {
    res.writeHead(200, { "Content-Type": name.endsWith(".js") ? "text/javascript" : "text/css" });
    res.end(fs.readFileSync(path.join(dir, name)));
  } else res.writeHead(404).end();
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const browser = await chromium.launch({
  executablePath: process.env.MOE_LENS_CHROMIUM ?? "/usr/bin/chromium",
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-precise-memory-info",
  ],
});
const page = await browser.newPage({ viewport: { width: 1200, height: 1000 } });
await page.addInitScript(() => {
  window.acquireVsCodeApi = () => ({ postMessage() {}, getState() {}, setState() {} });
});
page.on("console", (m) => {
  if (m.type() === "error") console.error("page:", m.text());
});
page.on("crash", () => console.error("page crashed"));
await page.goto(`http://127.0.0.1:${server.address().port}/`);
await page.waitForFunction(() => window.moeLens);

const result = await page.evaluate(
  async ({ T, L, K, E, BATCH, slotWeightHalves }) => {
    // Synthetic routing with domain-like structure, generated in the page (no transfer cost counted).
    const header = {
      model: { n_expert: E, moe_layers: Array.from({ length: L }, (_, i) => i), n_expert_used_trained: K },
      policy: {},
      n_moe_layers: L,
      k: K,
      top_n: 0,
      n_tokens: T,
      windows: [],
    };
    const batches = [];
    let seed = 1;
    const rnd = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
    for (let s = 0; s < T; s += BATCH) {
      const n = Math.min(BATCH, T - s);
      const experts = new Int16Array(n * L * K),
        weightHalves = new Uint16Array(n * L * K);
      for (let i = 0; i < n * L; i++)
        for (let j = 0; j < K; j++) {
          experts[i * K + j] = Math.floor(rnd() * E);
          weightHalves[i * K + j] = slotWeightHalves[j];
        }
      batches.push({
        start: s,
        count: n,
        tokenIds: new Int32Array(n),
        pieces: Array.from({ length: n }, (_, i) => `t${s + i}`),
        nll: new Float32Array(n).fill(2),
        experts,
        weightHalves,
        entropy: new Float32Array(n * L).fill(3),
        active: new Uint8Array(n * L).fill(K),
      });
    }
    const lens = window.moeLens;
    const nextFrame = () => new Promise((r) => requestAnimationFrame(r));
    const t0 = performance.now();
    window.postMessage({ type: "traceStart", traceId: "b", label: "bench", header }, "*");
    for (const batch of batches) window.postMessage({ type: "traceBatch", traceId: "b", batch }, "*");
    window.postMessage(
      { type: "traceEnd", traceId: "b", summary: { ppl: 7, avg_active: K, n_tokens: T, usage: [], avg_active_per_layer: [], mean_nll: 2, elapsed_ms: 0 } },
      "*",
    );
    await new Promise((r) => {
      const check = () => (lens.current?.count === T && lens.current?.summary ? r() : setTimeout(check, 0));
      check();
    });
    const ingestMs = performance.now() - t0;
    const framesBefore = lens.heatmap.frames;
    const tPresent = performance.now();
    while (lens.heatmap.frames === framesBefore) await nextFrame();
    const firstFrameMs = performance.now() - tPresent;
    // Scroll across the trace, one step per frame, then zoom in and out.
    const measure = async (steps, act) => {
      const start = performance.now();
      const f0 = lens.heatmap.frames;
      for (let i = 0; i < steps; i++) {
        act(i);
        await nextFrame();
      }
      return ((lens.heatmap.frames - f0) * 1000) / (performance.now() - start);
    };
    const scroller = lens.heatmap.scroller;
    const scrollFps = await measure(120, (i) => {
      scroller.scrollLeft = (i * 997) % Math.max(1, scroller.scrollWidth - scroller.clientWidth);
    });
    const zoomFps = await measure(60, (i) => lens.heatmap.setZoom(i % 20 < 10 ? lens.heatmap.cellW * 1.15 : lens.heatmap.cellW / 1.15));
    const tr = lens.current;
    const d0 = performance.now();
    for (let i = 0; i < 30; i++) {
      scroller.scrollLeft = (i * 1511) % 100000;
      lens.heatmap.draw();
    }
    const drawMs = (performance.now() - d0) / 30;
    const typedMb = [tr.tokenIds, tr.nll, tr.experts, tr.weights, tr.entropy, tr.active].reduce((s, a) => s + a.byteLength, 0) / (1 << 20);
    return { ingestMs, firstFrameMs, scrollFps, zoomFps, typedMb, drawMs };
  },
  { T, L, K, E, BATCH, slotWeightHalves: Array.from(toHalves(Array.from({ length: K }, (_, j) => (K - j) / ((K * (K + 1)) / 2)))) },
);

const cdp = await page.context().newCDPSession(page);
await cdp.send("HeapProfiler.collectGarbage");
await cdp.send("Performance.enable");
const metrics = (await cdp.send("Performance.getMetrics")).metrics;
const heap = metrics.find((m) => m.name === "JSHeapUsedSize").value / (1 << 20);
await browser.close();
server.close();

console.log(`  trace: ${T} tokens × ${L} layers × k=${K} (${E} experts), batches of ${BATCH}`);
console.log(`  ingest all batches        ${result.ingestMs.toFixed(0).padStart(6)} ms  (${(T / (result.ingestMs / 1000)).toFixed(0)} tokens/s)`);
console.log(`  first full frame          ${result.firstFrameMs.toFixed(1).padStart(6)} ms  (target ≤ 100 ms)`);
console.log(`  one full redraw (mean)    ${result.drawMs.toFixed(1).padStart(6)} ms`);
console.log(`  scrolling                 ${result.scrollFps.toFixed(1).padStart(6)} fps (target ≥ 50)`);
console.log(`  zooming                   ${result.zoomFps.toFixed(1).padStart(6)} fps (target ≥ 50)`);
console.log(`  JS heap after ingest      ${heap.toFixed(1).padStart(6)} MB  (target ≤ 150 MB; V8 heap, after a forced GC)`);
console.log(
  `  + trace typed arrays      ${result.typedMb.toFixed(1).padStart(6)} MB  (ArrayBuffers, held outside the V8 heap; total ${(heap + result.typedMb).toFixed(1)} MB)`,
);
fs.writeFileSync(path.join(root, "out", "bench-webview.json"), JSON.stringify({ ...result, heapMb: heap, tokens: T, layers: L, k: K, experts: E }, null, 1));
