// The specialisation view: which experts of one layer serve which kind of token, never pooled
// across layers. Classes are the trace's domain segments (tokens outside every segment are
// "other"), the token classes of shared/expert-stats.ts, or a regex the user types (match vs
// rest). Shows, for the chosen layer: the expert × class lift (log2, a diverging auto-ranged
// scale), "top experts for this selection" (the regex match, or tokens picked in the heatmap:
// click, shift-click extends) ranked by lift, co-activation within the layer and transitions
// to the next layer (E × E each); and across layers, the mutual information between class and
// expert (bits) as a small bar chart. All numbers come from shared/expert-stats.ts.
import {
  coActivation,
  layerTransitions,
  regexMask,
  specialisation,
  tokenClassLabels,
  topExpertsFor,
  TOKEN_CLASSES,
  type ClassSpecialisation,
} from "../shared/expert-stats";
import { formatNumber } from "../shared/format";
import { rampPacked } from "./colors";
import { el } from "./dom";
import { parseIdSet } from "./expert-filter";
import { fillLayerPicker, layerName, layerPicker, routingColumns, viewSection, type SharedViewState } from "./expert-view-common";
import { CellImage, labelColumns, prepareCanvas, themeColors } from "./matrix";
import { autoRange, normalise, scaleLegend, type ScaleRange } from "./scale";
import type { PanelTrace } from "./store";

export type ClassSource = "segments" | "tokens" | "regex";
const LIFT_LEFT = 84;
const MATRIX_LEFT = 30;
/** Height of the expert-id labels under a matrix. */
const AXIS_PX = 11;
const TOP_N = 8;

/** Classes of a trace's tokens: a label per token and the classes' names. */
export interface TokenClasses {
  labels: Int32Array;
  names: string[];
}

/** A /pattern/flags or a bare pattern as a RegExp; throws with the pattern named when it is not one. */
export function parseRegex(text: string): RegExp {
  const m = /^\/(.*)\/([dgimsuy]*)$/.exec(text);
  try {
    return m ? new RegExp(m[1], m[2]) : new RegExp(text);
  } catch (err) {
    throw new Error(`"${text}" is not a regular expression: ${(err as Error).message}`);
  }
}

/** Domain-segment classes: one per distinct domain, in order of first appearance, plus "other" for tokens outside every segment. */
export function segmentClasses(tr: PanelTrace): TokenClasses {
  const names: string[] = [];
  const labels = new Int32Array(tr.count).fill(-1);
  for (const s of tr.segments) {
    let id = names.indexOf(s.domain);
    if (id < 0) id = names.push(s.domain) - 1;
    labels.fill(id, Math.max(0, s.start), Math.min(tr.count, s.end));
  }
  if (labels.includes(-1)) {
    const other = names.push("other") - 1;
    for (let t = 0; t < labels.length; t++) if (labels[t] < 0) labels[t] = other;
  }
  return { labels, names };
}

export class SpecialisationView {
  readonly section: HTMLDetailsElement;
  readonly picker: HTMLSelectElement;
  readonly classSource: HTMLSelectElement;
  readonly regexBox: HTMLInputElement;
  readonly tokensBox: HTMLInputElement;
  readonly liftCanvas: HTMLCanvasElement;
  readonly miCanvas: HTMLCanvasElement;
  readonly coactCanvas: HTMLCanvasElement;
  readonly transCanvas: HTMLCanvasElement;
  readonly topList: HTMLOListElement;
  private readonly error: HTMLElement;
  private readonly liftLegend: HTMLElement;
  private readonly miCaption: HTMLElement;
  private readonly topCaption: HTMLElement;
  private readonly coactLegend: HTMLElement;
  private readonly transLegend: HTMLElement;
  private readonly images = { lift: new CellImage(), coact: new CellImage(), trans: new CellImage() };
  /** Per layer: the chosen classes' specialisation (lift, MI) for the trace so far. */
  perLayer: ClassSpecialisation[] = [];
  classes: TokenClasses = { labels: new Int32Array(0), names: [] };
  liftScale: ScaleRange = { min: -1, max: 1 };
  private key = "";
  private anchor = -1;
  /** What each matrix canvas shows, for its tooltip: cell size and values (row-major). */
  private readonly shown = new Map<
    HTMLCanvasElement,
    { left: number; cellW: number; cellH: number; rows: number; cols: number; label: (r: number, c: number) => string }
  >();

  constructor(
    parent: HTMLElement,
    onLayer: (layer: number) => void,
    private readonly onChange: () => void,
  ) {
    const { section, body } = viewSection(parent, "specialisation", "Specialisation per layer: lift, mutual information, co-activation", false);
    this.section = section;
    const { field, select } = layerPicker("spec-layer", "Layer");
    this.picker = select;
    select.addEventListener("change", () => onLayer(Number(select.value)));
    this.classSource = el("select");
    this.classSource.id = "spec-classes";
    this.classSource.append(new Option("domain segments", "segments"), new Option("token classes", "tokens"), new Option("regex: match vs rest", "regex"));
    this.classSource.addEventListener("change", onChange);
    const classField = el("label", "inline", "Classes ");
    classField.append(this.classSource);
    this.regexBox = el("input");
    this.regexBox.id = "spec-regex";
    this.regexBox.type = "text";
    this.regexBox.placeholder = "regex on token text, e.g. ^\\s*\\d+$";
    this.regexBox.setAttribute("aria-label", "Regex selecting tokens by their text");
    const regexField = el("label", "inline", "Regex ");
    regexField.append(this.regexBox);
    this.tokensBox = el("input");
    this.tokensBox.id = "spec-tokens";
    this.tokensBox.type = "text";
    this.tokensBox.placeholder = "e.g. 120-180 (or click / shift-click the heatmap)";
    this.tokensBox.setAttribute("aria-label", "Selected tokens: ids and ranges");
    const tokensField = el("label", "inline", "Tokens ");
    tokensField.append(this.tokensBox);
    for (const box of [this.regexBox, this.tokensBox]) box.addEventListener("change", onChange);
    this.error = el("span", "control-error");
    this.error.id = "spec-error";
    const bar = el("div", "view-toolbar");
    bar.append(field, classField, regexField, tokensField, this.error);

    const figure = (id: string, caption: HTMLElement, canvas: HTMLCanvasElement, legend?: HTMLElement) => {
      const f = el("figure", "view-figure");
      f.id = id;
      f.append(caption);
      if (legend) f.append(legend);
      f.append(canvas);
      return f;
    };
    this.liftCanvas = el("canvas");
    this.liftCanvas.setAttribute("role", "img");
    this.liftCanvas.setAttribute("aria-label", "Lift of each expert for each class in the chosen layer");
    this.liftLegend = el("div", "view-legend");
    this.miCanvas = el("canvas");
    this.miCanvas.setAttribute("role", "img");
    this.miCaption = el("figcaption", "", "Mutual information between class and expert, per layer (bits)");
    this.miCanvas.addEventListener("click", (e) => {
      const tr = this.perLayer.length;
      if (tr) onLayer(Math.max(0, Math.min(tr - 1, Math.floor((e.offsetX / this.miCanvas.clientWidth) * tr))));
    });
    this.topList = el("ol", "top-experts");
    this.topList.id = "spec-top";
    this.topCaption = el("figcaption", "", "Top experts for this selection");
    const topFigure = el("figure", "view-figure");
    topFigure.append(this.topCaption, this.topList);
    this.coactCanvas = el("canvas");
    this.coactCanvas.setAttribute("role", "img");
    this.coactLegend = el("div", "view-legend");
    this.transCanvas = el("canvas");
    this.transCanvas.setAttribute("role", "img");
    this.transLegend = el("div", "view-legend");
    const grid = el("div", "spec-grid");
    grid.append(
      figure("spec-lift", el("figcaption", "", "Expert × class lift in the chosen layer (log2: 0 = as often as overall)"), this.liftCanvas, this.liftLegend),
      figure("spec-mi", this.miCaption, this.miCanvas),
      topFigure,
      figure(
        "spec-coact",
        el("figcaption", "", "Co-activation in the chosen layer: tokens selecting both experts (diagonal blank)"),
        this.coactCanvas,
        this.coactLegend,
      ),
      figure(
        "spec-trans",
        el("figcaption", "", "Transitions to the next layer: rows = expert here, columns = expert there"),
        this.transCanvas,
        this.transLegend,
      ),
    );
    body.append(bar, grid);
    // Tooltips name the cell under the pointer and its number.
    for (const canvas of [this.liftCanvas, this.coactCanvas, this.transCanvas])
      canvas.addEventListener("mousemove", (e) => {
        const m = this.shown.get(canvas);
        if (!m) return;
        const c = Math.floor((e.offsetX - m.left) / m.cellW),
          r = Math.floor((e.offsetY - 1) / m.cellH);
        canvas.title = r >= 0 && r < m.rows && c >= 0 && c < m.cols ? m.label(r, c) : "";
      });
  }

  /** A new trace: token ids of the old one mean nothing in it. */
  clearTokenSelection(): void {
    this.tokensBox.value = "";
    this.anchor = -1;
  }

  /** A heatmap click picks token t (shift extends from the last click) as the selection. */
  selectToken(t: number, extend: boolean): void {
    if (extend && this.anchor >= 0) this.tokensBox.value = `${Math.min(this.anchor, t)}-${Math.max(this.anchor, t)}`;
    else {
      this.anchor = t;
      this.tokensBox.value = String(t);
    }
    this.onChange();
  }

  render(tr: PanelTrace, shared: SharedViewState): void {
    fillLayerPicker(this.picker, tr, shared.layer);
    this.error.textContent = "";
    const source = this.classSource.value as ClassSource;
    const c = routingColumns(tr);
    let regexSelection: Uint8Array | undefined;
    let regex: RegExp | undefined;
    try {
      if (this.regexBox.value.trim()) {
        regex = parseRegex(this.regexBox.value.trim());
        regexSelection = regexMask(tr.pieces.slice(0, tr.count), regex);
      }
    } catch (err) {
      this.error.textContent = (err as Error).message;
    }
    // Per-layer specialisation for the chosen classes, recomputed only when the data or the classes change.
    const key = `${tr.id}|${tr.count}|${tr.segments.length}|${source}|${source === "regex" ? this.regexBox.value : ""}`;
    if (key !== this.key) {
      this.key = key;
      this.classes = this.classesFor(tr, source, regexSelection);
      this.perLayer = [];
      if (this.classes.names.length) for (let m = 0; m < tr.L; m++) this.perLayer.push(specialisation(c, m, this.classes.labels, this.classes.names.length));
    }
    const layer = shared.layer;
    const width = Math.max(200, Math.min(900, (this.section.clientWidth || 600) - 16));
    this.drawLift(tr, layer, width, shared.highlight);
    this.drawMi(tr, layer, Math.min(width, 520));
    this.renderTop(tr, c, layer, regex, regexSelection);
    const side = Math.max(130, Math.min(320, Math.floor(width / 2) - 12));
    const co = coActivation(c, layer);
    for (let e = 0; e < tr.E; e++) co[e * tr.E + e] = NaN;
    this.drawSquare(this.coactCanvas, this.images.coact, this.coactLegend, co, tr.E, side, "tokens selecting both", shared.highlight);
    if (layer + 1 < tr.L) {
      this.transCanvas.hidden = false;
      this.drawSquare(
        this.transCanvas,
        this.images.trans,
        this.transLegend,
        layerTransitions(c, layer),
        tr.E,
        side,
        `${layerName(tr, layer)} → ${layerName(tr, layer + 1)} selections`,
        shared.highlight,
      );
    } else {
      this.transCanvas.hidden = true;
      this.transLegend.replaceChildren(el("span", "note", `${layerName(tr, layer)} is the last MoE layer: there is no next layer.`));
    }
  }

  private classesFor(tr: PanelTrace, source: ClassSource, regexSelection: Uint8Array | undefined): TokenClasses {
    if (source === "segments") {
      if (!tr.segments.length) {
        this.error.textContent = "This trace has no domain segments yet: choose token classes or a regex.";
        return { labels: new Int32Array(0), names: [] };
      }
      return segmentClasses(tr);
    }
    if (source === "tokens") return { labels: tokenClassLabels(tr.pieces.slice(0, tr.count)), names: [...TOKEN_CLASSES] };
    if (!regexSelection) {
      this.error.textContent ||= "Type a regex to split the tokens into match and rest.";
      return { labels: new Int32Array(0), names: [] };
    }
    return { labels: Int32Array.from(regexSelection, (x) => (x ? 0 : 1)), names: ["match", "rest"] };
  }

  private drawLift(tr: PanelTrace, layer: number, width: number, highlight?: Uint8Array): void {
    const spec = this.perLayer[layer];
    const { fg, bg } = themeColors();
    const E = tr.E,
      n = spec?.nClasses ?? 0;
    const cellW = Math.max(1, Math.min(10, Math.floor((width - LIFT_LEFT) / E)));
    const cellH = 14;
    const g = prepareCanvas(this.liftCanvas, LIFT_LEFT + E * cellW + 2, Math.max(1, n) * cellH + 2 + AXIS_PX, bg);
    if (!spec) {
      this.liftLegend.replaceChildren();
      return;
    }
    // log2 lift; a class that never selects an expert (lift 0) sits at the bottom of the scale.
    const logLift = new Float64Array(n * E);
    for (let i = 0; i < n * E; i++) logLift[i] = spec.lift[i] > 0 ? Math.log2(spec.lift[i]) : spec.lift[i] === 0 ? -Infinity : NaN;
    const r = autoRange(logLift, n * E, { low: 0.01, high: 0.99, fallback: { min: -1, max: 1 } });
    const half = Math.max(Math.abs(r.min), Math.abs(r.max), 1e-9);
    this.liftScale = { min: -half, max: half };
    const px = this.images.lift.begin(E, n);
    for (let i = 0; i < n * E; i++) {
      const v = logLift[i] === -Infinity ? this.liftScale.min : logLift[i];
      if (!Number.isNaN(v)) px[i] = rampPacked(normalise(v, this.liftScale));
    }
    this.images.lift.drawTo(g, LIFT_LEFT, 1, E * cellW, n * cellH);
    g.fillStyle = fg;
    g.font = "10px var(--vscode-font-family, sans-serif)";
    for (let k = 0; k < n; k++) g.fillText(`${this.classes.names[k]} (${spec.classTokens[k]})`.slice(0, 16), 2, 1 + k * cellH + cellH - 3, LIFT_LEFT - 4);
    g.font = "9px var(--vscode-font-family, sans-serif)";
    labelColumns(g, LIFT_LEFT, n * cellH + AXIS_PX, cellW, E, (e) => `e${e}`);
    if (highlight) {
      g.strokeStyle = fg;
      for (let e = 0; e < E; e++) if (highlight[e]) g.strokeRect(LIFT_LEFT + e * cellW + 0.5, 0.5, Math.max(1, cellW - 1), n * cellH + 1);
    }
    this.liftLegend.replaceChildren(scaleLegend("log2 lift", this.liftScale, "blank = expert never selected in this layer"));
    const names = this.classes.names;
    this.shown.set(this.liftCanvas, {
      left: LIFT_LEFT,
      cellW,
      cellH,
      rows: n,
      cols: E,
      label: (r, c) => `${names[r]} · e${c}: lift ${formatNumber(spec.lift[r * E + c], 2)} (${spec.counts[r * E + c]} selections)`,
    });
  }

  private drawMi(tr: PanelTrace, layer: number, width: number): void {
    const { fg, bg } = themeColors();
    const height = 80;
    const g = prepareCanvas(this.miCanvas, width, height, bg);
    const L = this.perLayer.length;
    if (!L) {
      this.miCaption.textContent = "Mutual information between class and expert, per layer (bits)";
      return;
    }
    let max = 0,
      best = 0;
    for (let m = 0; m < L; m++)
      if (this.perLayer[m].miBits > max) {
        max = this.perLayer[m].miBits;
        best = m;
      }
    const barW = width / L;
    // A strip under the bars names the layers: every `step`-th, so that the names never overlap.
    const axis = 12,
      step = Math.max(1, Math.ceil(28 / barW));
    for (let m = 0; m < L; m++) {
      const h = max > 0 ? (this.perLayer[m].miBits / max) * (height - 14 - axis) : 0;
      g.fillStyle = m === layer ? fg : "rgb(33,145,140)";
      g.fillRect(m * barW + 0.5, height - axis - h, Math.max(1, barW - 1), h);
    }
    g.fillStyle = fg;
    g.font = "10px var(--vscode-font-family, sans-serif)";
    g.fillText(`${formatNumber(max, 3)} bits`, 2, 10);
    g.textAlign = "center";
    for (let m = 0; m < L; m += step) g.fillText(layerName(tr, m), Math.min(width - 12, Math.max(12, (m + 0.5) * barW)), height - 2);
    g.textAlign = "start";
    this.miCaption.textContent = `Mutual information between class and expert, per layer: highest ${formatNumber(max, 3)} bits in ${layerName(tr, best)}; ${layerName(tr, layer)} ${formatNumber(this.perLayer[layer]?.miBits, 3)} bits`;
    this.miCanvas.setAttribute("aria-label", this.miCaption.textContent);
    this.miCanvas.dataset.bits = this.perLayer.map((s) => s.miBits.toFixed(4)).join(",");
  }

  /** "Top experts for this selection": the regex match when a regex is typed, else the typed / clicked tokens. */
  private renderTop(
    tr: PanelTrace,
    c: ReturnType<typeof routingColumns>,
    layer: number,
    regex: RegExp | undefined,
    regexSelection: Uint8Array | undefined,
  ): void {
    let mask = regexSelection,
      what = regex ? `tokens matching ${String(regex)}` : "";
    if (!mask && this.tokensBox.value.trim()) {
      try {
        mask = parseIdSet(this.tokensBox.value, tr.count, "token", "t").member;
        what = `tokens ${this.tokensBox.value.trim()}`;
      } catch (err) {
        this.error.textContent = (err as Error).message;
      }
    }
    if (!mask) {
      this.topCaption.textContent = "Top experts for this selection: type a regex, or click (shift-click to extend) tokens in the heatmap";
      this.topList.replaceChildren();
      return;
    }
    const inside = mask.reduce((s, x) => s + x, 0);
    this.topCaption.textContent = `Top experts in ${layerName(tr, layer)} for ${what} (${inside} tokens)`;
    const top = topExpertsFor(c, layer, mask, TOP_N);
    this.topList.replaceChildren(
      ...top.map((x) => {
        const item = el("li", "", `e${x.expert} `);
        item.dataset.expert = String(x.expert);
        item.append(el("span", "note", `lift ${Number.isFinite(x.lift) ? formatNumber(x.lift, 2) : "∞"} · ${x.inside} inside, ${x.outside} outside`));
        return item;
      }),
    );
  }

  /** An E × E matrix on a scale from 0 to its largest count (the diagonal, each expert's own load, is left blank so it cannot flatten the pairs). */
  private drawSquare(
    canvas: HTMLCanvasElement,
    image: CellImage,
    legend: HTMLElement,
    values: Float64Array,
    E: number,
    side: number,
    what: string,
    highlight?: Uint8Array,
  ): void {
    const { fg, bg } = themeColors();
    const cell = Math.max(1, Math.floor(side / E));
    const g = prepareCanvas(canvas, MATRIX_LEFT + E * cell + 2, E * cell + 2 + AXIS_PX, bg);
    const range = { min: 0, max: autoRange(values, E * E).max };
    const px = image.begin(E, E);
    for (let i = 0; i < E * E; i++) if (!Number.isNaN(values[i])) px[i] = rampPacked(normalise(values[i], range));
    image.drawTo(g, MATRIX_LEFT, 1, E * cell, E * cell);
    g.fillStyle = fg;
    g.font = "9px var(--vscode-font-family, sans-serif)";
    const tick = Math.max(1, Math.ceil(16 / cell));
    for (let e = 0; e < E; e += tick) g.fillText(`e${e}`, 1, 1 + e * cell + 8);
    labelColumns(g, MATRIX_LEFT, E * cell + AXIS_PX, cell, E, (e) => `e${e}`);
    if (highlight) for (let e = 0; e < E; e++) if (highlight[e]) g.fillRect(MATRIX_LEFT - 4, 1 + e * cell, 3, cell);
    legend.replaceChildren(scaleLegend(what, range));
    canvas.setAttribute("aria-label", `${what}: ${E} × ${E} experts`);
    this.shown.set(canvas, {
      left: MATRIX_LEFT,
      cellW: cell,
      cellH: cell,
      rows: E,
      cols: E,
      label: (r, c) => `e${r} · e${c}: ${Number.isNaN(values[r * E + c]) ? "the diagonal (the expert's load) is left blank" : `${values[r * E + c]} ${what}`}`,
    });
  }
}
