// The panel's pure helpers behind the expert views: auto-ranged colour scales (webview/scale.ts)
// and the expert search's id sets (webview/expert-filter.ts), with hand-worked answers.
import assert from "node:assert/strict";
import test from "node:test";
import { parseIdSet } from "../../webview/expert-filter";
import { autoRange, formatScaleNumber, normalise } from "../../webview/scale";

test("autoRange: observed min–max, zeros and non-finite values left out when asked, a fallback when empty", () => {
  assert.deepEqual(autoRange([0.13, 0.11, NaN, 0.17, Infinity]), { min: 0.11, max: 0.17 });
  assert.deepEqual(autoRange([0, 0.12, 0, 0.16], 4, { skipZero: true }), { min: 0.12, max: 0.16 });
  assert.deepEqual(autoRange([1, 2, 3], 2), { min: 1, max: 2 }, "only the first n values");
  assert.deepEqual(autoRange([NaN, NaN]), { min: 0, max: 1 });
  assert.deepEqual(autoRange([], 0, { fallback: { min: 0, max: 8 } }), { min: 0, max: 8 });
});

test("autoRange: quantile clipping keeps one outlier from flattening the rest", () => {
  const values = Array.from({ length: 101 }, (_, i) => i);
  values[100] = 1e6;
  assert.deepEqual(autoRange(values, values.length, { low: 0.01, high: 0.99 }), { min: 1, max: 99 });
  // 1,000,000 values are sampled with a stride, and still land on the same quantiles.
  const big = Float32Array.from({ length: 1_000_000 }, (_, i) => i % 1000);
  const r = autoRange(big, big.length, { high: 0.5 });
  assert.equal(r.min, 0);
  assert.ok(Math.abs(r.max - 500) <= 16, `median ≈ 500 (to the sampling stride, 16), got ${r.max}`);
});

test("normalise: position in the range, clamped; a one-value range maps to 1; NaN stays NaN", () => {
  const r = { min: 0.11, max: 0.17 };
  assert.ok(Math.abs(normalise(0.14, r) - 0.5) < 1e-12);
  assert.equal(normalise(0.05, r), 0);
  assert.equal(normalise(0.5, r), 1);
  assert.equal(normalise(3, { min: 3, max: 3 }), 1);
  assert.ok(Number.isNaN(normalise(NaN, r)));
});

test("formatScaleNumber: three significant digits", () => {
  assert.equal(formatScaleNumber(0.10999999940395355), "0.11");
  assert.equal(formatScaleNumber(2560), "2.56e+3");
  assert.equal(formatScaleNumber(1.23456), "1.23");
  assert.equal(formatScaleNumber(0), "0");
  assert.equal(formatScaleNumber(NaN), "–");
});

test("parseIdSet: ids and ranges, commas or spaces, an optional e prefix", () => {
  const s = parseIdSet("3, 17 40-43,e5 e6-e7", 128);
  assert.equal(s.count, 9);
  assert.deepEqual(
    Array.from(s.member.entries())
      .filter(([, v]) => v)
      .map(([i]) => i),
    [3, 5, 6, 7, 17, 40, 41, 42, 43],
  );
  assert.equal(parseIdSet("1-3, 2", 8).count, 3, "an id twice counts once");
  assert.equal(parseIdSet("  ", 8).count, 0);
});

test("parseIdSet: a bad term is named with the valid range", () => {
  assert.throws(() => parseIdSet("3, 200", 128), /expert 200 does not exist: ids run from 0 to 127/);
  assert.throws(() => parseIdSet("x7", 128), /"x7" is neither an id nor a range like 40-47 \(expert ids run from 0 to 127\)/);
  assert.throws(() => parseIdSet("9-4", 128), /"9-4": the range runs backwards/);
  assert.throws(() => parseIdSet("12", 10, "token", "t"), /token 12 does not exist: ids run from 0 to 9/);
});
