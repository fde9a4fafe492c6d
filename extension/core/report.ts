// A standalone HTML report (no scripts, no network): summary table of policies, and for
// each trace an SVG heatmap of the top-1 expert per token and MoE layer plus expert usage.
import { describePolicy } from "../../shared/policy";
import { loadMatrix } from "../../shared/expert-stats";
import { top1Slot } from "../../shared/metrics";
import { traceStats } from "./metrics";
import type { Trace } from "../../shared/trace";

export interface ReportRow {
  label: string;
  cells: Record<string, string>;
}

export interface ReportSection {
  title: string;
  note?: string;
  columns: string[];
  rows: ReportRow[];
}

const PALETTE = [
  "#4e79a7",
  "#f28e2b",
  "#e15759",
  "#76b7b2",
  "#59a14f",
  "#edc948",
  "#b07aa1",
  "#ff9da7",
  "#9c755f",
  "#bab0ac",
  "#1f77b4",
  "#aec7e8",
  "#ff7f0e",
  "#2ca02c",
  "#98df8a",
  "#d62728",
];

export function expertColor(e: number): string {
  if (e < PALETTE.length) return PALETTE[e];
  return `hsl(${(e * 137.508) % 360}, 55%, 55%)`;
}

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

function heatmapSvg(trace: Trace, maxTokens = 600): string {
  const { header, columns: c } = trace;
  const L = header.n_moe_layers,
    K = header.k;
  const n = Math.min(c.count, maxTokens);
  const cw = 6,
    ch = 14,
    left = 40;
  const rects: string[] = [];
  for (let t = 0; t < n; t++)
    for (let m = 0; m < L; m++) {
      const top = top1Slot(c, L, K, t, m);
      const e = c.experts[top];
      const w = c.weights[top];
      rects.push(
        `<rect x="${left + t * cw}" y="${m * ch}" width="${cw}" height="${ch - 1}" fill="${expertColor(e)}" fill-opacity="${(0.35 + 0.65 * Math.min(1, w)).toFixed(2)}"><title>token ${t} ${escapeHtml(JSON.stringify(c.pieces[t]))} · layer ${header.model.moe_layers[m]} · expert ${e} (${w.toFixed(2)}) · active ${c.active[t * L + m]}</title></rect>`,
      );
    }
  const labels = header.model.moe_layers.map((l, m) => `<text x="0" y="${m * ch + 10}" font-size="10">L${l}</text>`).join("");
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${left + n * cw}" height="${L * ch}" role="img" aria-label="top-1 expert heatmap">${labels}${rects.join("")}</svg>` +
    (c.count > n ? `<p class="note">First ${n} of ${c.count} tokens shown.</p>` : "")
  );
}

function usageSvg(trace: Trace): string {
  const E = trace.header.model.n_expert;
  const L = trace.header.n_moe_layers;
  const loads = loadMatrix({ count: trace.columns.count, L, K: trace.header.k, E, experts: trace.columns.experts, weights: trace.columns.weights });
  const usage = Array.from({ length: L }, (_, m) => Array.from(loads.subarray(m * E, (m + 1) * E)));
  const bw = Math.max(3, Math.floor(240 / E)),
    h = 50;
  return usage
    .map((row, m) => {
      const max = Math.max(1, ...row);
      const bars = row
        .map(
          (u, e) =>
            `<rect x="${e * bw}" y="${h - (h * u) / max}" width="${bw - 1}" height="${(h * u) / max}" fill="${expertColor(e)}"><title>expert ${e}: ${u}</title></rect>`,
        )
        .join("");
      return `<figure><svg width="${E * bw}" height="${h}" role="img" aria-label="usage layer ${trace.header.model.moe_layers[m]}">${bars}</svg><figcaption>L${trace.header.model.moe_layers[m]}</figcaption></figure>`;
    })
    .join("");
}

function tableHtml(s: ReportSection): string {
  const head = `<tr><th>${["policy", ...s.columns].map(escapeHtml).join("</th><th>")}</th></tr>`;
  const body = s.rows
    .map((r) => `<tr><th>${escapeHtml(r.label)}</th>${s.columns.map((c) => `<td>${escapeHtml(r.cells[c] ?? "")}</td>`).join("")}</tr>`)
    .join("");
  return `<h2>${escapeHtml(s.title)}</h2>${s.note ? `<p class="note">${escapeHtml(s.note)}</p>` : ""}<table>${head}${body}</table>`;
}

export function renderReport(opts: { title: string; subtitle: string; sections: ReportSection[]; traces: Array<{ label: string; trace: Trace }> }): string {
  const traces = opts.traces
    .map(({ label, trace }) => {
      const s = traceStats(trace);
      return `<section><h3>${escapeHtml(label)} <small>(${escapeHtml(describePolicy(trace.header.policy))})</small></h3>
<p>${s.tokens} tokens · avg active experts ${s.avgActive.toFixed(2)}/${s.k} · mean NLL ${s.meanNll.toFixed(3)} nats · mean router entropy ${s.meanEntropy.toFixed(3)} nats · mean routing shift ${s.meanShift.toFixed(3)}</p>
<div class="scroll">${heatmapSvg(trace)}</div><div class="usage">${usageSvg(trace)}</div></section>`;
    })
    .join("\n");
  return `<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>${escapeHtml(opts.title)}</title>
<style>body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th:first-child{text-align:left}.note{color:#666}.scroll{overflow-x:auto;border:1px solid #eee}.usage figure{display:inline-block;margin:4px 12px 4px 0}figcaption{font-size:11px;color:#666}</style>
</head><body><h1>${escapeHtml(opts.title)}</h1><p class="note">${escapeHtml(opts.subtitle)}</p>
${opts.sections.map(tableHtml).join("\n")}
<h2>Routing heatmaps (top-1 expert per token and MoE layer; opacity = its weight)</h2>
${traces}
</body></html>
`;
}
