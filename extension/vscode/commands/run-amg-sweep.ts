import * as vscode from "vscode";
import { DEFAULT_THRESHOLDS, runAmgSweep } from "../../core/experiments";
import { requireText } from "../../core/text-input";
import { parseMaxK, parseThresholds, sweepSubtitle, type ExperimentRun } from "../experiment-view";
import { publishExperiment, runExperiment } from "../experiment-runner";
import type { Services } from "../services";
import { errorMessage } from "../server-manager";

export interface SweepArgs {
  uri?: vscode.Uri;
  thresholds?: number[];
  maxK?: number[];
}

/**
 * MoE Lens: Run AMG Sweep on Document — the table of “Adaptive Mixture of Experts Gate (AMG)” for the active document (as
 * `moe-lens sweep FILE`): perplexity ± σ and average active experts for each AMG threshold ×
 * expert slots (max_k above the trained k reloads the model with more experts). Asks for the
 * thresholds and max_k (defaults as the CLI's) unless given as arguments; progress with Cancel.
 */
export function register(svc: Services): vscode.Disposable {
  return vscode.commands.registerCommand("moeLens.runAmgSweep", async (arg?: vscode.Uri | SweepArgs) => {
    const a: SweepArgs = arg instanceof vscode.Uri ? { uri: arg } : (arg ?? {});
    const document = a.uri ? await vscode.workspace.openTextDocument(a.uri) : vscode.window.activeTextEditor?.document;
    if (!document) return void vscode.window.showWarningMessage("MoE Lens: open a text file to run the AMG sweep on.");
    const text = document.getText();
    if (!text.trim()) return void vscode.window.showWarningMessage("MoE Lens: the document is empty.");
    try {
      requireText(text, vscode.workspace.asRelativePath(document.uri));
    } catch (e) {
      return void vscode.window.showErrorMessage(`MoE Lens: ${errorMessage(e)}`);
    }
    let thresholds = a.thresholds;
    let maxK = a.maxK;
    if (!thresholds || !maxK) {
      const s = await vscode.window.showInputBox({
        title: "MoE Lens: AMG sweep (1/2)",
        prompt: "AMG thresholds τ (1.0 is always added: it must equal the no-gating row)",
        value: DEFAULT_THRESHOLDS.join(", "),
        validateInput: (v) => (typeof parseThresholds(v) === "string" ? (parseThresholds(v) as string) : undefined),
      });
      if (s === undefined) return;
      thresholds = parseThresholds(s) as number[];
      const model = svc.server.modelInfo;
      const nExpert = model?.n_expert ?? 4096;
      const k = model?.n_expert_used_trained;
      const m = await vscode.window.showInputBox({
        title: "MoE Lens: AMG sweep (2/2)",
        prompt: `Expert slots max_k to sweep${k ? ` (trained k = ${k}; above it the model is reloaded with more experts)` : ""}; empty: k and 2k`,
        value: k ? [k, Math.min(nExpert, 2 * k)].filter((x, i, xs) => xs.indexOf(x) === i).join(", ") : "",
        validateInput: (v) => (!v.trim() ? undefined : typeof parseMaxK(v, nExpert) === "string" ? (parseMaxK(v, nExpert) as string) : undefined),
      });
      if (m === undefined) return;
      maxK = m.trim() ? (parseMaxK(m, nExpert) as number[]) : undefined;
    }
    const file = document.uri.scheme === "file" ? document.uri.fsPath : vscode.workspace.asRelativePath(document.uri);
    const result = await runExperiment(svc, "AMG sweep", (client, signal, report) =>
      runAmgSweep(client, text, { thresholds, maxK, signal, onProgress: report }),
    );
    if (!result) return;
    const run: ExperimentRun = { kind: "sweep", result, subtitle: sweepSubtitle(file, result) };
    await publishExperiment(svc, run);
    return run;
  });
}
