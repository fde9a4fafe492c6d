#!/usr/bin/env node
// `moe-lens`: the command line of MoE Lens. It shares extension/core with the VS Code
// extension: the same server process, client, policies, metrics, exports and reports.
import fs from "node:fs";
import path from "node:path";
import { COMMON_FLAGS, policyFromFlags, POLICY_FLAGS, readTextFile, withServer } from "./server-session";
import { checkKnownFlags, flagInt, flagString, formatTable, parseArgs, UsageError, type ParsedArgs } from "./args";
import { EXPERIMENT_HELP, experimentCommands } from "./experiments";
import { RPC_HELP, rpcCommands } from "./rpc";
import { PRUNE_HELP, pruneCommands } from "./prune";
import { PACKS_HELP, packsCommands } from "./packs";
import { SPEED_HELP, speedCommands } from "./speed";
import { ATLAS_HELP, atlasCommands } from "./atlas";
import { describeSpeed, measurePolicySpeed, QUICK_SPEED_OPTIONS, skipNote, type SpeedRow } from "../core/speed";
import { exportFormatOf, TraceExportWriter, writeExportFile } from "../core/export";
import { TraceStatsAccumulator, traceStats, type TraceStats } from "../core/metrics";
import { demoSamplePath, repoRootFromHere } from "../core/paths";
import { formatNumber } from "../../shared/format";
import { describePolicy, type Policy } from "../../shared/policy";
import { parsePolicySpec, PolicyError, validatePolicy } from "../core/policy-parse";
import { renderReport, type ReportRow } from "../core/report";
import { ServerError } from "../core/server-client";
import type { PerplexityResult, TraceRequest, TraceSummary } from "../../shared/wire";
import type { ServerProcess } from "../core/server-process";
import type { Trace } from "../../shared/trace";

const HELP = `moe-lens — see and change Mixture-of-Experts routing (llama.cpp)

Usage:
  moe-lens demo [--out REPORT.html]                  trace the bundled sample under several policies
  moe-lens info [--model M]                          model architecture, layers, experts, k, gating
  moe-lens trace FILE [--model M] [--out F.json|F.csv|F.moetrace|F.html] [--top-n N] [policy flags]
  moe-lens ppl FILE [--model M] --ctx N [--json] [policy flags]
  moe-lens compare FILE [--model M] --policies SPEC,SPEC,... [--ctx N] [--out F.html] [--json] [--no-speed]
                                                     each policy's quality beside its measured speed against the first
${SPEED_HELP}
${ATLAS_HELP}
${EXPERIMENT_HELP}
${PRUNE_HELP}
${PACKS_HELP}
${RPC_HELP}

Common options:
  --model M        GGUF MoE model (default: the bundled demo model)
  --threads N      CPU threads     --ngl N   GPU layers (GPU builds)    --server BIN  server binary
  --context N      server context window for traces (default 2048, capped at the model's)
  --router-pack P  route with a router pack: a file, or the name of one of the model's packs (moe-lens packs list)
  --rpc H:P,...    spread the offloaded layers (--ngl) over ggml-rpc-server workers (moe-lens rpc-server)
  --json           machine-readable output on stdout

Policy flags (combine freely; none = the model's own routing, bit-identical to llama.cpp):
  --amg THRESHOLD  AMG cumulative-threshold zero-gating   --min-k N   AMG floor
  --max-k N        expert slots (above the trained k: reloads with <arch>.expert_used_count=N)
  --beta B         β membrane (LIF) on router logits       --pi        Π precision weighting
  --ant GAMMA      anticipatory routing (needs a fitted predictor: --predictor FILE)
  --disable L:E[,..]   disable experts       --boost L:E:BIAS[,..]   add a bias to experts
  --policy SPEC    a compact spec, e.g. "k:12+amg:0.9" or "beta:0.9+pi+ant:0.5"
  --no-skip        dropped experts are zero-gated but still computed (default: skipped on CPU)

Policy specs for --policies: baseline, amg:T[:MIN_K], topp:T, k:N, beta:B[:sp], pi, ant:G,
disable:L:E, boost:L:E:B, noskip, joined with "+".`;

/** A number as the command line prints it (4 decimals unless said otherwise; "–" when missing). */
function fmt(x: number | null | undefined, digits = 4): string {
  return formatNumber(x, digits);
}

async function cmdInfo(args: ParsedArgs): Promise<void> {
  checkKnownFlags(args, COMMON_FLAGS);
  await withServer(args, async (server) => {
    const info = await server.client.modelInfo();
    if (args.flags.get("json")) return void console.log(JSON.stringify(info, null, 2));
    console.log(
      formatTable(
        ["property", "value"],
        [
          ["model", info.path],
          ["architecture", info.architecture],
          ["layers", `${info.n_layer} (MoE: ${info.moe_layers.length === info.n_layer ? "all" : info.moe_layers.join(",")})`],
          ["experts", String(info.n_expert)],
          ["k (used / trained)", `${info.n_expert_used} / ${info.n_expert_used_trained}`],
          ["shared experts", String(info.n_expert_shared)],
          ["gating", `${info.gating}${info.weights_norm ? ", weights renormalised" : ""}${info.weights_scale !== 1 ? `, scale ${info.weights_scale}` : ""}`],
          ["context (server / trained)", `${info.n_ctx} / ${info.n_ctx_train}`],
          ["vocabulary", String(info.n_vocab)],
        ],
      ),
    );
  });
}

/**
 * Traces `text` and writes --out: JSON and CSV stream from the server to the file batch by
 * batch (memory stays that of one batch, whatever the text's length); the HTML report
 * draws the whole trace, so it keeps it. Returns the statistics and the server's summary.
 */
async function traceToOutput(
  server: ServerProcess,
  req: TraceRequest & { text: string },
  out: string | undefined,
  label: string,
): Promise<{ stats: TraceStats; summary: TraceSummary }> {
  const ext = out ? path.extname(out).toLowerCase() : "";
  if (ext === ".html") {
    const trace = await server.client.trace(req);
    await writeFileAtomically(
      out!,
      renderReport({ title: `MoE Lens trace: ${label}`, subtitle: `${trace.header.model.path}`, sections: [], traces: [{ label, trace }] }),
    );
    return { stats: traceStats(trace), summary: trace.summary! };
  }
  let stats: TraceStatsAccumulator | undefined;
  const run = async (writer?: TraceExportWriter) => {
    const r = await server.client.traceStream(req, {
      onHeader: (h) => {
        stats = new TraceStatsAccumulator(h);
        return writer?.begin(h);
      },
      onBatch: (b) => {
        stats!.add(b);
        return writer?.batch(b);
      },
    });
    await writer?.end(r.summary);
    return r.summary;
  };
  let summary: TraceSummary;
  if (out) {
    const format = exportFormatOf(out);
    await writeExportFile(out, async (sink) => {
      summary = await run(new TraceExportWriter(format, req.text, sink));
    });
  } else summary = await run();
  return { stats: stats!.result(), summary: summary! };
}

function writeFileAtomically(file: string, content: string): Promise<void> {
  return writeExportFile(file, async (sink) => sink(content));
}

async function cmdTrace(args: ParsedArgs): Promise<void> {
  checkKnownFlags(args, [...COMMON_FLAGS, ...POLICY_FLAGS, "out", "top-n"]);
  const file = args.positional[0];
  const text = readTextFile(file);
  const policy = policyFromFlags(args);
  const out = flagString(args, "out");
  if (out && ![".json", ".csv", ".html"].includes(path.extname(out).toLowerCase())) throw new UsageError(`--out must end in .json, .csv or .html, got ${out}`);
  await withServer(args, async (server) => {
    const { stats: s, summary } = await traceToOutput(server, { text, policy, top_n: flagInt(args, "top-n", 0, 4096) ?? 0 }, out, path.basename(file));
    if (args.flags.get("json")) return void console.log(JSON.stringify({ policy: describePolicy(policy), ...s, summary, out }));
    console.log(
      formatTable(
        ["file", "policy", "tokens", "avg active", "trace ppl", "mean entropy", "mean shift"],
        [
          [
            path.basename(file),
            describePolicy(policy),
            String(s.tokens),
            `${fmt(s.avgActive, 2)}/${s.k}`,
            fmt(s.tracePpl, 3),
            fmt(s.meanEntropy, 3),
            fmt(s.meanShift, 3),
          ],
        ],
      ),
    );
    if (out) console.log(`wrote ${out}`);
  });
}

async function cmdPpl(args: ParsedArgs): Promise<void> {
  checkKnownFlags(args, [...COMMON_FLAGS, ...POLICY_FLAGS, "ctx", "batch"]);
  const text = readTextFile(args.positional[0]);
  const nCtx = flagInt(args, "ctx", 8, 1 << 22);
  if (!nCtx) throw new UsageError("--ctx N is required (as llama-perplexity's -c)");
  const policy = policyFromFlags(args);
  await withServer(args, async (server) => {
    const r = await server.client.perplexity({ text, n_ctx: nCtx, policy, n_batch: flagInt(args, "batch", 1, 1 << 22) });
    if (args.flags.get("json")) {
      return void console.log(
        JSON.stringify({
          ppl: r.ppl,
          ppl_err: r.ppl_err,
          tokens: r.tokens,
          scored: r.scored,
          n_chunks: r.n_chunks,
          n_ctx: r.n_ctx,
          avg_active_experts: r.avg_active_experts,
          k: r.k,
          policy,
        }),
      );
    }
    console.log(`[${r.chunk_ppl.map((p, i) => `${i + 1}]${p.toFixed(4)}`).join(",[")}`);
    console.log(r.printed);
    console.log(
      `policy: ${describePolicy(policy)} · average active experts ${r.avg_active_experts.toFixed(2)}/${r.k} · ${r.n_chunks} chunks of ${r.n_ctx} tokens`,
    );
  });
}

interface ComparedPolicy {
  spec: string;
  policy: Policy;
  trace: Trace;
  ppl?: PerplexityResult;
  pplError?: string;
  /** Measured beside the others (core/speed.ts), against the first policy. */
  speed?: SpeedRow;
}

async function comparePolicies(server: ServerProcess, text: string, specs: string[], nCtx: number | undefined, withSpeed: boolean): Promise<ComparedPolicy[]> {
  const results: ComparedPolicy[] = [];
  for (const spec of specs) {
    const policy = validatePolicy(parsePolicySpec(spec));
    const trace = await server.client.trace({ text, policy });
    const r: ComparedPolicy = { spec, policy, trace };
    if (nCtx) {
      try {
        r.ppl = await server.client.perplexity({ text, n_ctx: nCtx, policy });
      } catch (err) {
        r.pplError = (err as Error).message;
      }
    }
    results.push(r);
  }
  if (withSpeed && results.length) {
    // The first policy is the reference of every ratio (side by side, alternating; core/speed.ts).
    const rows = await measurePolicySpeed(
      server.client,
      text,
      results.map((r) => ({ spec: r.spec, policy: r.policy })),
      QUICK_SPEED_OPTIONS,
    );
    results.forEach((r, i) => (r.speed = rows[i]));
  }
  return results;
}

function compareRows(results: ComparedPolicy[]): { header: string[]; rows: string[][]; report: ReportRow[] } {
  const withSpeed = results.some((r) => r.speed);
  const header = [
    "policy",
    "avg active",
    "trace ppl",
    "PPL (llama-perplexity method)",
    "mean entropy",
    "mean shift",
    ...(withSpeed ? ["speed and quality vs " + describePolicy(results[0].policy)] : []),
  ];
  const rows: string[][] = [];
  const report: ReportRow[] = [];
  const basePpl = results[0]?.ppl?.ppl ?? traceStats(results[0].trace).tracePpl ?? undefined;
  for (const r of results) {
    const s = traceStats(r.trace);
    const ppl = r.ppl?.ppl ?? s.tracePpl ?? undefined;
    const cells = [
      describePolicy(r.policy),
      `${fmt(s.avgActive, 2)}/${s.k}`,
      fmt(s.tracePpl, 3),
      r.ppl ? `${fmt(r.ppl.ppl)} ± ${fmt(r.ppl.ppl_err, 4)}` : r.pplError ? "n/a" : "–",
      fmt(s.meanEntropy, 3),
      fmt(s.meanShift, 3),
      ...(withSpeed
        ? [r.speed ? describeSpeed(r.speed, ppl !== undefined && basePpl !== undefined ? { value: ppl, baseline: basePpl } : undefined) : "–"]
        : []),
    ];
    rows.push(cells);
    report.push({ label: cells[0], cells: Object.fromEntries(header.slice(1).map((h, i) => [h, cells[i + 1]])) });
  }
  return { header, rows, report };
}

async function runComparison(
  args: ParsedArgs,
  file: string,
  text: string,
  specs: string[],
  nCtx: number | undefined,
  out: string | undefined,
  title: string,
): Promise<void> {
  await withServer(args, async (server) => {
    const info = await server.client.modelInfo();
    const results = await comparePolicies(server, text, specs, nCtx, args.flags.get("no-speed") !== true);
    const { header, rows, report } = compareRows(results);
    if (out) {
      fs.mkdirSync(path.dirname(path.resolve(out)), { recursive: true });
      fs.writeFileSync(
        out,
        renderReport({
          title,
          subtitle: `${path.basename(file)} on ${path.basename(info.path)} (${info.architecture}, ${info.moe_layers.length} MoE layers, ${info.n_expert} experts, k=${info.n_expert_used_trained}, ${info.gating} gating)`,
          sections: [
            {
              title: "Policies",
              note: `trace ppl = exp(mean NLL) over the whole text in one pass; PPL = llama-perplexity's method with n_ctx=${nCtx ?? "–"}. ${skipNote(info.skip_supported)} Speed: prefill of up to 512 tokens and 32 decoded tokens timed by the server, medians of ${QUICK_SPEED_OPTIONS.reps} alternating rounds, ratios to the first policy (moe-lens speed measures at length).`,
              columns: header.slice(1),
              rows: report,
            },
          ],
          traces: results.map((r) => ({ label: describePolicy(r.policy), trace: r.trace })),
        }),
      );
    }
    if (args.flags.get("json")) {
      return void console.log(
        JSON.stringify(
          results.map((r) => ({ spec: r.spec, policy: r.policy, stats: traceStats(r.trace), ppl: r.ppl, ppl_error: r.pplError, speed: r.speed })),
          null,
          1,
        ),
      );
    }
    console.log(
      `${path.basename(file)}: ${results[0]?.trace.columns.count ?? 0} tokens on ${path.basename(info.path)} (${info.architecture}, ${info.n_expert} experts, k=${info.n_expert_used_trained})\n`,
    );
    console.log(formatTable(header, rows));
    for (const r of results) if (r.pplError) console.log(`note: PPL for ${describePolicy(r.policy)}: ${r.pplError}`);
    if (out) console.log(`\nreport: ${out}`);
  });
}

async function cmdCompare(args: ParsedArgs): Promise<void> {
  checkKnownFlags(args, [...COMMON_FLAGS, "policies", "ctx", "out", "no-speed"]);
  const file = args.positional[0];
  const text = readTextFile(file);
  const specs = (flagString(args, "policies") ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  if (specs.length === 0) throw new UsageError("--policies needs at least one policy spec, e.g. baseline,amg:0.5");
  for (const s of specs) parsePolicySpec(s);
  const out = flagString(args, "out");
  await runComparison(args, file, text, specs, flagInt(args, "ctx", 8, 1 << 22), out, "MoE Lens: policy comparison");
}

async function cmdDemo(args: ParsedArgs): Promise<void> {
  checkKnownFlags(args, [...COMMON_FLAGS, "out", "no-speed"]);
  const root = repoRootFromHere();
  const file = demoSamplePath(root);
  const text = readTextFile(file);
  const out = flagString(args, "out") ?? path.join(root, "out", "demo-report.html");
  const specs = ["baseline", "amg:0.9", "amg:0.5", "k:4", "k:4+amg:0.9", "beta:0.5", "beta:0.9:sp+pi"];
  console.log(`MoE Lens demo: tracing ${path.relative(process.cwd(), file)} under ${specs.length} gating policies\n`);
  await runComparison(args, file, text, specs, 64, out, "MoE Lens demo: one mixed-domain text, several gating policies");
}

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv);
  if (args.command === "help" || args.flags.get("help") || args.command === "--help" || args.command === "-h") {
    console.log(HELP);
    return 0;
  }
  const commands: Record<string, (a: ParsedArgs) => Promise<void>> = {
    info: cmdInfo,
    trace: cmdTrace,
    ppl: cmdPpl,
    compare: cmdCompare,
    demo: cmdDemo,
    ...experimentCommands,
    ...speedCommands,
    ...atlasCommands,
    ...rpcCommands,
    ...pruneCommands,
    ...packsCommands,
  };
  const run = commands[args.command];
  if (!run) throw new UsageError(`unknown command "${args.command}" (try moe-lens help)`);
  await run(args);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    const e = err as Error;
    const usage = e instanceof UsageError || e instanceof PolicyError;
    const message = e instanceof ServerError ? `server: ${e.message}` : e.message;
    process.stderr.write(`moe-lens: error: ${message.split("\n")[0]}\n`);
    process.exit(usage ? 2 : 1);
  },
);
