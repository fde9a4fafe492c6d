// The per-layer expert views of the panel (issue 13): the layer view (tokens × experts of one
// layer), the load map (layers × experts, with each layer's balance) and the specialisation
// view, plus the expert search box whose set is highlighted in every view and in the heatmap.
// This holds what they share (the trace, the chosen layer, the highlighted set), keeps the
// layer view's columns on the heatmap's (scroll and zoom), and redraws only the open views,
// at most once per frame and every 0.3 s while a trace streams.
import { el } from "./dom";
import { parseIdSet } from "./expert-filter";
import type { SharedViewState } from "./expert-view-common";
import type { Heatmap } from "./heatmap";
import { LayerView } from "./layer-view";
import { LoadMap } from "./load-map";
import { SpecialisationView } from "./specialisation-view";
import type { PanelTrace } from "./store";

const STREAM_REDRAW_MS = 300;

/** What the views keep across hide/show (the panel's setState): choices, not data. */
export interface ExpertViewsState {
  layer: number;
  search: string;
  open: { layerView: boolean; loadMap: boolean; specialisation: boolean };
  layerOrder: string;
  loadOrder: string;
  classes: string;
  regex: string;
}

export class ExpertViews {
  readonly root: HTMLElement;
  /** The expert search: ids and ranges ("3, 17, 40-47"); goes in the panel's toolbar. */
  readonly search: HTMLElement;
  readonly searchBox: HTMLInputElement;
  readonly layerView: LayerView;
  readonly loadMap: LoadMap;
  readonly specialisation: SpecialisationView;
  readonly shared: SharedViewState = { layer: 0 };
  private readonly searchNote: HTMLElement;
  private trace?: PanelTrace;
  /** Whether the heatmap click being handled had Shift held (the heatmap reports only the cell). */
  private shiftClick = false;
  private frame = 0;
  private timer = 0;
  /** Milliseconds each view took on its last draw (the benchmark and tests print them). */
  readonly timings: Record<string, number> = {};

  constructor(
    parent: HTMLElement,
    private readonly heatmap: Heatmap,
    saved?: Partial<ExpertViewsState>,
    private readonly save?: (s: ExpertViewsState) => void,
    /** The chosen layer changed (the panel's by-domain chart follows it). */
    private readonly layerChanged?: (m: number) => void,
  ) {
    this.root = el("section", "expert-views");
    this.root.id = "expert-views";
    this.root.setAttribute("aria-label", "Per-layer expert views");
    this.root.hidden = true;
    parent.append(this.root);
    const onLayer = (m: number) => this.selectLayer(m);
    const redraw = () => this.requestDraw();
    this.layerView = new LayerView(this.root, onLayer, redraw);
    this.loadMap = new LoadMap(this.root, onLayer, redraw);
    this.specialisation = new SpecialisationView(this.root, onLayer, redraw);
    for (const s of [this.layerView.section, this.loadMap.section, this.specialisation.section]) s.addEventListener("toggle", redraw);

    this.searchBox = el("input");
    this.searchBox.id = "expert-search";
    this.searchBox.type = "text";
    this.searchBox.placeholder = "e.g. 3, 17, 40-47";
    this.searchBox.setAttribute("aria-label", "Highlight experts: ids and ranges, marked in every view");
    this.searchNote = el("span", "note");
    this.searchNote.id = "expert-search-note";
    this.search = el("label", "inline expert-search", "Find experts ");
    this.search.append(this.searchBox, this.searchNote);
    this.searchBox.addEventListener("change", () => this.setHighlight(this.searchBox.value));
    if (saved) this.restore(saved);
    // Every choice is saved when made (the panel's state survives hide/show).
    for (const c of [this.searchBox, this.layerView.order, this.loadMap.order, this.specialisation.classSource, this.specialisation.regexBox])
      c.addEventListener("change", () => this.persist());
    for (const s of [this.layerView.section, this.loadMap.section, this.specialisation.section]) s.addEventListener("toggle", () => this.persist());

    // The layer view scrolls with the heatmap, both ways; a programmatic scroll's own event is ignored.
    let leader: HTMLElement | undefined;
    const follow = (from: HTMLElement, to: HTMLElement) =>
      from.addEventListener(
        "scroll",
        () => {
          if (leader && leader !== from) return;
          leader = from;
          to.scrollLeft = from.scrollLeft;
          requestAnimationFrame(() => requestAnimationFrame(() => (leader = undefined)));
          if (from === heatmap.scroller) this.requestDraw();
        },
        { passive: true },
      );
    heatmap.canvas.addEventListener("pointerdown", (e) => (this.shiftClick = e.shiftKey));
    follow(heatmap.scroller, this.layerView.scroller);
    follow(this.layerView.scroller, heatmap.scroller);
    this.layerView.scroller.addEventListener("scroll", redraw, { passive: true });
    new ResizeObserver(redraw).observe(this.root);
  }

  private restore(s: Partial<ExpertViewsState>): void {
    if (typeof s.layer === "number") this.shared.layer = s.layer;
    if (typeof s.search === "string") this.searchBox.value = s.search;
    if (s.open) {
      this.layerView.section.open = !!s.open.layerView;
      this.loadMap.section.open = !!s.open.loadMap;
      this.specialisation.section.open = !!s.open.specialisation;
    }
    const pick = (select: HTMLSelectElement, v: unknown) => {
      if (typeof v === "string" && Array.from(select.options).some((o) => o.value === v)) select.value = v;
    };
    pick(this.layerView.order, s.layerOrder);
    pick(this.loadMap.order, s.loadOrder);
    pick(this.specialisation.classSource, s.classes);
    if (typeof s.regex === "string") this.specialisation.regexBox.value = s.regex;
  }

  private persist(): void {
    this.save?.({
      layer: this.shared.layer,
      search: this.searchBox.value,
      open: { layerView: this.layerView.section.open, loadMap: this.loadMap.section.open, specialisation: this.specialisation.section.open },
      layerOrder: this.layerView.order.value,
      loadOrder: this.loadMap.order.value,
      classes: this.specialisation.classSource.value,
      regex: this.specialisation.regexBox.value,
    });
  }

  setTrace(tr: PanelTrace): void {
    if (tr !== this.trace) this.specialisation.clearTokenSelection();
    this.trace = tr;
    this.root.hidden = false;
    this.shared.layer = Math.min(this.shared.layer, Math.max(0, tr.L - 1));
    if (this.searchBox.value.trim()) this.setHighlight(this.searchBox.value);
    this.requestDraw();
  }

  /**
   * New batches or segments arrived: redraw the open views, at most every 0.3 s, and never
   * more than a fifth of the time (a 200 ms specialisation redraw waits 1 s), so streaming
   * keeps the CPU for the batches.
   */
  dataChanged(): void {
    if (this.timer) return;
    const lastDraw = Object.values(this.timings).reduce((a, b) => a + b, 0);
    this.timer = window.setTimeout(
      () => {
        this.timer = 0;
        this.requestDraw();
      },
      Math.max(STREAM_REDRAW_MS, 5 * lastDraw),
    );
  }

  /** The heatmap drew (zoom, scroll, data): the layer view follows its columns. */
  heatmapDrawn(): void {
    const hm = this.heatmap;
    if (this.layerView.section.open && (this.layerView.scroller.scrollLeft !== hm.scroller.scrollLeft || this.layerView.cellW !== hm.cellW)) this.requestDraw();
  }

  selectLayer(m: number): void {
    if (!this.trace) return;
    const before = this.shared.layer;
    this.shared.layer = Math.max(0, Math.min(this.trace.L - 1, m));
    this.persist();
    this.requestDraw();
    if (this.shared.layer !== before) this.layerChanged?.(this.shared.layer);
  }

  /** A heatmap cell was clicked (or chosen with Enter): its layer becomes the chosen layer, its token the selection (shift-click extends). */
  selectCell(t: number, m: number): void {
    this.selectLayer(m);
    this.specialisation.selectToken(t, this.shiftClick);
    this.shiftClick = false;
  }

  /** Parses the search text; the set (or none, when empty) goes to every view and the heatmap; a bad term is shown, the text kept. */
  setHighlight(text: string): void {
    this.searchNote.textContent = "";
    this.searchNote.classList.remove("control-error");
    let set: Uint8Array | undefined;
    if (text.trim() && this.trace) {
      try {
        const parsed = parseIdSet(text, this.trace.E);
        set = parsed.member;
        this.searchNote.textContent = ` ${parsed.count} of ${this.trace.E} experts marked`;
      } catch (err) {
        this.searchNote.textContent = ` ${(err as Error).message}`;
        this.searchNote.classList.add("control-error");
      }
    }
    this.shared.highlight = set;
    this.heatmap.highlightSet = set;
    this.heatmap.requestDraw();
    this.requestDraw();
  }

  requestDraw(): void {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
    });
  }

  private draw(): void {
    const tr = this.trace;
    if (!tr || tr.count === 0 || this.root.hidden) return;
    const timed = (name: string, f: () => void) => {
      const t0 = performance.now();
      f();
      this.timings[name] = performance.now() - t0;
    };
    if (this.layerView.section.open) timed("layerView", () => this.layerView.render(tr, this.shared, this.heatmap.cellW, this.heatmap.scroller.scrollLeft));
    if (this.loadMap.section.open) timed("loadMap", () => this.loadMap.render(tr, this.shared));
    if (this.specialisation.section.open) timed("specialisation", () => this.specialisation.render(tr, this.shared));
  }
}
