// The Ant calibration round trip: router logits from the server → ridge fit → versioned
// file tied to the model's SHA-256 → loaded by the server → Ant routing runs; a stale,
// mismatched or foreign file is refused with a clear message and the server stays up.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { fitAntPredictor, PREDICTOR_FORMAT, PREDICTOR_VERSION, sha256File } from "../../extension/core/ant";
import type { ServerError } from "../../extension/core/server-client";
import type { ServerProcess } from "../../extension/core/server-process";
import { DEMO_MODEL, ROOT, startServer } from "../helpers";

let server: ServerProcess;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "moe-lens-ant-"));
const predictor = path.join(dir, "demo.moe-ant.json");
const CALIBRATION = fs.readFileSync(path.join(ROOT, "test", "fixtures", "demo-sample.md"), "utf8");
const EVAL = fs.readFileSync(path.join(ROOT, "test", "fixtures", "transitions", "01.txt"), "utf8").replace(/^<<<domain:\w+>>>\n/gm, "");

before(async () => {
  server = await startServer(DEMO_MODEL);
});
after(async () => {
  await server?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

test("fit, save, load and route with Ant", async () => {
  await assert.rejects(
    server.client.trace({ text: EVAL, policy: { ant: { gamma: 0.5 } } }),
    (e: ServerError) => e.status === 409 && /predictor/.test(e.message),
  );
  const out = await fitAntPredictor(server.client, CALIBRATION, DEMO_MODEL, { outPath: predictor });
  assert.equal(out, predictor);
  const file = JSON.parse(fs.readFileSync(predictor, "utf8"));
  assert.equal(file.format, PREDICTOR_FORMAT);
  assert.equal(file.version, PREDICTOR_VERSION);
  assert.equal(file.model_sha256, await sha256File(DEMO_MODEL));
  const info = await server.client.modelInfo();
  assert.equal(info.predictor_loaded, true);
  assert.deepEqual(file.moe_layers, info.moe_layers);
  assert.equal(file.layers.length, info.moe_layers.length);
  assert.equal(Buffer.from(file.layers[0].W, "base64").length, 4 * info.n_expert * (2 * info.n_expert + 1));

  const base = await server.client.trace({ text: EVAL });
  const ant = await server.client.trace({ text: EVAL, policy: { ant: { gamma: 2 } } });
  assert.equal(ant.columns.count, base.columns.count);
  let changed = 0;
  for (let i = 0; i < base.columns.experts.length; i++) if (base.columns.experts[i] !== ant.columns.experts[i]) changed++;
  assert.ok(changed > 0, "Ant with γ=2 changes some selections");
  const zero = await server.client.trace({ text: EVAL, policy: { ant: { gamma: 0 } } });
  assert.deepEqual(Array.from(zero.columns.experts), Array.from(base.columns.experts), "γ = 0 routes as the model does");
});

test("a stale, mismatched or foreign predictor file is refused", async () => {
  const good = JSON.parse(fs.readFileSync(predictor, "utf8"));
  const write = (name: string, content: unknown) => {
    const f = path.join(dir, name);
    fs.writeFileSync(f, typeof content === "string" ? content : JSON.stringify(content));
    return f;
  };
  const cases: Array<[string, string, RegExp]> = [
    ["other-model", write("other.json", { ...good, model_sha256: "0".repeat(64) }), /another model file/],
    ["future version", write("v2.json", { ...good, version: 2 }), /version 2/],
    ["not a predictor", write("x.json", { hello: 1 }), /not a MoE Lens Ant predictor/],
    ["not JSON", write("y.json", "{broken"), /not valid JSON/],
    ["wrong layers", write("layers.json", { ...good, layers: good.layers.slice(1) }), /layers/],
    ["missing", path.join(dir, "absent.json"), /cannot read/],
  ];
  for (const [name, file, why] of cases) {
    await assert.rejects(server.client.loadPredictor(file), (e: ServerError) => e.status === 400 && why.test(e.message), name);
  }
  assert.equal((await server.client.health()).ok, true);
  await server.client.loadPredictor(null);
  assert.equal((await server.client.modelInfo()).predictor_loaded, false);
});
