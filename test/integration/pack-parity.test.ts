// The fine-grained demo model and each of its trained router packs, run by the real server, agree
// with the PyTorch model they were trained as (tools/train/pack_reference.py wrote the reference:
// the base read from the GGUF, each pack applied by tools/train/router_pack.py, in F32 with an F16
// KV cache like llama.cpp's). Per router: the selected expert sets are equal on ≥ 99% of the
// (token, layer) pairs of the reference texts (transition fixtures), and log p(next token) agrees
// on average within MEAN_LOGP_TOL nats. The packs switch through POST /v1/router-pack without
// reloading the model, as the panel switches them. Last, the {β, Π, Ant} ablation runs with the
// eight trained packs (moe-lens ablation --packs): one pack per row, and the server's router put
// back afterwards.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";
import { after, before, describe, test } from "node:test";
import { ablationPacks, ABLATION_SUBSETS, runAblation, subsetPackName } from "../../extension/core/experiments";
import { fileSha256, packsForModel } from "../../extension/core/router-pack";
import { labelText } from "../../extension/core/transitions";
import type { ServerProcess } from "../../extension/core/server-process";
import { FINE_MODEL, ROOT, startServer } from "../helpers";

const REFERENCE = path.join(ROOT, "test", "fixtures", "parity", "demo-moe-fine.packs.json.gz");
/** Mean |Δ log p(next)| allowed per router (nats); tools/train/README.md gives the measured values. */
const MEAN_LOGP_TOL = 5e-3;

interface Reference {
  model: string;
  model_sha256: string;
  n_layer: number;
  k: number;
  files: Array<{ file: string; n_tokens: number; token_ids: string }>;
  routers: Array<{ pack: string | null; name: string; sha256: string; files: Array<{ experts: string; logprob_next: string }> }>;
}

const bytes = (b64: string) => Buffer.from(b64, "base64");
const int32s = (b64: string) => {
  const b = bytes(b64);
  return new Int32Array(b.buffer, b.byteOffset, b.byteLength / 4);
};
const float32s = (b64: string) => {
  const b = bytes(b64);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
};

describe("fine-grained model and router packs: parity with PyTorch", () => {
  const ref = JSON.parse(zlib.gunzipSync(fs.readFileSync(REFERENCE)).toString("utf8")) as Reference;
  const texts = ref.files.map((f) => fs.readFileSync(path.join(ROOT, f.file), "utf8").replace(/^<<<domain:\w+>>>\n/gm, ""));
  let server: ServerProcess;
  before(async () => {
    assert.equal(await fileSha256(FINE_MODEL), ref.model_sha256, `the reference was made for another ${ref.model}; rerun tools/train/pack_reference.py`);
    server = await startServer(FINE_MODEL);
  });
  after(async () => server?.stop());

  test("the reference covers the model's routers and at least the nine shipped packs", () => {
    assert.equal(ref.routers[0].pack, null);
    assert.ok(ref.routers.length >= 10, `${ref.routers.length - 1} packs`);
  });

  for (const [ri, router] of ref.routers.entries()) {
    test(`${router.name}: experts equal on ≥ 99% of (token, layer) pairs, log p within ${MEAN_LOGP_TOL} on average`, async () => {
      if (router.pack) assert.equal(await fileSha256(path.join(ROOT, router.pack)), router.sha256, `${router.pack} changed since the reference was made`);
      const info = await server.client.loadRouterPack(router.pack ? path.join(ROOT, router.pack) : null);
      assert.equal(info?.name ?? null, router.pack ? router.name : null);
      let pairs = 0,
        same = 0,
        sumDiff = 0,
        nDiff = 0;
      for (const [fi, file] of ref.files.entries()) {
        const t = await server.client.trace({ text: texts[fi], top_n: 1 });
        const { n_moe_layers: L, k: K } = t.header;
        assert.equal(L, ref.n_layer);
        assert.equal(K, ref.k);
        assert.equal(t.header.windows.length, 1, `${file.file} must fit one window`);
        assert.deepEqual(Array.from(t.columns.tokenIds), Array.from(int32s(file.token_ids)), `${file.file}: token ids`);
        const experts = bytes(router.files[fi].experts);
        const logp = float32s(router.files[fi].logprob_next);
        for (let i = 0; i < file.n_tokens; i++) {
          if (Number.isFinite(logp[i])) {
            sumDiff += Math.abs(-t.columns.nll[i] - logp[i]);
            nDiff++;
          }
          for (let m = 0; m < L; m++) {
            const at = (i * L + m) * K;
            const ours = Array.from(t.columns.experts.subarray(at, at + K)).sort((a, b) => a - b);
            pairs++;
            if (ours.every((e, j) => e === experts[at + j])) same++;
          }
        }
      }
      const share = same / pairs;
      const meanDiff = sumDiff / nDiff;
      console.log(
        `${router.name}: experts equal on ${same}/${pairs} (${(100 * share).toFixed(2)}%), mean |Δ log p| ${meanDiff.toExponential(2)} over ${nDiff} tokens`,
      );
      assert.ok(share >= 0.99, `${router.name}: experts match on ${(100 * share).toFixed(2)}%`);
      assert.ok(meanDiff <= MEAN_LOGP_TOL, `${router.name}: mean |Δ log p| ${meanDiff}`);
      if (ri === ref.routers.length - 1) await server.client.loadRouterPack(null);
    });
  }

  test("the ablation with the eight trained packs: one pack per row, no post-hoc policy, the previous router restored", async () => {
    const packs = ablationPacks(packsForModel(FINE_MODEL));
    const entropy = packsForModel(FINE_MODEL).find((p) => p.name === "entropy")!;
    await server.client.loadRouterPack(entropy.path);
    const docs = ["01.txt", "05.txt"].map((f) => {
      const l = labelText(fs.readFileSync(path.join(ROOT, "test", "fixtures", "transitions", f), "utf8"));
      return { name: f, text: l.text, spans: l.spans };
    });
    const r = await runAblation(server.client, docs, { packs });
    assert.deepEqual(
      r.packs!.map((p) => p.name),
      ABLATION_SUBSETS.map(subsetPackName),
    );
    assert.equal(r.predictor, null);
    for (const row of r.rows) {
      assert.deepEqual(row.policy, {}, `${row.config}: no post-hoc policy`);
      assert.equal(row.prob.n, 2);
      for (const d of row.perDoc) assert.ok(Number.isFinite(d.k99Affinity) && d.k99Affinity >= 1, `${row.config}: K99 (Affinity) ${d.k99Affinity}`);
    }
    // Each pack routes differently: no two rows have the same probability on the new domain's expert.
    const probs = r.rows.map((x) => x.prob.mean.toFixed(6));
    assert.equal(new Set(probs).size, probs.length, `P(correct) per row: ${probs.join(", ")}`);
    assert.equal((await server.client.modelInfo()).router_pack?.name, "entropy", "the pack in use before the ablation is back");
    await server.client.loadRouterPack(null);
  });
});
