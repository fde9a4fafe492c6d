// The compact binary trace export (.moetrace, extension/core/export.ts): written batch by
// batch, read back exactly (every column bit for bit, the text's bytes, header and summary),
// a clear error for a file that is not one, and far smaller than the JSON export.
import test from "node:test";
import assert from "node:assert/strict";
import zlib from "node:zlib";
import { exportFormatOf, readMoeTrace, traceToString, TraceExportWriter } from "../../extension/core/export";
import { sliceBatch } from "../../extension/core/trace-store";
import type { Trace, TraceBatch } from "../../shared/trace";
import type { TraceHeader } from "../../shared/wire";

const T = 40,
  L = 3,
  K = 2,
  N = 4,
  E = 6;
const TEXT = "héllo 🌊 ".repeat(T).slice(0, T * 2);

function synthetic(): Trace {
  let seed = 7;
  const rnd = () => (seed = (seed * 48271) % 2147483647) / 2147483647;
  const enc = Buffer.from(TEXT, "utf8");
  const per = Math.floor(enc.length / T);
  const c: TraceBatch = {
    start: 0,
    count: T,
    tokenIds: Int32Array.from({ length: T }, (_, i) => 1000 + i),
    byteStart: Int32Array.from({ length: T }, (_, i) => i * per),
    byteEnd: Int32Array.from({ length: T }, (_, i) => (i + 1) * per),
    pieces: Array.from({ length: T }, (_, i) => `p${i}\uFFFD`),
    nll: Float32Array.from({ length: T }, (_, i) => (i === T - 1 ? NaN : rnd() * 5)),
    experts: Int32Array.from({ length: T * L * K }, () => Math.floor(rnd() * E)),
    weights: Float32Array.from({ length: T * L * K }, () => rnd()),
    entropy: Float32Array.from({ length: T * L }, () => rnd() * 2),
    active: Uint8Array.from({ length: T * L }, () => 1 + Math.floor(rnd() * K)),
    topIds: Int32Array.from({ length: T * L * N }, () => Math.floor(rnd() * E)),
    topProbs: Float32Array.from({ length: T * L * N }, () => rnd()),
    expertNorms: Float32Array.from({ length: T * L * K }, () => rnd() * 100),
    routerProbs: Uint16Array.from({ length: T * L * E }, () => Math.floor(rnd() * 0x3c00)),
  };
  const header = {
    model: { path: "/m.gguf", n_expert: E, moe_layers: [1, 2, 3] },
    policy: { amg: { threshold: 0.5 } },
    n_moe_layers: L,
    k: K,
    top_n: N,
    n_tokens: T,
    windows: [{ start: 0, end: T, scored_from: 0, recorded_end: T }],
    kv_shift: 0,
    probs: true,
  } as unknown as TraceHeader;
  return { header, columns: c, summary: { n_tokens: T, ppl: 3.25, mean_nll: 1.1786549963416462 } as never };
}

test("a .moetrace export reads back bit for bit, written whole or batch by batch", async () => {
  const t = synthetic();
  const whole = await traceToString("moetrace", t, TEXT);
  const parts: Buffer[] = [];
  const w = new TraceExportWriter("moetrace", TEXT, (c) => void parts.push(Buffer.from(c as Uint8Array)));
  await w.begin(t.header);
  for (const [a, b] of [
    [0, 1],
    [1, 17],
    [17, T],
  ])
    await w.batch(sliceBatch(t.columns, L, K, N, a, b, E));
  await w.end(t.summary);
  for (const file of [whole, Buffer.concat(parts)]) {
    const back = readMoeTrace(file);
    assert.deepEqual(back.trace.header, t.header);
    assert.deepEqual(back.trace.summary, t.summary);
    assert.equal(Buffer.from(back.text).toString("utf8"), TEXT);
    const c = back.trace.columns;
    assert.equal(c.count, T);
    assert.deepEqual(c.pieces, t.columns.pieces);
    for (const name of ["tokenIds", "byteStart", "byteEnd", "nll", "experts", "weights", "entropy", "active", "topIds", "topProbs"] as const) {
      const a = t.columns[name]!,
        b = c[name]!;
      assert.equal(b.constructor, a.constructor, name);
      assert.deepEqual(Buffer.from(b.buffer, b.byteOffset, b.byteLength), Buffer.from(a.buffer, a.byteOffset, a.byteLength), `${name}: the same bits`);
    }
    assert.deepEqual(back.routerProbs, t.columns.routerProbs);
    assert.deepEqual(back.expertNorms, t.columns.expertNorms);
  }
});

test("the .moetrace export (with the full router distribution) is a third of the JSON export (without it) or less; JSON is compact and keeps float32 precision", async () => {
  const t = synthetic();
  const bin = await traceToString("moetrace", t, TEXT);
  const json = await traceToString("json", t, TEXT);
  assert.ok(bin.length * 3 < Buffer.byteLength(json), `moetrace ${bin.length} B, JSON ${Buffer.byteLength(json)} B`);
  assert.ok(!/\n {2,}"/.test(json), "no indentation");
  const j = JSON.parse(json) as { tokens: Array<{ layers: Array<{ weights: number[]; top: number[][] }> }> };
  for (let i = 0; i < T; i++)
    for (let m = 0; m < L; m++) {
      const ws = j.tokens[i].layers[m].weights.map((x) => Math.fround(x));
      assert.deepEqual(ws, Array.from(t.columns.weights.subarray((i * L + m) * K, (i * L + m + 1) * K)));
      assert.equal(Math.fround(j.tokens[i].layers[m].top[0][1]), t.columns.topProbs![(i * L + m) * N]);
    }
});

test("a file that is not a complete .moetrace export gets a clear error", async () => {
  assert.throws(() => readMoeTrace(Buffer.from("{}"), "x.moetrace"), /x\.moetrace is not a \.moetrace export \(not gzip/);
  assert.throws(() => readMoeTrace(zlib.gzipSync(Buffer.from("NOTATRACE")), "y"), /no MOETRACE signature/);
  const parts: Buffer[] = [];
  const w = new TraceExportWriter("moetrace", TEXT, (c) => void parts.push(Buffer.from(c as Uint8Array)));
  const t = synthetic();
  await w.begin(t.header);
  await w.batch(t.columns);
  assert.throws(() => readMoeTrace(Buffer.concat(parts), "z"), /ends before its summary/);
  assert.equal(exportFormatOf("a/b.MoeTrace"), "moetrace");
  assert.equal(exportFormatOf("a.csv"), "csv");
  assert.equal(exportFormatOf("a.json"), "json");
});
