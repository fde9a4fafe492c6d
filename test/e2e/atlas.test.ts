// End-to-end: "MoE Lens: Build Expert Atlas for Folder…" in a real VS Code workbench
// (code-server + Chromium) with the demo model, as a user runs it: the folder dialog, the
// class quick pick (by folder), the progress notification; then the panel's Expert atlas
// section shows every layer's MI and the class × top-experts table, "Save Atlas JSON…" writes
// the atlas, and both equal what `moe-lens atlas DIR --class-by folder` computes on the same
// folder. A cancelled run shows and saves nothing (the panel keeps the previous atlas), and a
// reloaded panel shows the atlas again. Screenshots in test-artifacts/e2e/. Skipped (not
// failed) only when code-server is not installed (tools/setup-e2e.sh).
import test, { after, before } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { ExpertAtlas, type ExpertAtlasJson } from "../../shared/expert-stats";
import { formatNumber } from "../../shared/format";
import type { AtlasLayerSummary } from "../../extension/core/atlas";
import {
  answerFileDialog,
  clearNotifications,
  closeQuickInput,
  extensionSource,
  openFile,
  panelFrame,
  repoRoot,
  requireBuilt,
  runCommand,
  screenshot,
  skipReason,
  startWorkbench,
  waitForFrameText,
  waitForNotification,
  waitForStatus,
  type Workbench,
} from "./env";

const skip = skipReason();
if (skip) console.log(`# e2e skipped: ${skip}`);
const root = repoRoot();
const ext = extensionSource(root);
const SAMPLE = "notes.md";
const CORPUS = path.join(root, "test", "fixtures", "atlas");
let wb: Workbench | undefined;

before(async () => {
  if (skip) return;
  requireBuilt(ext, [
    ["out/extension.js", "run `npm run build`"],
    ["out/webview/panel.js", "run `npm run build`"],
    ["out/cli.js", "run `npm run build`"],
    ["out/bin/moe-lens-server", "run `npm run build:native`"],
    ["media/models/demo-moe.gguf", "build the demo model (see README, tools/train)"],
  ]);
  wb = await startWorkbench({ sampleName: SAMPLE, sampleText: "# Notes\n\nA short note so that the workbench has a file open.\n" });
  fs.cpSync(CORPUS, path.join(wb.workspace, "corpus"), { recursive: true });
});

after(async () => {
  if (wb) await wb.close();
});

/** Picks a row of the open quick pick by its label. */
async function pick(w: Workbench, title: string, label: string): Promise<void> {
  await w.page.locator(".quick-input-widget .quick-input-title", { hasText: title }).waitFor({ timeout: 15_000 });
  const row = w.page.locator(".quick-input-widget .monaco-list-row", { hasText: label }).first();
  await row.waitFor({ timeout: 15_000 });
  await row.click();
}

async function startAtlas(w: Workbench, folder: string, classBy: "Language" | "Folder"): Promise<void> {
  await closeQuickInput(w.page);
  await runCommand(w.page, "MoE Lens: Build Expert Atlas for Folder…");
  await answerFileDialog(w.page, "folder of text files for the expert atlas", folder, { okLabel: "Build Atlas" });
  await pick(w, "expert atlas classes", classBy);
}

interface PanelAtlas {
  hidden: boolean;
  caption: string;
  mi: number[];
  rows: Array<{ cls: string; experts: number[] }>;
}

async function panelAtlas(w: Workbench): Promise<PanelAtlas> {
  const frame = await panelFrame(w.page);
  return frame.evaluate(() => ({
    hidden: (document.getElementById("atlas") as HTMLElement | null)?.hidden ?? true,
    caption: document.getElementById("atlas-caption")?.textContent ?? "",
    mi: [...document.querySelectorAll<HTMLElement>(".atlas-mi-bar")].map((b) => Number(b.dataset.mi)),
    rows: [...document.querySelectorAll<HTMLElement>("#atlas-table tbody tr")].map((r) => ({
      cls: r.dataset.class ?? "",
      experts: [...r.querySelectorAll<HTMLElement>(".atlas-cell")].map((c) => Number(c.dataset.expert)),
    })),
  }));
}

/** `moe-lens atlas DIR --class-by folder --top 5 --json` on the same folder: the reference. */
function cliAtlas(dir: string): { layers: AtlasLayerSummary[]; atlas: ExpertAtlasJson } {
  const out = execFileSync(
    process.execPath,
    [path.join(root, "bin", "moe-lens.js"), "atlas", dir, "--class-by", "folder", "--top", "5", "--threads", "2", "--json"],
    {
      cwd: root,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  return JSON.parse(out) as { layers: AtlasLayerSummary[]; atlas: ExpertAtlasJson };
}

test("Build Expert Atlas for Folder…: the panel shows the atlas, Save writes it; both equal moe-lens atlas", { skip, timeout: 300_000 }, async () => {
  const w = wb!;
  await openFile(w.page, SAMPLE);
  await runCommand(w.page, "MoE Lens: Show Routing Panel");
  await panelFrame(w.page, 60_000);
  await waitForStatus(w.page, /· (stopped|ready|starting) ·/, 30_000);
  assert.equal((await panelAtlas(w)).hidden, true, "no atlas section before an atlas");
  const folder = path.join(w.workspace, "corpus");
  await clearNotifications(w.page);
  await startAtlas(w, folder, "Folder");
  const done = await waitForNotification(w.page, /expert atlas done \(8 files, \d+ tokens, 5 classes\)/, 180_000);
  await waitForFrameText(w.page, /Expert atlas of corpus · classes by folder · baseline/, 30_000);
  const shown = await panelAtlas(w);
  await screenshot(w, "atlas-panel");
  assert.equal(shown.hidden, false);

  const ref = cliAtlas(folder);
  // Every layer's MI as the CLI computes it on the same folder with the same model.
  assert.equal(shown.mi.length, ref.layers.length);
  shown.mi.forEach((mi, l) => assert.equal(formatNumber(mi, 6), formatNumber(ref.layers[l].miBits, 6), `layer ${l}`));
  // The table shows the layer of highest MI: each class's top experts by lift, as the CLI ranks them.
  const best = ref.layers.reduce((b, l, m) => (l.miBits > ref.layers[b].miBits ? m : b), 0);
  assert.deepEqual(
    shown.rows,
    ref.atlas.classes.map((c) => ({ cls: c.name, experts: ref.layers[best].topExperts[c.name].map((x) => x.expert) })),
  );
  assert.match(shown.caption, new RegExp(`8 documents, ${/(\d+) tokens/.exec(done)![1]} tokens`));

  // Save Atlas JSON…: the CLI's format, the same counts.
  const saved = path.join(w.workspace, "corpus.atlas.json");
  await w.page
    .locator(".notifications-toasts .notification-list-item", { hasText: "expert atlas done" })
    .locator(".monaco-button", { hasText: "Save Atlas JSON…" })
    .click();
  await answerFileDialog(w.page, "save the expert atlas", saved);
  for (let i = 0; i < 50 && !fs.existsSync(saved); i++) await w.page.waitForTimeout(200);
  const atlas = ExpertAtlas.fromJSON(JSON.parse(fs.readFileSync(saved, "utf8")));
  assert.deepEqual(atlas.toJSON(), ExpertAtlas.fromJSON(ref.atlas).toJSON());
});

test("a cancelled atlas shows and saves nothing; the panel keeps the last atlas, also after a reload", { skip, timeout: 240_000 }, async () => {
  const w = wb!;
  // A folder long enough to cancel midway: the fixture 12 times over.
  const big = path.join(w.workspace, "big");
  for (let i = 0; i < 12; i++) fs.cpSync(CORPUS, path.join(big, `copy${i}`), { recursive: true });
  const before = fs.readdirSync(w.workspace).sort();
  await clearNotifications(w.page);
  await startAtlas(w, big, "Language");
  const progress = w.page.locator(".notifications-toasts .notification-list-item", { hasText: "expert atlas" });
  await progress
    .filter({ hasText: /\d+\/96 files/ })
    .first()
    .waitFor({ timeout: 120_000 });
  await progress.locator(".monaco-button", { hasText: "Cancel" }).first().click();
  await waitForStatus(w.page, /· ready ·/, 60_000);
  await w.page.waitForTimeout(3_000);
  const texts = await w.page.locator(".notifications-toasts .notification-list-item").allTextContents();
  assert.ok(!texts.some((t) => /expert atlas done/.test(t)), `no "done" after Cancel: ${JSON.stringify(texts)}`);
  assert.match((await panelAtlas(w)).caption, /classes by folder/, "the panel still shows the previous atlas");
  assert.deepEqual(fs.readdirSync(w.workspace).sort(), before, "nothing written");
  await screenshot(w, "atlas-cancelled");

  // The panel reloads (as after a window reload or moving it): the host replays the last atlas.
  await runCommand(w.page, "Developer: Reload Webviews");
  await w.page.waitForTimeout(2_000);
  const text = await waitForFrameText(w.page, /Expert atlas of corpus · classes by folder/, 60_000);
  assert.match(text, /Mutual information between class and expert, per MoE layer/);
  assert.equal((await panelAtlas(w)).rows.length, 5);
});
