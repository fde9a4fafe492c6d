// The panel's experiment view: the table of a finished AMG sweep or {β, Π, Ant} ablation
// (HostMessage "experiment": the same formatted cells as the CLI and the HTML report), its
// note, and an "Export…" button that asks the host to save CSV / JSON / HTML.
import type { HostMessage } from "../shared/protocol";
import { el } from "./dom";

export type ExperimentMessage = Extract<HostMessage, { type: "experiment" }>;

/** Cell styles set through the CSSOM (allowed by the panel's CSP, which forbids inline style attributes). */
function styleCell(c: HTMLElement, first: boolean): void {
  c.style.border = "1px solid var(--vscode-panel-border, #8884)";
  c.style.padding = "1px 6px";
  c.style.textAlign = first ? "left" : "right";
  c.style.whiteSpace = "nowrap";
}

export class ExperimentView {
  readonly root: HTMLElement;
  private last: ExperimentMessage | undefined;

  constructor(
    parent: HTMLElement,
    private readonly onExport: () => void,
  ) {
    this.root = el("section", "experiment");
    this.root.id = "experiment";
    this.root.hidden = true;
    this.root.setAttribute("aria-label", "Experiment results");
    parent.append(this.root);
  }

  get message(): ExperimentMessage | undefined {
    return this.last;
  }

  render(m: ExperimentMessage): void {
    this.last = m;
    const title = el("h3", "", m.title);
    title.style.fontSize = "1em";
    title.style.margin = "8px 0 2px";
    const scroller = el("div", "experiment-scroll");
    scroller.style.overflowX = "auto";
    const table = el("table");
    table.id = "experiment-table";
    table.dataset.kind = m.kind;
    table.style.borderCollapse = "collapse";
    table.style.margin = "4px 0";
    const head = el("tr");
    m.columns.forEach((c, i) => {
      const th = el("th", "", c);
      th.scope = "col";
      styleCell(th, i === 0);
      head.append(th);
    });
    table.append(el("thead"), el("tbody"));
    table.tHead!.append(head);
    for (const r of m.rows) {
      const tr = el("tr");
      r.forEach((c, i) => {
        const td = el(i === 0 ? "th" : "td", "", c);
        if (i === 0) (td as HTMLTableCellElement).scope = "row";
        styleCell(td, i === 0);
        tr.append(td);
      });
      table.tBodies[0].append(tr);
    }
    scroller.append(table);
    const actions = el("div", "experiment-actions");
    const exp = el("button", "", "Export…");
    exp.id = "experiment-export";
    exp.title = "Save the results as CSV, JSON or a standalone HTML report";
    exp.addEventListener("click", () => this.onExport());
    actions.append(exp);
    const parts: HTMLElement[] = [title, scroller];
    if (m.note) {
      const note = el("p", "experiment-note", m.note);
      note.style.opacity = "0.75";
      note.style.fontSize = "0.9em";
      parts.push(note);
    }
    parts.push(actions);
    this.root.replaceChildren(...parts);
    this.root.hidden = false;
    this.root.scrollIntoView?.({ block: "nearest" });
  }
}
