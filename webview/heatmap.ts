// The routing heatmap: tokens along x, MoE layers along y, on one <canvas> that draws only
// the visible columns (virtualised), so 20k tokens × 48 layers stays cheap. Redraws are
// coalesced into one requestAnimationFrame. Keyboard: arrows move a cell cursor, Enter
// opens its details, +/- zoom; the live region announces the cell for screen readers.
import { expertPacked, expertRgb, rampPacked, rampRgb, type Rgb } from "./colors";
import { autoRange, normalise, type ScaleRange } from "./scale";
import type { PanelTrace } from "./store";

export type ColorMode = "top1" | "weight" | "entropy" | "active" | "shift";
export const COLOR_MODES: Array<{ id: ColorMode; label: string }> = [
  { id: "top1", label: "Top-1 expert" },
  { id: "weight", label: "Weight of chosen expert" },
  { id: "entropy", label: "Router entropy" },
  { id: "active", label: "Active experts (after AMG)" },
  { id: "shift", label: "Routing shift from previous token" },
];

export const GUTTER = 40; // layer labels
export const SEGMENT_BAND = 12; // domain labels
export const HEADER = 28; // domain labels above the token text strip
export const NLL_STRIP = 12;

export interface HeatmapEvents {
  onSelect(t: number, m: number): void;
  onView?(firstToken: number, lastToken: number): void;
  /** The user zoomed this heatmap (wheel or keys); linked heatmaps follow. */
  onZoom?(cellW: number): void;
  /** The auto-ranged scales changed (new data, another expert): the legend shows the new numbers. */
  onScale?(): void;
}

export class Heatmap {
  readonly scroller: HTMLDivElement;
  readonly canvas: HTMLCanvasElement;
  private readonly spacer: HTMLDivElement;
  private readonly live: HTMLDivElement;
  private trace?: PanelTrace;
  private frame = 0;
  mode: ColorMode = "top1";
  expert = 0;
  highlight = -1;
  /** Experts to outline wherever any of a cell's k selections is one of them (the expert search box); 1 = in the set. */
  highlightSet?: Uint8Array;
  /**
   * Value ranges of the auto-ranged modes, fitted to the trace shown (scale.ts): the chosen
   * expert's non-zero weights (1st–99th percentile), router entropy (observed min–max), and
   * the NLL strip (0 to the 99th percentile). Refitted when the data or the expert changes.
   */
  weightScale: ScaleRange = { min: 0, max: 1 };
  entropyScale: ScaleRange = { min: 0, max: 1 };
  nllScale: ScaleRange = { min: 0, max: 8 };
  private scaleKey = "";
  private weightScratch = new Float32Array(0);
  cellW = 8;
  cellH = 14;
  cursor = { t: 0, m: 0 };
  /** The token the editor's cursor is on (highlightToken): its column is outlined across every layer; -1 = none. */
  markedToken = -1;
  /** Frames drawn (for the benchmark and tests). */
  frames = 0;
  /** When set, paints every cell with this packed colour instead of the colour mode (compare's difference map). */
  colorOverride?: (t: number, m: number) => number;
  private readonly resize: ResizeObserver;

  constructor(
    parent: HTMLElement,
    private readonly label: string,
    private readonly events: HeatmapEvents,
  ) {
    this.scroller = document.createElement("div");
    this.scroller.className = "heatmap-scroller";
    this.spacer = document.createElement("div");
    this.spacer.className = "heatmap-spacer";
    this.canvas = document.createElement("canvas");
    this.canvas.className = "heatmap";
    this.canvas.tabIndex = 0;
    this.canvas.setAttribute("role", "img");
    this.canvas.setAttribute(
      "aria-label",
      `${label}: routing heatmap, tokens across, MoE layers down. Arrow keys move, Enter shows details, plus and minus zoom.`,
    );
    this.live = document.createElement("div");
    this.live.className = "sr-only";
    this.live.setAttribute("aria-live", "polite");
    this.scroller.append(this.canvas, this.spacer);
    parent.append(this.scroller, this.live);
    this.scroller.addEventListener("scroll", () => this.requestDraw(), { passive: true });
    this.scroller.addEventListener("wheel", (e) => this.onWheel(e), { passive: false });
    this.canvas.addEventListener("click", (e) => this.onClick(e));
    this.canvas.addEventListener("keydown", (e) => this.onKey(e));
    this.resize = new ResizeObserver(() => this.requestDraw());
    this.resize.observe(this.scroller);
  }

  /** Removes the heatmap from the page and stops observing it. */
  dispose(): void {
    this.resize.disconnect();
    if (this.frame) cancelAnimationFrame(this.frame);
    this.scroller.remove();
    this.live.remove();
  }

  /** The trace shown (undefined before any). */
  get shown(): PanelTrace | undefined {
    return this.trace;
  }

  setTrace(trace: PanelTrace | undefined): void {
    if (trace !== this.trace) this.markedToken = -1;
    this.trace = trace;
    this.requestDraw();
  }

  requestDraw(): void {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
    });
  }

  setZoom(cellW: number, anchorX?: number): void {
    const old = this.cellW;
    this.cellW = Math.max(1, Math.min(48, cellW));
    if (anchorX !== undefined) {
      const tokenAtAnchor = (this.scroller.scrollLeft + anchorX - GUTTER) / old;
      this.updateSpacer();
      this.scroller.scrollLeft = Math.max(0, tokenAtAnchor * this.cellW - anchorX + GUTTER);
    }
    this.requestDraw();
  }

  /** Colour of cell (t, m) in the current mode. */
  cellRgb(t: number, m: number): Rgb {
    const tr = this.trace!;
    switch (this.mode) {
      case "top1":
        return expertRgb(tr.top1(t, m));
      case "weight":
        return rampRgb(this.weightValue(t, m));
      case "entropy":
        return rampRgb(normalise(tr.entropy[t * tr.L + m], this.entropyScale));
      case "active":
        return rampRgb(tr.active[t * tr.L + m] / Math.max(1, tr.K));
      case "shift":
        return rampRgb(tr.shift(t, m));
    }
  }

  /** cellRgb, packed for ImageData (the draw loop's hot path: no allocation per cell). */
  cellPacked(t: number, m: number): number {
    if (this.colorOverride) return this.colorOverride(t, m);
    const tr = this.trace!;
    switch (this.mode) {
      case "top1":
        return expertPacked(tr.top1(t, m));
      case "weight":
        return rampPacked(this.weightValue(t, m));
      case "entropy":
        return rampPacked(normalise(tr.entropy[t * tr.L + m], this.entropyScale));
      case "active":
        return rampPacked(tr.active[t * tr.L + m] / Math.max(1, tr.K));
      case "shift":
        return rampPacked(tr.shift(t, m));
    }
  }

  /** The chosen expert's weight at (t, m) on the auto-ranged scale; NaN (grey) where it is not selected or dropped. */
  private weightValue(t: number, m: number): number {
    const w = this.trace!.weightOf(t, m, this.expert);
    return w > 0 ? normalise(w, this.weightScale) : NaN;
  }

  /** Refits the auto-ranged scales when the trace grew or the chosen expert changed; tells onScale. */
  private fitScales(tr: PanelTrace): void {
    const key = `${tr.id}|${tr.count}|${tr.segments.length}|${this.mode === "weight" ? this.expert : -1}|${this.mode}`;
    if (key === this.scaleKey) return;
    this.scaleKey = key;
    const { L, K } = tr;
    if (this.mode === "weight") {
      const n = tr.count * L * K;
      if (this.weightScratch.length < tr.count * L) this.weightScratch = new Float32Array(Math.max(tr.count * L, 2 * this.weightScratch.length));
      let kept = 0;
      for (let i = 0; i < n; i++) if (tr.experts[i] === this.expert && tr.weights[i] > 0) this.weightScratch[kept++] = tr.weights[i];
      this.weightScale = autoRange(this.weightScratch, kept, { low: 0.01, high: 0.99 });
    }
    if (this.mode === "entropy") this.entropyScale = autoRange(tr.entropy, tr.count * L);
    this.nllScale = autoRange(tr.nll, tr.count, { high: 0.99, fallback: { min: 0, max: 8 } });
    this.nllScale.min = Math.min(0, this.nllScale.min);
    this.events.onScale?.();
  }

  /** Canvas-pixel centre of cell (t, m) for the current scroll (tests and a11y). */
  cellCenter(t: number, m: number): { x: number; y: number } {
    return { x: GUTTER + (t + 0.5) * this.cellW - this.scroller.scrollLeft, y: HEADER + (m + 0.5) * this.cellH };
  }

  private updateSpacer(): void {
    const n = this.trace?.count ?? 0;
    this.spacer.style.width = `${GUTTER + n * this.cellW}px`;
  }

  private draw(): void {
    const tr = this.trace;
    this.updateSpacer();
    const width = Math.max(50, this.scroller.clientWidth);
    const L = tr?.L ?? 0;
    const height = HEADER + L * this.cellH + NLL_STRIP;
    const dpr = window.devicePixelRatio || 1;
    if (this.canvas.width !== Math.round(width * dpr) || this.canvas.height !== Math.round(height * dpr)) {
      this.canvas.width = Math.round(width * dpr);
      this.canvas.height = Math.round(height * dpr);
      this.canvas.style.width = `${width}px`;
      this.canvas.style.height = `${height}px`;
      this.scroller.style.height = `${height + 14}px`;
    }
    const g = this.canvas.getContext("2d")!;
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    const style = getComputedStyle(document.body);
    const fg = style.getPropertyValue("--vscode-foreground").trim() || "#888";
    const bg = style.getPropertyValue("--vscode-editor-background").trim() || "#1e1e1e";
    g.fillStyle = bg;
    g.fillRect(0, 0, width, height);
    this.frames++;
    if (!tr || tr.count === 0) return;
    if (!this.colorOverride) this.fitScales(tr);

    const scroll = this.scroller.scrollLeft;
    const first = Math.max(0, Math.floor(scroll / this.cellW));
    const last = Math.min(tr.count - 1, Math.ceil((scroll + width - GUTTER) / this.cellW));
    const cw = this.cellW,
      ch = this.cellH;
    const gap = cw >= 4 ? 1 : 0;
    // Cells and the NLL strip go straight into an ImageData buffer (device pixels).
    // Cells and the NLL strip go straight into a reused ImageData (device pixels): one
    // scanline per layer is filled cell by cell, then copied down the layer's rows.
    if (!this.image || this.image.width !== this.canvas.width || this.image.height !== this.canvas.height) {
      this.image = g.createImageData(this.canvas.width, this.canvas.height);
    }
    const img = this.image;
    const px = new Uint32Array(img.data.buffer);
    const bgPacked = this.packedColor(bg);
    px.fill(bgPacked);
    const W = this.canvas.width;
    const left = Math.round(GUTTER * dpr);
    const paintRow = (y0: number, y1: number, color: (t: number) => number) => {
      const r0 = Math.round(y0 * dpr),
        r1 = Math.round(y1 * dpr);
      if (r1 <= r0) return;
      const base = r0 * W;
      for (let t = first; t <= last; t++) {
        const x = GUTTER + t * cw - scroll;
        const a = Math.max(left, Math.round(x * dpr)),
          b = Math.min(W, Math.round((x + cw - gap) * dpr));
        if (b > a) px.fill(color(t), base + a, base + b);
      }
      for (let r = r0 + 1; r < r1; r++) px.copyWithin(r * W + left, base + left, base + W);
    };
    for (let m = 0; m < L; m++) paintRow(HEADER + m * ch, HEADER + (m + 1) * ch - 1, (t) => this.cellPacked(t, m));
    // NLL strip: darker = more surprising (auto-ranged: 0 to the trace's 99th percentile).
    paintRow(HEADER + L * ch + 2, HEADER + L * ch + NLL_STRIP - 1, (t) =>
      Number.isFinite(tr.nll[t]) ? rampPacked(1 - normalise(tr.nll[t], this.nllScale)) : bgPacked,
    );
    g.putImageData(img, 0, 0);
    // Expert highlight: outline every cell where the chosen expert is selected.
    // The expert search's set: the same outline wherever any of the k selections is in it.
    const set = this.highlightSet;
    if (this.highlight >= 0 || set) {
      g.strokeStyle = fg;
      g.lineWidth = 1.5;
      const K = tr.K;
      for (let t = first; t <= last; t++)
        for (let m = 0; m < L; m++) {
          let hit = this.highlight >= 0 && tr.weightOf(t, m, this.highlight) > 0;
          if (!hit && set) for (let j = 0, at = (t * L + m) * K; j < K && !hit; j++) hit = set[tr.experts[at + j]] === 1;
          if (hit) g.strokeRect(GUTTER + t * cw - scroll + 0.75, HEADER + m * ch + 0.75, Math.max(1, cw - gap - 1.5), ch - 2.5);
        }
    }
    // Domain segments: a boundary line and the label.
    g.font = "10px var(--vscode-font-family, sans-serif)";
    for (const s of tr.segments) {
      const x = GUTTER + s.start * cw - scroll;
      if (x < GUTTER - 1 || x > width) continue;
      g.fillStyle = fg;
      g.fillRect(x - 1, 0, 2, HEADER + L * ch);
      g.fillText(s.domain, x + 3, 10);
    }
    // Token text, when the columns are wide enough to read it (zoom in for it).
    if (cw >= 12) {
      g.fillStyle = fg;
      for (let t = first; t <= last; t++) {
        const p = (tr.pieces[t] ?? "").replace(/\n/g, "⏎").replace(/ /g, "·");
        g.fillText(p, GUTTER + t * cw - scroll + 1, SEGMENT_BAND + 11, cw - 2);
      }
    }
    // Gutter with layer labels, drawn last so cells scroll under it.
    g.fillStyle = bg;
    g.fillRect(0, 0, GUTTER, height);
    g.fillStyle = fg;
    for (let m = 0; m < L; m++) if (ch >= 10 || m % 4 === 0) g.fillText(`L${tr.header.model.moe_layers[m]}`, 2, HEADER + m * ch + ch - 3);
    g.fillText("NLL", 2, HEADER + L * ch + NLL_STRIP - 2);
    // The editor cursor's token: its column outlined (over the gutter's edge it is off screen).
    const mx = GUTTER + this.markedToken * cw - scroll;
    if (this.markedToken >= 0 && mx >= GUTTER - 1 && mx <= width) {
      g.strokeStyle = fg;
      g.lineWidth = 2;
      g.strokeRect(mx, HEADER, Math.max(2, cw - gap), L * ch);
    }
    // Keyboard cursor.
    if (document.activeElement === this.canvas) {
      const c = this.cellCenter(this.cursor.t, this.cursor.m);
      g.strokeStyle = fg;
      g.lineWidth = 2;
      g.strokeRect(c.x - cw / 2, c.y - ch / 2, cw, ch);
    }
    this.events.onView?.(first, last);
  }

  private image?: ImageData;
  private colorCache = new Map<string, number>();
  /** A CSS colour as packed RGBA, resolved once per string through a 1×1 canvas. */
  private packedColor(color: string): number {
    let v = this.colorCache.get(color);
    if (v === undefined) {
      const c = document.createElement("canvas");
      c.width = c.height = 1;
      const g = c.getContext("2d")!;
      g.fillStyle = color;
      g.fillRect(0, 0, 1, 1);
      v = new Uint32Array(g.getImageData(0, 0, 1, 1).data.buffer)[0];
      this.colorCache.set(color, v);
    }
    return v;
  }

  private hit(e: MouseEvent): { t: number; m: number } | undefined {
    const tr = this.trace;
    if (!tr) return undefined;
    const t = Math.floor((e.offsetX - GUTTER + this.scroller.scrollLeft) / this.cellW);
    const m = Math.floor((e.offsetY - HEADER) / this.cellH);
    if (e.offsetX < GUTTER || t < 0 || t >= tr.count || m < 0 || m >= tr.L) return undefined;
    return { t, m };
  }

  /**
   * Marks a token (the editor cursor's) and moves the keyboard cursor to it; scrolls to centre
   * it only when it is out of view, so following the cursor never jumps while it stays in view.
   */
  markToken(t: number): void {
    if (!this.trace || t < 0 || t >= this.trace.count) return;
    this.markedToken = t;
    this.cursor = { t, m: this.cursor.m };
    const x = t * this.cellW,
      left = this.scroller.scrollLeft,
      visible = this.scroller.clientWidth - GUTTER;
    if (x < left || x + this.cellW > left + visible) this.scroller.scrollLeft = Math.max(0, x - visible / 2);
    this.requestDraw();
  }

  private onClick(e: MouseEvent): void {
    const h = this.hit(e);
    if (!h) return;
    this.cursor = h;
    this.canvas.focus();
    this.announce();
    this.events.onSelect(h.t, h.m);
    this.requestDraw();
  }

  private onWheel(e: WheelEvent): void {
    if (!e.ctrlKey) return;
    e.preventDefault();
    this.setZoom(this.cellW * (e.deltaY < 0 ? 1.25 : 0.8), e.offsetX);
    this.events.onZoom?.(this.cellW);
  }

  private onKey(e: KeyboardEvent): void {
    const tr = this.trace;
    if (!tr) return;
    const c = this.cursor;
    switch (e.key) {
      case "ArrowLeft":
        c.t = Math.max(0, c.t - 1);
        break;
      case "ArrowRight":
        c.t = Math.min(tr.count - 1, c.t + 1);
        break;
      case "ArrowUp":
        c.m = Math.max(0, c.m - 1);
        break;
      case "ArrowDown":
        c.m = Math.min(tr.L - 1, c.m + 1);
        break;
      case "Home":
        c.t = 0;
        break;
      case "End":
        c.t = tr.count - 1;
        break;
      case "Enter":
      case " ":
        this.events.onSelect(c.t, c.m);
        break;
      case "+":
      case "=":
        this.setZoom(this.cellW * 1.25);
        this.events.onZoom?.(this.cellW);
        break;
      case "-":
        this.setZoom(this.cellW * 0.8);
        this.events.onZoom?.(this.cellW);
        break;
      default:
        return;
    }
    e.preventDefault();
    const x = GUTTER + c.t * this.cellW;
    if (x - GUTTER < this.scroller.scrollLeft) this.scroller.scrollLeft = x - GUTTER;
    else if (x + this.cellW > this.scroller.scrollLeft + this.scroller.clientWidth) this.scroller.scrollLeft = x + this.cellW - this.scroller.clientWidth;
    this.announce();
    this.requestDraw();
  }

  private announce(): void {
    const tr = this.trace!;
    const { t, m } = this.cursor;
    this.live.textContent = `token ${t} ${JSON.stringify(tr.pieces[t] ?? "")}, layer ${tr.header.model.moe_layers[m]}, top expert ${tr.top1(t, m)}, ${tr.active[t * tr.L + m]} active`;
  }
}

/**
 * Keeps heatmaps of the same tokens aligned: scrolling one scrolls the others to the same
 * token column. Programmatic scrolls fire their own scroll events one frame later; those
 * are ignored until the frame after, so heatmaps of different widths cannot ping-pong.
 */
export function linkScrolling(maps: Heatmap[]): void {
  let leader: Heatmap | undefined;
  for (const hm of maps) {
    hm.scroller.addEventListener(
      "scroll",
      () => {
        if (leader && leader !== hm) return;
        leader = hm;
        for (const other of maps) if (other !== hm) other.scroller.scrollLeft = hm.scroller.scrollLeft;
        requestAnimationFrame(() =>
          requestAnimationFrame(() => {
            leader = undefined;
          }),
        );
      },
      { passive: true },
    );
  }
}
