// The panel's expert atlas section in headless Chromium under the real CSP: the atlas of
// test/fixtures/atlas/ built by the real server on the demo model (extension/core/atlas.ts
// buildAtlas, classes by folder, as Build Expert Atlas for Folder… does), converted by
// atlasView and sent as the `atlas` message. The section is hidden before it arrives; then
// its MI bars carry every layer's MI, the layer of highest MI is chosen first, and the class ×
// top-experts table lists each class's experts by lift with their selections, for the layer
// picked with the picker and with a click on a bar.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { atlasView, buildAtlas, folderClassOf } from "../../extension/core/atlas";
import { formatNumber } from "../../shared/format";
import type { AtlasView } from "../../shared/protocol";
import { DEMO_MODEL, ROOT, startServer } from "../helpers";
import { ARTIFACTS, openPanel, type PanelPage } from "./harness";

const MODEL = process.env.MOE_LENS_TEST_MODEL ?? DEMO_MODEL;
const CORPUS = path.join(ROOT, "test", "fixtures", "atlas");

let view: AtlasView;
let panel: PanelPage;

before(async () => {
  const server = await startServer(MODEL);
  try {
    const build = await buildAtlas(server.client, CORPUS, { classOf: folderClassOf });
    view = atlasView(build.atlas, "Expert atlas of atlas · classes by folder · baseline", 4);
  } finally {
    await server.stop();
  }
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  panel = await openPanel();
});
after(async () => panel?.close());

interface TableRow {
  cls: string;
  tokens: string;
  cells: Array<{ expert: number; lift: number; selections: number; text: string }>;
}

function tableRows(): Promise<TableRow[]> {
  return panel.page.$$eval("#atlas-table tbody tr", (rows) =>
    rows.map((r) => {
      const tds = [...r.querySelectorAll("td")];
      return {
        cls: tds[0].textContent ?? "",
        tokens: tds[1].textContent ?? "",
        cells: [...r.querySelectorAll<HTMLElement>(".atlas-cell")].map((c) => ({
          expert: Number(c.dataset.expert),
          lift: Number(c.dataset.lift),
          selections: Number(c.dataset.selections),
          text: c.textContent ?? "",
        })),
      };
    }),
  );
}

/** What the table must show for one layer: each class's top experts as atlasView ranked them. */
function expectedRows(layer: number): TableRow[] {
  return view.classes.map((cls, c) => ({
    cls,
    tokens: String(view.classTokens[c]),
    cells: view.layers[layer].top[c].map((x) => ({
      expert: x.expert,
      lift: x.lift,
      selections: x.selections,
      text: `e${x.expert} ×${formatNumber(x.lift, 2)} · ${x.selections}`,
    })),
  }));
}

describe("expert atlas in the panel (issue 13)", () => {
  test("hidden until an atlas arrives; then MI per layer, the layer of highest MI chosen, its class × top-experts table", async () => {
    const { page } = panel;
    assert.equal(await page.$eval("#atlas", (e) => (e as HTMLElement).hidden), true);
    // The fixture's four folders (code, de, en, math) and the README directly in it (".").
    assert.deepEqual([...view.classes].sort(), [".", "code", "de", "en", "math"]);
    assert.ok(
      view.layers.some((l) => l.miBits > 0),
      "the classes are told apart somewhere",
    );

    await panel.send([{ type: "atlas", atlas: view }]);
    assert.equal(await page.$eval("#atlas", (e) => (e as HTMLElement).hidden), false);
    const caption = await page.textContent("#atlas-caption");
    assert.match(caption ?? "", new RegExp(`${view.documents} documents, ${view.tokens} tokens, ${view.L} MoE layers × ${view.E} experts, k = ${view.K}`));

    const bars = await page.$$eval(".atlas-mi-bar", (bs) =>
      bs.map((b) => ({ layer: Number((b as HTMLElement).dataset.layer), mi: Number((b as HTMLElement).dataset.mi), label: b.getAttribute("aria-label") })),
    );
    assert.equal(bars.length, view.L);
    bars.forEach((b, m) => {
      assert.equal(b.layer, m);
      assert.equal(b.mi, view.layers[m].miBits);
      assert.equal(b.label, `MoE layer ${m}: ${formatNumber(view.layers[m].miBits, 4)} bits`);
    });
    // The MI legend spans 0 … the largest MI.
    const legend = await page.$eval(".atlas-legend .scale-legend", (e) => ({
      min: Number((e as HTMLElement).dataset.min),
      max: Number((e as HTMLElement).dataset.max),
    }));
    assert.deepEqual(legend, { min: 0, max: Math.max(...view.layers.map((l) => l.miBits)) });

    const best = view.layers.reduce((b, l, m) => (l.miBits > view.layers[b].miBits ? m : b), 0);
    assert.equal(await page.inputValue("#atlas-layer"), String(best));
    assert.equal(await page.$$eval(".atlas-mi-bar.chosen", (bs) => bs.map((b) => (b as HTMLElement).dataset.layer)).then((x) => x.join()), String(best));
    assert.match(
      (await page.textContent("#atlas-balance")) ?? "",
      new RegExp(`^MoE layer ${best}: MI ${formatNumber(view.layers[best].miBits, 4).replace(".", "\\.")} bits`),
    );
    assert.deepEqual(await tableRows(), expectedRows(best));
    // Lifts are ranked high to low in every row.
    for (const r of await tableRows())
      for (let i = 1; i < r.cells.length; i++) assert.ok(r.cells[i - 1].lift >= r.cells[i].lift, `${r.cls}: ${JSON.stringify(r.cells)}`);
    await page.screenshot({ path: path.join(ARTIFACTS, "atlas.png"), fullPage: true });
    assert.deepEqual(panel.cspViolations, []);
    assert.deepEqual(panel.consoleErrors, []);
  });

  test("the picker and a click on an MI bar change the layer of the table", async () => {
    const { page } = panel;
    const other = view.L > 1 ? (Number(await page.inputValue("#atlas-layer")) + 1) % view.L : 0;
    await page.selectOption("#atlas-layer", String(other));
    assert.deepEqual(await tableRows(), expectedRows(other));
    assert.equal(await page.getAttribute("#atlas-balance", "data-layer"), String(other));
    await page.click(`.atlas-mi-bar[data-layer="0"]`);
    assert.equal(await page.inputValue("#atlas-layer"), "0");
    assert.deepEqual(await tableRows(), expectedRows(0));
    const b = view.layers[0].balance;
    assert.match((await page.textContent("#atlas-balance")) ?? "", new RegExp(`dead ${b.dead}/${view.E}$`));
  });
});
