// The panel's expert atlas section: the result of Build Expert Atlas for Folder… (HostMessage
// `atlas`, built by extension/core/atlas.ts atlasView). Hidden until an atlas arrives. Shows
// the class–expert mutual information of every MoE layer as a bar chart (a click picks the
// layer), a layer picker, the chosen layer's balance figures, and a class × top-experts table:
// each class's experts ranked by lift, with lift and selections. The numbers are computed on
// the host from the atlas's counts (shared/expert-stats.ts); this file only lays them out.
import type { AtlasView } from "../shared/protocol";
import { formatNumber } from "../shared/format";
import { css, rampRgb } from "./colors";
import { el } from "./dom";
import { layerPicker, tableRow, viewSection } from "./expert-view-common";
import { normalise, scaleLegend, type ScaleRange } from "./scale";

/** Below this the MI bars would be too thin to click; the chart then scrolls. */
const MIN_BAR_PX = 4;

export class AtlasSection {
  readonly section: HTMLDetailsElement;
  private readonly caption: HTMLElement;
  private readonly miChart: HTMLElement;
  private readonly miLegend: HTMLElement;
  private readonly picker: HTMLSelectElement;
  private readonly balanceLine: HTMLElement;
  private readonly table: HTMLTableElement;
  private readonly liftLegend: HTMLElement;
  private atlas: AtlasView | undefined;
  private layer = 0;

  constructor(parent: HTMLElement) {
    const { section, body } = viewSection(parent, "atlas", "Expert atlas", true);
    this.section = section;
    section.hidden = true;
    this.caption = el("p", "atlas-caption");
    this.caption.id = "atlas-caption";
    this.miChart = el("div", "atlas-mi");
    this.miChart.id = "atlas-mi";
    this.miChart.setAttribute("role", "group");
    this.miChart.setAttribute("aria-label", "Mutual information between class and expert per MoE layer; click a bar to pick the layer");
    this.miLegend = el("div", "atlas-legend");
    const picker = layerPicker("atlas-layer", "Layer");
    this.picker = picker.select;
    this.picker.addEventListener("change", () => this.pick(Number(this.picker.value)));
    this.balanceLine = el("p", "atlas-balance");
    this.balanceLine.id = "atlas-balance";
    this.table = el("table", "atlas-table");
    this.table.id = "atlas-table";
    this.liftLegend = el("div", "atlas-legend");
    const scroller = el("div", "atlas-scroll");
    scroller.append(this.table);
    body.append(
      this.caption,
      el("p", "atlas-heading", "Mutual information between class and expert, per MoE layer (bits)"),
      this.miChart,
      this.miLegend,
      picker.field,
      this.balanceLine,
      scroller,
      this.liftLegend,
    );
  }

  get view(): AtlasView | undefined {
    return this.atlas;
  }

  render(atlas: AtlasView): void {
    this.atlas = atlas;
    this.section.hidden = false;
    this.caption.textContent =
      `${atlas.title}: ${atlas.documents} documents, ${atlas.tokens} tokens, ${atlas.L} MoE layers × ${atlas.E} experts, k = ${atlas.K}; ` +
      `classes ${atlas.classes.map((c, i) => `${c} (${atlas.classTokens[i]} tokens)`).join(", ")}.`;
    this.picker.replaceChildren(...atlas.layers.map((_, m) => new Option(`MoE layer ${m}`, String(m))));
    // The layer of highest MI first: where the classes are told apart most.
    let best = 0;
    atlas.layers.forEach((l, m) => l.miBits > atlas.layers[best].miBits && (best = m));
    this.drawMi(atlas);
    this.pick(best);
  }

  private drawMi(atlas: AtlasView): void {
    const max = Math.max(0, ...atlas.layers.map((l) => l.miBits));
    const range: ScaleRange = { min: 0, max: max > 0 ? max : 1 };
    this.miChart.replaceChildren();
    this.miChart.style.setProperty("--atlas-bar-min", `${MIN_BAR_PX}px`);
    atlas.layers.forEach((l, m) => {
      const bar = el("button", "atlas-mi-bar");
      bar.dataset.layer = String(m);
      bar.dataset.mi = String(l.miBits);
      const label = `MoE layer ${m}: ${formatNumber(l.miBits, 4)} bits`;
      bar.title = label;
      bar.setAttribute("aria-label", label);
      const fill = el("span", "atlas-mi-fill");
      const x = normalise(l.miBits, range);
      fill.style.height = `${Math.max(2, Math.round(x * 100))}%`;
      fill.style.background = css(rampRgb(x));
      bar.append(fill);
      bar.addEventListener("click", () => this.pick(m));
      this.miChart.append(bar);
    });
    this.miLegend.replaceChildren(scaleLegend("MI (bits)", range, "bar height and colour"));
  }

  private pick(layer: number): void {
    const atlas = this.atlas;
    if (!atlas || !atlas.layers.length) return;
    this.layer = Math.max(0, Math.min(atlas.layers.length - 1, Number.isInteger(layer) ? layer : 0));
    this.picker.value = String(this.layer);
    for (const bar of this.miChart.children) bar.classList.toggle("chosen", (bar as HTMLElement).dataset.layer === String(this.layer));
    const l = atlas.layers[this.layer];
    const b = l.balance;
    this.balanceLine.dataset.layer = String(this.layer);
    this.balanceLine.textContent =
      `MoE layer ${this.layer}: MI ${formatNumber(l.miBits, 4)} bits · load cv ${formatNumber(b.cv, 3)} · max/mean ${formatNumber(b.maxOverMean, 2)}` +
      ` · usage entropy ${formatNumber(b.normalisedEntropy, 3)} (of log2 E) · dead ${b.dead}/${atlas.E}`;
    this.renderTable(atlas, this.layer);
  }

  /** Classes × ranks: each cell is an expert with its lift (colour: log2 lift on a range symmetric around 1×) and selections. */
  private renderTable(atlas: AtlasView, layer: number): void {
    const top = atlas.layers[layer].top;
    const ranks = Math.max(0, ...top.map((t) => t.length));
    let maxLog = 0;
    for (const cls of top) for (const x of cls) if (Number.isFinite(x.lift) && x.lift > 0) maxLog = Math.max(maxLog, Math.abs(Math.log2(x.lift)));
    const range: ScaleRange = { min: -(maxLog || 1), max: maxLog || 1 };
    const head = tableRow(["class", "tokens", ...Array.from({ length: ranks }, (_, r) => `#${r + 1} expert (lift, selections)`)], true);
    const rows = atlas.classes.map((name, c) => {
      const cells = top[c].map((x) => {
        const cell = el("span", "atlas-cell", `e${x.expert} ×${formatNumber(x.lift, 2)} · ${x.selections}`);
        cell.dataset.expert = String(x.expert);
        cell.dataset.lift = String(x.lift);
        cell.dataset.selections = String(x.selections);
        cell.style.borderLeftColor = css(rampRgb(normalise(Math.log2(x.lift), range)));
        return cell;
      });
      const row = tableRow([name, String(atlas.classTokens[c]), ...cells, ...Array.from({ length: ranks - cells.length }, () => "")]);
      row.dataset.class = name;
      return row;
    });
    this.table.replaceChildren(el("thead"), el("tbody"));
    this.table.tHead!.append(head);
    this.table.tBodies[0].append(...rows);
    this.liftLegend.replaceChildren(
      scaleLegend("lift (×, log scale)", range, "mark left of each expert; 1× = as often as in the whole corpus", (v) => formatNumber(2 ** v, 2)),
    );
  }
}
