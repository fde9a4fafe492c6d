// Shared by the experiment commands: runs one experiment on the server with a cancellable
// progress notification (Cancel aborts the HTTP request in flight through the AbortSignal the
// core passes to every server call), then shows the table in the panel and offers "Export…".
import * as vscode from "vscode";
import type { ServerClient } from "../core/server-client";
import { experimentMessage, experimentTitle, type ExperimentRun } from "./experiment-view";
import type { Services } from "./services";
import { errorMessage, isCancellation } from "./server-manager";

let running: AbortController | undefined;

/**
 * Runs `work` with progress and Cancel. Returns undefined when cancelled or failed (after
 * telling the user). One experiment at a time: a second one is refused while one runs.
 */
export async function runExperiment<T>(
  svc: Services,
  title: string,
  work: (client: ServerClient, signal: AbortSignal, report: (message: string) => void) => Promise<T>,
): Promise<T | undefined> {
  if (running) {
    void vscode.window.showWarningMessage("MoE Lens: an experiment is already running; cancel it first (the progress notification has Cancel).");
    return undefined;
  }
  const ac = new AbortController();
  running = ac;
  svc.tracer.cancel(); // the server runs one request at a time
  try {
    return await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: `MoE Lens: ${title}`, cancellable: true },
      async (progress, token) => {
        token.onCancellationRequested(() => ac.abort());
        progress.report({ message: "waiting for the server…" });
        const client = await svc.server.ensureClient(ac.signal);
        return work(client, ac.signal, (message) => {
          svc.output.info(`${title}: ${message}`);
          progress.report({ message });
        });
      },
    );
  } catch (e) {
    if (ac.signal.aborted || isCancellation(e)) {
      svc.output.info(`${title}: cancelled`);
      return undefined;
    }
    svc.output.error(`${title} failed: ${errorMessage(e)}`);
    void vscode.window
      .showErrorMessage(`MoE Lens: ${title} failed: ${errorMessage(e).replace(/^MoE Lens: /, "")}`, "Show Log")
      .then((a) => a && svc.output.show());
    return undefined;
  } finally {
    if (running === ac) running = undefined;
  }
}

/** Keeps the result, shows its table in the panel and offers to export it. */
export async function publishExperiment(svc: Services, run: ExperimentRun): Promise<void> {
  svc.lastExperiment = run;
  await svc.panel.show(true);
  svc.panel.post(experimentMessage(run));
  svc.output.info(`${experimentTitle(run)} done: ${run.subtitle}`);
  void vscode.window.showInformationMessage(`MoE Lens: ${experimentTitle(run)} done — the table is in the Routing panel.`, "Export…").then((a) => {
    if (a) void vscode.commands.executeCommand("moeLens.exportExperiment");
  });
}
