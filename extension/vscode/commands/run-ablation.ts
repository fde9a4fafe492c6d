import * as path from "node:path";
import * as vscode from "vscode";
import { ablationPacks, runAblation, type AblationDoc, type AblationPacks } from "../../core/experiments";
import { packsForModel } from "../../core/router-pack";
import { decodeText } from "../../core/text-input";
import { labelText } from "../../core/transitions";
import { ablationSubtitle, evaluationFiles, type ExperimentRun } from "../experiment-view";
import { publishExperiment, runExperiment } from "../experiment-runner";
import type { Services } from "../services";
import { errorMessage } from "../server-manager";

export interface AblationArgs {
  /** Evaluation files (labelled transition texts); skips the folder and file pickers. */
  files?: vscode.Uri[];
  /** Calibration text for the Ant predictor; null: use the predictor the server has loaded. Skips the picker. */
  calibration?: vscode.Uri | null;
  /** Run the rows with the model's eight trained router packs instead of post-hoc policies. Skips the picker. */
  trainedPacks?: boolean;
}

/** The model's eight ablation packs, or undefined when it does not have all of them. */
function modelAblationPacks(svc: Services): AblationPacks | undefined {
  try {
    return ablationPacks(packsForModel(svc.server.resolvedModelPath()));
  } catch {
    return undefined;
  }
}

/**
 * MoE Lens: Run β/Π/Ant Ablation on Folder… — the table of “Affinity is not enough” (as `moe-lens
 * ablation DIR --calibration FILE`): the 2³ subsets of {β, Π, Ant} on labelled transition
 * texts (marker lines or code fences; unlabelled files use routing change points), metric ±
 * std over documents. The user picks a folder, then its files, then how the rows route: the
 * model's eight trained router packs when it has them (as `moe-lens ablation DIR --packs model`),
 * or post hoc with the calibration text for Ant (never one of the evaluated files) or the
 * predictor already loaded. As in the CLI the
 * fitted predictor goes to a temporary file, not beside the model; the predictor the server
 * had before (or none) is loaded back afterwards.
 */
export function register(svc: Services): vscode.Disposable {
  return vscode.commands.registerCommand("moeLens.runAblation", async (arg?: vscode.Uri | AblationArgs) => {
    const a: AblationArgs = arg instanceof vscode.Uri ? {} : (arg ?? {});
    let files = a.files;
    if (!files) {
      const folder =
        arg instanceof vscode.Uri
          ? [arg]
          : await vscode.window.showOpenDialog({
              title: "MoE Lens: folder of labelled transition texts (<<<domain:NAME>>> lines or code fences)",
              canSelectFolders: true,
              canSelectFiles: false,
              canSelectMany: false,
              openLabel: "Use Folder",
              defaultUri: vscode.workspace.workspaceFolders?.[0]?.uri,
            });
      if (!folder?.[0]) return;
      const entries = await vscode.workspace.fs.readDirectory(folder[0]);
      const names = evaluationFiles(entries.filter(([, t]) => t & vscode.FileType.File).map(([n]) => n));
      if (!names.length) return void vscode.window.showWarningMessage(`MoE Lens: ${path.basename(folder[0].path)} has no .txt or .md files to evaluate.`);
      const picked = await vscode.window.showQuickPick(
        names.map((n) => ({ label: n, picked: true })),
        {
          title: "MoE Lens: documents to evaluate",
          canPickMany: true,
          placeHolder: "labelled transition texts (all by default)",
        },
      );
      if (!picked?.length) return;
      files = picked.map((p) => vscode.Uri.joinPath(folder[0], p.label));
    }
    if (!files.length) return void vscode.window.showWarningMessage("MoE Lens: no documents to evaluate.");

    let calibration = a.calibration;
    const trained = modelAblationPacks(svc);
    let packs: AblationPacks | undefined;
    if (a.trainedPacks) {
      if (!trained) return void vscode.window.showErrorMessage("MoE Lens: this model has no complete set of ablation router packs (tools/train/README.md).");
      packs = trained;
    } else if (calibration === undefined) {
      const loaded = !!svc.server.predictorPath || !!svc.server.modelInfo?.predictor_loaded;
      const choices: Array<vscode.QuickPickItem & { id: "packs" | "file" | "loaded" }> = [];
      if (trained)
        choices.push({
          id: "packs",
          label: "Trained router packs",
          description: "one router-only fine-tune per row (standard … beta+pi+ant), no post-hoc policy",
        });
      choices.push({ id: "file", label: "Post hoc: choose calibration text…", description: "Ant is fitted on it (not one of the evaluated files)" });
      if (loaded)
        choices.push({
          id: "loaded",
          label: "Post hoc: use the loaded predictor",
          description: svc.server.predictorPath ? path.basename(svc.server.predictorPath) : "",
        });
      const pick = choices.length === 1 ? choices[0] : await vscode.window.showQuickPick(choices, { title: "MoE Lens: how the ablation's rows route" });
      if (!pick) return;
      if (pick.id === "packs") packs = trained;
      else if (pick.id === "loaded") calibration = null;
      else {
        const f = await vscode.window.showOpenDialog({
          title: "MoE Lens: calibration text for Ant",
          canSelectMany: false,
          openLabel: "Calibrate",
          defaultUri: vscode.workspace.workspaceFolders?.[0]?.uri,
        });
        if (!f?.[0]) return;
        calibration = f[0];
      }
    }
    if (calibration && files.some((f) => f.toString() === calibration!.toString())) {
      return void vscode.window.showErrorMessage(
        `MoE Lens: the calibration text ${path.basename(calibration.path)} is also an evaluation document; choose another.`,
      );
    }

    const docs: AblationDoc[] = [];
    let calibrationText: string | undefined;
    try {
      for (const f of files) {
        const l = labelText(decodeText(await vscode.workspace.fs.readFile(f), vscode.workspace.asRelativePath(f)));
        if (!l.spans.length) svc.output.info(`ablation: ${path.basename(f.path)} has no marker lines or code fences; using routing change points`);
        docs.push({ name: path.basename(f.path), text: l.text, spans: l.spans });
      }
      if (calibration) calibrationText = decodeText(await vscode.workspace.fs.readFile(calibration), vscode.workspace.asRelativePath(calibration));
    } catch (e) {
      return void vscode.window.showErrorMessage(`MoE Lens: ${errorMessage(e)}`);
    }
    if (calibrationText !== undefined && !calibrationText.trim()) return void vscode.window.showWarningMessage("MoE Lens: the calibration text is empty.");

    const previous = svc.server.predictorPath;
    const result = await runExperiment(svc, "β/Π/Ant ablation", async (client, signal, report) => {
      try {
        return await runAblation(client, docs, packs ? { packs, signal, onProgress: report } : { calibrationText, signal, onProgress: report });
      } finally {
        // The fitted predictor was loaded into the server: put back what the user had.
        if (calibrationText !== undefined) {
          await client.loadPredictor(previous ?? null).catch((e) => svc.output.warn(`ablation: could not reload the previous predictor: ${errorMessage(e)}`));
        }
      }
    });
    if (!result) return;
    const run: ExperimentRun = {
      kind: "ablation",
      result,
      subtitle: ablationSubtitle(docs.length, result, calibration ? path.basename(calibration.path) : undefined),
    };
    await publishExperiment(svc, run);
    return run;
  });
}
