import * as path from "node:path";
import * as vscode from "vscode";
import { inspectModel } from "../../core/gguf";
import { packsForModel, routerPackDir } from "../../core/router-pack";
import type { Services } from "../services";
import { errorMessage, isCancellation } from "../server-manager";

/**
 * MoE Lens: Select Model… — picks a .gguf file, reads its metadata first (core/gguf.ts),
 * and only then switches the server to it. A dense model or a broken
 * file gets a clear message and the running model is left alone. Then offers the router
 * packs found beside the model. Also callable with a path argument (for scripts and tests;
 * no prompt).
 */
export function register(svc: Services): vscode.Disposable {
  return vscode.commands.registerCommand("moeLens.selectModel", async (arg?: string | vscode.Uri) => {
    let file: string | undefined = arg instanceof vscode.Uri ? arg.fsPath : typeof arg === "string" ? arg : undefined;
    if (!file) {
      const current = svc.server.resolvedModelPath();
      const picked = await vscode.window.showOpenDialog({
        title: "MoE Lens: select a Mixture-of-Experts GGUF model",
        canSelectMany: false,
        canSelectFolders: false,
        openLabel: "Use Model",
        filters: { "GGUF models": ["gguf"], "All files": ["*"] },
        defaultUri: vscode.Uri.file(path.dirname(current)),
      });
      file = picked?.[0]?.fsPath;
      if (!file) return;
    }
    const name = path.basename(file);
    let info: Awaited<ReturnType<typeof inspectModel>>;
    try {
      info = await inspectModel(file);
    } catch (e) {
      svc.output.error(`select model ${file}: ${errorMessage(e)}`);
      void vscode.window.showErrorMessage(`MoE Lens: cannot use ${name}: ${errorMessage(e)} The current model stays loaded.`);
      return;
    }
    if (!info.isMoe) {
      const msg = `${name} is a dense model (${info.architecture}, ${info.nLayer} layers, no routed experts). MoE Lens needs a Mixture-of-Experts model; the current model stays loaded.`;
      svc.output.error(`select model: ${msg}`);
      void vscode.window.showErrorMessage(`MoE Lens: ${msg}`);
      return;
    }
    svc.output.info(`select model ${file}: ${info.architecture}, ${info.nExpert} experts, k=${info.nExpertUsed}, ${info.nLayer} layers`);
    svc.tracer.cancel();
    // Set before the pack setting changes, so that its listener does not re-trace on the old model.
    svc.server.switchingModel = true;
    // A router pack belongs to one model file: the new model starts with its own routers.
    const config = vscode.workspace.getConfiguration("moeLens");
    try {
      if (config.get<string>("routerPack")) await config.update("routerPack", "", vscode.ConfigurationTarget.Global);
      await svc.server.switchModel(file);
    } catch (e) {
      if (isCancellation(e)) return;
      void vscode.window.showErrorMessage(`${errorMessage(e)} The previous model was restarted.`, "Show Log").then((a) => a && svc.output.show());
      return;
    } finally {
      svc.server.switchingModel = false;
    }
    // Remember it (the configuration listener sees the running model already matches).
    await vscode.workspace.getConfiguration("moeLens").update("modelPath", file, vscode.ConfigurationTarget.Global);
    void vscode.window.showInformationMessage(`MoE Lens: now using ${name} (${info.architecture}, ${info.nExpert} experts, k=${info.nExpertUsed}).`);
    if (!arg) await offerRouterPacks(file);
  });
}

/** Offers the router packs kept beside the model (core/router-pack.ts); the choice goes to moeLens.routerPack, applied live. */
async function offerRouterPacks(model: string): Promise<void> {
  const packs = packsForModel(model);
  if (!packs.length) return;
  const own = { label: "the model's own routers", description: "", pack: "" };
  const picked = await vscode.window.showQuickPick(
    [
      own,
      ...packs.map((p) => ({ label: p.name, description: p.mechanisms ? `trained ${p.mechanisms}` : "routers only", detail: p.description, pack: p.path })),
    ],
    {
      title: `MoE Lens: router pack for ${path.basename(model)}`,
      placeHolder: `${packs.length} router pack${packs.length === 1 ? "" : "s"} found in ${routerPackDir(model)}`,
    },
  );
  if (picked?.pack) await vscode.workspace.getConfiguration("moeLens").update("routerPack", picked.pack, vscode.ConfigurationTarget.Global);
}
