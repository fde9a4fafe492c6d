import * as path from "node:path";
import * as vscode from "vscode";
import { fitAntPredictor } from "../../core/ant";
import { decodeText, requireText } from "../../core/text-input";
import type { Services } from "../services";
import { errorMessage, isCancellation, raceAbort } from "../server-manager";

/**
 * MoE Lens: Calibrate Ant on Text… — takes calibration text (the selection, the current
 * document or a file), has the server record the unmodified router logits, fits the Ant
 * predictor (extension/core/ant.ts, ridge regression, saved beside the model) and loads
 * it, so policies with `ant` can run. The predictor is reloaded after server restarts.
 */
export function register(svc: Services): vscode.Disposable {
  return vscode.commands.registerCommand("moeLens.calibrateAnt", async () => {
    const editor = vscode.window.activeTextEditor;
    const choices: Array<vscode.QuickPickItem & { id: "sel" | "doc" | "file" }> = [];
    if (editor && !editor.selection.isEmpty)
      choices.push({ id: "sel", label: "Selection", description: `${editor.document.getText(editor.selection).length} characters` });
    if (editor) choices.push({ id: "doc", label: "Current document", description: vscode.workspace.asRelativePath(editor.document.uri) });
    choices.push({ id: "file", label: "A file…", description: "any text file" });
    const pick = choices.length === 1 ? choices[0] : await vscode.window.showQuickPick(choices, { title: "MoE Lens: calibration text for Ant" });
    if (!pick) return;
    let text: string;
    try {
      if (pick.id === "sel") text = requireText(editor!.document.getText(editor!.selection), vscode.workspace.asRelativePath(editor!.document.uri));
      else if (pick.id === "doc") text = requireText(editor!.document.getText(), vscode.workspace.asRelativePath(editor!.document.uri));
      else {
        const f = await vscode.window.showOpenDialog({ title: "Calibration text", canSelectMany: false, openLabel: "Calibrate" });
        if (!f?.[0]) return;
        text = decodeText(await vscode.workspace.fs.readFile(f[0]), vscode.workspace.asRelativePath(f[0]));
      }
    } catch (e) {
      return void vscode.window.showErrorMessage(`MoE Lens: ${errorMessage(e)}`);
    }
    if (!text.trim()) return void vscode.window.showWarningMessage("MoE Lens: the calibration text is empty.");
    const ac = new AbortController();
    try {
      const saved = await vscode.window.withProgress(
        { location: vscode.ProgressLocation.Notification, title: "MoE Lens: calibrating Ant", cancellable: true },
        async (progress, token) => {
          token.onCancellationRequested(() => ac.abort());
          const client = await svc.server.ensureClient(ac.signal);
          progress.report({ message: "recording router logits and fitting…" });
          const file = await raceAbort(fitAntPredictor(client, text, svc.server.resolvedModelPath()), ac.signal);
          progress.report({ message: "loading the predictor…" });
          await client.loadPredictor(file);
          return file;
        },
      );
      svc.server.predictorPath = saved;
      svc.policy.antAvailable = true;
      svc.panel.postPolicy();
      svc.output.info(`Ant predictor fitted and loaded: ${saved}`);
      void vscode.window.showInformationMessage(`MoE Lens: Ant predictor saved to ${path.basename(saved)} and loaded. Set a policy with Ant to use it.`);
    } catch (e) {
      if (isCancellation(e) || ac.signal.aborted) return;
      svc.output.error(`calibrate Ant: ${errorMessage(e)}`);
      void vscode.window.showErrorMessage(`MoE Lens: calibration failed: ${errorMessage(e)}`);
    }
  });
}
