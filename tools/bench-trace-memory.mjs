#!/usr/bin/env node
// Trace pipeline benchmark (`npm run bench -- trace-memory`, or run directly; not a test):
// traces a ≥5,000-token text through the real moe-lens-server on a random 48-layer ×
// 128-expert, k = 8 model (moe-lens-bench random-moe, cached), with the full router
// distribution (`probs`) recorded, into the extension host's own TraceStore, and then does
// the end-of-trace work the editor does (domain segments and transitions, the decorations'
// routing shifts). A child process does the tracing, so its RSS is the host side alone; it
// samples its RSS every 20 ms and prints:
//   - first batch: its size and the time from the request to its arrival (first paint);
//   - the trace: tokens, wall time, server windows, kv_shift;
//   - the end stall: time from the last batch to the segments and shifts being ready;
//   - memory: peak RSS and RSS after, the store's own bytes, and bytes per token-layer.
// Options: --tokens N (default 5000), --model FILE (default: the cached random model),
// --ctx N (server context, default 2048), --threads N, --no-probs, --json; for a before/after
// comparison, --sources DIR bundles the host modules of another checkout (git archive of an
// older commit) and --legacy follows the old host path (client.trace, concatenated batches).
import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : dflt;
};
const bench = path.join(root, "out", "bin", "moe-lens-bench");
const serverBin = path.join(root, "out", "bin", "moe-lens-server");
for (const f of [bench, serverBin]) if (!fs.existsSync(f)) throw new Error(`${path.relative(root, f)} is missing: run \`npm run build:native\``);

function randomModel() {
  const cache = path.join(process.env.MOE_LENS_CACHE_DIR || path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache"), "moe-lens"), "bench");
  fs.mkdirSync(cache, { recursive: true });
  const file = path.join(cache, "random-moe-48x128-e128-k8.gguf");
  if (!fs.existsSync(file)) {
    const shape = ["--layers", "48", "--embd", "128", "--ff", "64", "--experts", "128", "--k", "8"];
    execFileSync(bench, ["random-moe", "-m", path.join(root, "media", "models", "demo-moe.gguf"), "-o", `${file}.tmp`, ...shape], { stdio: "inherit" });
    fs.renameSync(`${file}.tmp`, file);
  }
  return file;
}

// The child: the host's own modules (TraceStore, ServerProcess, segments), bundled as the tests are.
const child = `
import fs from "node:fs";
import { ServerProcess } from "./extension/core/server-process";
import { TraceStore } from "./extension/core/trace-store";
import { editorSegments, traceTopN } from "./extension/vscode/segments";
import { concatBatches } from "./shared/trace";
import { routingShifts } from "./extension/core/metrics";

const cfg = JSON.parse(process.argv[2]);
let peak = 0;
const sample = () => (peak = Math.max(peak, process.memoryUsage().rss));
const timer = setInterval(sample, 20);
const server = await ServerProcess.start({ binary: cfg.server, model: cfg.model, ctx: cfg.ctx, threads: cfg.threads });
try {
  const { client } = server;
  const model = await client.modelInfo();
  const seed = cfg.texts.map((f) => fs.readFileSync(f, "utf8")).join("\\n\\n");
  // The first cfg.tokens tokens of the fixtures (repeated if they are shorter), cut at a token's end.
  let all = seed;
  let tok = await client.tokenize(all);
  while (tok.tokens.length < cfg.tokens) {
    all += "\\n\\n" + seed;
    tok = await client.tokenize(all);
  }
  const text = Buffer.from(all, "utf8").subarray(0, tok.byte_spans[cfg.tokens - 1][1]).toString("utf8");
  const topN = traceTopN(model.n_expert, model.moe_layers.length, Buffer.byteLength(text, "utf8"));
  global.gc?.();
  const rssBefore = process.memoryUsage().rss;
  peak = rssBefore;
  const store = new TraceStore();
  const r = store.begin({ uri: "file:///bench.txt", version: 1, text, baseOffset: 0, wholeDocument: true, label: "bench", policy: {} });
  const t0 = performance.now();
  let firstBatchMs = 0, firstBatchTokens = 0, lastBatchAt = 0, batches = 0, header;
  // --legacy: the host path before the store kept columns (the client collected and concatenated every batch too).
  const res = await client[cfg.legacy ? "trace" : "traceStream"]({ text, policy: {}, top_n: topN, probs: cfg.probs }, {
    onHeader: (h) => { header = h; store.setHeader(r.id, h); },
    onBatch: (b) => {
      if (!batches++) { firstBatchMs = performance.now() - t0; firstBatchTokens = b.count; }
      store.append(r.id, b);
      lastBatchAt = performance.now();
      sample();
    },
  });
  store.finish(r.id, res.summary);
  const traceMs = performance.now() - t0;
  // The end of a trace in the editor: segments and transitions (tracer.ts), routing shifts (decorations.ts).
  const e0 = performance.now();
  const columns = cfg.legacy ? concatBatches(r.header, r.batches) : r.columns;
  const seg = editorSegments({ header: r.header, columns, summary: r.summary }, text, "markdown");
  const segMs = performance.now() - e0;
  const s0 = performance.now();
  routingShifts(cfg.legacy ? concatBatches(r.header, r.batches) : r.columns, r.count, r.L, r.K);
  const shiftMs = performance.now() - s0;
  sample();
  const endStallMs = performance.now() - lastBatchAt;
  global.gc?.();
  const out = {
    model: cfg.model, tokens: r.count, layers: r.L, k: r.K, experts: r.E, top_n: r.N, probs: !!header.probs,
    kv_shift: header.kv_shift, windows: header.windows.length, ctx: model.n_ctx,
    first_batch_tokens: firstBatchTokens, first_batch_ms: firstBatchMs, batches, trace_ms: traceMs,
    segments: seg.segments.length, transitions: seg.transitions.length, segments_ms: segMs, shifts_ms: shiftMs, end_stall_ms: endStallMs,
    rss_before_mb: rssBefore / 2 ** 20, peak_rss_mb: peak / 2 ** 20, rss_after_mb: process.memoryUsage().rss / 2 ** 20,
    store_mb: (store.usedBytes ?? NaN) / 2 ** 20, store_bytes_per_token_layer: (store.usedBytes ?? NaN) / (r.count * r.L),
  };
  console.log(JSON.stringify(out));
} finally {
  clearInterval(timer);
  await server.stop();
}
`;

const outDir = path.join(root, "out", "bench");
fs.mkdirSync(outDir, { recursive: true });
const bundle = path.join(outDir, "trace-memory.mjs");
await esbuild.build({
  stdin: { contents: child, resolveDir: opt("sources", root), loader: "ts", sourcefile: "bench-trace-memory-child.ts" },
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  outfile: bundle,
  logLevel: "warning",
  banner: { js: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);" },
});
const cfg = {
  server: serverBin,
  model: opt("model") ?? randomModel(),
  ctx: Number(opt("ctx", "2048")),
  threads: Number(opt("threads", String(Math.min(2, os.availableParallelism())))),
  tokens: Number(opt("tokens", "5000")),
  probs: !argv.includes("--no-probs"),
  legacy: argv.includes("--legacy"),
  texts: ["heldout-mixed.txt", "demo-sample.md"].map((f) => path.join(root, "test", "fixtures", f)),
};
const p = spawn(process.execPath, ["--expose-gc", bundle, JSON.stringify(cfg)], { stdio: ["ignore", "pipe", "inherit"] });
let stdout = "";
p.stdout.on("data", (d) => (stdout += d));
const code = await new Promise((resolve) => p.on("close", resolve));
if (code !== 0) throw new Error(`the benchmark child failed (exit ${code})`);
const r = JSON.parse(stdout.trim().split("\n").pop());
if (argv.includes("--json")) console.log(JSON.stringify(r));
else {
  const f = (x, d = 0) => (typeof x === "number" ? x.toFixed(d) : "n/a");
  console.log(
    `trace pipeline, ${r.tokens} tokens × ${r.layers} MoE layers × k ${r.k} (${r.experts} experts), top_n ${r.top_n}, probs ${r.probs}, n_ctx ${r.ctx}`,
  );
  console.log(`  first batch      ${r.first_batch_tokens} tokens after ${f(r.first_batch_ms)} ms   (target ≤ 2000 ms)`);
  console.log(`  trace            ${f(r.trace_ms)} ms in ${r.batches} batches; ${r.windows} window(s), kv_shift ${r.kv_shift}`);
  console.log(
    `  end of trace     ${f(r.end_stall_ms)} ms after the last batch (segments ${f(r.segments_ms)} ms: ${r.segments} segments, ${r.transitions} transitions; shifts ${f(r.shifts_ms)} ms)`,
  );
  console.log(
    `  host memory      peak RSS ${f(r.peak_rss_mb)} MB (before ${f(r.rss_before_mb)} MB, after ${f(r.rss_after_mb)} MB; target < 600 MB); the store holds ${f(r.store_mb, 1)} MB = ${f(r.store_bytes_per_token_layer)} bytes per token-layer`,
  );
}
