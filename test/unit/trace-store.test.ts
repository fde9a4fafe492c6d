import test from "node:test";
import assert from "node:assert/strict";
import { TraceStore } from "../../extension/core/trace-store";
import { floatToHalf, halfToFloat } from "../../shared/half";
import type { TraceBatch } from "../../shared/trace";
import type { TraceHeader } from "../../shared/wire";

const enc = new TextEncoder();
const L = 2,
  K = 2;

function header(n: number): TraceHeader {
  return {
    model: {
      path: "/m.gguf",
      architecture: "qwen3moe",
      n_layer: 2,
      moe_layers: [0, 1],
      n_expert: 8,
      n_expert_used: K,
      n_expert_used_trained: K,
      n_expert_shared: 0,
      gating: "softmax",
      weights_norm: true,
      weights_scale: 1,
      n_ctx: 2048,
      n_ctx_train: 256,
      n_vocab: 3000,
      add_bos: true,
      description: "test",
      bos: 1,
      vocab_type: "bpe",
      size_bytes: 0,
      n_params: 0,
      capabilities: [],
      skip_supported: true,
      router_pack: null,
      router_devices: ["CPU", "CPU"],
    },
    policy: {},
    n_moe_layers: L,
    k: K,
    top_n: 0,
    n_tokens: n,
    windows: [{ start: 0, end: n, scored_from: 0, recorded_end: n }],
    kv_shift: 0,
    probs: false,
  };
}

/** A batch for the given pieces of `text`, starting at token `start` and byte `byte0`. */
function batch(pieces: string[], start: number, byte0: number): TraceBatch {
  const n = pieces.length;
  const b: TraceBatch = {
    start,
    count: n,
    tokenIds: new Int32Array(n),
    byteStart: new Int32Array(n),
    byteEnd: new Int32Array(n),
    pieces,
    nll: new Float32Array(n),
    experts: new Int32Array(n * L * K),
    weights: new Float32Array(n * L * K),
    entropy: new Float32Array(n * L),
    active: new Uint8Array(n * L),
  };
  let at = byte0;
  for (let i = 0; i < n; i++) {
    const len = enc.encode(pieces[i]).length;
    b.tokenIds[i] = 100 + start + i;
    b.byteStart[i] = at;
    b.byteEnd[i] = at + len;
    at += len;
    b.nll[i] = start + i + 0.5;
    for (let l = 0; l < L; l++) {
      b.entropy[i * L + l] = l + 0.25;
      b.active[i * L + l] = 2;
      for (let k = 0; k < K; k++) {
        b.experts[(i * L + l) * K + k] = (start + i + l + k) % 8;
        b.weights[(i * L + l) * K + k] = k === 0 ? 0.75 : 0.25;
      }
    }
  }
  return b;
}

function traced(store: TraceStore, text: string, pieces: string[], opts: { base?: number; whole?: boolean; uri?: string } = {}) {
  const r = store.begin({
    uri: opts.uri ?? "file:///a.md",
    version: 1,
    text,
    baseOffset: opts.base ?? 0,
    wholeDocument: opts.whole ?? true,
    label: "doc",
    policy: {},
  });
  store.setHeader(r.id, header(pieces.length));
  store.append(r.id, batch(pieces, 0, 0));
  store.finish(r.id, undefined);
  return r;
}

test("tokens map to their exact document ranges; lookups find the token under an offset", () => {
  const store = new TraceStore();
  const text = "Hi 😀 é\r\nok";
  const pieces = ["Hi", " 😀", " é", "\r\n", "ok"];
  const r = traced(store, text, pieces);
  assert.equal(r.count, 5);
  for (let i = 0; i < pieces.length; i++) {
    const [s, e] = r.range(i);
    assert.equal(text.slice(s, e), pieces[i]);
  }
  const hit = store.tokensAt("file:///a.md", 1, text.indexOf("😀") + 1)!; // between surrogate halves
  assert.deepEqual(hit.tokens, [1]);
  assert.deepEqual(store.tokensAt("file:///a.md", 1, text.indexOf("é"))!.tokens, [2]);
  assert.deepEqual(store.tokensAt("file:///a.md", 1, text.indexOf("ok") + 1)!.tokens, [4]);
  assert.equal(store.tokensAt("file:///a.md", 1, text.length), undefined, "past the end: nothing");
  const t = r.token(2);
  assert.equal(t.piece, " é");
  assert.equal(t.nll, 2.5);
  assert.deepEqual([...t.experts], [2, 3, 3, 4]);
  assert.deepEqual([...t.weights], [0.75, 0.25, 0.75, 0.25]);
  assert.deepEqual([...t.active], [2, 2]);
});

test("a BOS token (empty span) is never found under the cursor", () => {
  const store = new TraceStore();
  const r = store.begin({ uri: "u", version: 3, text: "ab", baseOffset: 0, wholeDocument: true, label: "", policy: {} });
  store.setHeader(r.id, header(3));
  const b = batch(["", "a", "b"], 0, 0);
  b.byteStart[1] = 0;
  b.byteEnd[1] = 1;
  b.byteStart[2] = 1;
  b.byteEnd[2] = 2;
  store.append(r.id, b);
  assert.deepEqual(store.tokensAt("u", 3, 0)!.tokens, [1]);
  assert.deepEqual(store.tokensAt("u", 3, 1)!.tokens, [2]);
});

test("tokens that split one character both map to the whole character and both are found", () => {
  const store = new TraceStore();
  const text = "a😀b";
  const r = store.begin({ uri: "u", version: 1, text, baseOffset: 0, wholeDocument: true, label: "", policy: {} });
  store.setHeader(r.id, header(4));
  const b = batch(["a", "?", "?", "b"], 0, 0);
  b.byteStart.set([0, 1, 3, 5]);
  b.byteEnd.set([1, 3, 5, 6]);
  store.append(r.id, b);
  assert.deepEqual(r.range(1), [1, 3]);
  assert.deepEqual(r.range(2), [1, 3]);
  assert.deepEqual(store.tokensAt("u", 1, 1)!.tokens, [1, 2]);
  assert.deepEqual(store.tokensAt("u", 1, 2)!.tokens, [1, 2]);
  assert.deepEqual(store.tokensAt("u", 1, 3)!.tokens, [3]);
});

test("a lookup with another document version finds nothing", () => {
  const store = new TraceStore();
  traced(store, "one two", ["one", " two"]);
  assert.ok(store.tokensAt("file:///a.md", 1, 0));
  assert.equal(store.tokensAt("file:///a.md", 2, 0), undefined);
  assert.equal(store.active("file:///a.md", 0), undefined);
});

test("an edit after the traced range keeps every token in place", () => {
  const store = new TraceStore();
  const r = traced(store, "alpha beta", ["alpha", " beta"], { whole: false });
  store.applyEdit("file:///a.md", 2, [{ rangeOffset: 10, rangeLength: 0, text: " gamma" }]);
  assert.equal(r.version, 2);
  assert.equal(r.count, 2);
  assert.deepEqual(r.range(1), [5, 10]);
  assert.equal(r.truncated, false);
});

test("an edit before a selection trace shifts it by the change in length", () => {
  const store = new TraceStore();
  const doc = "intro: alpha beta";
  const base = doc.indexOf("alpha");
  const r = traced(store, "alpha beta", ["alpha", " beta"], { base, whole: false });
  store.applyEdit("file:///a.md", 2, [{ rangeOffset: 0, rangeLength: 5, text: "😀😀😀" }]); // "intro" → 3 emoji (6 units)
  const newDoc = "😀😀😀" + doc.slice(5);
  const [s, e] = r.range(1);
  assert.equal(newDoc.slice(s, e), " beta");
  assert.deepEqual(store.tokensAt("file:///a.md", 2, newDoc.indexOf("alpha"))!.tokens, [0]);
});

test("an edit inside the trace keeps only the tokens that end before it", () => {
  const store = new TraceStore();
  const text = "one two three four";
  const r = traced(store, text, ["one", " two", " three", " four"]);
  // replace "three" with "3"
  store.applyEdit("file:///a.md", 2, [{ rangeOffset: text.indexOf("three"), rangeLength: 5, text: "3" }]);
  assert.equal(r.count, 2, "' three' (touches the edit) and ' four' (after it) are dropped");
  assert.ok(r.truncated);
  assert.equal(store.tokensAt("file:///a.md", 2, text.indexOf("two"))!.tokens[0], 1);
  assert.equal(store.tokensAt("file:///a.md", 2, text.indexOf("3")), undefined);
  assert.ok(Number.isNaN(r.token(1).nll), "the last kept token's next-token NLL is stale");
  assert.equal(r.token(0).nll, 0.5);
  assert.equal(
    r.batches.reduce((s, b) => s + b.count, 0),
    2,
    "stored batches are trimmed too",
  );
});

test("a token ending exactly where text is inserted is dropped (its tokenization may change)", () => {
  const store = new TraceStore();
  const r = traced(store, "ab cd", ["ab", " cd"]);
  store.applyEdit("file:///a.md", 2, [{ rangeOffset: 2, rangeLength: 0, text: "x" }]);
  assert.equal(r.count, 0);
  assert.equal(store.size, 0, "nothing left: the trace is removed");
});

test("an edit at the start of a whole-document trace removes it (its context changed)", () => {
  const store = new TraceStore();
  traced(store, "one two", ["one", " two"]);
  store.applyEdit("file:///a.md", 2, [{ rangeOffset: 0, rangeLength: 0, text: "# " }]);
  assert.equal(store.active("file:///a.md", 2), undefined);
});

test("several changes in one event are applied in order", () => {
  const store = new TraceStore();
  const doc = "head\nalpha beta gamma";
  const base = doc.indexOf("alpha");
  const r = traced(store, "alpha beta gamma", ["alpha", " beta", " gamma"], { base, whole: false });
  // VS Code sends multi-cursor edits last-first: first inside (at "gamma"), then before the trace.
  store.applyEdit("file:///a.md", 2, [
    { rangeOffset: doc.indexOf("gamma"), rangeLength: 0, text: "G" },
    { rangeOffset: 0, rangeLength: 4, text: "H" },
  ]);
  const newDoc = "H\nalpha beta Ggamma";
  assert.equal(r.count, 2);
  const [s, e] = r.range(1);
  assert.equal(newDoc.slice(s, e), " beta");
});

test("a missed version drops the trace instead of guessing", () => {
  const store = new TraceStore();
  traced(store, "x y", ["x", " y"]);
  store.applyEdit("file:///a.md", 5, [{ rangeOffset: 3, rangeLength: 0, text: "z" }]);
  assert.equal(store.size, 0);
});

test("an event at the same version (dirty-state change) changes nothing", () => {
  const store = new TraceStore();
  const r = traced(store, "x y", ["x", " y"]);
  store.applyEdit("file:///a.md", 1, []);
  assert.equal(r.count, 2);
  assert.ok(store.active("file:///a.md", 1));
});

test("batches streaming in after an edit are cut at the edit", () => {
  const store = new TraceStore();
  const text = "aa bb cc dd";
  const r = store.begin({ uri: "u", version: 1, text, baseOffset: 0, wholeDocument: true, label: "", policy: {} });
  store.setHeader(r.id, header(4));
  assert.ok(store.append(r.id, batch(["aa"], 0, 0)));
  store.applyEdit("u", 2, [{ rangeOffset: text.indexOf("cc") + 1, rangeLength: 0, text: "!" }]);
  const kept = store.append(r.id, batch([" bb", " cc", " dd"], 1, 2));
  assert.equal(kept?.count, 1, "only ' bb' ends before the edit");
  assert.equal(kept?.start, 1);
  assert.equal(store.append(r.id, batch([" ee"], 4, 11)), undefined, "nothing after a cut is accepted");
  store.finish(r.id, undefined);
  assert.equal(r.count, 2);
  assert.equal(r.version, 2);
});

test("a gap in the batch sequence stops the trace rather than misplacing tokens", () => {
  const store = new TraceStore();
  const r = store.begin({ uri: "u", version: 1, text: "a b c", baseOffset: 0, wholeDocument: true, label: "", policy: {} });
  store.setHeader(r.id, header(3));
  store.append(r.id, batch(["a"], 0, 0));
  assert.equal(store.append(r.id, batch([" c"], 2, 3)), undefined);
  assert.equal(r.count, 1);
});

test("traces per document are bounded; the newest is active; closing a document drops its traces", () => {
  const store = new TraceStore(2);
  const a = traced(store, "x", ["x"]);
  const b = traced(store, "x", ["x"]);
  const c = traced(store, "x", ["x"]);
  assert.equal(store.get(a.id), undefined);
  assert.ok(store.get(b.id));
  assert.equal(store.active("file:///a.md", 1), c);
  traced(store, "y", ["y"], { uri: "file:///b.md" });
  store.closeDocument("file:///a.md");
  assert.equal(store.active("file:///a.md", 1), undefined);
  assert.equal(store.size, 1);
});

test("a cancelled trace with no tokens is removed; listeners hear about changes", () => {
  const store = new TraceStore();
  const heard: string[] = [];
  const sub = store.onDidChange((u) => heard.push(u));
  const r = store.begin({ uri: "u", version: 1, text: "abc", baseOffset: 0, wholeDocument: true, label: "", policy: {} });
  store.finish(r.id, undefined, "cancelled");
  assert.equal(store.get(r.id), undefined);
  assert.ok(heard.length >= 2);
  sub.dispose();
});

test("a trace is one set of columns: views without copies, pieces for replay with arrays of their own", () => {
  const store = new TraceStore();
  const text = "one two three four";
  const r = store.begin({ uri: "u", version: 1, text, baseOffset: 0, wholeDocument: true, label: "", policy: {} });
  store.setHeader(r.id, header(4));
  store.append(r.id, batch(["one", " two"], 0, 0));
  store.append(r.id, batch([" three", " four"], 2, 7));
  store.finish(r.id, undefined);
  const c = r.columns;
  assert.equal(c.count, 4);
  assert.deepEqual([...c.tokenIds], [100, 101, 102, 103]);
  assert.deepEqual(c.pieces, ["one", " two", " three", " four"]);
  assert.equal(c.experts.length, 4 * L * K);
  assert.equal(r.columns.experts.buffer, c.experts.buffer, "the columns are views of one buffer");
  const sent = [...r.panelBatches()];
  assert.equal(
    sent.reduce((n, b) => n + b.count, 0),
    4,
  );
  assert.equal(sent[0].experts.byteLength, sent[0].experts.buffer.byteLength, "a replayed batch owns its whole buffer (postMessage sends whole buffers)");
  assert.deepEqual([...r.token(3).experts], [...c.experts.subarray(3 * L * K, 4 * L * K)]);
  assert.ok(r.bytes >= c.experts.byteLength + c.weights.byteLength + 2 * text.length);
});

test("the panel gets only the columns it draws; one cell's recorded top router probabilities come on request", () => {
  const store = new TraceStore();
  const N = 3;
  const r = store.begin({ uri: "u", version: 1, text: "a b", baseOffset: 0, wholeDocument: true, label: "", policy: {} });
  store.setHeader(r.id, { ...header(2), top_n: N, probs: true });
  const b = batch(["a", " b"], 0, 0);
  b.topIds = Int32Array.from({ length: 2 * L * N }, (_, i) => i % 8);
  b.topProbs = Float32Array.from({ length: 2 * L * N }, (_, i) => 1 / (i + 1));
  b.routerProbs = new Uint16Array(2 * L * 8);
  store.append(r.id, b);
  store.finish(r.id, undefined);
  const [sent] = [...r.panelBatches()];
  assert.deepEqual(Object.keys(sent).sort(), ["active", "count", "entropy", "experts", "nll", "pieces", "start", "tokenIds", "weightHalves"]);
  assert.ok(sent.experts instanceof Int16Array, "8 experts: the ids travel as 16-bit integers");
  assert.deepEqual([...sent.experts], [...b.experts]);
  assert.deepEqual(
    Array.from(sent.weightHalves, halfToFloat),
    Array.from(b.weights, (w) => halfToFloat(floatToHalf(w))),
    "the weights travel as halves",
  );
  const at = (1 * L + 1) * N; // token 1, MoE layer 1
  assert.deepEqual(r.routerTop(1, 1), { ids: Array.from(b.topIds.subarray(at, at + N)), probs: Array.from(b.topProbs.subarray(at, at + N)) });
  assert.deepEqual(r.routerTop(2, 0), { ids: [], probs: [] }, "a token past the trace");
  assert.deepEqual(r.routerTop(0, L), { ids: [], probs: [] }, "a layer past the trace");
});

test("router probabilities (f16) are stored with the trace and cut with it", () => {
  const store = new TraceStore();
  const E = 8;
  const r = store.begin({ uri: "u", version: 1, text: "a b c", baseOffset: 0, wholeDocument: true, label: "", policy: {} });
  store.setHeader(r.id, { ...header(3), probs: true });
  const b = batch(["a", " b", " c"], 0, 0);
  b.routerProbs = Uint16Array.from({ length: 3 * L * E }, (_, i) => i);
  store.append(r.id, b);
  store.finish(r.id, undefined);
  assert.deepEqual([...r.columns.routerProbs!.subarray(L * E, L * E + 3)], [L * E, L * E + 1, L * E + 2]);
  store.applyEdit("u", 2, [{ rangeOffset: 2, rangeLength: 1, text: "x" }]);
  assert.equal(r.count, 1);
  assert.equal(r.columns.routerProbs!.length, L * E);
});

test("history: every trace is kept, the selected one is active, removal by id", () => {
  const store = new TraceStore();
  const a = traced(store, "x y", ["x", " y"]);
  const b = traced(store, "x y", ["x", " y"]);
  assert.deepEqual(
    store.history("file:///a.md").map((r) => r.id),
    [a.id, b.id],
  );
  assert.equal(store.active("file:///a.md", 1), b, "the newest is active");
  store.select(a.id);
  assert.equal(store.active("file:///a.md", 1), a, "the one switched to is active");
  const c = traced(store, "x y", ["x", " y"]);
  assert.equal(store.active("file:///a.md", 1), c, "a new trace becomes active");
  assert.ok(store.removeById(c.id));
  assert.equal(store.removeById(c.id), false);
  assert.equal(store.active("file:///a.md", 1), b);
});

test("history memory cap: the oldest traces are evicted first and the eviction is reported", () => {
  const probe = new TraceStore();
  const one = traced(probe, "x y", ["x", " y"]).bytes;
  const store = new TraceStore(32, Math.floor(2.5 * one));
  const evictions: string[][] = [];
  store.onDidEvict((evicted, kept, cap) => {
    assert.ok(kept <= cap);
    evictions.push(evicted.map((r) => r.id));
  });
  const a = traced(store, "x y", ["x", " y"]);
  const b = traced(store, "x y", ["x", " y"], { uri: "file:///b.md" });
  assert.equal(evictions.length, 0);
  const c = traced(store, "x y", ["x", " y"]);
  assert.deepEqual(evictions, [[a.id]], "the oldest trace, whatever its document");
  assert.equal(store.get(a.id), undefined);
  assert.ok(store.get(b.id) && store.get(c.id));
  assert.ok(store.usedBytes <= store.cap);
  store.setCap(one);
  assert.deepEqual(evictions[1], [b.id]);
  assert.throws(() => store.setCap(0), /positive/);
});

test("a trace still streaming is never evicted, even past the cap", () => {
  const store = new TraceStore(32, 1);
  const r = store.begin({ uri: "u", version: 1, text: "a b", baseOffset: 0, wholeDocument: true, label: "", policy: {} });
  store.setHeader(r.id, header(2));
  store.append(r.id, batch(["a", " b"], 0, 0));
  assert.ok(store.get(r.id));
  store.finish(r.id, undefined);
  assert.equal(store.get(r.id), undefined, "once finished it is over the cap");
});

test("reuse: a finished trace of the same text, range, model, pack and policy; nothing else", () => {
  const store = new TraceStore();
  const r = traced(store, "x y", ["x", " y"]);
  const key = {
    uri: "file:///a.md",
    version: 1,
    text: "x y",
    baseOffset: 0,
    wholeDocument: true,
    policy: {},
    modelPath: "/m.gguf",
    routerPack: null,
    topN: 0,
  };
  assert.equal(store.findReusable(key), r);
  assert.equal(store.findReusable({ ...key, policy: { amg: { threshold: 0.5 } } }), undefined, "another policy");
  assert.equal(store.findReusable({ ...key, modelPath: "/other.gguf" }), undefined, "another model");
  assert.equal(store.findReusable({ ...key, routerPack: "/p.pack" }), undefined, "another router pack");
  assert.equal(store.findReusable({ ...key, text: "x z" }), undefined, "other text");
  assert.equal(store.findReusable({ ...key, version: 2 }), undefined, "another version");
  assert.equal(store.findReusable({ ...key, topN: 8 }), undefined, "more router probabilities asked for");
  const p = traced(store, "x y", ["x", " y"]);
  (p as { policy: object }).policy = { amg: { threshold: 0.5, min_k: 1 } };
  assert.equal(store.findReusable({ ...key, policy: { amg: { min_k: 1, threshold: 0.5 } } }), p, "key order does not matter");
  store.applyEdit("file:///a.md", 2, [{ rangeOffset: 2, rangeLength: 1, text: "z" }]);
  assert.equal(store.findReusable({ ...key, version: 2, text: "x z" }), undefined, "a cut trace is not reused");
  const cancelled = store.begin({ uri: "file:///c.md", version: 1, text: "x y", baseOffset: 0, wholeDocument: true, label: "", policy: {} });
  store.setHeader(cancelled.id, header(2));
  store.append(cancelled.id, batch(["x"], 0, 0));
  store.finish(cancelled.id, undefined, "cancelled");
  assert.equal(store.findReusable({ ...key, uri: "file:///c.md" }), undefined, "a cancelled trace is not reused");
});
