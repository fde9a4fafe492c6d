// Models larger than one machine: llama.cpp's RPC backend. Two ggml-rpc-servers on 127.0.0.1
// hold the model's layers (--ngl 99) while moe-lens-server traces and applies policies; the
// numbers equal a local run's.
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import net from "node:net";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { llamaToolBinary } from "../../extension/core/paths";
import { DEMO_MODEL, requireFile, ROOT, startServer, tempFile } from "../helpers";

const TEXT = [
  "The river ran quietly past the old mill, and the miller counted the sacks twice.",
  "```python\ndef area(r):\n    return 3.14159 * r * r\n```",
  '{"name": "mill", "built": 1852, "sacks": [12, 35, 47]}',
  "Der Fluss floss ruhig an der alten Mühle vorbei.",
  "12 + 35 = 47; 47 * 2 = 94; gcd(94, 47) = 47",
]
  .join("\n")
  .repeat(4);

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
    s.on("error", reject);
  });
}

/** Waits until something accepts TCP connections on the port. */
async function listening(port: number, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) throw new Error(`ggml-rpc-server exited with ${child.exitCode}`);
    const ok = await new Promise<boolean>((resolve) => {
      const c = net.connect(port, "127.0.0.1", () => {
        c.destroy();
        resolve(true);
      });
      c.on("error", () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`ggml-rpc-server did not listen on ${port}`);
}

describe("llama.cpp RPC: two workers on 127.0.0.1", () => {
  const workers: ChildProcess[] = [];
  const endpoints: string[] = [];
  before(async () => {
    const bin = requireFile(llamaToolBinary(ROOT, "ggml-rpc-server"), "run `npm run build:native`");
    for (let i = 0; i < 2; i++) {
      const port = await freePort();
      const child = spawn(bin, ["-H", "127.0.0.1", "-p", String(port), "-t", "1"], { stdio: "ignore" });
      workers.push(child);
      await listening(port, child);
      endpoints.push(`127.0.0.1:${port}`);
    }
  });
  after(() => {
    for (const w of workers) w.kill("SIGTERM");
  });

  test("moe-lens ppl --rpc … --ngl 99 equals the local run within 1e-4", () => {
    const file = tempFile("rpc.txt", TEXT);
    const run = (extra: string[]) => {
      const r = spawnSync(process.execPath, [path.join(ROOT, "bin", "moe-lens.js"), "ppl", file, "--ctx", "64", "--json", "--threads", "2", ...extra], {
        encoding: "utf8",
        cwd: ROOT,
        timeout: 300_000,
      });
      assert.equal(r.status, 0, r.stderr);
      return JSON.parse(r.stdout) as { ppl: number; tokens: number };
    };
    const local = run([]);
    const remote = run(["--rpc", endpoints.join(","), "--ngl", "99"]);
    assert.equal(remote.tokens, local.tokens);
    assert.ok(Math.abs(remote.ppl - local.ppl) <= 1e-4 * local.ppl, `rpc ${remote.ppl} vs local ${local.ppl}`);
  });

  test("traces and policies run on the workers: the same routing as a local trace", async () => {
    const local = await startServer(DEMO_MODEL);
    const remote = await startServer(DEMO_MODEL, { gpuLayers: 99, rpcServers: endpoints });
    try {
      const info = await remote.client.modelInfo();
      assert.equal(info.skip_supported, false, "layers on RPC devices: dropped experts are zero-gated");
      for (const policy of [{}, { amg: { threshold: 0.5 } }, { beta: { beta: 0.5 } }]) {
        const a = await local.client.trace({ text: TEXT, policy });
        const b = await remote.client.trace({ text: TEXT, policy });
        let same = 0;
        const { n_moe_layers: L, k: K } = a.header;
        for (let row = 0; row < a.columns.count * L; row++) {
          const x = Array.from(a.columns.experts.subarray(row * K, (row + 1) * K))
            .sort()
            .join();
          const y = Array.from(b.columns.experts.subarray(row * K, (row + 1) * K))
            .sort()
            .join();
          if (x === y) same++;
        }
        assert.ok(same >= 0.99 * a.columns.count * L, `${JSON.stringify(policy)}: ${same} of ${a.columns.count * L} (token, layer) pairs equal`);
        assert.ok(Math.abs(b.summary!.avg_active - a.summary!.avg_active) < 0.01);
        assert.ok(Math.abs(Math.log(b.summary!.ppl! / a.summary!.ppl!)) < 1e-3, `trace ppl ${b.summary!.ppl} vs ${a.summary!.ppl}`);
      }
    } finally {
      await remote.stop();
      await local.stop();
    }
  });
});
