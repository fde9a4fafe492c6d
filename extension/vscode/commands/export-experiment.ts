import * as path from "node:path";
import * as vscode from "vscode";
import { defaultExportName, experimentExport, experimentTitle, type ExportFormat } from "../experiment-view";
import type { Services } from "../services";

/**
 * MoE Lens: Export Experiment Results… — writes the last AMG sweep or ablation as CSV, JSON
 * (schema "moe-lens-experiment" v1) or a standalone HTML report with charts, with the CLI's
 * writers (extension/core/experiments.ts). Also the panel's "Export…" button.
 */
export function register(svc: Services): vscode.Disposable {
  return vscode.commands.registerCommand("moeLens.exportExperiment", async (format?: ExportFormat, target?: vscode.Uri) => {
    const run = svc.lastExperiment;
    if (!run) return void vscode.window.showWarningMessage("MoE Lens: nothing to export — run an AMG sweep or an ablation first.");
    if (!format) {
      const pick = await vscode.window.showQuickPick(
        [
          { label: "HTML", description: "standalone report with tables and charts", format: "html" as const },
          { label: "CSV", description: "one row per configuration, numbers unformatted", format: "csv" as const },
          { label: "JSON", description: "the whole result (schema moe-lens-experiment, version 1)", format: "json" as const },
        ],
        { title: `MoE Lens: export ${experimentTitle(run)} as` },
      );
      if (!pick) return;
      format = pick.format;
    }
    if (!target) {
      const dir = vscode.workspace.workspaceFolders?.[0]?.uri;
      target = await vscode.window.showSaveDialog({
        title: `MoE Lens: export ${experimentTitle(run)}`,
        defaultUri: dir ? vscode.Uri.joinPath(dir, defaultExportName(run, format)) : undefined,
        filters: format === "html" ? { HTML: ["html"] } : format === "csv" ? { CSV: ["csv"] } : { JSON: ["json"] },
      });
      if (!target) return;
    }
    await vscode.workspace.fs.writeFile(target, new TextEncoder().encode(experimentExport(run, format)));
    svc.output.info(`exported ${experimentTitle(run)} to ${target.toString()}`);
    void vscode.window.showInformationMessage(`MoE Lens: exported to ${path.basename(target.path)}.`);
    return target;
  });
}
