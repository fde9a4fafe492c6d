import * as vscode from "vscode";
import type { Services } from "../services";

/** MoE Lens: Show Routing Panel. */
export function register(svc: Services): vscode.Disposable {
  return vscode.commands.registerCommand("moeLens.showPanel", () => svc.panel.show(false));
}
