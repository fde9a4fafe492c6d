// shared/half.ts: IEEE half precision both ways, checked against known bit patterns, the
// rounding rule (ties to even), and the one liberty taken: a tiny non-zero value is never 0
// (a gate weight of 0 means "dropped").
import test from "node:test";
import assert from "node:assert/strict";
import { floatToHalf, fromHalves, halfToFloat, toHalves } from "../../shared/half";

test("known values encode to their IEEE binary16 bits and back", () => {
  const known: Array<[number, number]> = [
    [0, 0x0000],
    [-0, 0x8000],
    [1, 0x3c00],
    [-2, 0xc000],
    [0.5, 0x3800],
    [65504, 0x7bff], // the largest half
    [2 ** -14, 0x0400], // the smallest normal
    [2 ** -24, 0x0001], // the smallest subnormal
    [Infinity, 0x7c00],
    [-Infinity, 0xfc00],
  ];
  for (const [x, bits] of known) {
    assert.equal(floatToHalf(x), bits, `${x}`);
    assert.ok(Object.is(halfToFloat(bits), x), `${bits.toString(16)} reads back as ${x}`);
  }
  assert.ok(Number.isNaN(halfToFloat(floatToHalf(NaN))));
  assert.equal(floatToHalf(1e6), 0x7c00, "beyond 65504: ∞");
});

test("rounding is to nearest, ties to even, and a carry moves to the next exponent", () => {
  // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to the even significand (1).
  assert.equal(floatToHalf(1 + 2 ** -11), 0x3c00);
  // 1 + 3·2^-11 is halfway between 1 + 2^-10 (odd) and 1 + 2^-9 (even).
  assert.equal(floatToHalf(1 + 3 * 2 ** -11), 0x3c02);
  assert.equal(floatToHalf(1 + 2 ** -11 + 2 ** -20), 0x3c01, "just above halfway rounds up");
  assert.equal(floatToHalf(2 - 2 ** -12), 0x4000, "2 − 2^-12 rounds up to 2 (exponent carry)");
  assert.equal(floatToHalf(65520), 0x7c00, "halfway above 65504 rounds to ∞");
  // Subnormals: 1.5 · 2^-24 is a tie between 1 and 2 (even), 2.5 · 2^-24 between 2 (even) and 3.
  assert.equal(floatToHalf(1.5 * 2 ** -24), 0x0002);
  assert.equal(floatToHalf(2.5 * 2 ** -24), 0x0002);
  assert.equal(floatToHalf(2 ** -15), 0x0200, "a subnormal half");
});

test("gate weights keep 11 significant bits, and a kept (non-zero) weight never becomes 0", () => {
  for (let i = 1; i <= 2000; i++) {
    const w = Math.fround(i / 2001);
    const back = halfToFloat(floatToHalf(w));
    assert.ok(Math.abs(back - w) <= w * 2 ** -11, `${w} → ${back}`);
  }
  for (const tiny of [1e-9, 1e-30, 2 ** -149, -1e-12]) {
    const h = floatToHalf(tiny);
    assert.equal(h & 0x7fff, 1, `${tiny} becomes the smallest half of its sign, not 0`);
    assert.equal(Math.sign(halfToFloat(h)), Math.sign(tiny));
  }
});

test("toHalves and fromHalves convert whole columns, fromHalves from an offset", () => {
  const w = Float32Array.from([0.25, 0.125, 0, 0.6171875]);
  const h = toHalves(w);
  assert.deepEqual([...h], [0x3400, 0x3000, 0x0000, 0x38f0]);
  const out = new Float32Array(6).fill(-1);
  fromHalves(h, out, 2);
  assert.deepEqual([...out], [-1, -1, 0.25, 0.125, 0, 0.6171875]);
});
