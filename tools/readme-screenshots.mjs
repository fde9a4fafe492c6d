#!/usr/bin/env node
// README screenshots of the routing panel's per-layer views (`npm run screenshots`; not a
// test). The real server (out/bin/moe-lens-server) on the fine-grained demo model
// (media/models/demo-moe-fine.gguf, 6 MoE layers × 64 experts, k = 8) traces the mixed-domain
// text of test/fixtures/transitions/*.txt (its `<<<domain:NAME>>>` marker lines kept, as an
// editor would trace the file) and builds the expert atlas of test/fixtures/atlas/ classed by
// folder (as `moe-lens atlas test/fixtures/atlas --class-by folder` does). The built panel
// (out/webview) is opened in headless Chromium by the webview tests' harness, fed the trace,
// its domain segments (extension/vscode/segments.ts, as the tracer computes them) and the
// atlas as the extension host posts them, and each view is cropped to a PNG in docs/images/:
//   heatmap.png         the heatmap coloured by gate weight, with its numeric legend
//   layer-view.png      the layer view of one layer, with an expert highlight set
//   load-map.png        the load map with the per-layer balance table
//   specialisation.png  specialisation per layer: domains as classes, MI per layer, top experts
//   atlas.png           the expert atlas section
// The host modules and the harness are TypeScript: they are bundled with esbuild (as
// tools/run-tests.mjs bundles the tests) into out/readme-screenshots/ and loaded from there.
/* global window, document, requestAnimationFrame -- used inside page.evaluate(), which runs in the browser */
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const imagesDir = path.join(root, "docs", "images");
const TEXT_DIR = path.join(root, "test", "fixtures", "transitions");
const ATLAS_DIR = path.join(root, "test", "fixtures", "atlas");
/** The layer shown in the layer view; its highlight set is the experts that DOMAIN's tokens prefer there. */
const LAYER = 3;
const DOMAIN = "math";
/** The regex whose tokens the specialisation view lists top experts for: number tokens. */
const REGEX = "^\\s?\\d+$";
/** Width of the page, so that each crop is about 1000 px wide. */
const WIDTH = 1000;

for (const f of ["out/bin/moe-lens-server", "out/webview/panel.js", "media/models/demo-moe-fine.gguf"])
  if (!fs.existsSync(path.join(root, f))) throw new Error(`${f} is missing: run tools/setup.sh (npm run build:native && npm run build)`);

// The TypeScript pieces, bundled once into one CommonJS module.
const bundle = path.join(root, "out", "readme-screenshots", "host.cjs");
await esbuild.build({
  stdin: {
    contents: `
      export { openPanel } from "./test/webview/harness";
      export { panelBatch } from "./shared/protocol";
      export { startServer, FINE_MODEL } from "./test/helpers";
      export { editorSegments } from "./extension/vscode/segments";
      export { atlasView, buildAtlas, folderClassOf } from "./extension/core/atlas";
    `,
    resolveDir: root,
    loader: "ts",
  },
  outfile: bundle,
  bundle: true,
  platform: "node",
  format: "cjs",
  target: "node20",
  external: ["playwright-core", "esbuild", "eslint", "vscode"],
  logLevel: "warning",
});
process.env.MOE_LENS_ROOT = root;
const { openPanel, panelBatch, startServer, FINE_MODEL, editorSegments, atlasView, buildAtlas, folderClassOf } = createRequire(import.meta.url)(bundle);

// The mixed-domain text: every fixture file in order, each starting with its marker lines.
const files = fs
  .readdirSync(TEXT_DIR)
  .filter((f) => f.endsWith(".txt"))
  .sort();
const text = files.map((f) => fs.readFileSync(path.join(TEXT_DIR, f), "utf8").replace(/\n?$/, "\n")).join("");

console.log(`tracing ${files.length} files of test/fixtures/transitions (${Buffer.byteLength(text)} bytes) on ${path.relative(root, FINE_MODEL)}…`);
const server = await startServer(FINE_MODEL);
let trace, atlas;
try {
  const info = await server.client.modelInfo();
  trace = await server.client.trace({ text, top_n: info.n_expert });
  const build = await buildAtlas(server.client, ATLAS_DIR, { classOf: folderClassOf });
  atlas = atlasView(build.atlas, "Expert atlas of atlas · classes by folder · baseline", 5);
} finally {
  await server.stop();
}
const seg = editorSegments(trace, text, "plaintext");
const domains = [...new Set(seg.segments.map((s) => s.domain))];
console.log(
  `${trace.columns.count} tokens, ${seg.segments.length} segments (${domains.join(", ")}), ${seg.transitions.length} transitions; atlas of ${atlas.documents} documents`,
);

/**
 * The experts `domain`'s tokens select most often relative to all tokens in layer `m` (lift,
 * docs/metrics.md), among those with at least 2 % of its selections: the highlight set.
 */
function preferredExperts(m, domain, count) {
  const c = trace.columns,
    { n_moe_layers: L, k: K } = trace.header,
    E = trace.header.model.n_expert;
  const inside = new Float64Array(E),
    all = new Float64Array(E);
  let insideTokens = 0;
  for (const s of seg.segments) if (s.domain === domain) insideTokens += s.end - s.start;
  if (!insideTokens) throw new Error(`no ${domain} segment in the traced text`);
  const inDomain = new Uint8Array(c.count);
  for (const s of seg.segments) if (s.domain === domain) inDomain.fill(1, s.start, s.end);
  for (let t = 0; t < c.count; t++)
    for (let j = 0; j < K; j++) {
      const at = (t * L + m) * K + j;
      if (!(c.weights[at] > 0)) continue;
      all[c.experts[at]]++;
      if (inDomain[t]) inside[c.experts[at]]++;
    }
  const lift = (e) => inside[e] / insideTokens / (all[e] / c.count);
  return [...Array(E).keys()]
    .filter((e) => inside[e] >= 0.02 * insideTokens)
    .sort((a, b) => lift(b) - lift(a))
    .slice(0, count);
}
const highlight = preferredExperts(LAYER, DOMAIN, 3);
console.log(`${DOMAIN}'s preferred experts in L${LAYER}: ${highlight.map((e) => `e${e}`).join(", ")}`);

/** The host's messages for one finished trace: start, 512-token batches, segments, end. */
function traceMessages(id, label) {
  const c = trace.columns,
    { n_moe_layers: L, k: K } = trace.header;
  const out = [{ type: "traceStart", traceId: id, label, header: trace.header }];
  for (let s = 0; s < c.count; s += 512) {
    const e = Math.min(c.count, s + 512);
    const cut = (a, w) => a.slice(s * w, e * w);
    out.push({
      type: "traceBatch",
      traceId: id,
      batch: panelBatch(
        {
          start: s,
          count: e - s,
          tokenIds: cut(c.tokenIds, 1),
          pieces: c.pieces.slice(s, e),
          nll: cut(c.nll, 1),
          experts: cut(c.experts, L * K),
          weights: cut(c.weights, L * K),
          entropy: cut(c.entropy, L),
          active: cut(c.active, L),
        },
        trace.header.model.n_expert,
      ),
    });
  }
  out.push({ type: "segments", traceId: id, segments: seg.segments, transitions: seg.transitions });
  out.push({ type: "traceEnd", traceId: id, summary: trace.summary });
  return out;
}

fs.mkdirSync(imagesDir, { recursive: true });
const panel = await openPanel({ width: WIDTH, height: 1400, theme: "dark" });
const { page } = panel;
const frames = () => page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));

/** Crops the page to the union of the elements' boxes (plus a margin) and writes docs/images/NAME. */
async function shoot(name, selectors) {
  await frames();
  const boxes = [];
  for (const s of selectors) {
    const el = await page.$(s);
    if (!el) throw new Error(`${s} is not in the panel`);
    await el.scrollIntoViewIfNeeded();
    const b = await el.boundingBox();
    if (!b || b.width === 0 || b.height === 0) throw new Error(`${s} is not visible`);
    boxes.push(b);
  }
  // Boxes are relative to the viewport: use a full-page screenshot's coordinates instead.
  const scroll = await page.evaluate(() => ({ x: window.scrollX, y: window.scrollY }));
  const x0 = Math.max(0, Math.min(...boxes.map((b) => b.x)) - 4),
    y0 = Math.max(0, Math.min(...boxes.map((b) => b.y)) - 4),
    x1 = Math.max(...boxes.map((b) => b.x + b.width)) + 4,
    y1 = Math.max(...boxes.map((b) => b.y + b.height)) + 4;
  const file = path.join(imagesDir, name);
  await page.screenshot({ path: file, fullPage: true, clip: { x: x0 + scroll.x, y: y0 + scroll.y, width: Math.min(WIDTH, x1) - x0, height: y1 - y0 } });
  console.log(`${path.relative(root, file)}: ${Math.round(x1 - x0)}×${Math.round(y1 - y0)} px, ${(fs.statSync(file).size / 1024).toFixed(0)} KiB`);
}

/** Opens one of the panel's collapsible sections (a <details>) and waits for its draw. */
async function openSection(id) {
  await page.evaluate((id) => {
    const d = document.getElementById(id);
    if (!d) throw new Error(`#${id} is not in the panel`);
    d.open = true;
  }, id);
  await frames();
}

try {
  await panel.send(traceMessages("doc", "transitions 01–13.txt · baseline"));
  await page.waitForFunction((n) => window.moeLens.current?.count === n && window.moeLens.current?.summary, trace.columns.count);

  // (1) The heatmap coloured by gate weight, with its numeric legend.
  await page.fill("#expert", String(highlight[0]));
  await page.dispatchEvent("#expert", "change");
  await page.selectOption("#color-mode", "weight");
  await shoot("heatmap.png", ["#summary", ".toolbar", ".heatmap-host"]);

  // (2) The layer view of one layer, with an expert highlight set.
  await page.fill("#expert-search", highlight.join(", "));
  await page.dispatchEvent("#expert-search", "change");
  await openSection("layer-view");
  await page.selectOption("#layer-picker", String(LAYER));
  await shoot("layer-view.png", ["#layer-view"]);
  await page.fill("#expert-search", "");
  await page.dispatchEvent("#expert-search", "change");

  // (3) The load map and its balance table.
  await openSection("load-map");
  await shoot("load-map.png", ["#load-map"]);

  // (4) Specialisation per layer: the domains as classes.
  await openSection("specialisation");
  await page.selectOption("#spec-layer", String(LAYER));
  await page.fill("#spec-regex", REGEX);
  await page.dispatchEvent("#spec-regex", "change");
  await shoot("specialisation.png", ["#specialisation"]);

  // (5) The expert atlas section.
  await panel.send([{ type: "atlas", atlas }]);
  await page.waitForFunction(() => !document.getElementById("atlas").hidden);
  await shoot("atlas.png", ["#atlas"]);

  if (panel.consoleErrors.length) throw new Error(`the panel logged errors: ${panel.consoleErrors.join("; ")}`);
  const total = fs.readdirSync(imagesDir).reduce((s, f) => s + fs.statSync(path.join(imagesDir, f)).size, 0);
  console.log(`docs/images: ${(total / 1024).toFixed(0)} KiB in all`);
} finally {
  await panel.close();
}
