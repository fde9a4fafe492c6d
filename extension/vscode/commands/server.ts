import * as vscode from "vscode";
import type { Services } from "../services";
import { errorMessage, isCancellation } from "../server-manager";

/** MoE Lens: Start Server / Stop Server / Restart Server / Show Server Log. */
export function register(svc: Services): vscode.Disposable {
  const report = (e: unknown) => {
    if (isCancellation(e)) return;
    void vscode.window.showErrorMessage(errorMessage(e), "Show Log").then((a) => a && svc.output.show());
  };
  return vscode.Disposable.from(
    vscode.commands.registerCommand("moeLens.startServer", () => svc.server.start().catch(report)),
    vscode.commands.registerCommand("moeLens.stopServer", async () => {
      svc.tracer.cancel();
      await svc.server.stop();
    }),
    vscode.commands.registerCommand("moeLens.restartServer", async () => {
      svc.tracer.cancel();
      await svc.server.restart().catch(report);
    }),
    vscode.commands.registerCommand("moeLens.showLog", () => svc.output.show()),
  );
}
