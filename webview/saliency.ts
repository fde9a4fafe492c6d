// The panel's saliency chart (Prune Experts… preview, HostMessage "saliency"): one row per MoE
// layer, its experts sorted by the criterion's score, most salient on the left, coloured by the
// score relative to that layer's highest (the legend gives the numbers), with the cut line
// after the experts the prune keeps. Never pooled across layers: expert 5 of layer 0 and
// expert 5 of layer 3 are different experts. An "Export…" button asks the host to save the
// saliency as JSON.
import type { HostMessage } from "../shared/protocol";
import { el } from "./dom";

export type SaliencyMessage = Extract<HostMessage, { type: "saliency" }>;

const CRITERION_LABEL = { reap: "REAP (gate × expert-output norm)", weight: "summed gate weight", frequency: "routing frequency" };

/** Experts of a layer by descending score (ties: lower id first), as the CLI ranks them. */
export function rankExperts(scores: number[]): number[] {
  return scores.map((_s, e) => e).sort((a, b) => scores[b] - scores[a] || a - b);
}

export class SaliencyView {
  readonly root: HTMLElement;
  private last: SaliencyMessage | undefined;

  constructor(
    parent: HTMLElement,
    private readonly onExport: () => void,
  ) {
    this.root = el("section", "saliency");
    this.root.id = "saliency";
    this.root.hidden = true;
    this.root.setAttribute("aria-label", "Expert saliency and pruning preview");
    parent.append(this.root);
  }

  get message(): SaliencyMessage | undefined {
    return this.last;
  }

  render(m: SaliencyMessage): void {
    this.last = m;
    const title = el("h3", "", m.title);
    title.style.fontSize = "1em";
    title.style.margin = "8px 0 2px";
    const nExpert = m.layers[0]?.scores.length ?? 0;
    const kept = m.layers[0]?.kept.length ?? 0;
    const cellW = Math.max(2, Math.min(12, Math.floor(560 / Math.max(1, nExpert))));
    const rowH = 12;
    const labelW = 56;
    const canvas = el("canvas");
    canvas.id = "saliency-chart";
    canvas.width = labelW + nExpert * cellW + 4;
    canvas.height = m.layers.length * rowH + 4;
    canvas.dataset.layers = String(m.layers.length);
    canvas.dataset.experts = String(nExpert);
    canvas.dataset.kept = String(kept);
    canvas.setAttribute("role", "img");
    canvas.setAttribute(
      "aria-label",
      `Experts of ${m.layers.length} layers by ${CRITERION_LABEL[m.criterion]}; the line marks the ${kept} of ${nExpert} each layer keeps`,
    );
    const ctx = canvas.getContext("2d");
    const css = getComputedStyle(document.body);
    const fg = css.getPropertyValue("--vscode-foreground").trim() || "#ccc";
    const cut = css.getPropertyValue("--vscode-editorError-foreground").trim() || "#f14c4c";
    if (ctx) {
      ctx.font = "10px sans-serif";
      ctx.textBaseline = "middle";
      m.layers.forEach((l, row) => {
        const y = 2 + row * rowH;
        ctx.fillStyle = fg;
        ctx.fillText(`layer ${l.layer}`, 0, y + rowH / 2);
        const max = Math.max(...l.scores, 0);
        const keptSet = new Set(l.kept);
        rankExperts(l.scores).forEach((e, i) => {
          const v = max > 0 ? l.scores[e] / max : 0;
          // kept experts in the theme's blue, removed ones in grey; brightness is the score share
          const shade = Math.round(40 + 200 * v);
          ctx.fillStyle = keptSet.has(e) ? `rgb(${Math.round(shade * 0.25)}, ${Math.round(shade * 0.6)}, ${shade})` : `rgb(${shade}, ${shade}, ${shade})`;
          ctx.fillRect(labelW + i * cellW, y, Math.max(1, cellW - 1), rowH - 2);
        });
      });
      ctx.strokeStyle = cut;
      ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.moveTo(labelW + kept * cellW - 0.5, 0);
      ctx.lineTo(labelW + kept * cellW - 0.5, canvas.height);
      ctx.stroke();
    }
    const scroller = el("div", "saliency-scroll");
    scroller.style.overflowX = "auto";
    scroller.append(canvas);
    const legend = el(
      "p",
      "saliency-legend",
      `Each row: one layer's ${nExpert} experts by ${CRITERION_LABEL[m.criterion]}, highest left; brightness = score ÷ the layer's highest ` +
        `(0 … 1; highest per layer: ${m.layers.map((l) => `${l.layer}: ${Math.max(...l.scores, 0).toPrecision(3)}`).join(", ")}). ` +
        `Blue: kept (${kept}); grey: removed (${nExpert - kept}); the red line is the cut.`,
    );
    legend.id = "saliency-legend";
    const table = el("table");
    table.id = "saliency-table";
    table.style.borderCollapse = "collapse";
    const head = el("tr");
    for (const h of ["layer", "removed experts"]) head.append(el("th", "", h));
    table.append(el("thead"), el("tbody"));
    table.tHead!.append(head);
    for (const l of m.layers) {
      const keptSet = new Set(l.kept);
      const removed = l.scores.map((_s, e) => e).filter((e) => !keptSet.has(e));
      const tr = el("tr");
      tr.append(el("th", "", String(l.layer)), el("td", "", removed.join(", ") || "–"));
      table.tBodies[0].append(tr);
    }
    for (const c of table.querySelectorAll<HTMLElement>("th, td")) {
      c.style.border = "1px solid var(--vscode-panel-border, #8884)";
      c.style.padding = "1px 6px";
      c.style.textAlign = "left";
    }
    const details = el("details");
    details.append(el("summary", "", "Removed experts per layer"), table);
    const exp = el("button", "", "Export…");
    exp.id = "saliency-export";
    exp.title = "Save the saliency (per layer and expert: frequency, gate weight, REAP) as JSON";
    exp.addEventListener("click", () => this.onExport());
    const note = el("p", "saliency-note", m.note);
    note.style.opacity = "0.75";
    note.style.fontSize = "0.9em";
    legend.style.fontSize = "0.9em";
    this.root.replaceChildren(title, scroller, legend, details, note, exp);
    this.root.hidden = false;
    this.root.scrollIntoView?.({ block: "nearest" });
  }
}
