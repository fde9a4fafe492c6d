#!/usr/bin/env node
// `npm run bench` (not a test): measurements printed as ratios taken side by side in one run.
//   1. tracing overhead: full routing capture vs plain llama_decode, same build and threads,
//      on the demo model and on a larger random MoE (written once into the cache)
//   2. the routing panel in headless Chromium (tools/bench-webview.mjs), when present
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const bench = path.join(root, "out", "bin", "moe-lens-bench");
const demo = path.join(root, "media", "models", "demo-moe.gguf");
if (!fs.existsSync(bench)) throw new Error("out/bin/moe-lens-bench is missing: run `npm run build:native`");
const threads = String(Math.min(2, os.availableParallelism()));
const cache = path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache"), "moe-lens", "bench");
fs.mkdirSync(cache, { recursive: true });
const big = path.join(cache, "random-moe-8x512-e64-k8.gguf");
if (!fs.existsSync(big)) {
  execFileSync(bench, ["random-moe", "-m", demo, "-o", big, "--layers", "8", "--embd", "512", "--ff", "256", "--experts", "64", "--k", "8"], { stdio: "inherit" });
}

console.log(`tracing overhead (trace with routing capture ÷ plain llama_decode, medians of alternating runs, ${threads} threads)`);
const rows = [];
for (const [label, model, tokens] of [["demo model", demo, "512"], ["random MoE 8×512, 64 experts, k=8", big, "512"]]) {
  const r = spawnSync(bench, ["overhead", "-m", model, "-n", tokens, "-t", threads, "-r", "15"], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${label}: ${r.stderr.slice(-500)}`);
  const j = JSON.parse(r.stdout.trim().split("\n").pop());
  rows.push(j);
  console.log(`  ${label.padEnd(36)} tokens ${String(j.tokens).padStart(4)}  trace ${j.trace_ms.toFixed(1).padStart(8)} ms  plain ${j.plain_ms.toFixed(1).padStart(8)} ms  ratio ${j.ratio.toFixed(3)}  (target ≤ 1.15)`);
}
fs.mkdirSync(path.join(root, "out"), { recursive: true });
fs.writeFileSync(path.join(root, "out", "bench-overhead.json"), JSON.stringify(rows, null, 1));

const webviewBench = path.join(root, "tools", "bench-webview.mjs");
if (fs.existsSync(webviewBench)) {
  console.log("\nrouting panel (headless Chromium)");
  execFileSync(process.execPath, [webviewBench], { stdio: "inherit", cwd: root });
}
