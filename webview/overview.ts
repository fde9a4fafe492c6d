// The fit-to-width overview above the heatmap: the whole trace in the panel's width (each pixel
// column shows the token at its centre, each MoE layer a thin row, in the heatmap's colours),
// with a frame over the tokens the heatmap shows. The heatmap is the detail lens: clicking or
// dragging on the overview moves it there. At 5,000 tokens the heatmap's narrowest zoom
// (1 px a token) is five panel widths; the overview is where a user sees the whole text.
import type { Heatmap } from "./heatmap";
import { GUTTER } from "./heatmap";

/** Height of one layer's row in the overview (px); the whole strip stays under OVERVIEW_MAX_PX. */
const ROW_PX = 2;
const OVERVIEW_MAX_PX = 96;

export class TraceOverview {
  readonly root: HTMLElement;
  readonly canvas: HTMLCanvasElement;
  /** The frame over the tokens the heatmap shows (CSS-positioned, so scrolling redraws no pixels). */
  readonly lens: HTMLElement;
  private cellsKey = "";
  private frame = 0;

  constructor(
    parent: HTMLElement,
    private readonly heatmap: Heatmap,
  ) {
    this.root = document.createElement("div");
    this.root.className = "overview";
    this.root.hidden = true;
    this.canvas = document.createElement("canvas");
    this.canvas.className = "overview-canvas";
    this.canvas.setAttribute("role", "img");
    this.canvas.setAttribute("aria-label", "Whole-trace overview: click or drag to move the heatmap there");
    this.lens = document.createElement("div");
    this.lens.className = "overview-lens";
    this.root.append(this.canvas, this.lens);
    parent.prepend(this.root); // above the heatmap
    const move = (e: PointerEvent) => this.moveLensTo(e.offsetX);
    this.canvas.addEventListener("pointerdown", (e) => {
      this.canvas.setPointerCapture(e.pointerId);
      move(e);
      this.canvas.addEventListener("pointermove", move);
    });
    this.canvas.addEventListener("pointerup", (e) => {
      this.canvas.releasePointerCapture(e.pointerId);
      this.canvas.removeEventListener("pointermove", move);
    });
    heatmap.scroller.addEventListener("scroll", () => this.placeLens(), { passive: true });
    new ResizeObserver(() => this.requestDraw()).observe(this.root);
  }

  /** Redraws on the next frame; `colours` says the heatmap's colours changed (mode, scale, theme). */
  requestDraw(colours = false): void {
    if (colours) this.cellsKey = "";
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
    });
  }

  /** The token at the centre of overview column x (CSS px). */
  tokenAt(x: number): number {
    const tr = this.heatmap.shown;
    if (!tr || tr.count === 0) return 0;
    const w = this.canvas.clientWidth || 1;
    return Math.max(0, Math.min(tr.count - 1, Math.floor((x / w) * tr.count)));
  }

  /** Scrolls the heatmap so that the token under overview column x is in the middle of its view. */
  moveLensTo(x: number): void {
    const hm = this.heatmap;
    const visible = Math.max(1, hm.scroller.clientWidth - GUTTER);
    hm.scroller.scrollLeft = Math.max(0, (this.tokenAt(x) + 0.5) * hm.cellW - visible / 2);
    this.placeLens();
  }

  private draw(): void {
    const tr = this.heatmap.shown;
    this.root.hidden = !tr || tr.count === 0;
    if (!tr || tr.count === 0) return;
    const width = Math.max(1, Math.floor(this.root.clientWidth));
    const rowPx = Math.max(1, Math.min(ROW_PX, Math.floor(OVERVIEW_MAX_PX / tr.L)));
    const height = tr.L * rowPx;
    const key = `${tr.id}:${tr.count}:${width}:${height}:${this.heatmap.mode}`;
    if (key !== this.cellsKey) {
      this.cellsKey = key;
      this.canvas.width = width;
      this.canvas.height = height;
      this.canvas.style.width = `${width}px`;
      this.canvas.style.height = `${height}px`;
      const g = this.canvas.getContext("2d")!;
      const img = g.createImageData(width, height);
      const px = new Uint32Array(img.data.buffer);
      for (let x = 0; x < width; x++) {
        const t = Math.min(tr.count - 1, Math.floor(((x + 0.5) / width) * tr.count));
        for (let m = 0; m < tr.L; m++) {
          const packed = this.heatmap.cellPacked(t, m);
          for (let y = m * rowPx; y < (m + 1) * rowPx; y++) px[y * width + x] = packed;
        }
      }
      g.putImageData(img, 0, 0);
    }
    this.placeLens();
  }

  /** Places the frame over the tokens the heatmap's view shows. */
  placeLens(): void {
    const tr = this.heatmap.shown;
    if (!tr || tr.count === 0) return;
    const hm = this.heatmap;
    const w = this.canvas.clientWidth || 1;
    const first = hm.scroller.scrollLeft / hm.cellW;
    const shown = Math.max(1, hm.scroller.clientWidth - GUTTER) / hm.cellW;
    const left = (first / tr.count) * w;
    const width = Math.max(2, (Math.min(shown, tr.count) / tr.count) * w);
    this.lens.style.left = `${Math.min(left, w - width)}px`;
    this.lens.style.width = `${width}px`;
    this.lens.style.height = `${this.canvas.clientHeight}px`;
  }
}
