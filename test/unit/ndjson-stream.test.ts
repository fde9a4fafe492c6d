// The trace stream's line reader (ServerClient.traceStream, extension/core/server-client.ts),
// against a small HTTP server on 127.0.0.1 that sends the NDJSON in awkward pieces: a
// multi-megabyte batch line (as one with the full router distribution is) in 1000-byte
// chunks, a multibyte character split between two chunks, several records in one chunk and a
// last record without its newline. Every record arrives whole and exact; the reader looks
// at each byte a bounded number of times (it used to search the growing line from its start
// on every chunk).
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import { ServerClient } from "../../extension/core/server-client";
import type { TraceBatch } from "../../shared/trace";

const TOKEN = "t0ken";
const N = 2,
  L = 1,
  K = 2,
  E = 1_500_000; // probs: N·L·E halfs = 6 MB, 8 MB of base64
const probs = Uint16Array.from({ length: N * L * E }, (_, i) => i & 0xffff);
const b64 = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString("base64");
const HEADER = { type: "header", model: {}, policy: {}, n_moe_layers: L, k: K, top_n: 0, n_tokens: N, windows: [], kv_shift: 0, probs: true };
const BATCH = {
  type: "batch",
  start: 0,
  count: N,
  token_ids: b64(Int32Array.from([7, 8])),
  byte_spans: b64(Int32Array.from([0, 3, 3, 7])),
  pieces: ["日本", "🌊"],
  nll: b64(Float32Array.from([1.5, NaN])),
  experts: b64(Int32Array.from([0, 1, 1, 0])),
  weights: b64(Float32Array.from([0.75, 0.25, 0.5, 0.5])),
  entropy: b64(Float32Array.from([0.1, 0.2])),
  active: b64(Uint8Array.from([2, 2])),
  probs: b64(probs),
};
const SUMMARY = { type: "summary", n_tokens: N, ppl: 4.5, mean_nll: 1.5, avg_active: 2, avg_active_per_layer: [2], usage: [[1, 1]], elapsed_ms: 1 };

let server: http.Server;
let base = "";
before(async () => {
  server = http.createServer((_req, res) => {
    res.writeHead(200, { "Content-Type": "application/x-ndjson" });
    const body = Buffer.from(`${JSON.stringify(HEADER)}\n${JSON.stringify(BATCH)}\n${JSON.stringify(SUMMARY)}`, "utf8");
    // Cut 1 byte into "日" (3 bytes in UTF-8), then in 1000-byte pieces; header and the batch's start share a chunk.
    const cut = body.indexOf(Buffer.from("日", "utf8")) + 1;
    const chunks = [body.subarray(0, cut)];
    for (let at = cut; at < body.length; at += 1000) chunks.push(body.subarray(at, Math.min(body.length, at + 1000)));
    const send = () => {
      while (chunks.length) if (!res.write(chunks.shift())) return void res.once("drain", send);
      res.end();
    };
    send();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => {
  server.closeAllConnections();
  server.close();
});

test("records cut into many chunks, mid-character and without a last newline, arrive whole and exact", async () => {
  const batches: TraceBatch[] = [];
  const r = await new ServerClient(base, TOKEN).traceStream({ text: "日本🌊" }, { onBatch: (b) => void batches.push(b) });
  assert.equal(r.header.n_tokens, N);
  assert.equal(r.summary.ppl, 4.5, "the last record, with no newline after it");
  assert.equal(batches.length, 1);
  const b = batches[0];
  assert.deepEqual(b.pieces, ["日本", "🌊"], "a character split between chunks");
  assert.deepEqual([...b.weights], [0.75, 0.25, 0.5, 0.5]);
  assert.ok(Number.isNaN(b.nll[1]));
  assert.equal(b.routerProbs!.length, probs.length);
  assert.deepEqual(Buffer.from(b.routerProbs!.buffer, b.routerProbs!.byteOffset, b.routerProbs!.byteLength), Buffer.from(probs.buffer));
});
