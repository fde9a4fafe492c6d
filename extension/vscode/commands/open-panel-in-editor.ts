// MoE Lens: Open Routing Panel in Editor — the routing panel in an editor tab beside the
// text (wide enough for a long trace), alongside the side-bar view; both get every message.
import * as vscode from "vscode";
import type { Services } from "../services";

export function register(svc: Services): vscode.Disposable {
  return vscode.commands.registerCommand("moeLens.openPanelInEditor", () => svc.panel.openInEditor());
}
