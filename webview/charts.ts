// Charts of the current trace (chart.js, only the pieces used are registered): expert usage
// per layer, histogram of active experts per token, NLL over the text with domain
// boundaries, and expert usage by domain.
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
  type Plugin,
} from "chart.js";
import { css, expertRgb } from "./colors";
import type { PanelTrace } from "./store";

Chart.register(BarController, BarElement, CategoryScale, LinearScale, LineController, LineElement, PointElement, Legend, Tooltip);

const MAX_LINE_POINTS = 2000;

/** Vertical lines at domain boundaries on the NLL chart. */
const boundaries: Plugin<"line"> = {
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

export class Charts {
  private charts: Chart[] = [];
  readonly root: HTMLElement;

  constructor(parent: HTMLElement) {
    this.root = document.createElement("section");
    this.root.className = "charts";
    this.root.setAttribute("aria-label", "Routing charts");
    parent.append(this.root);
  }

  private canvas(title: string): HTMLCanvasElement {
    const fig = document.createElement("figure");
    const cap = document.createElement("figcaption");
    cap.textContent = title;
    const c = document.createElement("canvas");
    c.setAttribute("role", "img");
    c.setAttribute("aria-label", title);
    fig.append(cap, c);
    this.root.append(fig);
    return c;
  }

  render(tr: PanelTrace): void {
    for (const c of this.charts) c.destroy();
    this.charts = [];
    this.root.replaceChildren();
    const fg = getComputedStyle(document.body).getPropertyValue("--vscode-foreground").trim() || "#888";
    Chart.defaults.color = fg;
    Chart.defaults.animation = false;
    const layers = tr.header.model.moe_layers.map((l) => `L${l}`);

    const usage = tr.usage();
    // With many experts, stack the 16 most used and one "other" so the chart stays legible.
    const totals = Array.from({ length: tr.E }, (_, e) => usage.reduce((s, row) => s + row[e], 0));
    const experts = Array.from({ length: tr.E }, (_, e) => e)
      .sort((a, b) => totals[b] - totals[a])
      .slice(0, 16)
      .sort((a, b) => a - b);
    const shown = new Set(experts);
    this.charts.push(
      new Chart(this.canvas("Expert usage per layer"), {
        type: "bar",
        data: {
          labels: layers,
          datasets: [
            ...experts.map((e) => ({ label: `e${e}`, data: usage.map((row) => row[e]), backgroundColor: css(expertRgb(e)) })),
            ...(tr.E > experts.length
              ? [{ label: "other", data: usage.map((row) => row.reduce((s, c, e) => s + (shown.has(e) ? 0 : c), 0)), backgroundColor: "#8888" }]
              : []),
          ],
        },
        options: {
          responsive: true,
          maintainAspectRatio: false,
          scales: { x: { stacked: true }, y: { stacked: true } },
          plugins: { legend: { display: experts.length <= 16 } },
        },
      }),
    );

    const hist = new Array<number>(tr.K + 1).fill(0);
    for (let i = 0; i < tr.count * tr.L; i++) hist[Math.min(tr.K, tr.active[i])]++;
    this.charts.push(
      new Chart(this.canvas("Active experts per token and layer"), {
        type: "bar",
        data: { labels: hist.map((_, i) => String(i)), datasets: [{ label: "count", data: hist, backgroundColor: css(expertRgb(0)) }] },
        options: { responsive: true, maintainAspectRatio: false, plugins: { legend: { display: false } } },
      }),
    );

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
    this.charts.push(
      new Chart(this.canvas("NLL of the next token (nats) over the text"), {
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
      }),
    );

    if (tr.segments.length > 1) {
      const domains = [...new Set(tr.segments.map((s) => s.domain))];
      const byDomain = domains.map((d) => {
        const counts = new Array<number>(tr.E).fill(0);
        for (const s of tr.segments.filter((x) => x.domain === d)) {
          for (const row of tr.usage(s.start, s.end)) row.forEach((c, e) => (counts[e] += c));
        }
        const total = counts.reduce((a, b) => a + b, 0) || 1;
        return counts.map((c) => c / total);
      });
      this.charts.push(
        new Chart(this.canvas("Expert usage share by domain (all layers)"), {
          type: "bar",
          data: {
            labels: domains,
            datasets: experts.map((e) => ({ label: `e${e}`, data: byDomain.map((row) => row[e]), backgroundColor: css(expertRgb(e)) })),
          },
          options: {
            responsive: true,
            maintainAspectRatio: false,
            scales: { x: { stacked: true }, y: { stacked: true, max: 1 } },
            plugins: { legend: { display: false } },
          },
        }),
      );
    }
  }
}
