import * as vscode from "vscode";
import type { Services } from "../services";

/** MoE Lens: Trace Document — the whole active document. */
export function register(svc: Services): vscode.Disposable {
  return vscode.commands.registerCommand("moeLens.traceDocument", async (uri?: vscode.Uri) => {
    const document = uri instanceof vscode.Uri ? await vscode.workspace.openTextDocument(uri) : vscode.window.activeTextEditor?.document;
    if (!document) return void vscode.window.showWarningMessage("MoE Lens: open a text file to trace.");
    void svc.panel.show(true);
    return svc.tracer.trace({ document });
  });
}
