// The routing panel: receives HostMessages (shared/protocol.ts), keeps each trace as typed
// arrays (store.ts), draws the heatmap (heatmap.ts), charts (charts.ts), policy controls
// (controls.ts), cell details and a compare view. UI state survives hide/show via
// acquireVsCodeApi().getState/setState; trace data is replayed by the host on `ready`.
import { fileName, formatNumber } from "../shared/format";
import { finiteMean } from "../shared/metrics";
import { describePolicy } from "../shared/policy";
import { Charts } from "./charts";
import { css, expertRgb, rampPacked } from "./colors";
import { PolicyControls, type ControlValues } from "./controls";
import { ExperimentView } from "./experiments";
import { ExpertViews, type ExpertViewsState } from "./expert-views";
import { scaleLegend } from "./scale";
import { TraceHistoryList } from "./history";
import { SaliencyView } from "./saliency";
import { AtlasSection } from "./atlas-view";
import { el } from "./dom";
import { COLOR_MODES, Heatmap, linkScrolling, type ColorMode } from "./heatmap";
import type { HostMessage, WebviewMessage } from "../shared/protocol";
import { LayerFold, type LayerFoldMode } from "./layer-fold";
import { TraceOverview } from "./overview";
import { PanelTrace } from "./store";

interface VsCodeApi {
  postMessage(m: WebviewMessage): void;
  getState(): unknown;
  setState(s: unknown): void;
}
declare function acquireVsCodeApi(): VsCodeApi;

interface UiState {
  mode: ColorMode;
  expert: number;
  highlight: number;
  cellW: number;
  controls?: ControlValues;
  /** Heatmap rows: every layer, or compressed to fit the window (layer-fold.ts). */
  rows?: LayerFoldMode;
  /** The per-layer expert views' choices (expert-views.ts). */
  expertViews?: Partial<ExpertViewsState>;
}

const vscode = acquireVsCodeApi();
const state: UiState = { mode: "top1", expert: 0, highlight: -1, cellW: 14, ...((vscode.getState() as Partial<UiState>) ?? {}) };
const traces = new Map<string, PanelTrace>();
let current: PanelTrace | undefined;

const app = document.getElementById("app")!;
app.replaceChildren();
const header = el("header", "summary");
header.setAttribute("aria-live", "polite");
header.id = "summary";
const toolbar = el("div", "toolbar");
const modeSelect = el("select");
modeSelect.id = "color-mode";
modeSelect.setAttribute("aria-label", "Colour mode");
for (const m of COLOR_MODES) modeSelect.append(new Option(m.label, m.id));
const expertInput = el("input");
expertInput.type = "number";
expertInput.min = "0";
expertInput.id = "expert";
expertInput.setAttribute("aria-label", "Chosen expert (weight mode and highlight)");
const highlightBox = el("input");
highlightBox.type = "checkbox";
highlightBox.id = "highlight";
const highlightLabel = el("label", "inline");
highlightLabel.append(highlightBox, " highlight expert everywhere");
const zoomOut = el("button", "icon", "−");
zoomOut.setAttribute("aria-label", "Zoom out");
const zoomIn = el("button", "icon", "+");
zoomIn.setAttribute("aria-label", "Zoom in");
const legend = el("div", "legend");
toolbar.append(el("span", "", "Colour"), modeSelect, el("span", "", "Expert"), expertInput, highlightLabel, zoomOut, zoomIn, legend);

// Shown until the first trace starts: how to make one.
const emptyState = el("section", "empty");
emptyState.id = "empty-state";
emptyState.append(
  el("p", "", "No trace yet."),
  el(
    "p",
    "",
    "Run “MoE Lens: Trace Document” from the Command Palette to see the routing of the active file, or select some text and run “MoE Lens: Trace Selection”. Then hover a token in the editor for its experts per layer.",
  ),
);
const heatmapHost = el("section", "heatmap-host");
heatmapHost.setAttribute("aria-label", "Routing heatmap");
const details = el("section", "details");
details.id = "details";
details.setAttribute("aria-live", "polite");
const compareHost = el("section", "compare");
compareHost.id = "compare";
compareHost.hidden = true;
const transitionsHost = el("section", "transitions");
transitionsHost.id = "transitions";

const heatmap = new Heatmap(heatmapHost, "Current trace", {
  onSelect: (t, m) => {
    if (!current) return;
    showDetails(current, t, m);
    expertViews.selectCell(t, m);
  },
  onScale: () => {
    renderLegend();
    overview.requestDraw(true);
  },
  onView: () => {
    expertViews.heatmapDrawn();
    overview.requestDraw();
  },
});
// The whole trace in the panel's width above the heatmap, which is its detail lens (overview.ts).
const overview = new TraceOverview(heatmapHost, heatmap);
const layerFold = new LayerFold(
  heatmap,
  () => current?.L ?? 0,
  state.rows,
  (rows) => save({ rows }),
);
toolbar.append(el("span", "", "Rows"), layerFold.select);
const controls = new PolicyControls(
  app,
  (policy) => post({ type: "applyPolicy", policy }),
  (right) => post({ type: "requestCompare", left: {}, right }),
  (v) => save({ controls: v }),
  (path) => post({ type: "selectRouterPack", path }),
);
app.append(header, emptyState, toolbar, heatmapHost, details, transitionsHost, compareHost);
// Layer view, load map, specialisation (expert-views.ts); its expert search sits in the toolbar.
const expertViews = new ExpertViews(
  app,
  heatmap,
  state.expertViews,
  (s) => save({ expertViews: s }),
  () => scheduleCharts(),
);
toolbar.append(expertViews.search);
const history = new TraceHistoryList(
  (traceId) => post({ type: "selectTrace", traceId }),
  (traceId) => post({ type: "removeTrace", traceId }),
);
header.after(history.element);
const charts = new Charts(app, () => ({ trace: current, layer: expertViews.shared.layer }));
const experiment = new ExperimentView(app, () => post({ type: "exportExperiment" }));
const saliency = new SaliencyView(app, () => post({ type: "exportSaliency" }));
const atlas = new AtlasSection(app);

function post(m: WebviewMessage): void {
  vscode.postMessage(m);
}

function save(patch: Partial<UiState>): void {
  Object.assign(state, patch);
  vscode.setState(state);
}

function applyUiState(): void {
  modeSelect.value = state.mode;
  expertInput.value = String(state.expert);
  highlightBox.checked = state.highlight >= 0;
  heatmap.mode = state.mode;
  heatmap.expert = state.expert;
  heatmap.highlight = state.highlight;
  heatmap.setZoom(state.cellW);
  if (state.controls) controls.setValues(state.controls);
  renderLegend();
}

modeSelect.addEventListener("change", () => {
  save({ mode: modeSelect.value as ColorMode });
  applyUiState();
});
expertInput.addEventListener("change", () => {
  const e = Math.max(0, Math.floor(Number(expertInput.value) || 0));
  save({ expert: e, highlight: highlightBox.checked ? e : -1 });
  applyUiState();
});
highlightBox.addEventListener("change", () => {
  save({ highlight: highlightBox.checked ? state.expert : -1 });
  applyUiState();
});
zoomIn.addEventListener("click", () => {
  heatmap.setZoom(heatmap.cellW * 1.25);
  save({ cellW: heatmap.cellW });
});
zoomOut.addEventListener("click", () => {
  heatmap.setZoom(heatmap.cellW * 0.8);
  save({ cellW: heatmap.cellW });
});

function renderLegend(): void {
  legend.replaceChildren();
  if (state.mode === "top1" && current) {
    const shown = Math.min(current.E, 32);
    for (let e = 0; e < shown; e++) {
      const sw = el("span", "swatch", `e${e}`);
      sw.style.setProperty("--swatch", css(expertRgb(e)));
      legend.append(sw);
    }
    if (current.E > shown) {
      const more = el("span", "note", `+ ${current.E - shown} more experts not shown (e${shown}–e${current.E - 1}): mark them with Find experts`);
      more.id = "legend-more";
      legend.append(more);
    }
  } else if (current) {
    // Numbers on every scale: the auto-ranged ones (weight, entropy) show the range they were fitted to.
    const scale = {
      weight: () => scaleLegend(`weight of e${state.expert}`, heatmap.weightScale, "grey = not selected or dropped"),
      entropy: () => scaleLegend("router entropy (nats)", heatmap.entropyScale),
      active: () => scaleLegend("active experts", { min: 0, max: current!.K }),
      shift: () => scaleLegend("routing shift (Jaccard distance)", { min: 0, max: 1 }, "0 = same experts, 1 = disjoint"),
    }[state.mode as Exclude<ColorMode, "top1">]();
    scale.id = "legend-mode";
    legend.append(scale);
  }
  if (current) {
    // The NLL strip under the heatmap: dark = surprising, so the bar runs from the high NLL down.
    const nll = scaleLegend("NLL strip (nats)", { min: heatmap.nllScale.max, max: heatmap.nllScale.min });
    nll.id = "legend-nll";
    legend.append(nll);
  }
}

/** The model the server runs now (the host's policy message); traces made with another are stale. */
let modelNow: string | null = null;

/** A number as the panel shows it (3 decimals unless said otherwise; "–" when missing). */
function fmt(x: number | null | undefined, d = 3): string {
  return formatNumber(x, d);
}

function renderSummary(tr: PanelTrace): void {
  const s = tr.summary;
  const policy = describePolicy(tr.header.policy);
  header.replaceChildren(
    el("strong", "", tr.label),
    el("span", "", ` ${tr.count}${s ? "" : `/${tr.header.n_tokens}`} tokens · ${tr.L} MoE layers · ${tr.E} experts · k=${tr.K}`),
    el("span", "", ` · avg active ${fmt(tr.avgActive(), 2)}/${tr.K}`),
    el("span", "", ` · trace ppl ${fmt(s?.ppl ?? Math.exp(tr.meanNll()), 3)}`),
    el("span", "policy", ` · policy ${policy}`),
    ...(modelNow && modelNow !== tr.header.model.path
      ? [el("span", "stale", ` · stale: traced with ${fileName(tr.header.model.path)}; the server now runs ${fileName(modelNow)}`)]
      : []),
    ...(tr.error ? [el("span", "error", ` · ${tr.error}`)] : []),
    ...dropNote(tr),
  );
}

/** What dropping experts costs under this trace's policy: skipped (no arithmetic) or zero-gated (computed, multiplied by 0). */
function dropNote(tr: PanelTrace): HTMLElement[] {
  const p = tr.header.policy;
  const drops = p.amg !== undefined || (p.max_k !== undefined && p.max_k < tr.header.model.n_expert_used_trained);
  if (!drops) return [];
  const skipped = tr.header.model.skip_supported && p.skip !== false;
  return [
    el(
      "span",
      "note",
      skipped
        ? " · dropped experts are skipped (not computed); Compare Policies measures the speed"
        : " · zero-gating: dropped experts are still computed, so no time is saved",
    ),
  ];
}

function showDetails(tr: PanelTrace, t: number, m: number): void {
  const L = tr.L,
    K = tr.K,
    N = tr.N;
  const rows = el("table");
  rows.append(rowOf(["expert", "weight"], true));
  for (let j = 0; j < K; j++) {
    const at = (t * L + m) * K + j;
    rows.append(rowOf([`e${tr.experts[at]}`, tr.weights[at] === 0 ? "0 (dropped)" : fmt(tr.weights[at], 4)]));
  }
  const parts: HTMLElement[] = [
    el("h3", "", `Token ${t} ${JSON.stringify(tr.pieces[t] ?? "")} · layer ${tr.header.model.moe_layers[m]}`),
    el("p", "", `NLL of next token ${fmt(tr.nll[t])} nats · router entropy ${fmt(tr.entropy[t * L + m])} nats · active ${tr.active[t * L + m]}/${K}`),
    rows,
  ];
  if (N > 0) {
    // The router's distribution stays with the host (shared/protocol.ts PanelBatch): asked for, filled in by showRouterTop.
    const top = el("table", "top-probs");
    top.dataset.cell = `${tr.id}:${t}:${m}`;
    top.append(rowOf(["router top", "probability"], true));
    parts.push(top);
    post({ type: "routerTop", traceId: tr.id, token: t, layer: m });
  }
  details.replaceChildren(...parts);
  post({ type: "revealToken", traceId: tr.id, token: t });
}

/** The host's answer to a routerTop request, into the details box if it still shows that cell. */
function showRouterTop(m: Extract<HostMessage, { type: "routerTop" }>): void {
  const top = details.querySelector<HTMLTableElement>("table.top-probs");
  if (!top || top.dataset.cell !== `${m.traceId}:${m.token}:${m.layer}`) return;
  top.append(...m.ids.map((id, j) => rowOf([`e${id}`, fmt(m.probs[j], 4)])));
  if (!m.ids.length) top.append(rowOf(["–", "not recorded"]));
}

function rowOf(cells: string[], head = false): HTMLTableRowElement {
  const tr = el("tr");
  for (const c of cells) tr.append(el(head ? "th" : "td", "", c));
  return tr;
}

/** Domain segments (label, source, token range) and the transition table under the heatmap. */
function renderTransitions(tr: PanelTrace): void {
  transitionsHost.replaceChildren();
  if (!tr.segments.length) return;
  const list = el("ol", "segments");
  list.id = "segments";
  list.setAttribute("aria-label", "Domain segments");
  for (const s of tr.segments) {
    const item = el("li", "segment", `${s.domain} `);
    item.dataset.domain = s.domain;
    item.dataset.source = s.source;
    item.append(el("span", "note", `tokens ${s.start}–${s.end - 1} (${s.source})`));
    list.append(item);
  }
  transitionsHost.append(el("h3", "", `Domain segments (${tr.segments.length})`), list);
  if (!tr.transitions.length) return;
  const table = el("table");
  table.id = "transition-table";
  table.append(rowOf(["token", "from → to", "P(new expert) mean over layers", "rank (mean)", "NLL"], true));
  for (const x of tr.transitions) {
    table.append(rowOf([String(x.token), `${x.from} → ${x.to}`, fmt(finiteMean(x.probNewExpert)), fmt(finiteMean(x.rankNewExpert), 1), fmt(x.nll)]));
  }
  transitionsHost.append(el("h3", "", "Domain transitions"), table);
}

/** Charts are the heaviest redraw: they pace themselves (charts.ts); `streaming`: new batches of the current trace. */
function scheduleCharts(streaming = false): void {
  charts.requestDraw(streaming);
}

let summaryTimer = 0;
/** The summary line averages over every token: refresh it at most every 0.25 s while streaming. */
function scheduleSummary(tr: PanelTrace): void {
  if (summaryTimer) return;
  summaryTimer = window.setTimeout(() => {
    summaryTimer = 0;
    if (tr === current) renderSummary(tr);
  }, 250);
}

function nllAt(tr: PanelTrace, tokens: number[]): number {
  return finiteMean(tokens.map((t) => tr.nll[t]));
}

let compareMaps: Heatmap[] = [];

function renderCompare(left: PanelTrace, right: PanelTrace): void {
  for (const hm of compareMaps) hm.dispose();
  compareMaps = [];
  compareHost.hidden = false;
  compareHost.replaceChildren(el("h3", "", `Compare: ${left.label} vs ${right.label}`));
  const boundary = left.segments.slice(1).map((s) => Math.max(0, s.start - 1));
  const table = el("table");
  table.id = "compare-summary";
  table.append(rowOf(["", left.label, right.label, "difference"], true));
  const row = (name: string, a: number, b: number, d = 3) => table.append(rowOf([name, fmt(a, d), fmt(b, d), fmt(b - a, d)]));
  row("avg active experts", left.avgActive(), right.avgActive(), 2);
  row("perplexity (trace)", left.summary?.ppl ?? Math.exp(left.meanNll()), right.summary?.ppl ?? Math.exp(right.meanNll()));
  row("mean NLL", left.meanNll(), right.meanNll());
  if (boundary.length) row("NLL at transitions", nllAt(left, boundary), nllAt(right, boundary));
  let changed = 0;
  const n = Math.min(left.count, right.count);
  for (let t = 0; t < n; t++) for (let m = 0; m < Math.min(left.L, right.L); m++) if (left.top1(t, m) !== right.top1(t, m)) changed++;
  table.append(rowOf(["top-1 expert changed", "", "", `${fmt((100 * changed) / Math.max(1, n * left.L), 1)}% of cells`]));
  compareHost.append(table);
  // Left and right side by side (stacked when the panel is narrow), the difference below;
  // all three scroll and zoom together so a column is the same token in each.
  const zoomAll = (cellW: number) => {
    for (const hm of compareMaps) hm.setZoom(cellW);
  };
  const pair = el("div", "compare-pair");
  compareHost.append(pair);
  for (const tr of [left, right]) {
    const side = el("figure", "compare-side");
    side.append(el("figcaption", "", tr.label));
    pair.append(side);
    const hm = new Heatmap(side, tr.label, { onSelect: (t, m) => showDetails(tr, t, m), onZoom: zoomAll });
    hm.mode = state.mode;
    hm.expert = state.expert;
    hm.setZoom(state.cellW);
    hm.setTrace(tr);
    compareMaps.push(hm);
  }
  // The difference: bright where the top-1 expert changed, plus the change in active experts.
  const diffSide = el("figure", "compare-side");
  diffSide.append(el("figcaption", "", "Difference (top-1 expert changed: +0.5; |Δ active experts| / k: up to +0.5)"));
  compareHost.append(diffSide);
  const diff = new Heatmap(diffSide, "difference", { onSelect: (t, m) => showDetails(right, t, m), onZoom: zoomAll });
  diff.colorOverride = (t, m) =>
    rampPacked(
      t >= right.count
        ? NaN
        : (left.top1(t, m) !== right.top1(t, m) ? 0.5 : 0) +
            (0.5 * Math.abs(left.active[t * left.L + m] - right.active[t * right.L + m])) / Math.max(1, left.K),
    );
  diff.setZoom(state.cellW);
  diff.setTrace(left);
  diff.canvas.id = "compare-difference";
  compareMaps.push(diff);
  linkScrolling(compareMaps);
}

window.addEventListener("message", (ev: MessageEvent<HostMessage>) => {
  const m = ev.data;
  switch (m.type) {
    case "traceStart": {
      const tr = new PanelTrace(m.traceId, m.label, m.header);
      traces.set(m.traceId, tr);
      if (traces.size > 8) traces.delete(traces.keys().next().value!);
      current = tr;
      emptyState.hidden = true;
      heatmap.setTrace(tr);
      layerFold.apply();
      expertViews.setTrace(tr);
      details.replaceChildren();
      transitionsHost.replaceChildren();
      renderSummary(tr);
      renderLegend();
      break;
    }
    case "traceBatch": {
      const tr = traces.get(m.traceId);
      if (!tr) break;
      tr.ingest(m.batch);
      if (tr === current) {
        heatmap.requestDraw();
        expertViews.dataChanged();
        scheduleSummary(tr);
        scheduleCharts(true);
      }
      break;
    }
    case "traceEnd": {
      const tr = traces.get(m.traceId);
      if (!tr) break;
      tr.summary = m.summary;
      if (tr === current) {
        renderSummary(tr);
        scheduleCharts();
        heatmap.requestDraw();
      }
      break;
    }
    case "traceError": {
      const tr = traces.get(m.traceId);
      if (tr) {
        tr.error = m.message;
        if (tr === current) renderSummary(tr);
      }
      break;
    }
    case "segments": {
      const tr = traces.get(m.traceId);
      if (!tr) break;
      tr.segments = m.segments;
      tr.transitions = m.transitions;
      if (tr === current) {
        heatmap.requestDraw();
        expertViews.dataChanged();
        renderTransitions(tr);
        scheduleCharts();
      }
      break;
    }
    case "compare": {
      const a = traces.get(m.leftTraceId),
        b = traces.get(m.rightTraceId);
      if (a && b) renderCompare(a, b);
      break;
    }
    case "compareSpeed": {
      compareHost.querySelector("#compare-speed")?.remove();
      const line = el("p", "note", m.text);
      line.id = "compare-speed";
      compareHost.querySelector("#compare-summary")?.after(line);
      break;
    }
    case "policy":
      controls.setModelLimits(m.trainedK, m.maxK);
      controls.showPolicy(m.policy);
      controls.setAntAvailable(m.antAvailable);
      controls.setRouterPacks(m.routerPacks, m.routerPack);
      if (m.modelPath !== undefined && m.modelPath !== modelNow) {
        modelNow = m.modelPath;
        if (current) renderSummary(current);
      }
      break;
    case "routerTop":
      showRouterTop(m);
      break;
    case "highlightToken": {
      const tr = traces.get(m.traceId);
      if (tr && tr === current) heatmap.markToken(m.token);
      break;
    }
    case "history":
      history.render(m);
      break;
    case "experiment":
      experiment.render(m);
      break;
    case "saliency":
      saliency.render(m);
      break;
    case "atlas":
      atlas.render(m.atlas);
      break;
  }
});

/**
 * A theme change: VS Code rewrites the colour variables on <html> and the theme class and
 * data-vscode-theme-kind on <body>. The canvases read those colours only when they draw,
 * so they draw again (heatmaps, charts, the saliency preview); the rest follows by CSS.
 */
function redrawForTheme(): void {
  overview.requestDraw(true);
  heatmap.requestDraw();
  expertViews.requestDraw();
  for (const hm of compareMaps) hm.requestDraw();
  if (current) scheduleCharts();
  if (saliency.message) saliency.render(saliency.message);
}
const themeObserver = new MutationObserver(redrawForTheme);
themeObserver.observe(document.documentElement, { attributes: true, attributeFilter: ["style", "class"] });
themeObserver.observe(document.body, { attributes: true, attributeFilter: ["class", "data-vscode-theme-kind", "data-vscode-theme-name"] });

applyUiState();
post({ type: "ready" });
// Exposed for tests and the benchmark (read-only inspection of the live panel).
(window as unknown as { moeLens: unknown }).moeLens = {
  heatmap,
  overview,
  expertViews,
  charts,
  traces,
  experiment,
  saliency,
  get current() {
    return current;
  },
};
