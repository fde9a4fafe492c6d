// What the per-layer expert views (layer view, load map, specialisation) share: the trace's
// selection columns as shared/expert-stats.ts reads them, a collapsible section that computes
// nothing while closed, a layer picker, and the state every view follows (chosen layer,
// highlighted experts).
import type { RoutingColumns } from "../shared/expert-stats";
import { el } from "./dom";
import type { PanelTrace } from "./store";

/** The state the views share: the chosen layer (index among MoE layers) and the expert search's set (1 = highlighted), if any. */
export interface SharedViewState {
  layer: number;
  highlight?: Uint8Array;
}

/** The trace's columns trimmed to its tokens (the store's arrays grow geometrically, so they are longer). */
export function routingColumns(tr: PanelTrace): RoutingColumns {
  const n = tr.count * tr.L * tr.K;
  return { count: tr.count, L: tr.L, K: tr.K, E: tr.E, experts: tr.experts.subarray(0, n), weights: tr.weights.subarray(0, n) };
}

/** "L17": a MoE layer index as the model numbers its blocks. */
export function layerName(tr: PanelTrace, m: number): string {
  return `L${tr.header.model.moe_layers[m] ?? m}`;
}

/** A <details> section of the panel with a body; views draw only while it is open. */
export function viewSection(parent: HTMLElement, id: string, title: string, open: boolean): { section: HTMLDetailsElement; body: HTMLElement } {
  const section = el("details", "expert-view");
  section.id = id;
  section.open = open;
  section.append(el("summary", "", title));
  const body = el("div", "expert-view-body");
  section.append(body);
  parent.append(section);
  return { section, body };
}

/** A labelled <select> of the trace's MoE layers; fill it with fillLayerPicker. */
export function layerPicker(id: string, label: string): { field: HTMLLabelElement; select: HTMLSelectElement } {
  const select = el("select");
  select.id = id;
  const field = el("label", "inline", `${label} `);
  field.append(select);
  return { field, select };
}

/** One option per MoE layer (value = index), keeping the chosen one. */
export function fillLayerPicker(select: HTMLSelectElement, tr: PanelTrace, layer: number, from = 0, to = tr.L): void {
  if (select.options.length !== to - from || select.dataset.trace !== tr.id) {
    select.replaceChildren();
    for (let m = from; m < to; m++) select.append(new Option(layerName(tr, m), String(m)));
    select.dataset.trace = tr.id;
  }
  select.value = String(Math.max(from, Math.min(to - 1, layer)));
}

/** A small table row. */
export function tableRow(cells: Array<string | HTMLElement>, head = false): HTMLTableRowElement {
  const row = el("tr");
  for (const c of cells) {
    const cell = el(head ? "th" : "td");
    cell.append(c);
    row.append(cell);
  }
  return row;
}
