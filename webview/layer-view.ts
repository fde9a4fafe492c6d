// The layer view: one MoE layer as tokens × experts. x = tokens, on the heatmap's columns
// (same cell width and horizontal scroll, so a column is the same token in both), y = experts
// in id order or by load in this layer. Every one of a token's k selections is a cell shaded
// by its gate weight on an auto-ranged scale (scale.ts); a selected slot with weight 0
// (dropped by a policy) is drawn in a colour outside the ramp; highlighted experts (the
// expert search) get a band across their rows. Draws only the visible columns.
import { layerLoad } from "../shared/expert-stats";
import { packRgb, rampPacked, type Rgb } from "./colors";
import { el } from "./dom";
import { fillLayerPicker, layerName, layerPicker, routingColumns, viewSection, type SharedViewState } from "./expert-view-common";
import { GUTTER } from "./heatmap";
import { CellImage, prepareCanvas, themeColors } from "./matrix";
import { autoRange, normalise, scaleLegend, type ScaleRange } from "./scale";
import type { PanelTrace } from "./store";

/** Dropped slots (selected, weight 0): red is not on the viridis ramp, so it cannot be read as a weight. */
export const DROPPED_RGB: Rgb = [230, 40, 60];
const DROPPED = packRgb(DROPPED_RGB);
const TOP = 4;

export type ExpertOrder = "id" | "load";

export class LayerView {
  readonly section: HTMLDetailsElement;
  readonly picker: HTMLSelectElement;
  readonly order: HTMLSelectElement;
  readonly scroller: HTMLDivElement;
  readonly canvas: HTMLCanvasElement;
  private readonly spacer: HTMLDivElement;
  private readonly legendHost: HTMLElement;
  private readonly status: HTMLElement;
  private readonly image = new CellImage();
  /** Row of each expert and expert of each row, for the current order. */
  rowOfExpert = new Int32Array(0);
  expertAtRow = new Int32Array(0);
  /** The weight scale of the chosen layer (non-zero weights, 1st–99th percentile). */
  scale: ScaleRange = { min: 0, max: 1 };
  /** Expert ids marked by the highlight band in the last draw (tests read it). */
  markedExperts: number[] = [];
  rowH = 3;
  private orderKey = "";
  private scaleKey = "";
  private legendKey = "";
  private weightScratch = new Float32Array(0);
  private trace?: PanelTrace;
  private shared: SharedViewState = { layer: 0 };
  /** Token column width in CSS pixels: the heatmap's. */
  cellW = 8;

  constructor(parent: HTMLElement, onLayer: (layer: number) => void, onChange: () => void) {
    const { section, body } = viewSection(parent, "layer-view", "Layer view: tokens × experts of one layer", true);
    this.section = section;
    const { field, select } = layerPicker("layer-picker", "Layer");
    this.picker = select;
    select.addEventListener("change", () => onLayer(Number(select.value)));
    this.order = el("select");
    this.order.id = "layer-order";
    this.order.append(new Option("experts by id", "id"), new Option("experts by load in this layer", "load"));
    this.order.addEventListener("change", () => onChange());
    const orderField = el("label", "inline", "Order ");
    orderField.append(this.order);
    this.legendHost = el("span", "view-legend");
    this.legendHost.id = "layer-view-legend";
    const bar = el("div", "view-toolbar");
    bar.append(field, orderField, this.legendHost);
    this.scroller = el("div", "heatmap-scroller layer-view-scroller");
    this.canvas = el("canvas", "heatmap layer-view");
    this.canvas.setAttribute("role", "img");
    this.canvas.setAttribute("aria-label", "Layer view: tokens across, experts down; each of a token's selections is shaded by its gate weight");
    this.spacer = el("div", "heatmap-spacer");
    this.scroller.append(this.canvas, this.spacer);
    this.status = el("p", "note");
    this.status.id = "layer-view-status";
    this.status.setAttribute("aria-live", "polite");
    body.append(bar, this.scroller, this.status);
    this.canvas.addEventListener("click", (e) => this.onClick(e));
  }

  /** Draws the chosen layer of `tr` on the heatmap's columns: its cell width and scroll (the caller batches calls into one frame). */
  render(tr: PanelTrace, shared: SharedViewState, cellW: number, scroll: number): void {
    this.trace = tr;
    this.shared = shared;
    this.cellW = cellW;
    fillLayerPicker(this.picker, tr, shared.layer);
    const layer = shared.layer;
    this.fitOrder(tr, layer);
    this.fitScale(tr, layer);
    const E = tr.E,
      L = tr.L,
      K = tr.K;
    this.rowH = Math.max(2, Math.min(10, Math.floor(400 / Math.max(1, E))));
    const height = TOP + E * this.rowH + 2;
    this.spacer.style.width = `${GUTTER + tr.count * cellW}px`;
    if (this.scroller.scrollLeft !== scroll) this.scroller.scrollLeft = scroll;
    const width = Math.max(50, this.scroller.clientWidth);
    const { fg, bg } = themeColors();
    const g = prepareCanvas(this.canvas, width, height, bg);
    this.scroller.style.height = `${height + 14}px`;
    const first = Math.max(0, Math.floor(scroll / cellW));
    const last = Math.min(tr.count - 1, Math.ceil((scroll + width - GUTTER) / cellW));
    const highlight = shared.highlight;
    // Highlighted experts: a band across their rows, under the cells.
    this.markedExperts = [];
    if (highlight) {
      g.fillStyle = fg;
      g.globalAlpha = 0.22;
      for (let e = 0; e < E; e++)
        if (highlight[e]) {
          this.markedExperts.push(e);
          g.fillRect(GUTTER, TOP + this.rowOfExpert[e] * this.rowH, width - GUTTER, this.rowH);
        }
      g.globalAlpha = 1;
    }
    if (last >= first) {
      const cols = last - first + 1;
      const px = this.image.begin(cols, E);
      for (let t = first; t <= last; t++) {
        const at = (t * L + layer) * K;
        for (let j = 0; j < K; j++) {
          const e = tr.experts[at + j];
          if (e < 0 || e >= E) continue;
          const w = tr.weights[at + j];
          px[this.rowOfExpert[e] * cols + (t - first)] = w > 0 ? rampPacked(normalise(w, this.scale)) : DROPPED;
        }
      }
      this.image.drawTo(g, GUTTER + first * cellW - scroll, TOP, cols * cellW, E * this.rowH);
    }
    // Gutter: expert ids every few rows (in load order, the ids of the busiest experts first).
    g.fillStyle = bg;
    g.fillRect(0, 0, GUTTER, height);
    g.fillStyle = fg;
    g.font = "9px var(--vscode-font-family, sans-serif)";
    const every = Math.max(1, Math.ceil(11 / this.rowH));
    for (let row = 0; row < E; row += every) g.fillText(`e${this.expertAtRow[row]}`, 2, TOP + row * this.rowH + Math.min(9, every * this.rowH));
    if (highlight) for (let e = 0; e < E; e++) if (highlight[e]) g.fillRect(GUTTER - 4, TOP + this.rowOfExpert[e] * this.rowH, 3, Math.max(1, this.rowH));
    // The legend changes with the layer's scale only, not on every scroll frame.
    const legendKey = `${layerName(tr, layer)}|${this.scale.min}|${this.scale.max}`;
    if (legendKey !== this.legendKey) {
      this.legendKey = legendKey;
      this.legendHost.replaceChildren(
        scaleLegend(`gate weight in ${layerName(tr, layer)}`, this.scale),
        el("span", "dropped-swatch"),
        el("span", "scale-note", "dropped (weight 0); blank = not selected"),
      );
    }
  }

  /** Canvas-pixel centre of the cell of token t and expert e for the current scroll and order (tests and a11y). */
  cellCenter(t: number, expert: number): { x: number; y: number } {
    return { x: GUTTER + (t + 0.5) * this.cellW - this.scroller.scrollLeft, y: TOP + (this.rowOfExpert[expert] + 0.5) * this.rowH };
  }

  /** Which expert each row shows: id order, or this layer's load, busiest first (ties by id). */
  private fitOrder(tr: PanelTrace, layer: number): void {
    const order = this.order.value as ExpertOrder;
    const key = `${tr.id}|${tr.E}|${layer}|${order}|${order === "load" ? tr.count : 0}`;
    if (key === this.orderKey) return;
    this.orderKey = key;
    const E = tr.E;
    if (this.rowOfExpert.length !== E) {
      this.rowOfExpert = new Int32Array(E);
      this.expertAtRow = new Int32Array(E);
    }
    const ids = Array.from({ length: E }, (_, e) => e);
    if (order === "load" && tr.count > 0) {
      const load = layerLoad(routingColumns(tr), layer);
      ids.sort((a, b) => load[b] - load[a] || a - b);
    }
    ids.forEach((e, row) => {
      this.expertAtRow[row] = e;
      this.rowOfExpert[e] = row;
    });
  }

  /** The layer's non-zero weights, 1st to 99th percentile: k = 8 weights of 0.11–0.17 span the whole ramp. */
  private fitScale(tr: PanelTrace, layer: number): void {
    const key = `${tr.id}|${tr.count}|${layer}`;
    if (key === this.scaleKey) return;
    this.scaleKey = key;
    const { L, K } = tr;
    if (this.weightScratch.length < tr.count * K) this.weightScratch = new Float32Array(Math.max(tr.count * K, 2 * this.weightScratch.length));
    let kept = 0;
    for (let t = 0; t < tr.count; t++) {
      const at = (t * L + layer) * K;
      for (let j = 0; j < K; j++) if (tr.weights[at + j] > 0) this.weightScratch[kept++] = tr.weights[at + j];
    }
    this.scale = autoRange(this.weightScratch, kept, { low: 0.01, high: 0.99 });
  }

  /** The cell under a click: its token, expert and weight in the status line. */
  private onClick(e: MouseEvent): void {
    const tr = this.trace;
    if (!tr) return;
    const t = Math.floor((e.offsetX - GUTTER + this.scroller.scrollLeft) / this.cellW);
    const row = Math.floor((e.offsetY - TOP) / this.rowH);
    if (e.offsetX < GUTTER || t < 0 || t >= tr.count || row < 0 || row >= tr.E) return;
    const expert = this.expertAtRow[row],
      layer = this.shared.layer;
    const at = (t * tr.L + layer) * tr.K;
    let text = "not selected";
    for (let j = 0; j < tr.K; j++)
      if (tr.experts[at + j] === expert) text = tr.weights[at + j] > 0 ? `weight ${tr.weights[at + j].toFixed(4)} (slot ${j})` : `dropped (slot ${j})`;
    this.status.textContent = `token ${t} ${JSON.stringify(tr.pieces[t] ?? "")} · ${layerName(tr, layer)} · e${expert}: ${text}`;
  }
}
