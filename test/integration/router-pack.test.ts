// Router packs in the real server (docs/router-packs.md): the demo model's own routers written
// as a pack (moe-lens packs base) must reproduce the model's numbers exactly; a pack whose
// router differs must change the routing, and only where it differs; a pack made for another
// file is refused with the reason and the previous state kept; packs switch without a reload.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { readGgufLayout } from "../../extension/core/gguf-file";
import { packsForModel, readRouterPackSummary, routerPackDir, writeBaseRouterPack } from "../../extension/core/router-pack";
import { ServerError } from "../../extension/core/server-client";
import type { ServerProcess } from "../../extension/core/server-process";
import type { Trace } from "../../shared/trace";
import { DEMO_MODEL, startServer } from "../helpers";

const TEXT = "The river ran quietly past the old mill.\n```python\ndef area(r):\n    return 3.14159 * r * r\n```\nDer Fluss floss ruhig.";

describe("router packs", () => {
  let server: ServerProcess;
  let dir: string;
  let basePack: string;
  let flatPack: string;
  let foreignPack: string;
  let baseline: Trace;
  let baselinePpl: number;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "moe-lens-packs-"));
    basePack = path.join(dir, "base.gguf");
    await writeBaseRouterPack(DEMO_MODEL, basePack);

    // The same pack with layer 0's router zeroed: its logits are all 0, so every expert of
    // layer 0 gets probability 1/E, and the other layers are untouched.
    flatPack = path.join(dir, "flat0.gguf");
    const bytes = fs.readFileSync(basePack);
    const layout = readGgufLayout(basePack);
    const w0 = layout.tensors.find((t) => t.name === "blk.0.router.weight")!;
    bytes.fill(0, layout.dataStart + w0.offset, layout.dataStart + w0.offset + w0.nbytes);
    fs.writeFileSync(flatPack, bytes);

    // A pack claiming another base file.
    foreignPack = path.join(dir, "foreign.gguf");
    const sha = readRouterPackSummary(basePack).baseSha256;
    const foreign = fs.readFileSync(basePack);
    const at = foreign.indexOf(Buffer.from(sha, "latin1"));
    foreign.write(sha[0] === "0" ? "1" : "0", at, "latin1");
    fs.writeFileSync(foreignPack, foreign);

    server = await startServer(DEMO_MODEL);
    baseline = await server.client.trace({ text: TEXT, top_n: 8 });
    baselinePpl = (await server.client.perplexity({ text: TEXT.repeat(6), n_ctx: 64 })).ppl;
  });
  after(async () => {
    await server?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test("the base pack reproduces the model exactly: experts, weights, NLL, router probabilities, perplexity", async () => {
    const info = await server.client.loadRouterPack(basePack);
    assert.equal(info?.name, "base");
    assert.equal(info?.mechanisms, "");
    assert.equal((await server.client.modelInfo()).router_pack?.path, basePack);
    const t = await server.client.trace({ text: TEXT, top_n: 8 });
    assert.deepEqual(t.columns.experts, baseline.columns.experts);
    assert.deepEqual(t.columns.weights, baseline.columns.weights);
    assert.deepEqual(t.columns.nll, baseline.columns.nll);
    assert.deepEqual(t.columns.topProbs, baseline.columns.topProbs);
    assert.equal((await server.client.perplexity({ text: TEXT.repeat(6), n_ctx: 64 })).ppl, baselinePpl);
  });

  test("a pack with another router changes that layer's routing and no other layer's", async () => {
    await server.client.loadRouterPack(flatPack);
    const t = await server.client.trace({ text: TEXT, top_n: 8 });
    const { n_moe_layers: L, n_tokens: T } = t.header;
    const N = t.header.top_n;
    for (let i = 0; i < T; i++) {
      for (let n = 0; n < N; n++) assert.ok(Math.abs(t.columns.topProbs![(i * L + 0) * N + n] - 1 / 8) < 1e-6, `token ${i}: layer 0 is uniform`);
    }
    assert.notDeepEqual(t.columns.nll, baseline.columns.nll, "a different router changes the predictions");
    await server.client.loadRouterPack(null);
    assert.equal((await server.client.modelInfo()).router_pack, null);
    const back = await server.client.trace({ text: TEXT, top_n: 8 });
    assert.deepEqual(back.columns.experts, baseline.columns.experts, "unloading restores the model's routers");
  });

  test("a pack made for another file is refused with the reason, and the loaded pack stays", async () => {
    await server.client.loadRouterPack(basePack);
    await assert.rejects(
      server.client.loadRouterPack(foreignPack),
      (e: unknown) => e instanceof ServerError && e.status === 400 && /another model file/.test(e.message),
    );
    await assert.rejects(
      server.client.loadRouterPack(path.join(dir, "missing.gguf")),
      (e: unknown) => e instanceof ServerError && e.status === 400 && /cannot be read/.test(e.message),
    );
    await assert.rejects(
      server.client.loadRouterPack(DEMO_MODEL),
      (e: unknown) => e instanceof ServerError && e.status === 400 && /not a router pack/.test(e.message),
    );
    assert.equal((await server.client.modelInfo()).router_pack?.path, basePack);
    await server.client.loadRouterPack(null);
  });

  test("a pack survives the reload a max_k above the trained k causes", async () => {
    await server.client.loadRouterPack(flatPack);
    const t = await server.client.trace({ text: TEXT, top_n: 8, policy: { max_k: 3 } });
    assert.equal(t.header.k, 3);
    assert.equal((await server.client.modelInfo()).router_pack?.path, flatPack);
    const N = t.header.top_n;
    assert.ok(Math.abs(t.columns.topProbs![0] - 1 / 8) < 1e-6 && Math.abs(t.columns.topProbs![N - 1] - 1 / 8) < 1e-6);
    await server.client.loadRouterPack(null);
  });

  test("packs are found beside the model by name", () => {
    const modelDir = fs.mkdtempSync(path.join(os.tmpdir(), "moe-lens-model-"));
    const model = path.join(modelDir, "m.gguf");
    fs.symlinkSync(DEMO_MODEL, model);
    fs.mkdirSync(routerPackDir(model), { recursive: true });
    fs.copyFileSync(basePack, path.join(routerPackDir(model), "base.gguf"));
    fs.writeFileSync(path.join(routerPackDir(model), "junk.gguf"), "not a pack");
    assert.deepEqual(
      packsForModel(model).map((p) => p.name),
      ["base"],
    );
    fs.rmSync(modelDir, { recursive: true, force: true });
  });
});
