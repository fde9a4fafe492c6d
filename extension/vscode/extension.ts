// MoE Lens extension host entry (bundled to out/extension.js by tools/build.mjs).
// The thin layer that imports `vscode`: activation, commands, providers and views. All
// computation lives in extension/core (plain TypeScript, unit-tested without VS Code).
//
// Activation is lazy (a command or the Routing view); the server starts on the first
// command that needs it, not on activation.

import * as vscode from "vscode";
import { validatePolicy } from "../core/policy-parse";
import { needsRestart, readSettings, SETTINGS_SECTION, type MoeLensSettings } from "../core/settings";
import { TraceStore, type TraceRecord } from "../core/trace-store";
import { CursorFollow } from "./cursor-follow";
import { Decorations } from "./decorations";
import type { EditorSegments } from "./segments";
import { RoutingHoverProvider } from "./hover";
import { ROUTING_EDITOR_TYPE, RoutingPanel, ROUTING_VIEW_ID } from "./panel";
import { PolicyState } from "./policy-state";
import { ServerManager } from "./server-manager";
import type { Services } from "./services";
import { StatusBar } from "./status-bar";
import { Tracer } from "./tracer";
import * as calibrateAnt from "./commands/calibrate-ant";
import * as comparePolicies from "./commands/compare-policies";
import * as exportTrace from "./commands/export-trace";
import * as exportExperiment from "./commands/export-experiment";
import * as openPanelInEditor from "./commands/open-panel-in-editor";
import * as pruneExperts from "./commands/prune-experts";
import * as runAblation from "./commands/run-ablation";
import * as buildAtlas from "./commands/build-atlas";
import * as runAmgSweep from "./commands/run-amg-sweep";
import * as selectModel from "./commands/select-model";
import * as serverCommands from "./commands/server";
import * as setPolicy from "./commands/set-policy";
import * as showPanel from "./commands/show-panel";
import * as toggleAmg from "./commands/toggle-amg";
import * as traceDocument from "./commands/trace-document";
import * as traceSelection from "./commands/trace-selection";

let services: Services | undefined;

function loadSettings(output: vscode.LogOutputChannel): MoeLensSettings {
  const cfg = vscode.workspace.getConfiguration(SETTINGS_SECTION);
  const { settings, problems } = readSettings((k) => cfg.get(k), validatePolicy);
  for (const p of problems) output.warn(`settings: ${p}`);
  if (problems.length)
    void vscode.window.showWarningMessage(`MoE Lens: ${problems[0]}${problems.length > 1 ? ` (and ${problems.length - 1} more, see the log)` : ""}`);
  return settings;
}

export function activate(context: vscode.ExtensionContext): { services: Services } {
  const output = vscode.window.createOutputChannel("MoE Lens", { log: true });
  let settings = loadSettings(output);
  const extensionRoot = context.extensionUri.fsPath;
  const store = new TraceStore(undefined, settings.traceHistoryMegabytes * 1024 * 1024);
  const server = new ServerManager(extensionRoot, output, settings);
  const policy = new PolicyState(context.workspaceState, settings.defaultPolicy);
  const status = new StatusBar();
  const panel = new RoutingPanel(context.extensionUri);
  const segments = new WeakMap<TraceRecord, EditorSegments>();
  const decorations = new Decorations(store, segments);
  const svc: Services = {
    context,
    extensionRoot,
    output,
    server,
    store,
    policy,
    status,
    panel,
    decorations,
    segments,
    tracer: undefined as unknown as Tracer,
    settings: () => settings,
  };
  svc.tracer = new Tracer(svc);
  panel.attach(svc);
  services = svc;
  output.info(`MoE Lens activated (extension at ${extensionRoot})`);

  status.setPolicy(policy.label);
  status.setServer(server.snapshot());

  context.subscriptions.push(
    output,
    status,
    panel,
    decorations,
    policy,
    { dispose: () => void server.dispose() },
    server.onDidChangeState((s) => {
      status.setServer(s);
      if (s.state === "ready") panel.postPolicy();
    }),
    policy.onDidChange(() => {
      status.setPolicy(policy.label);
      panel.postPolicy();
    }),
    vscode.window.registerWebviewViewProvider(ROUTING_VIEW_ID, panel),
    vscode.window.registerWebviewPanelSerializer(ROUTING_EDITOR_TYPE, panel),
    vscode.languages.registerHoverProvider(
      { scheme: "*" },
      new RoutingHoverProvider(store, () => {
        const s = server.snapshot();
        return s.state === "ready" ? s.model?.path : undefined;
      }),
    ),
    vscode.workspace.onDidChangeTextDocument((e) => {
      if (e.contentChanges.length === 0) return;
      store.applyEdit(e.document.uri.toString(), e.document.version, e.contentChanges);
    }),
    vscode.workspace.onDidCloseTextDocument((d) => store.closeDocument(d.uri.toString())),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (!e.affectsConfiguration(SETTINGS_SECTION)) return;
      const prev = settings;
      settings = loadSettings(output);
      server.updateSettings(settings);
      if (settings.traceHistoryMegabytes !== prev.traceHistoryMegabytes) store.setCap(settings.traceHistoryMegabytes * 1024 * 1024);
      if (e.affectsConfiguration(`${SETTINGS_SECTION}.defaultPolicy`)) policy.defaultChanged(settings.defaultPolicy);
      const state = server.snapshot().state;
      const running = state === "ready" || state === "restarting" || state === "starting";
      // Select Model… writes moeLens.modelPath after switching: then the model already matches.
      if (settings.modelPath !== server.currentModelSetting) {
        if (!running) server.setModelPath(settings.modelPath);
        else if (settings.modelPath) void vscode.commands.executeCommand("moeLens.selectModel", settings.modelPath);
        else void server.switchModel("").catch((err) => output.error(String(err)));
      } else if (needsRestart({ ...prev, modelPath: settings.modelPath }, settings) && running) {
        output.info("settings changed: restarting the server");
        void server.restart().catch((err) => output.error(String(err)));
      } else if (settings.routerPack !== prev.routerPack && state === "ready") {
        // Other routers route differently: the panel shows the pack, and the current trace is redone with it.
        server.applyRouterPack().then(
          () => {
            panel.postPolicy();
            // Not while Select Model… switches models (it clears the pack first): the new model is traced on demand.
            if (!server.switchingModel) void svc.tracer.retrace();
          },
          (err: unknown) => {
            panel.postPolicy();
            void vscode.window.showErrorMessage(`MoE Lens: router pack not applied: ${(err as Error).message}`);
          },
        );
      }
    }),
    traceSelection.register(svc),
    traceDocument.register(svc),
    selectModel.register(svc),
    serverCommands.register(svc),
    setPolicy.register(svc),
    toggleAmg.register(svc),
    comparePolicies.register(svc),
    exportTrace.register(svc),
    showPanel.register(svc),
    openPanelInEditor.register(svc),
    new CursorFollow(svc),
    calibrateAnt.register(svc),
    runAmgSweep.register(svc),
    runAblation.register(svc),
    buildAtlas.register(svc),
    exportExperiment.register(svc),
    pruneExperts.register(svc),
  );
  return { services: svc };
}

export async function deactivate(): Promise<void> {
  const s = services;
  services = undefined;
  if (!s) return;
  s.tracer.cancel();
  await s.server.dispose();
}
