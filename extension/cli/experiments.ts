// `moe-lens sweep | ablation | transitions | calibrate`: the published experiments (docs/metrics.md) and the
// transition analysis from the command line (core: extension/core/experiments.ts, transitions.ts).
// Server start-up mirrors main.ts (kept here so that importing this module never runs main()).
import fs from "node:fs";
import path from "node:path";
import { COMMON_FLAGS, modelPath, policyFromFlags, POLICY_FLAGS, readTextFile, withServer } from "./server-session";
import { checkKnownFlags, flagInt, flagString, formatTable, UsageError, type ParsedArgs } from "./args";
import { fitAntPredictor, predictorPathFor } from "../core/ant";
import { packsInDir, routerPackDir } from "../core/router-pack";
import {
  ablationTable,
  experimentToJson,
  markdownTable,
  renderExperimentReport,
  runAblation,
  runAmgSweep,
  sweepTable,
  ablationToCsv,
  sweepToCsv,
  ablationNote,
  ablationPacks,
  ablationSubtitle,
  sweepNote,
  type AblationDoc,
  type AblationResult,
  type SweepResult,
} from "../core/experiments";
import { demoSamplePath, repoRootFromHere } from "../core/paths";
import { describePolicy } from "../../shared/policy";
import { analyzeTransitions, labelText, segmentsFor, type ChangePointOptions } from "../core/transitions";

const OUT_EXTS = [".html", ".csv", ".json", ".md"];

export const EXPERIMENT_HELP = `  moe-lens sweep FILE [--model M] [--thresholds 0.5,0.75,0.9,1.0] [--max-k K1,K2] [--ctx N] [--min-k N] [--out F.html|F.csv|F.json|F.md] [--no-speed]
                                                     AMG sweep: PPL ± σ and average active experts (the AMG table), each row's
                                                     measured speed beside them
  moe-lens ablation [DIR|FILES...] [--model M] [--calibration FILE] [--beta 0.9] [--beta-form raw|sp] [--gamma 0.5]
                    [--pi-momentum M] [--packs DIR] [--limit N] [--out F.html|F.csv|F.json|F.md]
                                                     2³ ablation of {β, Π, Ant} at labelled domain transitions: post hoc
                                                     on the model's routers, or with --packs DIR (a folder of router packs,
                                                     or "model" for the model's own) one trained pack per row
  moe-lens transitions FILE [--model M] [--json] [--window N] [--threshold X] [policy flags]
                                                     per-transition metrics of one labelled / markdown text
  moe-lens calibrate FILE [--model M] [--out PREDICTOR.json] [--beta 0.9] [--ridge 1]
                                                     fit the Ant predictor on calibration text`;

function numberList(args: ParsedArgs, name: string, lo: number, hi: number, integer: boolean): number[] | undefined {
  const v = flagString(args, name);
  if (v === undefined) return undefined;
  const xs = v
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)
    .map(Number);
  if (!xs.length || xs.some((x) => !Number.isFinite(x) || x < lo || x > hi || (integer && !Number.isInteger(x)) || (!integer && x === 0 && lo === 0))) {
    throw new UsageError(
      `--${name} must be a comma-separated list of ${integer ? "integers" : "numbers"} in ${lo === 0 ? "(0" : `[${lo}`}, ${hi}], got "${v}"`,
    );
  }
  return xs;
}

function flagNumber(args: ParsedArgs, name: string, lo: number, hi: number): number | undefined {
  const v = flagString(args, name);
  if (v === undefined) return undefined;
  const x = Number(v);
  if (!Number.isFinite(x) || x < lo || x > hi) throw new UsageError(`--${name} must be a number in [${lo}, ${hi}], got "${v}"`);
  return x;
}

function checkOut(out: string | undefined): void {
  if (out && !OUT_EXTS.includes(path.extname(out).toLowerCase())) throw new UsageError(`--out must end in ${OUT_EXTS.join(", ")}, got ${out}`);
}

function writeOut(out: string, kind: "amg-sweep" | "ablation", r: SweepResult | AblationResult, subtitle: string): void {
  const ext = path.extname(out).toLowerCase();
  const sweep = kind === "amg-sweep" ? (r as SweepResult) : undefined;
  const ablation = kind === "ablation" ? (r as AblationResult) : undefined;
  let content: string;
  if (ext === ".json") content = experimentToJson(kind, r);
  else if (ext === ".csv") content = sweep ? sweepToCsv(sweep) : ablationToCsv(ablation!);
  else if (ext === ".md")
    content = sweep ? `${markdownTable(sweepTable(sweep))}\n${sweepNote(sweep)}\n` : `${markdownTable(ablationTable(ablation!))}\n${ablationNote(ablation!)}\n`;
  else
    content = renderExperimentReport({
      title: sweep ? "MoE Lens: AMG sweep" : "MoE Lens: {β, Π, Ant} ablation at domain transitions",
      subtitle,
      sweep,
      ablation,
    });
  fs.mkdirSync(path.dirname(path.resolve(out)), { recursive: true });
  fs.writeFileSync(out, content);
}

const progress = (args: ParsedArgs) => (args.flags.get("json") ? undefined : (m: string) => process.stderr.write(`  ${m}\n`));

async function cmdSweep(args: ParsedArgs): Promise<void> {
  checkKnownFlags(args, [...COMMON_FLAGS, "thresholds", "max-k", "ctx", "min-k", "batch", "out", "no-speed"]);
  const file = args.positional[0];
  const text = readTextFile(file);
  const thresholds = numberList(args, "thresholds", 0, 1, false);
  const maxK = numberList(args, "max-k", 1, 4096, true);
  const out = flagString(args, "out");
  checkOut(out);
  await withServer(args, async (server) => {
    const r = await runAmgSweep(server.client, text, {
      thresholds,
      maxK,
      nCtx: flagInt(args, "ctx", 8, 1 << 22),
      minK: flagInt(args, "min-k", 1, 4096),
      nBatch: flagInt(args, "batch", 1, 1 << 22),
      onProgress: progress(args),
      ...(args.flags.get("no-speed") === true ? { speed: false as const } : {}),
    });
    const subtitle = `${path.basename(file)} on ${path.basename(r.model.path)} (${r.model.architecture}, ${r.model.n_expert} experts, trained k=${r.trainedK})`;
    if (out) writeOut(out, "amg-sweep", r, subtitle);
    if (args.flags.get("json")) return void console.log(experimentToJson("amg-sweep", r));
    const t = sweepTable(r);
    console.log(`\nAMG sweep: ${subtitle}\n`);
    console.log(formatTable(t.header, t.rows));
    console.log(`\n${sweepNote(r)}`);
    if (out) console.log(`\nwrote ${out}`);
  });
}

/** Evaluation documents: a directory's .txt/.md files (sorted) or the files given; default the bundled transition fixtures. */
function ablationFiles(args: ParsedArgs): string[] {
  const inputs = args.positional.length ? args.positional : [path.join(repoRootFromHere(), "test", "fixtures", "transitions")];
  const files: string[] = [];
  for (const p of inputs) {
    if (!fs.existsSync(p)) throw new UsageError(`no such file or directory: ${p}`);
    if (fs.statSync(p).isDirectory()) {
      files.push(
        ...fs
          .readdirSync(p)
          .filter((f) => /\.(txt|md|markdown)$/i.test(f))
          .sort()
          .map((f) => path.join(p, f)),
      );
    } else files.push(p);
  }
  if (!files.length) throw new UsageError("no labelled .txt or .md files to evaluate");
  const limit = flagInt(args, "limit", 1, 1 << 20);
  return limit ? files.slice(0, limit) : files;
}

export function loadAblationDocs(files: string[]): AblationDoc[] {
  return files.map((f) => {
    const l = labelText(readTextFile(f));
    return { name: path.basename(f), text: l.text, spans: l.spans };
  });
}

async function cmdAblation(args: ParsedArgs): Promise<void> {
  checkKnownFlags(args, [...COMMON_FLAGS, "calibration", "beta", "beta-form", "gamma", "pi-momentum", "ridge", "limit", "out", "window", "threshold", "packs"]);
  const files = ablationFiles(args);
  const packsDir = flagString(args, "packs");
  if (packsDir !== undefined) {
    for (const f of ["calibration", "predictor", "beta", "beta-form", "gamma", "pi-momentum", "ridge", "router-pack"])
      if (args.flags.has(f)) throw new UsageError(`--${f} sets a post-hoc policy or router; with --packs every row routes with its trained pack`);
    return trainedAblation(args, files, packsDir === "model" ? routerPackDir(modelPath(args)) : packsDir);
  }
  const docs = loadAblationDocs(files);
  const out = flagString(args, "out");
  checkOut(out);
  const form = flagString(args, "beta-form") ?? "raw";
  if (!["raw", "sp", "scale_preserving"].includes(form)) throw new UsageError(`--beta-form must be raw or sp, got ${form}`);
  // Calibration text: --calibration, else a preloaded --predictor, else the bundled mixed-domain sample.
  let calibration = flagString(args, "calibration");
  if (!calibration && !flagString(args, "predictor")) {
    const sample = demoSamplePath(repoRootFromHere());
    if (fs.existsSync(sample)) calibration = sample;
    else throw new UsageError("the Ant rows need a fitted predictor: give --calibration FILE (text that is not evaluated) or --predictor FILE");
  }
  if (calibration && files.some((f) => path.resolve(f) === path.resolve(calibration!)))
    throw new UsageError(`the calibration text ${calibration} is also an evaluation document; choose another`);
  const calibrationText = calibration ? readTextFile(calibration) : undefined;
  const log = progress(args);
  for (const d of docs) if (!d.spans?.length) log?.(`${d.name}: no marker lines or code fences; using routing change points`);
  await withServer(args, async (server) => {
    const r = await runAblation(server.client, docs, {
      beta: flagNumber(args, "beta", 0, 0.9999),
      betaForm: form === "raw" ? "raw" : "scale_preserving",
      gamma: flagNumber(args, "gamma", 0, 10),
      piMomentum: flagNumber(args, "pi-momentum", 0, 0.9999),
      ridge: flagNumber(args, "ridge", 1e-9, 1e9),
      calibrationText,
      changePoints: changePointFlags(args),
      onProgress: log,
    });
    printAblation(args, r, ablationSubtitle(docs.length, r, calibration), out);
  });
}

/** `ablation --packs DIR`: the eight trained packs of the ablation, one per row (docs/router-packs.md). */
async function trainedAblation(args: ParsedArgs, files: string[], dir: string): Promise<void> {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new UsageError(`--packs: no such folder: ${dir}`);
  let packs;
  try {
    packs = ablationPacks(packsInDir(dir));
  } catch (e) {
    throw new UsageError(`--packs ${dir}: ${(e as Error).message}`);
  }
  const docs = loadAblationDocs(files);
  const out = flagString(args, "out");
  checkOut(out);
  const log = progress(args);
  await withServer(args, async (server) => {
    const r = await runAblation(server.client, docs, { packs, changePoints: changePointFlags(args), onProgress: log });
    printAblation(args, r, ablationSubtitle(docs.length, r), out);
  });
}

/** The ablation's output: --out file, then JSON or the table with its note. */
function printAblation(args: ParsedArgs, r: AblationResult, subtitle: string, out: string | undefined): void {
  if (out) writeOut(out, "ablation", r, subtitle);
  if (args.flags.get("json")) return void console.log(experimentToJson("ablation", r));
  const t = ablationTable(r);
  console.log(`\nAblation of {β, Π, Ant}: ${subtitle}\n`);
  console.log(formatTable(t.header, t.rows));
  console.log(`\n${ablationNote(r)}`);
  if (out) console.log(`\nwrote ${out}`);
}

function changePointFlags(args: ParsedArgs): ChangePointOptions {
  return { window: flagInt(args, "window", 1, 1 << 16), threshold: flagNumber(args, "threshold", 0, 1) };
}

const f = (x: number, d: number) => (Number.isFinite(x) ? x.toFixed(d) : "–");

async function cmdTransitions(args: ParsedArgs): Promise<void> {
  checkKnownFlags(args, [...COMMON_FLAGS, ...POLICY_FLAGS, "window", "threshold"]);
  const file = args.positional[0];
  const labelled = labelText(readTextFile(file));
  const policy = policyFromFlags(args);
  await withServer(args, async (server) => {
    const info = await server.client.modelInfo();
    const trace = await server.client.trace({ text: labelled.text, policy, top_n: info.n_expert });
    const segments = segmentsFor(trace, labelled, changePointFlags(args));
    const a = analyzeTransitions(trace, segments, { text: labelled.text });
    if (args.flags.get("json")) {
      return void console.log(
        JSON.stringify(
          { file, labels: labelled.spans.length ? labelled.source : "change-point", policy, ...a },
          (_k, v) => (typeof v === "number" && !Number.isFinite(v) ? null : v),
          1,
        ),
      );
    }
    console.log(
      `${path.basename(file)}: ${trace.columns.count} tokens, ${segments.length} segments (${labelled.spans.length ? labelled.source : "change points"}), ${a.transitions.length} transitions; policy ${describePolicy(policy)}\n`,
    );
    const L = a.layers.map((l) => `L${l}`);
    console.log("Domain experts (per MoE layer: the expert with the largest usage difference)");
    console.log(
      formatTable(
        ["domain", "tokens", ...L],
        a.domainExperts.domains.map((d, di) => [d, String(a.domainExperts.tokens[di]), ...a.layers.map((_l, m) => String(a.domainExperts.experts[m][di]))]),
      ),
    );
    console.log("\nTransitions (step = last token of the old domain)");
    console.log(
      formatTable(
        ["token", "byte", "from → to", "P(new expert) per layer", "rank per layer", "NLL", "BPC"],
        a.transitions.map((x) => [
          String(x.token),
          String(x.byte),
          `${x.from} → ${x.to}`,
          x.probNewExpert.map((p) => f(p, 3)).join(" "),
          x.rankNewExpert.map((r) => f(r, 0)).join(" "),
          f(x.nll, 3),
          f(x.bpc, 2),
        ]),
      ),
    );
    const s = a.summary;
    console.log(
      `\nmean P(new expert) ${f(s.meanProb, 3)} · top-1 share ${f(s.top1, 3)} · mean rank ${f(s.meanRank, 2)} · K99 ${f(s.k99, 0)} of ${info.n_expert} (${s.cases} transition × layer cases)`,
    );
    console.log(
      `NLL at transition ${f(s.nllTransition, 3)} vs inside domains ${f(s.nllInside, 3)} nats · BPC at transition ${f(s.bpcTransition, 2)} vs inside ${f(s.bpcInside, 2)}`,
    );
  });
}

async function cmdCalibrate(args: ParsedArgs): Promise<void> {
  checkKnownFlags(args, [...COMMON_FLAGS, "out", "beta", "ridge"]);
  const file = args.positional[0];
  const text = readTextFile(file);
  const model = modelPath(args);
  const out = flagString(args, "out") ?? predictorPathFor(model);
  await withServer(args, async (server) => {
    const written = await fitAntPredictor(server.client, text, model, {
      beta: flagNumber(args, "beta", 0, 0.9999),
      ridge: flagNumber(args, "ridge", 1e-9, 1e9),
      outPath: out,
    });
    const fit = JSON.parse(fs.readFileSync(written, "utf8")) as {
      calibration: { tokens: number };
      n_expert: number;
      moe_layers: number[];
      beta: number;
      ridge: number;
    };
    if (args.flags.get("json"))
      return void console.log(
        JSON.stringify({
          predictor: written,
          tokens: fit.calibration.tokens,
          n_expert: fit.n_expert,
          moe_layers: fit.moe_layers,
          beta: fit.beta,
          ridge: fit.ridge,
        }),
      );
    console.log(
      `fitted the Ant predictor on ${fit.calibration.tokens} tokens of ${path.basename(file)} (β = ${fit.beta}, ridge ${fit.ridge}, ${fit.moe_layers.length} MoE layers × ${fit.n_expert} experts)`,
    );
    console.log(`wrote ${written}; load it with --predictor ${written}`);
  });
}

export const experimentCommands: Record<string, (args: ParsedArgs) => Promise<void>> = {
  sweep: cmdSweep,
  ablation: cmdAblation,
  transitions: cmdTransitions,
  calibrate: cmdCalibrate,
};
