#!/usr/bin/env node
// `npm run bench` (not a test): measurements printed as ratios taken side by side in one run.
//   1. tracing overhead: full routing capture vs plain llama_decode, same build and threads,
//      on the demo model and on larger random MoE models (written once into the cache)
//   2. speed of gating policies: prefill and decode tokens/s with and without skipping the
//      dropped experts, on a random model with a current fine-grained MoE's proportions
//   3. the routing panel in headless Chromium (tools/bench-webview.mjs), when present
// `npm run bench -- overhead|speed|webview` runs only those parts; `npm run bench -- trace-memory`
// (only when named: minutes on 2 cores) the trace pipeline at 48 layers × 128 experts with the full
// router distribution: first batch, end-of-trace work and the host's peak RSS (tools/bench-trace-memory.mjs).
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
const cache = path.join(process.env.MOE_LENS_CACHE_DIR || path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache"), "moe-lens"), "bench");
fs.mkdirSync(cache, { recursive: true });
const parts = process.argv.slice(2);
const wants = (part) => parts.length === 0 || parts.includes(part);

/** A random qwen3moe written once into the cache by `moe-lens-bench random-moe`. */
function randomModel(name, shape) {
  const file = path.join(cache, `${name}.gguf`);
  if (!fs.existsSync(file)) {
    const args = Object.entries(shape).flatMap(([k, v]) => [`--${k}`, String(v)]);
    execFileSync(bench, ["random-moe", "-m", demo, "-o", `${file}.tmp`, ...args], { stdio: "inherit" });
    fs.renameSync(`${file}.tmp`, file);
  }
  return file;
}

const results = {};
if (wants("overhead")) {
  const models = [
    ["demo model (4 layers, 8 experts, k=2)", demo, null],
    ["random MoE 8 layers × 512, 64 experts, k=8", randomModel("random-moe-8x512-e64-k8", { layers: 8, embd: 512, ff: 256, experts: 64, k: 8 }), 1.05],
    ["random MoE 48 layers × 128, 128 experts, k=8", randomModel("random-moe-48x128-e128-k8", { layers: 48, embd: 128, ff: 64, experts: 128, k: 8 }), 1.1],
  ];
  console.log(`tracing overhead (trace with routing capture ÷ plain llama_decode, medians of alternating runs, ${threads} threads)`);
  results.overhead = [];
  for (const [label, model, target] of models) {
    const r = spawnSync(bench, ["overhead", "-m", model, "-n", "512", "-t", threads, "-r", "15"], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`${label}: ${r.stderr.slice(-500)}`);
    const j = JSON.parse(r.stdout.trim().split("\n").pop());
    results.overhead.push({ label, target, ...j });
    console.log(
      `  ${label.padEnd(46)} tokens ${String(j.tokens).padStart(4)}  trace ${j.trace_ms.toFixed(1).padStart(8)} ms  plain ${j.plain_ms.toFixed(1).padStart(8)} ms  ratio ${j.ratio.toFixed(3)}${target ? `  (target ≤ ${target.toFixed(2)})` : ""}`,
    );
  }
}

if (wants("speed")) {
  // The proportions of a current fine-grained MoE (Qwen3-30B-A3B-like experts at a smaller depth
  // and width): 24 layers, d_model 1024, 64 experts of width 512, k = 8, Q8_0.
  const shape = { layers: 24, embd: 1024, ff: 512, experts: 64, k: 8, heads: 16, "heads-kv": 4, "head-dim": 64, type: "q8_0" };
  const model = randomModel("random-moe-24x1024-e64x512-k8-q8_0", shape);
  const text = path.join(root, "test", "fixtures", "heldout-mixed.txt");
  // The baseline runs twice: its second row's ratio is this run's noise floor, against which the
  // noskip rows' "within 3 % of baseline" is read.
  const specs = ["baseline", "k:4", "amg:0.5", "k:4+noskip", "amg:0.5+noskip", "baseline"];
  // 7 rounds: the ±3 % question (zero-gating costs nothing) is finer than one round's noise here
  const SPEED_REPS = 7;
  console.log(
    `\nspeed of gating policies (moe-lens speed: server-timed prefill of 1024 tokens and 64 decoded tokens at batch 1, medians of ${SPEED_REPS} alternating repetitions, ratios the medians of per-repetition ratios, ${threads} threads)`,
  );
  console.log(
    `  model: random qwen3moe, ${shape.layers} layers, d_model ${shape.embd}, ${shape.experts} experts of width ${shape.ff}, k = ${shape.k}, ${shape.type}`,
  );
  const r = spawnSync(
    process.execPath,
    [
      path.join(root, "bin", "moe-lens.js"),
      "speed",
      text,
      "--model",
      model,
      "--policies",
      specs.join(","),
      "--reps",
      String(SPEED_REPS),
      "--prefill",
      "1024",
      "--decode",
      "64",
      "--threads",
      threads,
      "--json",
    ],
    { encoding: "utf8", cwd: root },
  );
  if (r.status !== 0) throw new Error(`speed: ${r.stderr.slice(-1000)}`);
  const rows = JSON.parse(r.stdout);
  results.speed = { model: shape, rows };
  console.log(
    `  ${"policy".padEnd(18)} ${"active".padStart(8)} ${"prefill tok/s".padStart(14)} ${"×".padStart(6)} ${"decode tok/s".padStart(13)} ${"×".padStart(6)}`,
  );
  for (const [i, x] of rows.entries()) {
    const label = i > 0 && x.spec === "baseline" ? "baseline (again)" : x.spec;
    console.log(
      `  ${label.padEnd(18)} ${`${x.avg_active_experts.toFixed(2)}/${x.k}`.padStart(8)} ${x.prefill_tps.toFixed(1).padStart(14)} ${x.prefill_ratio.toFixed(3).padStart(6)} ${x.decode_tps.toFixed(2).padStart(13)} ${x.decode_ratio.toFixed(3).padStart(6)}`,
    );
  }
  console.log(
    "  targets: about half the experts kept with skip → decode ≥ 1.35×, prefill ≥ 1.25×; the same policies with noskip (zero-gating) ≥ 0.97× (no false savings), read against the baseline's own second row",
  );
}

fs.mkdirSync(path.join(root, "out"), { recursive: true });
fs.writeFileSync(path.join(root, "out", "bench.json"), JSON.stringify(results, null, 1));

const webviewBench = path.join(root, "tools", "bench-webview.mjs");
if (parts.includes("trace-memory")) {
  console.log("\ntrace pipeline (real server, the host's TraceStore)");
  execFileSync(process.execPath, [path.join(root, "tools", "bench-trace-memory.mjs")], { stdio: "inherit", cwd: root });
}

if (wants("webview") && fs.existsSync(webviewBench)) {
  console.log("\nrouting panel (headless Chromium)");
  execFileSync(process.execPath, [webviewBench], { stdio: "inherit", cwd: root });
}
