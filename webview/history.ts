// The trace history of the panel: a small collapsible list of the shown document's traces
// (document traces, selection traces, both sides of compares), newest first, each with a
// button to show it and one to remove it. The host keeps the traces (extension/core/
// trace-store.ts) and sends the list as a `history` message after every change; the list
// only sends back the user's intent (`selectTrace`, `removeTrace`).
import type { HostMessage, TraceHistoryEntry } from "../shared/protocol";
import { el } from "./dom";

type HistoryMessage = Extract<HostMessage, { type: "history" }>;

const MIB = 1024 * 1024;

export class TraceHistoryList {
  readonly element: HTMLDetailsElement;
  private readonly list: HTMLOListElement;
  private readonly caption: HTMLElement;

  constructor(
    private readonly onSelect: (traceId: string) => void,
    private readonly onRemove: (traceId: string) => void,
  ) {
    this.element = el("details", "history");
    this.element.id = "trace-history";
    this.element.hidden = true;
    this.caption = el("summary", "", "History");
    this.list = el("ol", "history-list");
    this.element.append(this.caption, this.list);
  }

  render(m: HistoryMessage): void {
    this.element.hidden = m.entries.length === 0;
    this.caption.textContent = `History (${m.entries.length}) · ${(m.usedBytes / MIB).toFixed(0)} of ${(m.capBytes / MIB).toFixed(0)} MB`;
    const rows = [...m.entries].reverse().map((e) => this.row(e));
    if (m.note) rows.unshift(el("li", "note", m.note));
    this.list.replaceChildren(...rows);
  }

  private row(e: TraceHistoryEntry): HTMLLIElement {
    const li = el("li", e.active ? "active" : "");
    li.dataset.traceId = e.traceId;
    const show = el("button", "link", e.label);
    show.title = e.active ? "Shown now" : "Show this trace";
    show.setAttribute("aria-current", String(e.active));
    show.addEventListener("click", () => this.onSelect(e.traceId));
    const facts = [`${e.tokens} tokens`, new Date(e.createdAt).toLocaleTimeString()];
    if (e.state !== "done") facts.push(e.state);
    if (!e.current) facts.push("stale: the text changed");
    const remove = el("button", "icon", "×");
    remove.setAttribute("aria-label", `Remove ${e.label} from the history`);
    remove.addEventListener("click", () => this.onRemove(e.traceId));
    li.append(show, el("span", e.current ? "note" : "note stale", ` ${facts.join(" · ")} `), remove);
    return li;
  }
}
