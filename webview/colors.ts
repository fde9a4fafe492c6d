// Colour scales for the heatmap. The categorical palette (top-1 expert) keeps medium
// lightness so it reads on light, dark and high-contrast themes; sequential modes use a
// perceptually ordered ramp (viridis stops), fixed so pixels are testable.

export type Rgb = [number, number, number];

const CATEGORICAL: Rgb[] = [
  [78, 121, 167],
  [242, 142, 43],
  [225, 87, 89],
  [118, 183, 178],
  [89, 161, 79],
  [237, 201, 72],
  [176, 122, 161],
  [255, 157, 167],
  [156, 117, 95],
  [186, 176, 172],
  [31, 119, 180],
  [44, 160, 44],
  [214, 39, 40],
  [148, 103, 189],
  [23, 190, 207],
  [188, 189, 34],
];

function hslToRgb(h: number, s: number, l: number): Rgb {
  const k = (n: number) => (n + h / 30) % 12;
  const a = s * Math.min(l, 1 - l);
  const f = (n: number) => l - a * Math.max(-1, Math.min(k(n) - 3, Math.min(9 - k(n), 1)));
  return [Math.round(255 * f(0)), Math.round(255 * f(8)), Math.round(255 * f(4))];
}

/** Colour of expert e (golden-angle hues beyond the 16 hand-picked ones). */
export function expertRgb(e: number): Rgb {
  if (e < 0) return [128, 128, 128];
  return e < CATEGORICAL.length ? CATEGORICAL[e] : hslToRgb((e * 137.508) % 360, 0.55, 0.55);
}

const RAMP: Rgb[] = [
  [68, 1, 84],
  [59, 82, 139],
  [33, 145, 140],
  [94, 201, 98],
  [253, 231, 37],
];

/** Sequential colour for x in [0, 1] (clamped; NaN → grey). */
export function rampRgb(x: number): Rgb {
  if (!Number.isFinite(x)) return [128, 128, 128];
  const t = Math.max(0, Math.min(1, x)) * (RAMP.length - 1);
  const i = Math.min(RAMP.length - 2, Math.floor(t));
  const f = t - i;
  const a = RAMP[i],
    b = RAMP[i + 1];
  return [Math.round(a[0] + (b[0] - a[0]) * f), Math.round(a[1] + (b[1] - a[1]) * f), Math.round(a[2] + (b[2] - a[2]) * f)];
}

export function css([r, g, b]: Rgb): string {
  return `rgb(${r},${g},${b})`;
}

/** RGB packed for a little-endian ImageData Uint32 view (0xAABBGGRR). */
export function packRgb([r, g, b]: Rgb): number {
  return ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0;
}

const RAMP_STEPS = 1024;
const rampTable = new Uint32Array(RAMP_STEPS + 1);
for (let i = 0; i <= RAMP_STEPS; i++) rampTable[i] = packRgb(rampRgb(i / RAMP_STEPS));
const GREY = packRgb([128, 128, 128]);

/** rampRgb, packed, from a precomputed table (within one colour unit of rampRgb). */
export function rampPacked(x: number): number {
  if (!Number.isFinite(x)) return GREY;
  return rampTable[Math.round(Math.max(0, Math.min(1, x)) * RAMP_STEPS)];
}

const expertTable: number[] = [];
export function expertPacked(e: number): number {
  if (e < 0) return GREY;
  return (expertTable[e] ??= packRgb(expertRgb(e)));
}
