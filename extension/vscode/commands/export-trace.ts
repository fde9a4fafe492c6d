import * as path from "node:path";
import * as vscode from "vscode";
import { TraceExportWriter, writeExportFile, type ExportSink, type TraceExportFormat } from "../../core/export";
import type { TraceRecord } from "../../core/trace-store";
import type { Services } from "../services";

/**
 * MoE Lens: Export Trace… — writes the active editor's trace (or the newest one) as JSON,
 * CSV or the compact binary .moetrace through a save dialog. The formats are those of extension/core/export.ts
 * (documented there and in the README, "Trace export formats"): JSON holds the header
 * (model, policy, k, layers, windows), one record per token (id, piece, exact bytes, UTF-8
 * byte span, NLL, per-layer experts/weights/entropy/active) and the summary; CSV has one row
 * per token × MoE layer. The stored batches are written one by one to a file on disk, so
 * memory does not grow with the export.
 */
export function register(svc: Services): vscode.Disposable {
  return vscode.commands.registerCommand("moeLens.exportTrace", async (format?: TraceExportFormat, target?: vscode.Uri) => {
    const editor = vscode.window.activeTextEditor;
    const rec: TraceRecord | undefined = (editor && svc.store.active(editor.document.uri.toString(), editor.document.version)) ?? svc.store.latest();
    if (!rec || !rec.header || rec.count === 0) {
      return void vscode.window.showWarningMessage("MoE Lens: nothing to export — trace a document first.");
    }
    if (!format) {
      const pick = await vscode.window.showQuickPick(
        [
          { label: "JSON", description: "header, one record per token, summary", format: "json" as const },
          { label: "CSV", description: "one row per token and MoE layer", format: "csv" as const },
          { label: "Binary (.moetrace)", description: "gzip'd columns, full precision, a fraction of JSON's size", format: "moetrace" as const },
        ],
        { title: "MoE Lens: export trace as" },
      );
      if (!pick) return;
      format = pick.format;
    }
    if (!target) {
      const src = vscode.Uri.parse(rec.uri);
      const base = path.basename(src.path).replace(/\.[^.]*$/, "") || "trace";
      const dir = src.scheme === "file" ? vscode.Uri.file(path.dirname(src.fsPath)) : vscode.workspace.workspaceFolders?.[0]?.uri;
      target = await vscode.window.showSaveDialog({
        title: "MoE Lens: export trace",
        defaultUri: dir ? vscode.Uri.joinPath(dir, format === "moetrace" ? `${base}.moetrace` : `${base}.moe-trace.${format}`) : undefined,
        filters: format === "json" ? { JSON: ["json"] } : format === "csv" ? { CSV: ["csv"] } : { "MoE Lens trace": ["moetrace"] },
      });
      if (!target) return;
    }
    const header = rec.header;
    const write = async (sink: ExportSink) => {
      const w = new TraceExportWriter(format!, rec.text, sink);
      await w.begin(header);
      for (const b of rec.batches) await w.batch(b);
      await w.end(rec.summary);
    };
    if (target.scheme === "file") await writeExportFile(target.fsPath, write);
    else {
      // A virtual file system (no local path): assemble the file, then hand it over.
      const parts: Buffer[] = [];
      await write((chunk) => void parts.push(typeof chunk === "string" ? Buffer.from(chunk, "utf8") : Buffer.from(chunk)));
      await vscode.workspace.fs.writeFile(target, Buffer.concat(parts));
    }
    svc.output.info(`exported trace ${rec.id} (${rec.count} tokens) to ${target.toString()}`);
    void vscode.window.showInformationMessage(`MoE Lens: exported ${rec.count} tokens to ${path.basename(target.path)}.`);
    return target;
  });
}
