// The load map: how often each expert of each MoE layer is selected, as a layers × experts
// matrix (y = layer, x = expert: 48 rows stay short and 128 columns fit a 300 px side bar at
// 2 px each), counted per layer and never pooled (expert 5 of layer 0 and expert 5 of layer 30
// are different experts). Experts in id order, or each layer's experts sorted by their load
// in that layer (x = rank: the shape of each layer's load curve). Beside it a table of each
// layer's balance (docs/metrics.md, "Per-layer expert figures"), sortable by any column.
import { balance, loadMatrix, type BalanceFigures } from "../shared/expert-stats";
import { formatNumber } from "../shared/format";
import { rampPacked } from "./colors";
import { el } from "./dom";
import { layerName, routingColumns, tableRow, viewSection, type SharedViewState } from "./expert-view-common";
import { CellImage, labelColumns, prepareCanvas, themeColors } from "./matrix";
import { autoRange, normalise, scaleLegend, type ScaleRange } from "./scale";
import type { PanelTrace } from "./store";

const LEFT = 34;
const TOP = 12;

type BalanceColumn = "layer" | "cv" | "maxOverMean" | "normalisedEntropy" | "dead";
const COLUMNS: Array<{ id: BalanceColumn; label: string; title: string }> = [
  { id: "layer", label: "layer", title: "MoE layer" },
  { id: "cv", label: "CV", title: "coefficient of variation of the layer's expert loads (std / mean; 0 = perfectly even)" },
  { id: "maxOverMean", label: "max/mean", title: "load of the busiest expert over the mean load" },
  { id: "normalisedEntropy", label: "entropy", title: "usage entropy of the layer's loads over log2 E (1 = perfectly even)" },
  { id: "dead", label: "dead", title: "experts never selected in this layer" },
];

export class LoadMap {
  readonly section: HTMLDetailsElement;
  readonly canvas: HTMLCanvasElement;
  readonly order: HTMLSelectElement;
  readonly table: HTMLTableElement;
  private readonly legendHost: HTMLElement;
  private readonly image = new CellImage();
  /** Selections per [layer][expert] and each layer's balance, for the trace's tokens so far. */
  loads: Float64Array<ArrayBufferLike> = new Float64Array(0);
  balances: BalanceFigures[] = [];
  scale: ScaleRange = { min: 0, max: 1 };
  private key = "";
  private sortBy: BalanceColumn = "layer";
  private layout = { cellW: 2, cellH: 6, L: 0, E: 0 };
  private trace?: PanelTrace;

  constructor(
    parent: HTMLElement,
    private readonly onLayer: (layer: number) => void,
    onChange: () => void,
  ) {
    const { section, body } = viewSection(parent, "load-map", "Load map: selections per expert in each layer, and each layer's balance", false);
    this.section = section;
    this.order = el("select");
    this.order.id = "load-order";
    this.order.append(new Option("experts by id", "id"), new Option("each layer's experts by load (x = rank)", "rank"));
    this.order.addEventListener("change", onChange);
    const orderField = el("label", "inline", "Order ");
    orderField.append(this.order);
    this.legendHost = el("span", "view-legend");
    this.legendHost.id = "load-map-legend";
    const bar = el("div", "view-toolbar");
    bar.append(orderField, this.legendHost);
    this.canvas = el("canvas", "load-map");
    this.canvas.setAttribute("role", "img");
    this.canvas.setAttribute(
      "aria-label",
      "Load map: MoE layers down, experts across; colour = selections of the expert in that layer. Click a row to choose the layer.",
    );
    this.canvas.addEventListener("click", (e) => this.onClick(e));
    this.canvas.addEventListener("mousemove", (e) => this.onHover(e));
    this.table = el("table", "balance-table");
    this.table.id = "balance-table";
    const grid = el("div", "load-map-grid");
    const tableBox = el("div", "balance-box");
    tableBox.append(this.table);
    grid.append(this.canvas, tableBox);
    body.append(bar, grid);
  }

  render(tr: PanelTrace, shared: SharedViewState): void {
    this.trace = tr;
    const { L, E } = tr;
    const key = `${tr.id}|${tr.count}`;
    if (key !== this.key) {
      this.key = key;
      this.loads = loadMatrix(routingColumns(tr));
      this.balances = [];
      for (let m = 0; m < L; m++) this.balances.push(balance(this.loads.subarray(m * E, (m + 1) * E)));
      // The 99th percentile tops the scale: one layer's few hot experts must not flatten every other layer.
      this.scale = autoRange(this.loads, L * E, { high: 0.99 });
      this.renderTable(tr, shared.layer);
    }
    this.draw(tr, shared);
    this.legendHost.replaceChildren(scaleLegend("selections per layer", this.scale, "top colour = at or above the maximum shown; per layer, never pooled"));
    for (const row of this.table.querySelectorAll<HTMLTableRowElement>("tr[data-layer]"))
      row.classList.toggle("chosen", Number(row.dataset.layer) === shared.layer);
  }

  private draw(tr: PanelTrace, shared: SharedViewState): void {
    const { L, E } = tr;
    const avail = Math.max(120, (this.section.clientWidth || 600) - 8);
    // The matrix keeps half the width when the table sits beside it (wide panels), all of it otherwise.
    const forMap = avail >= 900 ? avail * 0.6 : avail;
    const cellW = Math.max(1, Math.min(10, Math.floor((forMap - LEFT) / E)));
    const cellH = Math.max(3, Math.min(12, Math.floor(360 / L)));
    this.layout = { cellW, cellH, L, E };
    const width = LEFT + E * cellW + 2,
      height = TOP + L * cellH + 2;
    const { fg, bg } = themeColors();
    const g = prepareCanvas(this.canvas, width, height, bg);
    const byRank = this.order.value === "rank";
    const px = this.image.begin(E, L);
    const positions = new Int32Array(E);
    for (let m = 0; m < L; m++) {
      const row = this.loads.subarray(m * E, (m + 1) * E);
      this.positionsFor(row, byRank, positions);
      for (let e = 0; e < E; e++) px[m * E + positions[e]] = rampPacked(normalise(row[e], this.scale));
    }
    this.image.drawTo(g, LEFT, TOP, E * cellW, L * cellH);
    g.fillStyle = fg;
    g.font = "9px var(--vscode-font-family, sans-serif)";
    const every = Math.max(1, Math.ceil(10 / cellH));
    for (let m = 0; m < L; m += every) g.fillText(layerName(tr, m), 1, TOP + m * cellH + Math.min(9, every * cellH));
    labelColumns(g, LEFT, 9, cellW, E, (e) => (byRank ? `#${e + 1}` : `e${e}`));
    // The chosen layer, and the highlighted experts (whole columns in id order, their cells by rank).
    g.strokeStyle = fg;
    g.lineWidth = 1;
    g.strokeRect(LEFT - 0.5, TOP + shared.layer * cellH - 0.5, E * cellW + 1, cellH + 1);
    if (shared.highlight) {
      g.lineWidth = 1.5;
      for (let m = 0; m < L; m++) {
        if (!byRank && m > 0) break;
        this.positionsFor(this.loads.subarray(m * E, (m + 1) * E), byRank, positions);
        for (let e = 0; e < E; e++) {
          if (!shared.highlight[e]) continue;
          if (byRank) g.strokeRect(LEFT + positions[e] * cellW + 0.5, TOP + m * cellH + 0.5, Math.max(1, cellW - 1), cellH - 1);
          else g.strokeRect(LEFT + e * cellW + 0.5, TOP - 2, Math.max(1, cellW - 1), L * cellH + 3);
        }
      }
    }
  }

  /** x position of each expert in a layer's row: its id, or its rank by load (busiest first, ties by id). */
  private positionsFor(row: Float64Array, byRank: boolean, out: Int32Array): void {
    const E = row.length;
    if (!byRank) {
      for (let e = 0; e < E; e++) out[e] = e;
      return;
    }
    const ids = Array.from({ length: E }, (_, e) => e).sort((a, b) => row[b] - row[a] || a - b);
    ids.forEach((e, rank) => (out[e] = rank));
  }

  private renderTable(tr: PanelTrace, chosen: number): void {
    const head = tableRow(
      COLUMNS.map((c) => {
        const b = el("button", "sort", c.label + (this.sortBy === c.id ? " ▾" : ""));
        b.title = c.title;
        b.dataset.column = c.id;
        b.addEventListener("click", () => {
          this.sortBy = c.id;
          this.renderTable(tr, chosen);
        });
        return b;
      }),
      true,
    );
    const layers = this.balances.map((_, m) => m);
    // Layer order ascending; every figure descending (least even first), so "sort by CV" finds the worst-balanced layers.
    if (this.sortBy !== "layer") {
      const col = this.sortBy;
      const value = (m: number) => (col === "normalisedEntropy" ? -this.balances[m][col] : this.balances[m][col]);
      layers.sort((a, b) => value(b) - value(a) || a - b);
    }
    const rows = layers.map((m) => {
      const b = this.balances[m];
      const row = tableRow([layerName(tr, m), formatNumber(b.cv, 3), formatNumber(b.maxOverMean, 2), formatNumber(b.normalisedEntropy, 3), String(b.dead)]);
      row.dataset.layer = String(m);
      row.classList.toggle("chosen", m === chosen);
      row.addEventListener("click", () => this.onLayer(m));
      return row;
    });
    this.table.replaceChildren(head, ...rows);
  }

  private hit(e: MouseEvent): { m: number; x: number } | undefined {
    const { cellW, cellH, L, E } = this.layout;
    const m = Math.floor((e.offsetY - TOP) / cellH),
      x = Math.floor((e.offsetX - LEFT) / cellW);
    return m >= 0 && m < L && x >= 0 && x < E ? { m, x } : undefined;
  }

  private onClick(e: MouseEvent): void {
    const h = this.hit(e);
    if (h) this.onLayer(h.m);
  }

  /** The tooltip names the cell: layer, expert (or rank), selections. */
  private onHover(e: MouseEvent): void {
    const h = this.hit(e),
      tr = this.trace;
    if (!h || !tr) return;
    const E = tr.E,
      row = this.loads.subarray(h.m * E, (h.m + 1) * E);
    let expert = h.x;
    if (this.order.value === "rank") expert = Array.from({ length: E }, (_, i) => i).sort((a, b) => row[b] - row[a] || a - b)[h.x];
    this.canvas.title = `${layerName(tr, h.m)} · e${expert}: ${row[expert]} selections`;
  }
}
