// The host's trace pipeline against the real server and the fine demo model (64 experts,
// k 8), with the full router distribution: a text longer than the context streams in one
// shifted window (every token evaluated once) with a small first batch, lands in the
// TraceStore as one set of columns equal to what the server sent, survives a .moetrace
// export bit for bit, is found again for an unchanged re-trace, and is evicted first when
// the history's memory cap needs room.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { readMoeTrace, TraceExportWriter } from "../../extension/core/export";
import type { ServerProcess } from "../../extension/core/server-process";
import { TraceStore, type TraceRecord } from "../../extension/core/trace-store";
import { concatBatches, type TraceBatch } from "../../shared/trace";
import type { TraceHeader } from "../../shared/wire";
import { FINE_MODEL, requireFile, ROOT, startServer } from "../helpers";

const CTX = 256;
let server: ServerProcess;
let text: string;

before(async () => {
  server = await startServer(requireFile(FINE_MODEL, "the fine demo model ships in media/models"), { ctx: CTX });
  const sample = fs.readFileSync(path.join(ROOT, "test", "fixtures", "demo-sample.md"), "utf8");
  text = sample;
  while ((await server.client.tokenize(text)).tokens.length < 3 * CTX) text += "\n\n" + sample;
});
after(async () => server?.stop());

async function traceInto(store: TraceStore, uri: string): Promise<{ r: TraceRecord; sent: TraceBatch[]; header: TraceHeader }> {
  const r = store.begin({ uri, version: 1, text, baseOffset: 0, wholeDocument: true, label: uri, policy: {} });
  const sent: TraceBatch[] = [];
  let header: TraceHeader | undefined;
  const res = await server.client.traceStream(
    { text, policy: {}, top_n: 8, probs: true },
    {
      onHeader: (h) => {
        header = h;
        store.setHeader(r.id, h);
      },
      onBatch: (b) => {
        sent.push(b);
        store.append(r.id, b);
      },
    },
  );
  store.finish(r.id, res.summary);
  return { r, sent, header: header! };
}

test("a long text: one shifted window, a first batch of at most 32 tokens, the store's columns equal to the stream", async () => {
  const store = new TraceStore();
  const { r, sent, header } = await traceInto(store, "file:///long.md");
  assert.ok(header.n_tokens > 2 * CTX);
  assert.equal(header.kv_shift, CTX / 2);
  assert.deepEqual(header.windows, [{ start: 0, end: header.n_tokens, scored_from: 0, recorded_end: header.n_tokens }], "every token evaluated once");
  assert.ok(sent[0].count <= 32, `first batch ${sent[0].count} tokens`);
  assert.equal(r.count, header.n_tokens);
  const streamed = concatBatches(header, sent);
  const c = r.columns;
  for (const name of ["tokenIds", "byteStart", "byteEnd", "nll", "experts", "weights", "entropy", "active", "topIds", "topProbs"] as const) {
    assert.deepEqual(c[name], streamed[name], name);
  }
  const E = header.model.n_expert;
  assert.equal(c.routerProbs!.length, r.count * header.n_moe_layers * E);
  let at = 0;
  for (const b of sent) {
    assert.deepEqual(c.routerProbs!.subarray(at, at + b.routerProbs!.length), b.routerProbs);
    at += b.routerProbs!.length;
  }
});

test("a stored trace exports as .moetrace and reads back bit for bit; a re-trace is found; the cap evicts the oldest", async () => {
  const store = new TraceStore();
  const { r } = await traceInto(store, "file:///a.md");
  const parts: Buffer[] = [];
  const w = new TraceExportWriter("moetrace", r.text, (chunk) => void parts.push(Buffer.from(chunk as Uint8Array)));
  await w.begin(r.header!);
  for (const b of r.batches) await w.batch(b);
  await w.end(r.summary);
  const file = Buffer.concat(parts);
  const back = readMoeTrace(file);
  assert.deepEqual(back.trace.columns.experts, r.columns.experts);
  assert.deepEqual(back.trace.columns.topProbs, r.columns.topProbs);
  assert.deepEqual(back.routerProbs, r.columns.routerProbs);
  assert.equal(Buffer.from(back.text).toString("utf8"), text);
  const json: string[] = [];
  const jw = new TraceExportWriter("json", r.text, (chunk) => void json.push(chunk as string));
  await jw.begin(r.header!);
  for (const b of r.batches) await jw.batch(b);
  await jw.end(r.summary);
  assert.ok(
    file.length < Buffer.byteLength(json.join("")),
    `.moetrace ${file.length} B (with every router probability) < JSON ${Buffer.byteLength(json.join(""))} B (without)`,
  );

  const model = r.header!.model;
  const key = { uri: "file:///a.md", version: 1, text, baseOffset: 0, wholeDocument: true, policy: {}, modelPath: model.path, routerPack: null, topN: 8 };
  assert.equal(store.findReusable(key), r);
  assert.equal(store.findReusable({ ...key, policy: { amg: { threshold: 0.5 } } }), undefined);

  const evicted: string[] = [];
  store.onDidEvict((gone) => evicted.push(...gone.map((x) => x.id)));
  store.setCap(Math.ceil(1.5 * r.bytes));
  const second = await traceInto(store, "file:///b.md");
  assert.deepEqual(evicted, [r.id], "the older trace made room for the new one");
  assert.ok(store.get(second.r.id));
});
