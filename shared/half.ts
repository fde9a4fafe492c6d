// IEEE 754 half precision (binary16) in both directions. The server records every expert's
// router probability as halves (shared/trace.ts TraceBatch.routerProbs), and gate weights
// travel to the panel as halves (shared/protocol.ts PanelBatch): 11 significant bits, a
// relative error of at most 2^-11, which no view of the panel can show.

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** An IEEE 754 half-precision value (its 16 bits) as a number. */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/**
 * The half-precision bits nearest to `x` (ties to even; beyond ±65504, ±∞). A non-zero value
 * too small for a half becomes the smallest one of its sign, never 0: a gate weight of 0 means
 * "dropped", and a kept expert must not read as dropped.
 */
export function floatToHalf(x: number): number {
  f32[0] = x;
  const bits = u32[0];
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return exp || mant ? sign | 1 : sign;
    // A subnormal half: the significand with its leading 1, shifted into 10 bits.
    const m = mant | 0x800000;
    const shift = 14 - e;
    let h = m >>> shift;
    const rest = m & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rest > halfway || (rest === halfway && h & 1)) h++;
    return sign | (h || 1);
  }
  let h = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  // A carry out of the significand moves to the next exponent (up to ∞), as rounding should.
  if (rest > 0x1000 || (rest === 0x1000 && h & 1)) h++;
  return sign | h;
}

/** Every value of `a` as half-precision bits. */
export function toHalves(a: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = floatToHalf(a[i]);
  return out;
}

let table: Float32Array | undefined;

/** Writes the halves `h` as numbers into `out` from `offset` (a table lookup per value). */
export function fromHalves(h: ArrayLike<number>, out: Float32Array, offset = 0): void {
  table ??= Float32Array.from({ length: 65536 }, (_, i) => halfToFloat(i));
  for (let i = 0; i < h.length; i++) out[offset + i] = table[h[i]];
}
