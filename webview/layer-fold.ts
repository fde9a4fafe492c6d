// Layer folding for the heatmap: "every layer" draws each MoE layer 14 px high; "fit height"
// compresses the rows so every layer fits the window (48 layers in an 800 px window with the
// policy controls folded), down to 3 px a row. The choice is kept in the webview state; the
// fit is recomputed when the window or the page above the heatmap changes size.
import { HEADER, NLL_STRIP, type Heatmap } from "./heatmap";

export type LayerFoldMode = "full" | "fit";
export const LAYER_FOLDS: Array<{ id: LayerFoldMode; label: string }> = [
  { id: "full", label: "every layer" },
  { id: "fit", label: "fit height" },
];

/** Row height of "every layer", and the least "fit height" compresses a row to (px). */
export const FULL_ROW_PX = 14;
export const MIN_ROW_PX = 3;
/** What the heatmap's box adds below its rows: the NLL strip, the horizontal scrollbar, borders and the body's padding (px). */
const BELOW_ROWS_PX = NLL_STRIP + 14 + 2 + 8;

export class LayerFold {
  readonly select: HTMLSelectElement;
  private mode: LayerFoldMode;

  constructor(
    private readonly heatmap: Heatmap,
    /** MoE layers of the trace shown (0 before any). */
    private readonly layers: () => number,
    initial: LayerFoldMode | undefined,
    private readonly onChange: (mode: LayerFoldMode) => void,
  ) {
    this.mode = initial === "fit" ? "fit" : "full";
    this.select = document.createElement("select");
    this.select.id = "layer-fold";
    this.select.setAttribute("aria-label", "Heatmap rows");
    for (const f of LAYER_FOLDS) this.select.append(new Option(f.label, f.id));
    this.select.value = this.mode;
    this.select.addEventListener("change", () => {
      this.mode = this.select.value === "fit" ? "fit" : "full";
      this.apply();
      this.onChange(this.mode);
    });
    // The heatmap's top moves when the controls fold or the summary wraps; its own height does not move it.
    new ResizeObserver(() => this.apply()).observe(document.body);
    window.addEventListener("resize", () => this.apply());
  }

  /** The row height for this mode, window and trace; "fit" uses the room below the heatmap's top, or the whole window when that is too little. */
  rowHeight(): number {
    const L = this.layers();
    if (this.mode === "full" || L === 0) return FULL_ROW_PX;
    const top = this.heatmap.scroller.getBoundingClientRect().top + window.scrollY;
    const fit = (room: number) => Math.floor((room - HEADER - BELOW_ROWS_PX) / L);
    let h = fit(window.innerHeight - top);
    if (h < MIN_ROW_PX) h = fit(window.innerHeight);
    return Math.max(MIN_ROW_PX, Math.min(FULL_ROW_PX, h));
  }

  /** Sets the heatmap's row height for the current mode (call when a trace of another depth starts). */
  apply(): void {
    const h = this.rowHeight();
    if (h === this.heatmap.cellH) return;
    this.heatmap.cellH = h;
    this.heatmap.requestDraw();
  }
}
