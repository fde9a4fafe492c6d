// Charts of the current trace (chart.js, only the pieces used are registered): expert usage
// per layer (by expert for a few experts, by rank within each layer for many), histogram of
// active experts per token, NLL over the text with domain boundaries, and expert usage by
// domain in the chosen layer (one layer's experts, never added up across layers: e5 of
// layer 0 and e5 of layer 30 are different experts).
// While a trace streams the charts are updated in place (chart.update) instead of being
// built again, at most every 2 s (or five times the last redraw's time; a new trace, a layer
// or theme change is drawn at once), and only while they are on screen (they are below the
// heatmap). Measured in code-server at 48 × 128 × k 8: each refresh grew the renderer's JS
// heap by about 13 MB, and with a new chart per refresh the old canvases stayed in the
// renderer until its next full collection (tens of MB).
import {
  BarController,
  BarElement,
  CategoryScale,
  Chart,
  Legend,
  LinearScale,
  LineController,
  LineElement,
  PointElement,
  Tooltip,
  type ChartConfiguration,
  type Plugin,
} from "chart.js";
import { rankedLoad, specialisation } from "../shared/expert-stats";
import { css, expertRgb, rampRgb } from "./colors";
import { routingColumns } from "./expert-view-common";
import { segmentClasses } from "./specialisation-view";
import type { PanelTrace } from "./store";

Chart.register(BarController, BarElement, CategoryScale, LinearScale, LineController, LineElement, PointElement, Legend, Tooltip);

const MAX_LINE_POINTS = 2000;

/** Vertical lines at domain boundaries on the NLL chart. */
const boundaries: Plugin = {
  id: "domainBoundaries",
  afterDatasetsDraw(chart) {
    const starts = (chart.options.plugins as { domainBoundaries?: { tokens: number[]; step: number } }).domainBoundaries;
    if (!starts) return;
    const { ctx, chartArea, scales } = chart;
    ctx.save();
    ctx.strokeStyle = getComputedStyle(document.body).getPropertyValue("--vscode-foreground") || "#888";
    ctx.setLineDash([4, 3]);
    for (const t of starts.tokens) {
      const x = scales.x.getPixelForValue(Math.floor(t / starts.step));
      ctx.beginPath();
      ctx.moveTo(x, chartArea.top);
      ctx.lineTo(x, chartArea.bottom);
      ctx.stroke();
    }
    ctx.restore();
  },
};

/** One chart as built for the current data: its caption and chart.js configuration. */
interface ChartSpec {
  title: string;
  config: ChartConfiguration;
}

/** The n experts with the largest counts, in id order (the rest go to an "other" series). */
function topExperts(totals: number[], n = 16): { shown: number[]; member: Set<number> } {
  const shown = totals
    .map((_, e) => e)
    .sort((a, b) => totals[b] - totals[a])
    .slice(0, n)
    .sort((a, b) => a - b);
  return { shown, member: new Set(shown) };
}

/** Up to this many experts, the per-layer usage chart stacks every expert by id; beyond, by rank. */
const MAX_STACKED_EXPERTS = 16;

/** Per-layer usage with every expert a series of its own (few experts: all of them fit). */
function usageByExpert(tr: PanelTrace, layers: string[]): ChartSpec {
  const usage = tr.usage();
  return {
    title: "Expert usage per layer",
    config: {
      type: "bar",
      data: {
        labels: layers,
        datasets: Array.from({ length: tr.E }, (_, e) => ({ label: `e${e}`, data: usage.map((row) => row[e]), backgroundColor: css(expertRgb(e)) })),
      },
      options: { responsive: true, maintainAspectRatio: false, scales: { x: { stacked: true }, y: { stacked: true } } },
    },
  };
}

/**
 * Per-layer usage of a fine-grained model: each bar stacks its own layer's most used experts
 * by rank (share of the layer's selections), then "other". A series per expert id would add
 * up e5 of layer 0 and e5 of layer 30 when choosing which ids to show; ranks compare how
 * concentrated each layer's load is, and the tooltip names the expert at each rank.
 */
function usageByRank(tr: PanelTrace, layers: string[]): ChartSpec {
  const ranked = tr.usage().map((load) => rankedLoad(load, MAX_STACKED_EXPERTS));
  const pct = (x: number | undefined) => +(100 * (x ?? 0)).toFixed(2);
  const datasets = Array.from({ length: MAX_STACKED_EXPERTS }, (_, r) => ({
    label: ordinal(r + 1),
    data: ranked.map((l) => pct(l.shares[r])),
    backgroundColor: css(rampRgb(1 - r / MAX_STACKED_EXPERTS)),
  }));
  datasets.push({ label: "other", data: ranked.map((l) => pct(l.otherShare)), backgroundColor: "#8888" });
  return {
    title: `Expert usage per layer: each layer's ${MAX_STACKED_EXPERTS} most used experts by rank, % of its selections`,
    config: {
      type: "bar",
      data: { labels: layers, datasets },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        scales: { x: { stacked: true }, y: { stacked: true, max: 100 } },
        plugins: {
          legend: { display: false },
          tooltip: {
            callbacks: {
              label: (item) => {
                const expert = ranked[item.dataIndex].experts[item.datasetIndex];
                const who = item.datasetIndex < MAX_STACKED_EXPERTS ? (expert === undefined ? "none" : `e${expert}`) : "the rest";
                return `${item.dataset.label}: ${who}, ${item.formattedValue} %`;
              },
            },
          },
        },
      },
    },
  };
}

function ordinal(n: number): string {
  const tens = n % 100;
  const suffix = tens >= 11 && tens <= 13 ? "th" : (["th", "st", "nd", "rd"][n % 10] ?? "th");
  return `${n}${suffix}`;
}

/** The least time between two redraws of a streaming trace, and the wait before any other. */
const STREAM_REDRAW_MS = 2000;
const SOON_MS = 50;

export class Charts {
  private charts: Chart[] = [];
  private titles: string[] = [];
  /** What the charts were built for: another trace or theme builds them again. */
  private builtFor?: { trace: PanelTrace; foreground: string };
  private timer = 0;
  private timerDelay = 0;
  private onScreen = false;
  /** A redraw was asked for and not yet made (it waits for the charts to be scrolled to). */
  private stale = false;
  private lastDrawMs = 0;
  readonly root: HTMLElement;

  /** `source` gives the trace to draw and the chosen layer (an index into its MoE layers) when a redraw is due. */
  constructor(
    parent: HTMLElement,
    private readonly source: () => { trace?: PanelTrace; layer: number },
  ) {
    this.root = document.createElement("section");
    this.root.className = "charts";
    this.root.setAttribute("aria-label", "Routing charts");
    parent.append(this.root);
    new IntersectionObserver(
      (entries) => {
        this.onScreen = entries[entries.length - 1].isIntersecting;
        if (this.onScreen && this.stale) this.requestDraw();
      },
      { rootMargin: "200px" },
    ).observe(this.root);
  }

  /**
   * Redraw soon if the charts are on screen, else when they are scrolled to. `streaming`: new
   * batches of the trace drawn already, paced (STREAM_REDRAW_MS); anything else (a new trace,
   * its end, another layer or theme) is drawn at once.
   */
  requestDraw(streaming = false): void {
    this.stale = true;
    if (!this.onScreen) return;
    const delay = streaming && this.builtFor?.trace === this.source().trace ? Math.max(STREAM_REDRAW_MS, 5 * this.lastDrawMs) : SOON_MS;
    if (this.timer) {
      if (delay >= this.timerDelay) return;
      window.clearTimeout(this.timer);
    }
    this.timerDelay = delay;
    this.timer = window.setTimeout(
      () =>
        requestAnimationFrame(() => {
          this.timer = 0;
          const { trace, layer } = this.source();
          if (!trace || !this.onScreen) return;
          this.stale = false;
          const t0 = performance.now();
          this.render(trace, layer);
          this.lastDrawMs = performance.now() - t0;
        }),
      delay,
    );
  }

  /** The series of the chart whose caption starts with `caption`, as drawn now (read-only; for tests). */
  series(caption: string): Array<{ label: string; data: number[] }> | undefined {
    const i = this.titles.findIndex((t) => t.startsWith(caption));
    return this.charts[i]?.data.datasets.map((d) => ({ label: String(d.label), data: [...(d.data as number[])] }));
  }

  private figure(title: string): { fig: HTMLElement; canvas: HTMLCanvasElement } {
    const fig = document.createElement("figure");
    const cap = document.createElement("figcaption");
    cap.textContent = title;
    const canvas = document.createElement("canvas");
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", title);
    fig.append(cap, canvas);
    return { fig, canvas };
  }

  /** Draws the charts of `tr` now; `layer` (an index into its MoE layers) is the one the by-domain chart shows. */
  private render(tr: PanelTrace, layer: number): void {
    const foreground = getComputedStyle(document.body).getPropertyValue("--vscode-foreground").trim() || "#888";
    if (this.builtFor?.trace !== tr || this.builtFor.foreground !== foreground) {
      for (const c of this.charts) c.destroy();
      this.charts = [];
      this.titles = [];
      this.root.replaceChildren();
      this.builtFor = { trace: tr, foreground };
    }
    Chart.defaults.color = foreground;
    Chart.defaults.animation = false;
    const specs = this.specs(tr, Math.max(0, Math.min(tr.L - 1, layer)));
    specs.forEach((spec, i) => this.show(i, spec));
    for (const c of this.charts.splice(specs.length)) c.destroy();
    this.titles.length = specs.length;
    while (this.root.children.length > specs.length) this.root.lastElementChild!.remove();
  }

  /** Chart i shows `spec`: updated in place when it is the same kind of chart with as many series, else built. */
  private show(i: number, spec: ChartSpec): void {
    const chart = this.charts[i];
    const data = spec.config.data;
    if (chart && this.titles[i] === spec.title && chart.data.datasets.length === data.datasets.length) {
      chart.data.labels = data.labels;
      data.datasets.forEach((d, j) => Object.assign(chart.data.datasets[j], d));
      chart.options = spec.config.options ?? {};
      chart.update("none");
      return;
    }
    chart?.destroy();
    const { fig, canvas } = this.figure(spec.title);
    const old = this.root.children[i];
    if (old) old.replaceWith(fig);
    else this.root.append(fig);
    this.charts[i] = new Chart(canvas, spec.config);
    this.titles[i] = spec.title;
  }

  private specs(tr: PanelTrace, layer: number): ChartSpec[] {
    const layers = tr.header.model.moe_layers.map((l) => `L${l}`);
    const specs: ChartSpec[] = [];

    specs.push(tr.E <= MAX_STACKED_EXPERTS ? usageByExpert(tr, layers) : usageByRank(tr, layers));

    const hist = new Array<number>(tr.K + 1).fill(0);
    for (let i = 0; i < tr.count * tr.L; i++) hist[Math.min(tr.K, tr.active[i])]++;
    specs.push({
      title: "Active experts per token and layer",
      config: {
        type: "bar",
        data: { labels: hist.map((_, i) => String(i)), datasets: [{ label: "count", data: hist, backgroundColor: css(expertRgb(0)) }] },
        options: { responsive: true, maintainAspectRatio: false, plugins: { legend: { display: false } } },
      },
    });

    const step = Math.max(1, Math.ceil(tr.count / MAX_LINE_POINTS));
    const points: Array<number | null> = [];
    for (let t = 0; t < tr.count; t += step) {
      let s = 0,
        n = 0;
      for (let u = t; u < Math.min(tr.count, t + step); u++)
        if (Number.isFinite(tr.nll[u])) {
          s += tr.nll[u];
          n++;
        }
      points.push(n ? s / n : null);
    }
    specs.push({
      title: "NLL of the next token (nats) over the text",
      config: {
        type: "line",
        data: {
          labels: points.map((_, i) => String(i * step)),
          datasets: [{ label: "NLL", data: points, borderColor: css(expertRgb(2)), pointRadius: 0, borderWidth: 1 }],
        },
        options: {
          responsive: true,
          maintainAspectRatio: false,
          plugins: { legend: { display: false }, domainBoundaries: { tokens: tr.segments.slice(1).map((s) => s.start), step } } as never,
        },
        plugins: [boundaries],
      },
    });

    if (tr.segments.length > 1) {
      // One layer's experts by domain: the chosen layer (a heatmap or layer-view click picks it),
      // counted as the specialisation view counts its domain classes.
      const { labels, names: domains } = segmentClasses(tr);
      const classCounts = specialisation(routingColumns(tr), layer, labels, domains.length).counts;
      const counts = domains.map((_, d) => Array.from(classCounts.subarray(d * tr.E, (d + 1) * tr.E)));
      const top = topExperts(Array.from({ length: tr.E }, (_, e) => counts.reduce((s, c) => s + c[e], 0)));
      const sums = counts.map((c) => c.reduce((a, b) => a + b, 0) || 1);
      specs.push({
        title: `Expert usage share by domain in layer ${layers[layer]} (pick a layer on the heatmap)`,
        config: {
          type: "bar",
          data: {
            labels: domains,
            datasets: [
              ...top.shown.map((e) => ({ label: `e${e}`, data: counts.map((c, d) => c[e] / sums[d]), backgroundColor: css(expertRgb(e)) })),
              ...(tr.E > top.shown.length
                ? [
                    {
                      label: "other",
                      data: counts.map((c, d) => c.reduce((s, n, e) => s + (top.member.has(e) ? 0 : n), 0) / sums[d]),
                      backgroundColor: "#8888",
                    },
                  ]
                : []),
            ],
          },
          options: {
            responsive: true,
            maintainAspectRatio: false,
            scales: { x: { stacked: true }, y: { stacked: true, max: 1 } },
            plugins: { legend: { display: false } },
          },
        },
      });
    }
    return specs;
  }
}
