import * as vscode from "vscode";
import type { Services } from "../services";
import { selectionTraceSpan } from "../trace-scope";

/** MoE Lens: Trace Selection — the selected text (or the whole document when nothing is selected). */
export function register(svc: Services): vscode.Disposable {
  return vscode.commands.registerCommand("moeLens.traceSelection", async () => {
    const editor = vscode.window.activeTextEditor;
    if (!editor) return void vscode.window.showWarningMessage("MoE Lens: open a text file to trace.");
    const { document, selection } = editor;
    const span = selectionTraceSpan(document.offsetAt(selection.anchor), document.offsetAt(selection.active));
    void svc.panel.show(true);
    if (!span) return svc.tracer.trace({ document });
    return svc.tracer.trace({ document, range: new vscode.Range(document.positionAt(span.start), document.positionAt(span.end)) });
  });
}
