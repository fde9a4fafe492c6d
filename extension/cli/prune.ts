// `moe-lens saliency | prune | prune-eval`: measure which experts the user's own text uses,
// write a smaller GGUF without the others, and measure what that costs on held-out text
// (core: extension/core/saliency.ts, prune.ts, prune-eval.ts, gguf-file.ts).
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { COMMON_FLAGS, modelPath, withServer } from "./server-session";
import { checkKnownFlags, flagInt, flagString, formatTable, UsageError, type ParsedArgs } from "./args";
import { sha256File } from "../core/ant";
import { chooseNCtx } from "../core/experiments";
import { chooseExperts, keptExpertCount, openForPruning, writePrunedModel, type PruneSummary } from "../core/prune";
import {
  DEFAULT_KEEPS,
  DEFAULT_SEEDS,
  pruneEvalComparison,
  pruneEvalMarkdown,
  runPruneEvaluation,
  splitInterleaved,
  type PruneEvalResult,
} from "../core/prune-eval";
import {
  calibrationSources,
  computeSaliency,
  hasExpertNorms,
  PRUNE_METHODS,
  readSaliency,
  textSource,
  type CalibrationSource,
  type PruneMethod,
  type SaliencyFile,
} from "../core/saliency";

export const PRUNE_HELP = `  moe-lens saliency --calibration FILE|DIR [--model M] --out SALIENCY.json [--json]
                                                     per-layer expert saliency (frequency, gate weight, REAP) on your text
  moe-lens prune --model M --calibration FILE|DIR --keep FRACTION [--method reap|weight|frequency|random] [--seed N]
                 --out OUT.gguf [--saliency SALIENCY.json] [--force] [--json]
                                                     write a GGUF without the experts your text needs least
  moe-lens prune-eval --model M --heldout FILE [--calibration FILE|DIR] [--calibration-share F] [--keeps 1,0.875,0.75,0.5]
                      [--methods reap,weight,frequency,random] [--seeds 1,2,3] [--ctx N] [--out F.md|F.json] [--json]
                                                     held-out perplexity and file size versus keep fraction, per method`;

const quiet = (args: ParsedArgs) => args.flags.get("json") === true;
const progress = (args: ParsedArgs) => (quiet(args) ? undefined : (m: string) => process.stderr.write(`  ${m}\n`));

function parseMethod(value: string | undefined, fallback: PruneMethod): PruneMethod {
  const m = value ?? fallback;
  if (!(PRUNE_METHODS as readonly string[]).includes(m)) throw new UsageError(`--method must be one of ${PRUNE_METHODS.join(", ")}, got "${m}"`);
  return m as PruneMethod;
}

function parseKeep(value: string | undefined): number {
  if (value === undefined) throw new UsageError("--keep FRACTION is required (the share of experts to keep in every MoE layer, e.g. 0.75)");
  const keep = Number(value);
  if (!Number.isFinite(keep) || keep <= 0 || keep > 1) throw new UsageError(`--keep must be a fraction in (0, 1], got "${value}"`);
  return keep;
}

function listFlag<T>(args: ParsedArgs, name: string, parse: (s: string) => T, fallback: T[]): T[] {
  const v = flagString(args, name);
  if (v === undefined) return fallback;
  const xs = v
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)
    .map(parse);
  if (!xs.length) throw new UsageError(`--${name} needs at least one value`);
  return xs;
}

/** Calibration sources from --calibration FILE|DIR, with the skipped binary files reported. */
function calibrationFromFlag(args: ParsedArgs): CalibrationSource[] {
  const cal = flagString(args, "calibration");
  if (!cal) return [];
  let r: ReturnType<typeof calibrationSources>;
  try {
    r = calibrationSources(cal);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  for (const f of r.skipped) progress(args)?.(`skipped ${f} (not UTF-8 text)`);
  return r.sources;
}

/** Traces the calibration text on the model and returns its saliency; REAP needs the server's expert norms. */
async function measureSaliency(args: ParsedArgs, sources: CalibrationSource[], sha: string, needReap: boolean): Promise<SaliencyFile> {
  return withServer(args, async (server) => {
    const info = await server.client.modelInfo();
    if (needReap && !hasExpertNorms(info)) {
      throw new UsageError(
        `REAP needs expert-output norms, which this moe-lens-server does not report (no "expert_norms" capability); rebuild it (npm run build:native) or use --method weight or frequency`,
      );
    }
    progress(args)?.(`measuring saliency on ${sources.length} calibration source${sources.length === 1 ? "" : "s"}`);
    return computeSaliency(server.client, sources, { modelSha256: sha, onProgress: progress(args) });
  });
}

function writeJson(file: string, value: unknown): void {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(value, null, 1) + "\n");
}

async function cmdSaliency(args: ParsedArgs): Promise<void> {
  checkKnownFlags(args, [...COMMON_FLAGS, "calibration", "out"]);
  const out = flagString(args, "out");
  if (!out) throw new UsageError("--out SALIENCY.json is required");
  const sources = calibrationFromFlag(args);
  if (!sources.length) throw new UsageError("--calibration FILE|DIR is required");
  const model = modelPath(args);
  openForPruning(model); // refuse a dense or broken model before tracing
  const s = await measureSaliency(args, sources, await sha256File(model), false);
  writeJson(out, s);
  if (quiet(args))
    return void console.log(
      JSON.stringify({ out, tokens: s.calibration.tokens, layers: s.layers.length, n_expert: s.n_expert, reap: s.layers.every((l) => l.reap) }),
    );
  console.log(
    `saliency of ${s.n_expert} experts × ${s.layers.length} MoE layers on ${s.calibration.tokens} tokens${s.layers[0]?.reap ? " (with REAP norms)" : " (no expert norms: REAP unavailable)"}; wrote ${out}`,
  );
}

function printSummary(r: PruneSummary): void {
  const used = (u: number | number[]) => (Array.isArray(u) ? `[${u.join(",")}]` : String(u));
  console.log(
    `pruned ${path.basename(r.source)} (${r.architecture}) with ${r.method}${r.seed !== undefined ? ` (seed ${r.seed})` : ""}, keep ${r.keep}: ` +
      `${r.expert_count.before} → ${r.expert_count.after} experts per MoE layer, k ${used(r.expert_used_count.before)} → ${used(r.expert_used_count.after)}`,
  );
  console.log(
    formatTable(
      ["layer", "kept experts", "removed"],
      r.layers.map((l) => [`${l.layer}${l.calibrated ? "" : " (no calibration data)"}`, l.kept.join(","), l.removed.join(",") || "–"]),
    ),
  );
  console.log(
    `size ${(r.sizes.source_bytes / 1e6).toFixed(2)} MB → ${(r.sizes.out_bytes / 1e6).toFixed(2)} MB (${((100 * r.sizes.out_bytes) / r.sizes.source_bytes).toFixed(1)} %)`,
  );
  console.log(`wrote ${r.out}`);
}

async function cmdPrune(args: ParsedArgs): Promise<void> {
  checkKnownFlags(args, [...COMMON_FLAGS, "calibration", "saliency", "keep", "method", "seed", "out", "force"]);
  const model = modelPath(args);
  const keep = parseKeep(flagString(args, "keep"));
  const method = parseMethod(flagString(args, "method"), "reap");
  const seedFlag = flagInt(args, "seed", 0, 0xffffffff);
  const out = flagString(args, "out");
  if (!out || !/\.gguf$/i.test(out)) throw new UsageError("--out OUT.gguf is required");
  if (path.resolve(out) === path.resolve(model)) throw new UsageError("--out must not be the model itself");
  if (fs.existsSync(out) && !args.flags.has("force")) throw new UsageError(`${out} exists; pass --force to replace it`);
  if (method !== "random" && seedFlag !== undefined) throw new UsageError("--seed applies to --method random only");
  const salFile = flagString(args, "saliency");
  const sources = calibrationFromFlag(args);
  if (method !== "random" && !salFile && !sources.length)
    throw new UsageError(`--method ${method} needs --calibration FILE|DIR (your text) or --saliency FILE`);
  if (salFile && sources.length) throw new UsageError("give --calibration or --saliency, not both");

  // Everything that can be refused is checked before the (possibly long) calibration run.
  const { layout, structure } = openForPruning(model);
  const n = keptExpertCount(structure, keep);
  const log = progress(args);
  log?.(`hashing ${path.basename(model)}`);
  const sha = await sha256File(model);
  let saliency: SaliencyFile | undefined;
  if (method !== "random") saliency = salFile ? readSaliency(salFile, sha) : await measureSaliency(args, sources, sha, method === "reap");
  const seed = method === "random" ? (seedFlag ?? 0) : undefined;
  const choice = chooseExperts(structure, n, method, saliency, seed);
  log?.(`writing ${out}`);
  const calibration = saliency ? { files: saliency.calibration.files.map((f) => f.name), tokens: saliency.calibration.tokens } : undefined;
  const summary = await writePrunedModel(layout, structure, choice, out, { method, keep, seed, sourceSha256: sha, calibration });
  if (quiet(args)) return void console.log(JSON.stringify(summary, null, 1));
  printSummary(summary);
}

async function cmdPruneEval(args: ParsedArgs): Promise<void> {
  checkKnownFlags(args, [...COMMON_FLAGS, "heldout", "calibration", "calibration-share", "keeps", "methods", "seeds", "ctx", "out", "work-dir", "keep-files"]);
  const model = modelPath(args);
  const heldoutFile = flagString(args, "heldout");
  if (!heldoutFile || !fs.existsSync(heldoutFile)) throw new UsageError("--heldout FILE is required (text not used for calibration)");
  let heldout = fs.readFileSync(heldoutFile, "utf8");
  const sources = calibrationFromFlag(args);
  const shareFlag = flagString(args, "calibration-share");
  if (shareFlag !== undefined) {
    const share = Number(shareFlag);
    if (!(share > 0 && share < 1)) throw new UsageError(`--calibration-share must be in (0, 1), got "${shareFlag}"`);
    const split = splitInterleaved(heldout, share);
    sources.push(textSource(`${path.basename(heldoutFile)} (calibration share ${share}, interleaved blocks of 40 lines)`, split.calibration));
    heldout = split.heldout;
  }
  if (!sources.length)
    throw new UsageError("give --calibration FILE|DIR and/or --calibration-share F (a share of the held-out file, interleaved, used for calibration only)");
  const heldoutAbs = path.resolve(heldoutFile);
  if (
    !shareFlag &&
    flagString(args, "calibration") &&
    calibrationSources(flagString(args, "calibration")!).sources.some((s) => path.resolve(s.name) === heldoutAbs)
  ) {
    throw new UsageError("the held-out file is also calibration text; choose text the saliency never sees");
  }
  const keeps = listFlag(args, "keeps", (s) => parseKeep(s), DEFAULT_KEEPS);
  const methods = listFlag(args, "methods", (s) => parseMethod(s, "reap"), ["reap", "weight", "frequency", "random"] as PruneMethod[]);
  const seeds = listFlag(
    args,
    "seeds",
    (s) => {
      const x = Number(s);
      if (!Number.isInteger(x) || x < 0 || x > 0xffffffff) throw new UsageError(`--seeds takes integers in [0, 4294967295], got "${s}"`);
      return x;
    },
    DEFAULT_SEEDS,
  );
  const out = flagString(args, "out");
  if (out && !/\.(md|json)$/i.test(out)) throw new UsageError(`--out must end in .md or .json, got ${out}`);
  const { layout, structure } = openForPruning(model);
  for (const k of keeps) keptExpertCount(structure, k);
  const log = progress(args);
  const sha = await sha256File(model);
  const saliency = await measureSaliency(args, sources, sha, methods.includes("reap"));
  const nCtxFlag = flagInt(args, "ctx", 16, 1 << 20);
  const nCtx =
    nCtxFlag ??
    (await withServer(args, async (server) =>
      chooseNCtx((await server.client.tokenize(heldout)).tokens.length, (await server.client.modelInfo()).n_ctx_train),
    ));
  const workDir = flagString(args, "work-dir") ?? fs.mkdtempSync(path.join(os.tmpdir(), "moe-lens-prune-eval-"));
  let result: PruneEvalResult;
  try {
    result = await runPruneEvaluation({
      layout,
      structure,
      sourceSha256: sha,
      saliency,
      keeps,
      methods,
      seeds,
      workDir,
      keepFiles: args.flags.has("keep-files"),
      perplexityOf: (file) => withServer(args, (server) => server.client.perplexity({ text: heldout, n_ctx: nCtx }), file),
      onProgress: log,
    });
  } finally {
    if (!flagString(args, "work-dir") && !args.flags.has("keep-files")) fs.rmSync(workDir, { recursive: true, force: true });
  }
  const table = pruneEvalMarkdown(result);
  const notes = pruneEvalComparison(result);
  const about =
    `${result.model.file} (${result.model.architecture}, ${result.model.nExpert} experts, k=${result.model.k}); calibration ${result.calibration.tokens} tokens ` +
    `(${result.calibration.files.map((f) => f.name).join("; ")}); held-out ${path.basename(heldoutFile)}${shareFlag ? " (the rest)" : ""}: ${result.heldout.tokens} tokens, ` +
    `PPL by llama-perplexity's method, n_ctx = ${result.heldout.nCtx}, ${result.heldout.chunks} chunks; source model PPL ${result.source.ppl.toFixed(3)} ± ${result.source.pplErr.toFixed(3)}`;
  if (out) {
    fs.mkdirSync(path.dirname(path.resolve(out)), { recursive: true });
    fs.writeFileSync(out, /\.json$/i.test(out) ? JSON.stringify(result, null, 1) + "\n" : `${about}\n\n${table}\n${notes.map((n) => `- ${n}`).join("\n")}\n`);
  }
  if (quiet(args)) return void console.log(JSON.stringify(result, null, 1));
  console.log(`\n${about}\n\n${table}\n${notes.join("\n")}`);
  if (out) console.log(`\nwrote ${out}`);
}

export const pruneCommands: Record<string, (args: ParsedArgs) => Promise<void>> = {
  saliency: cmdSaliency,
  prune: cmdPrune,
  "prune-eval": cmdPruneEval,
};
