import * as vscode from "vscode";
import type { Services } from "../services";

/** MoE Lens: Trace Selection — the selected text (or the current line when nothing is selected). */
export function register(svc: Services): vscode.Disposable {
  return vscode.commands.registerCommand("moeLens.traceSelection", async () => {
    const editor = vscode.window.activeTextEditor;
    if (!editor) return void vscode.window.showWarningMessage("MoE Lens: open a text file to trace.");
    const sel = editor.selection;
    const range = sel.isEmpty ? editor.document.lineAt(sel.active.line).range : new vscode.Range(sel.start, sel.end);
    void svc.panel.show(true);
    return svc.tracer.trace({ document: editor.document, range });
  });
}
