import * as path from "node:path";
import * as vscode from "vscode";
import { sha256File } from "../../core/ant";
import { chooseExperts, keptExpertCount, openForPruning, PruneError, writePrunedModel, type PruneSummary } from "../../core/prune";
import { calibrationSources, computeSaliency, hasExpertNorms, PRUNE_METHODS, textSource, type CalibrationSource, type PruneMethod } from "../../core/saliency";
import { runExperiment } from "../experiment-runner";
import { prunePreview, saliencyMessage } from "../prune-view";
import type { Services } from "../services";
import { errorMessage } from "../server-manager";

export interface PruneArgs {
  /** Calibration file or folder; absent: the active document (or the user picks). */
  calibration?: string;
  method?: PruneMethod;
  keep?: number;
  seed?: number;
  /** Where to write the pruned model; given, the command does not ask (scripts and tests). */
  out?: vscode.Uri;
}

const METHOD_DETAIL: Record<PruneMethod, string> = {
  reap: "router-weighted expert-output norm (REAP): gate weight × ‖expert output‖, averaged over the tokens routed to the expert",
  weight: "summed gate weight over the calibration tokens",
  frequency: "how often the router selects the expert",
  random: "a seeded random set: the baseline a criterion must beat",
};

/**
 * MoE Lens: Prune Experts… — measures each MoE layer's expert saliency on the user's text
 * (the active document, or a file or folder), shows the per-layer chart with the cut line in
 * the panel as a preview, and after confirmation writes a smaller GGUF with the least salient
 * experts removed (extension/core/prune.ts, the same code as `moe-lens prune`), then offers to
 * load it. MoE Lens: Export Expert Saliency… saves the last saliency as JSON (`moe-lens prune
 * --saliency` reads it back).
 */
export function register(svc: Services): vscode.Disposable {
  return vscode.Disposable.from(
    vscode.commands.registerCommand("moeLens.pruneExperts", (a: PruneArgs = {}) => pruneExperts(svc, a)),
    vscode.commands.registerCommand("moeLens.exportSaliency", (target?: vscode.Uri) => exportSaliency(svc, target)),
  );
}

async function pruneExperts(svc: Services, a: PruneArgs): Promise<PruneSummary | undefined> {
  const model = svc.server.resolvedModelPath();
  let opened: ReturnType<typeof openForPruning>;
  try {
    opened = openForPruning(model); // a dense or broken model is refused before anything runs
  } catch (e) {
    return void vscode.window.showErrorMessage(`MoE Lens: cannot prune ${path.basename(model)}: ${errorMessage(e)}`);
  }
  const { layout, structure } = opened;

  const sources = await pickCalibration(a.calibration);
  if (!sources) return;
  if (!sources.length) return void vscode.window.showWarningMessage("MoE Lens: the calibration text is empty (or has no UTF-8 text files).");

  let method = a.method;
  if (!method) {
    const norms = svc.server.modelInfo ? hasExpertNorms(svc.server.modelInfo) : true;
    const pick = await vscode.window.showQuickPick(
      PRUNE_METHODS.filter((m) => m !== "reap" || norms).map((m) => ({ label: m, detail: METHOD_DETAIL[m], method: m })),
      { title: "MoE Lens: Prune Experts (1/2) — rank experts by" },
    );
    if (!pick) return;
    method = pick.method;
  }
  let keep = a.keep;
  if (keep === undefined) {
    const s = await vscode.window.showInputBox({
      title: "MoE Lens: Prune Experts (2/2)",
      prompt: `Share of the ${structure.nExpert} experts each layer keeps (0 < keep ≤ 1; the same count in every layer)`,
      value: "0.75",
      validateInput: (v) => keepError(structure, Number(v)),
    });
    if (s === undefined) return;
    keep = Number(s);
  }
  const invalid = keepError(structure, keep);
  if (invalid) return void vscode.window.showErrorMessage(`MoE Lens: ${invalid}`);
  const n = keptExpertCount(structure, keep);
  const seed = method === "random" ? (a.seed ?? 0) : undefined;

  const measured = await runExperiment(svc, "expert saliency", async (client, signal, report) => {
    if (method === "reap" && !hasExpertNorms(await client.modelInfo(signal)))
      throw new PruneError("REAP needs expert-output norms, which this moe-lens-server does not report; rebuild it (npm run build:native) or rank by weight");
    report(`hashing ${path.basename(model)}`);
    const sha = await sha256File(model);
    return { sha, saliency: await computeSaliency(client, sources, { modelSha256: sha, signal, onProgress: report }) };
  });
  if (!measured) return;
  const { sha, saliency } = measured;
  const choice = chooseExperts(structure, n, method, saliency, seed);
  svc.lastPrune = { saliency, chart: saliencyMessage(saliency, choice, method, keep, seed) };
  await svc.panel.show(true);
  svc.panel.post(svc.lastPrune.chart);

  let out = a.out;
  if (!out) {
    const go = await vscode.window.showWarningMessage(
      prunePreview({ modelFile: model, modelBytes: layout.fileSize, structure, kept: n, method }),
      { modal: true, detail: "The chart in the Routing panel shows, per layer, the experts kept (left of the line) and removed." },
      "Save Pruned Model As…",
    );
    if (!go) return;
    const base = path.basename(model).replace(/\.gguf$/i, "");
    out = await vscode.window.showSaveDialog({
      title: "MoE Lens: save the pruned model",
      defaultUri: vscode.Uri.file(path.join(path.dirname(model), `${base}-pruned-${method}-${keep}.gguf`)),
      filters: { "GGUF models": ["gguf"] },
    });
    if (!out) return;
  }
  if (path.resolve(out.fsPath) === path.resolve(model)) return void vscode.window.showErrorMessage("MoE Lens: the pruned model cannot replace its source.");
  const calibration = { files: saliency.calibration.files.map((f) => f.name), tokens: saliency.calibration.tokens };
  let summary: PruneSummary;
  try {
    summary = await writePrunedModel(layout, structure, choice, out.fsPath, { method, keep, seed, sourceSha256: sha, calibration });
  } catch (e) {
    svc.output.error(`prune: ${errorMessage(e)}`);
    return void vscode.window.showErrorMessage(`MoE Lens: the pruned model was not written: ${errorMessage(e)}`);
  }
  const mb = (b: number) => `${(b / 1e6).toFixed(1)} MB`;
  const line = `wrote ${path.basename(out.fsPath)}: ${summary.expert_count.before} → ${summary.expert_count.after} experts per layer, ${mb(summary.sizes.source_bytes)} → ${mb(summary.sizes.out_bytes)}`;
  svc.output.info(`prune: ${line} (${method}, keep ${keep}, ${saliency.calibration.tokens} calibration tokens)`);
  if (!a.out)
    void vscode.window.showInformationMessage(`MoE Lens: ${line}.`, "Load Pruned Model").then((act) => {
      if (act) void vscode.commands.executeCommand("moeLens.selectModel", out);
    });
  return summary;
}

function keepError(structure: ReturnType<typeof openForPruning>["structure"], keep: number): string | undefined {
  if (!Number.isFinite(keep) || keep <= 0 || keep > 1) return "keep is a share in (0, 1], e.g. 0.75";
  try {
    keptExpertCount(structure, keep);
    return undefined;
  } catch (e) {
    return errorMessage(e);
  }
}

/** The calibration text: a given path, or the active document / a file or folder the user picks. Undefined: cancelled. */
async function pickCalibration(given?: string): Promise<CalibrationSource[] | undefined> {
  if (given) return calibrationSources(given).sources;
  const doc = vscode.window.activeTextEditor?.document;
  const items = [
    ...(doc && doc.getText().trim() ? [{ label: "The active document", description: vscode.workspace.asRelativePath(doc.uri), pick: "doc" as const }] : []),
    { label: "A file or folder…", description: "text files of a folder are read one after another", pick: "path" as const },
  ];
  const choice = await vscode.window.showQuickPick(items, { title: "MoE Lens: Prune Experts — measure saliency on" });
  if (!choice) return undefined;
  if (choice.pick === "doc") return [textSource(vscode.workspace.asRelativePath(doc!.uri), doc!.getText())];
  const picked = await vscode.window.showOpenDialog({ canSelectFiles: true, canSelectFolders: true, canSelectMany: false, openLabel: "Calibrate on" });
  if (!picked?.[0]) return undefined;
  return calibrationSources(picked[0].fsPath).sources;
}

async function exportSaliency(svc: Services, target?: vscode.Uri): Promise<vscode.Uri | undefined> {
  const s = svc.lastPrune?.saliency;
  if (!s) return void vscode.window.showWarningMessage("MoE Lens: nothing to export — run Prune Experts… first.");
  if (!target) {
    const dir = vscode.workspace.workspaceFolders?.[0]?.uri;
    target = await vscode.window.showSaveDialog({
      title: "MoE Lens: export expert saliency",
      defaultUri: dir ? vscode.Uri.joinPath(dir, "moe-lens-saliency.json") : undefined,
      filters: { JSON: ["json"] },
    });
    if (!target) return;
  }
  await vscode.workspace.fs.writeFile(target, new TextEncoder().encode(JSON.stringify(s, null, 1) + "\n"));
  void vscode.window.showInformationMessage(`MoE Lens: saliency exported to ${path.basename(target.path)} (moe-lens prune --saliency reads it).`);
  return target;
}
