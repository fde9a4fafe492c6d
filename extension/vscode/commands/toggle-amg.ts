import * as vscode from "vscode";
import type { Services } from "../services";

/** MoE Lens: Toggle AMG — switches adaptive gating on/off and re-traces the last text. */
export function register(svc: Services): vscode.Disposable {
  return vscode.commands.registerCommand("moeLens.toggleAmg", async () => {
    const on = svc.policy.toggleAmg();
    vscode.window.setStatusBarMessage(`MoE Lens: AMG ${on ? "on" : "off"} (${svc.policy.label})`, 3000);
    return svc.tracer.retrace();
  });
}
