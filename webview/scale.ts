// Colour scales that range to the data shown, and their numeric legends. A fixed 0 → 1 scale
// renders k = 8 gate weights of 0.11–0.17 all near-black; every sequential view of the panel
// instead maps the observed range (clipped to robust quantiles, so one outlier does not flatten
// the rest) onto the ramp of colors.ts, and shows that range as a gradient bar with its
// minimum, middle and maximum written under it.
import { el } from "./dom";

/** The values a colour scale spans: `min` maps to the ramp's start, `max` to its end. */
export interface ScaleRange {
  min: number;
  max: number;
}

export interface AutoRangeOptions {
  /** Leave out exact zeros (not-selected cells, dead experts) when they mean "no value". */
  skipZero?: boolean;
  /** Quantiles the range is clipped to (0 and 1: the exact minimum and maximum). */
  low?: number;
  high?: number;
  /** Used when there is no finite value at all. */
  fallback?: ScaleRange;
}

/** At most this many values are sorted for a quantile; larger inputs are sampled with a stride. */
const QUANTILE_SAMPLE = 65536;
const sampleBuffer = new Float64Array(QUANTILE_SAMPLE);

/** The range of the finite values of `values[0, n)`, clipped to the [low, high] quantiles. */
export function autoRange(values: ArrayLike<number>, n = values.length, opts: AutoRangeOptions = {}): ScaleRange {
  const low = opts.low ?? 0,
    high = opts.high ?? 1;
  const stride = Math.max(1, Math.ceil(n / QUANTILE_SAMPLE));
  let min = Infinity,
    max = -Infinity,
    kept = 0;
  for (let i = 0; i < n; i++) {
    const v = values[i];
    if (!Number.isFinite(v) || (opts.skipZero && v === 0)) continue;
    if (v < min) min = v;
    if (v > max) max = v;
    if (i % stride === 0 && kept < QUANTILE_SAMPLE) sampleBuffer[kept++] = v;
  }
  if (min > max) return opts.fallback ?? { min: 0, max: 1 };
  if ((low > 0 || high < 1) && kept > 0) {
    const sorted = sampleBuffer.subarray(0, kept).sort();
    if (low > 0) min = sorted[Math.min(kept - 1, Math.floor(low * (kept - 1)))];
    if (high < 1) max = sorted[Math.min(kept - 1, Math.ceil(high * (kept - 1)))];
  }
  return { min, max };
}

/** Where x falls in the range, 0..1 (clamped; a range of one value maps everything to 1; NaN stays NaN). */
export function normalise(x: number, r: ScaleRange): number {
  if (!Number.isFinite(x)) return NaN;
  const span = r.max - r.min;
  if (!(span > 0)) return 1;
  return Math.max(0, Math.min(1, (x - r.min) / span));
}

/** A number for a legend: three significant digits, no exponent for everyday magnitudes. */
export function formatScaleNumber(x: number): string {
  if (!Number.isFinite(x)) return "–";
  if (x === 0) return "0";
  const a = Math.abs(x);
  if (a >= 1000 || a < 0.001) return x.toPrecision(3);
  return String(Number(x.toPrecision(3)));
}

/**
 * A numeric legend: title, the ramp as a gradient bar, and min / mid / max under it. `note`
 * says what the colours outside the ramp mean ("blank = not selected"). The element keeps
 * data-min/data-max so tests and screen readers get the numbers without parsing.
 */
export function scaleLegend(title: string, range: ScaleRange, note?: string, format: (x: number) => string = formatScaleNumber): HTMLElement {
  const box = el("span", "scale-legend");
  box.dataset.min = String(range.min);
  box.dataset.max = String(range.max);
  const bar = el("span", "scale-bar");
  const numbers = el("span", "scale-numbers");
  const minText = el("span", "scale-min", format(range.min));
  const midText = el("span", "scale-mid", format((range.min + range.max) / 2));
  const maxText = el("span", "scale-max", format(range.max));
  numbers.append(minText, midText, maxText);
  const ramp = el("span", "scale-ramp");
  ramp.append(bar, numbers);
  box.append(el("span", "scale-title", title), ramp);
  if (note) box.append(el("span", "scale-note", note));
  box.setAttribute("aria-label", `${title}: ${format(range.min)} to ${format(range.max)}${note ? `; ${note}` : ""}`);
  return box;
}
