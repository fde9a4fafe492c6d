// MoE Lens: Build Expert Atlas for Folder… — `moe-lens atlas DIR` in VS Code. Traces each text
// file of a chosen folder one at a time with the running server (extension/core/atlas.ts
// buildAtlas: counts only, no trace kept), classes by language id or by folder, with a
// cancellable progress notification; then shows the atlas in the panel (the `atlas` message:
// per-layer MI, balance, each class's top experts by lift) and offers to save it as the CLI's
// atlas JSON. A cancelled or failed run shows and keeps nothing.
import * as path from "node:path";
import * as vscode from "vscode";
import { atlasView, buildAtlas, folderClassOf, languageIdOf, listCorpusFiles, type AtlasBuild } from "../../core/atlas";
import { writeExportFile } from "../../core/export";
import { describePolicy } from "../../../shared/policy";
import { runExperiment } from "../experiment-runner";
import type { Services } from "../services";
import { errorMessage } from "../server-manager";

/** Top experts per class and layer that the panel lists (the CLI's --top defaults to 3; the panel has room for more). */
const PANEL_TOP_EXPERTS = 5;

export type AtlasClassBy = "language" | "folder";

export interface BuildAtlasArgs {
  folder: vscode.Uri;
  /** Skips the quick pick. */
  classBy?: AtlasClassBy;
  /** Writes the atlas JSON there without asking. */
  out?: vscode.Uri;
}

type AtlasMessage = NonNullable<Services["lastAtlas"]>;

async function pickFolder(): Promise<vscode.Uri | undefined> {
  const picked = await vscode.window.showOpenDialog({
    title: "MoE Lens: folder of text files for the expert atlas",
    canSelectFolders: true,
    canSelectFiles: false,
    canSelectMany: false,
    openLabel: "Build Atlas",
    defaultUri: vscode.workspace.workspaceFolders?.[0]?.uri,
  });
  return picked?.[0];
}

async function pickClassBy(): Promise<AtlasClassBy | undefined> {
  const choices: Array<vscode.QuickPickItem & { id: AtlasClassBy }> = [
    { id: "language", label: "Language", description: "a file's class is its language, by file extension (.py → python)" },
    { id: "folder", label: "Folder", description: "a file's class is the first folder under the chosen one (files directly in it: “.”)" },
  ];
  return (await vscode.window.showQuickPick(choices, { title: "MoE Lens: expert atlas classes" }))?.id;
}

async function saveAtlas(svc: Services, build: AtlasBuild, file: vscode.Uri): Promise<void> {
  await writeExportFile(file.fsPath, async (sink) => sink(JSON.stringify(build.atlas)));
  svc.output.info(`expert atlas written to ${file.fsPath}`);
}

export function register(svc: Services): vscode.Disposable {
  return vscode.commands.registerCommand("moeLens.buildAtlas", async (arg?: vscode.Uri | BuildAtlasArgs) => {
    const a: Partial<BuildAtlasArgs> = arg instanceof vscode.Uri ? { folder: arg } : (arg ?? {});
    const folder = a.folder ?? (await pickFolder());
    if (!folder) return;
    const dir = folder.fsPath;
    let files: string[];
    try {
      files = listCorpusFiles(dir);
    } catch (e) {
      return void vscode.window.showErrorMessage(`MoE Lens: ${errorMessage(e)}`);
    }
    if (!files.length) return void vscode.window.showWarningMessage(`MoE Lens: ${path.basename(dir)} has no files to trace.`);
    const classBy = a.classBy ?? (await pickClassBy());
    if (!classBy) return;

    const policy = svc.policy.current;
    const build = await runExperiment(svc, "expert atlas", (client, signal, report) =>
      buildAtlas(client, dir, {
        classOf: classBy === "folder" ? folderClassOf : languageIdOf,
        policy,
        signal,
        onFile: (done, total, file) => report(`${done}/${total} files · ${file}`),
      }),
    );
    // Cancelled or failed: runExperiment told the user; nothing was kept.
    if (!build) return;
    for (const s of build.skipped) svc.output.info(`expert atlas: skipped ${s.file} (${s.reason})`);

    const title = `Expert atlas of ${path.basename(dir)} · classes by ${classBy} · ${describePolicy(policy)}`;
    const message: AtlasMessage = { type: "atlas", atlas: atlasView(build.atlas, title, PANEL_TOP_EXPERTS) };
    svc.lastAtlas = message;
    await svc.panel.show(true);
    svc.panel.post(message);
    const summary = `${build.documents.length} files, ${message.atlas.tokens} tokens, ${build.atlas.classNames.length} classes${build.skipped.length ? `, ${build.skipped.length} skipped (see the log)` : ""}`;
    svc.output.info(`expert atlas done: ${summary}`);

    if (a.out) await saveAtlas(svc, build, a.out);
    else
      void vscode.window
        .showInformationMessage(`MoE Lens: expert atlas done (${summary}) — it is in the Routing panel.`, "Save Atlas JSON…")
        .then(async (choice) => {
          if (!choice) return;
          const file = await vscode.window.showSaveDialog({
            title: "MoE Lens: save the expert atlas (moe-lens atlas --out format)",
            defaultUri: vscode.Uri.joinPath(folder, "..", `${path.basename(dir)}.atlas.json`),
            filters: { "Expert atlas": ["json"] },
          });
          if (!file) return;
          try {
            await saveAtlas(svc, build, file);
          } catch (e) {
            void vscode.window.showErrorMessage(`MoE Lens: could not save the atlas: ${errorMessage(e)}`);
          }
        });
    return { documents: build.documents, skipped: build.skipped, atlas: message.atlas };
  });
}
