// Formatting shared by the command line, the hovers and the panel, so the same value reads the
// same everywhere.

/** `x` with `digits` decimals, or "–" when there is no value (undefined, null, NaN, ±∞). */
export function formatNumber(x: number | null | undefined, digits: number): string {
  return x == null || !Number.isFinite(x) ? "–" : x.toFixed(digits);
}

/** The last component of a file path, "/" or "\\" separated (the webview has no node:path). */
export function fileName(p: string): string {
  return p.split(/[\\/]/).pop() || p;
}
