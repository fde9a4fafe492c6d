// End-to-end at today's MoE shape: a random qwen3moe of 48 layers × 128 experts × k = 8
// (written by `moe-lens-bench random-moe` from the demo model's tokenizer) traced over a
// document of ≥ 5,000 tokens in the real workbench (code-server + Chromium), as issue 13 asks:
//   1. Trace Document: time to the panel's first tokens (first paint), time to the last token,
//      and the stall between the last token and "ready";
//   2. the per-layer views: layer view, load map, specialisation view;
//   3. moving the editor cursor moves the panel's highlighted token;
//   4. the hover of one token stays a compact layer × k table;
//   5. peak RSS (VmHWM) of the extension host, with every router probability recorded
//      (moeLens.recordRouterProbabilities), and of Chromium's renderers.
// Every figure goes to test-artifacts/e2e/fine-grained.json (and is printed). The limits the
// issue sets are asserted where they are stable on a shared 2-core machine: hover size, and
// the peak RSS of the extension host and of the renderer (< 600 MB each). The renderer also
// holds the whole workbench (500–530 MB before the trace); with the panel's narrowed batches
// and paced, on-screen-only charts it peaked at 566–581 MB in every run of 2026-12-06 after
// those changes (571–624 MB before). First paint, which load on the machine moves, is
// printed. Skipped only without code-server, like workbench.test.ts.

import test, { after, before } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import {
  closeQuickInput,
  descendants,
  extensionSource,
  openFile,
  panelFrame,
  repoRoot,
  requireBuilt,
  runCommand,
  screenshot,
  skipReason,
  startWorkbench,
  waitForStatus,
  type Workbench,
} from "./env";

const skip = skipReason();
const root = repoRoot();
const ext = extensionSource(root);
const DOC = "long-mixed.md";
/** The limits. */
const HOST_RSS_LIMIT_MB = 600;
const RENDERER_RSS_LIMIT_MB = 600;
const HOVER_MAX_LINES = 60;
const TRACE_TIMEOUT = 540_000;

/** A little over 5,000 tokens of prose, code, German and data: the transition fixtures' blocks in turn. */
function longDocument(): string {
  const dir = path.join(root, "test", "fixtures", "transitions");
  const blocks = fs
    .readdirSync(dir)
    .filter((f) => f.endsWith(".txt"))
    .sort()
    .map((f) => fs.readFileSync(path.join(dir, f), "utf8").replace(/^<<<domain:\w+>>>\n/gm, ""));
  let text = "# A long mixed document\n\n";
  // about 2.2 characters per token for these blocks on the demo tokenizer (checked with the
  // server's /v1/tokenize: 7,082 characters are 3,202 tokens, 14,126 are 6,446), so 11,500
  // characters are a little over 5,000 tokens
  for (let i = 0; text.length < 11_500; i++) text += `${blocks[i % blocks.length]}\n\n`;
  return text;
}

let wb: Workbench | undefined;
let modelDir = "";
const figures: Record<string, number | string> = {};
let traced = false;

/** Resident set now (VmRSS) of a process, MB. */
function vmRssMb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

function vmHwmMb(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** The extension host of this workbench: code-server's child that runs the extension host. */
function extensionHostPid(w: Workbench): number | undefined {
  return descendants(w.codeServer.pid!).find((p) => /extensionHost|type=extensionHost/.test(p.cmd))?.pid;
}

/** Chromium renderers launched by this test process (the workbench and its webviews). */
function rendererPids(): number[] {
  return descendants(process.pid)
    .filter((p) => /--type=renderer/.test(p.cmd))
    .map((p) => p.pid);
}

function writeFigures(): void {
  const file = path.join(root, "test-artifacts", "e2e", "fine-grained.json");
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(figures, null, 2) + "\n");
  console.log(`# fine-grained e2e figures (${file}):\n${JSON.stringify(figures, null, 2)}`);
}

before(async () => {
  if (skip) return;
  requireBuilt(ext, [
    ["out/extension.js", "run `npm run build`"],
    ["out/webview/panel.js", "run `npm run build`"],
    ["out/bin/moe-lens-server", "run `npm run build:native`"],
    ["out/bin/moe-lens-bench", "run `npm run build:native`"],
  ]);
  modelDir = fs.mkdtempSync(path.join(root, "test-artifacts", "r48-"));
  const model = path.join(modelDir, "random-48x128.gguf");
  execFileSync(
    path.join(root, "out", "bin", "moe-lens-bench"),
    [
      "random-moe",
      "-m",
      path.join(root, "media", "models", "demo-moe.gguf"),
      "-o",
      model,
      "--layers",
      "48",
      "--embd",
      "128",
      "--ff",
      "64",
      "--experts",
      "128",
      "--k",
      "8",
    ],
    { stdio: "pipe" },
  );
  wb = await startWorkbench({
    sampleName: DOC,
    sampleText: longDocument(),
    settings: { "moeLens.modelPath": model, "moeLens.recordRouterProbabilities": true },
  });
});

after(async () => {
  if (wb) await wb.close();
  if (modelDir) fs.rmSync(modelDir, { recursive: true, force: true });
  if (!skip) writeFigures();
});

test("48 × 128 × k 8: Trace Document over ≥ 5,000 tokens, first paint, end and memory", { skip, timeout: TRACE_TIMEOUT + 60_000 }, async () => {
  const w = wb!;
  await openFile(w.page, DOC);
  await runCommand(w.page, "MoE Lens: Show Routing Panel");
  const frame = await panelFrame(w.page, 60_000);
  // The server runs before the command is timed (first paint is measured from a ready server).
  await runCommand(w.page, "MoE Lens: Start Server");
  await waitForStatus(w.page, /· ready ·/, 120_000);
  await openFile(w.page, DOC);
  const rendererBefore = Math.max(0, ...rendererPids().map(vmRssMb).filter(Number.isFinite));
  const t0 = Date.now();
  await runCommand(w.page, "MoE Lens: Trace Document");
  const hostPeak = { mb: 0 };
  const rendererPeak = { mb: 0 };
  const sample = () => {
    const host = extensionHostPid(w);
    if (host) hostPeak.mb = Math.max(hostPeak.mb, vmHwmMb(host) || 0);
    for (const r of rendererPids()) rendererPeak.mb = Math.max(rendererPeak.mb, vmHwmMb(r) || 0);
  };
  let firstPaint = NaN;
  let lastToken = NaN;
  let total = 0;
  const end = t0 + TRACE_TIMEOUT;
  for (;;) {
    assert.ok(Date.now() < end, `the trace did not finish within ${TRACE_TIMEOUT / 1000} s`);
    sample();
    const text = await frame.evaluate(() => document.body?.innerText ?? "").catch(() => "");
    const m = /(\d+)(?:\/(\d+))? tokens · (\d+) MoE layers · (\d+) experts · k=(\d+)/.exec(text);
    if (m && Number(m[1]) > 0 && Number.isNaN(firstPaint)) firstPaint = Date.now() - t0;
    if (m && m[2] === undefined && Number(m[1]) > 0) {
      lastToken = Date.now() - t0;
      total = Number(m[1]);
      assert.equal(Number(m[3]), 48, "48 MoE layers");
      assert.equal(Number(m[4]), 128, "128 experts");
      assert.equal(Number(m[5]), 8, "k = 8");
      break;
    }
    await w.page.waitForTimeout(200);
  }
  await waitForStatus(w.page, /· ready · .* act \d/, 120_000);
  const ready = Date.now() - t0;
  sample();
  // The panel's own JavaScript heap (the renderer's RSS above also holds the whole workbench).
  const panelHeap = await frame.evaluate(() => (performance as unknown as { memory?: { usedJSHeapSize: number } }).memory?.usedJSHeapSize ?? NaN);
  Object.assign(figures, {
    tokens: total,
    first_paint_s: +(firstPaint / 1000).toFixed(2),
    last_token_s: +(lastToken / 1000).toFixed(2),
    ready_s: +(ready / 1000).toFixed(2),
    stall_after_last_token_s: +((ready - lastToken) / 1000).toFixed(2),
    extension_host_peak_rss_mb: Math.round(hostPeak.mb),
    renderer_rss_before_trace_mb: Math.round(rendererBefore),
    renderer_peak_rss_mb: Math.round(rendererPeak.mb),
    panel_js_heap_mb: Math.round(panelHeap / 2 ** 20),
    router_probabilities_recorded: "yes (moeLens.recordRouterProbabilities: 128 halfs per token and layer in the extension host)",
    how: "wall clock from the Trace Document command (server already running) to the panel's first tokens / all tokens / the status bar's ready; VmHWM of the extension host and of the largest Chromium renderer (the workbench and its webviews), read from /proc; the panel frame's performance.memory.usedJSHeapSize after the trace",
  });
  await screenshot(w, "fine-01-trace-48x128");
  assert.ok(total >= 5000, `≥ 5,000 tokens traced (${total})`);
  assert.ok(hostPeak.mb > 0, "the extension host's memory was read");
  assert.ok(hostPeak.mb < HOST_RSS_LIMIT_MB, `extension host peak RSS ${hostPeak.mb.toFixed(0)} MB < ${HOST_RSS_LIMIT_MB} MB`);
  assert.ok(rendererPeak.mb > 0, "the renderers' memory was read");
  assert.ok(
    rendererPeak.mb < RENDERER_RSS_LIMIT_MB,
    `renderer (workbench and panel) peak RSS ${rendererPeak.mb.toFixed(0)} MB < ${RENDERER_RSS_LIMIT_MB} MB (${rendererBefore.toFixed(0)} MB before the trace)`,
  );
  traced = true;
});

test("48 × 128: the hover of one token is a compact layer × k table", { skip, timeout: 60_000 }, async () => {
  assert.ok(traced, "needs the trace above");
  const w = wb!;
  const page = w.page;
  await closeQuickInput(page);
  await openFile(page, DOC);
  const lines = page.locator(".editor-instance .monaco-editor .view-lines .view-line");
  const n = await lines.count();
  let hover = "";
  for (let i = 0; i < n && !hover; i++) {
    const line = lines.nth(i);
    if (!/[A-Za-z]{4,}/.test((await line.textContent()) ?? "")) continue;
    const box = await line.locator("span span").first().boundingBox();
    if (!box) continue;
    await page.mouse.move(box.x + Math.min(20, box.width / 2), box.y + box.height / 2);
    const h = page.locator(".monaco-hover, .monaco-resizable-hover").filter({ hasText: "MoE Lens" }).first();
    if (
      await h.waitFor({ state: "visible", timeout: 5_000 }).then(
        () => true,
        () => false,
      )
    )
      hover = (await h.innerText()).trim();
    else await page.mouse.move(0, 0);
  }
  assert.ok(hover, "a MoE Lens hover appeared");
  const hoverLines = hover.split("\n").filter((l) => l.trim());
  const box = await page.locator(".monaco-hover, .monaco-resizable-hover").filter({ hasText: "MoE Lens" }).first().boundingBox();
  figures.hover_lines = hoverLines.length;
  figures.hover_height_px = Math.round(box?.height ?? NaN);
  figures.hover_width_px = Math.round(box?.width ?? NaN);
  await screenshot(w, "fine-02-hover-48x128");
  assert.ok(hoverLines.length <= HOVER_MAX_LINES, `hover has ${hoverLines.length} lines (≤ ${HOVER_MAX_LINES})`);
  assert.match(hover, /L47/, "the last of 48 layers is in the hover");
  await page.mouse.move(0, 0);
});

/** Opens one of the panel's per-layer view sections by clicking its summary, as a user would; the time until it has drawn. */
async function openViewSection(frame: Awaited<ReturnType<typeof panelFrame>>, id: string, drawn: string): Promise<number> {
  const t0 = Date.now();
  const open = await frame.$eval(`#${id}`, (d) => (d as HTMLDetailsElement).open);
  if (!open) await frame.click(`#${id} > summary`);
  await frame.waitForSelector(drawn, { timeout: 30_000 });
  return Date.now() - t0;
}

test("48 × 128: the layer view, the load map and the specialisation view show every layer", { skip, timeout: 120_000 }, async () => {
  assert.ok(traced, "needs the trace above");
  const w = wb!;
  const frame = await panelFrame(w.page, 30_000);
  figures.layer_view_open_ms = await openViewSection(frame, "layer-view", "#layer-view canvas");
  assert.equal(await frame.$$eval("#layer-picker option", (o) => o.length), 48, "the layer picker lists 48 MoE layers");
  figures.load_map_open_ms = await openViewSection(frame, "load-map", "#balance-table tbody tr, #balance-table tr + tr");
  const balanceRows = await frame.$$eval("#balance-table tr", (rows) => rows.filter((r) => r.querySelector("td")).length);
  assert.equal(balanceRows, 48, "one balance row per layer");
  figures.specialisation_open_ms = await openViewSection(frame, "specialisation", "#spec-layer");
  const spec = await frame.$eval("#specialisation", (e) => (e as HTMLElement).innerText);
  assert.match(spec, /bits/i, "the specialisation view reports mutual information in bits");
  await screenshot(w, "fine-03-views-48x128");
});

test("48 × 128: moving the editor cursor moves the heatmap to the token under it", { skip, timeout: 90_000 }, async () => {
  assert.ok(traced, "needs the trace above");
  const w = wb!;
  const page = w.page;
  const frame = await panelFrame(page, 30_000);
  const view = () =>
    frame.evaluate(() => {
      const lens = (window as unknown as { moeLens: { heatmap: { markedToken: number; scroller: HTMLElement } } }).moeLens;
      return { marked: lens.heatmap.markedToken, scroll: lens.heatmap.scroller.scrollLeft };
    });
  const lines = longDocument().split("\n");
  const targets = [5, lines.length - 3].map((i) => {
    let j = i;
    while (!/[A-Za-z]{4,}/.test(lines[j])) j--;
    return j;
  });
  const seen: Array<{ marked: number; scroll: number }> = [];
  for (const i of targets) {
    await openFile(page, DOC);
    await runCommand(page, "Go to Line/Column...");
    await page.locator(".quick-input-widget .quick-input-box input").fill(`:${i + 1}:2`);
    await page.keyboard.press("Enter");
    let v = await view();
    for (const end = Date.now() + 10_000; Date.now() < end && (v.marked < 0 || v.marked === seen.at(-1)?.marked); await page.waitForTimeout(200))
      v = await view();
    assert.ok(v.marked >= 0 && v.marked !== seen.at(-1)?.marked, `line ${i + 1}: the heatmap marks a new token (${JSON.stringify(v)})`);
    seen.push(v);
  }
  assert.ok(seen[1].marked > 4000, `the cursor near the end marks a token near the end (${seen[1].marked})`);
  assert.ok(seen[1].scroll > seen[0].scroll, `the heatmap scrolled to it (${seen[0].scroll} → ${seen[1].scroll})`);
  await screenshot(w, "fine-04-cursor-follow-48x128");
});
