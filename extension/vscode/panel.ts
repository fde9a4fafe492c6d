// The "Routing" webview view (activity bar container "MoE Lens"). Serves the panel built
// from webview/ (renderPanelHtml with a fresh nonce and a strict CSP; scripts and styles
// only from out/webview), forwards trace records as typed HostMessages, and handles the
// panel's requests (apply a policy, reveal a token, compare two policies). State is
// restored by replaying the newest trace from the store whenever the panel (re)loads.

import * as crypto from "node:crypto";
import * as vscode from "vscode";
import { renderPanelHtml } from "../../shared/panel-html";
import type { HostMessage, RouterPackChoice, WebviewMessage } from "../../shared/protocol";
import { validatePolicy } from "../core/policy-parse";
import { packsForModel } from "../core/router-pack";
import { SETTINGS_SECTION } from "../core/settings";
import type { TraceRecord } from "../core/trace-store";
import { experimentMessage } from "./experiment-view";
import type { Services } from "./services";
import { errorMessage } from "./server-manager";

export const ROUTING_VIEW_ID = "moeLens.routingPanel";

export class RoutingPanel implements vscode.WebviewViewProvider, vscode.Disposable {
  private view: vscode.WebviewView | undefined;
  private ready = false;
  private readonly disposables: vscode.Disposable[] = [];
  private svc!: Services;

  constructor(private readonly extensionUri: vscode.Uri) {}

  attach(svc: Services): void {
    this.svc = svc;
  }

  get visible(): boolean {
    return !!this.view?.visible;
  }

  resolveWebviewView(view: vscode.WebviewView): void {
    this.view = view;
    this.ready = false;
    const webviewRoot = vscode.Uri.joinPath(this.extensionUri, "out", "webview");
    view.webview.options = {
      enableScripts: true,
      localResourceRoots: [webviewRoot, vscode.Uri.joinPath(this.extensionUri, "media")],
    };
    view.webview.html = renderPanelHtml({
      scriptUri: view.webview.asWebviewUri(vscode.Uri.joinPath(webviewRoot, "panel.js")).toString(),
      styleUri: view.webview.asWebviewUri(vscode.Uri.joinPath(webviewRoot, "panel.css")).toString(),
      cspSource: view.webview.cspSource,
      nonce: crypto.randomBytes(16).toString("base64url"),
    });
    this.disposables.push(
      view.webview.onDidReceiveMessage((m: WebviewMessage) => void this.onMessage(m)),
      view.onDidDispose(() => {
        if (this.view === view) {
          this.view = undefined;
          this.ready = false;
        }
      }),
    );
  }

  /** Reveals the panel (and resolves it if it was never opened). */
  async show(preserveFocus = true): Promise<void> {
    if (this.view) this.view.show(preserveFocus);
    else await vscode.commands.executeCommand(`${ROUTING_VIEW_ID}.focus`, { preserveFocus });
  }

  /** Sends a message when the panel is loaded; otherwise it is replayed from the store on load. */
  post(m: HostMessage): void {
    if (this.view && this.ready) void this.view.webview.postMessage(m);
  }

  postPolicy(): void {
    const model = this.svc.server.modelInfo;
    this.post({
      type: "policy",
      policy: this.svc.policy.current,
      trainedK: model?.n_expert_used_trained ?? 0,
      maxK: model?.n_expert ?? 0,
      antAvailable: this.svc.policy.antAvailable || !!model?.predictor_loaded,
      routerPacks: this.routerPacks(),
      routerPack: this.svc.server.resolvedRouterPack() ?? null,
      modelPath: model?.path ?? null,
    });
  }

  /** The packs kept beside the current model (read from their metadata; nothing is loaded). */
  private routerPacks(): RouterPackChoice[] {
    return packsForModel(this.svc.server.resolvedModelPath()).map(({ name, path, mechanisms, description }) => ({ name, path, mechanisms, description }));
  }

  /** Replays one stored trace into the panel. */
  replay(r: TraceRecord): void {
    if (!r.header) return;
    this.post({ type: "traceStart", traceId: r.id, label: r.label, header: r.header });
    for (const b of r.batches) this.post({ type: "traceBatch", traceId: r.id, batch: b });
    if (r.summary) this.post({ type: "traceEnd", traceId: r.id, summary: r.summary });
    const seg = this.svc.segments.get(r);
    if (seg && !r.truncated) this.post({ type: "segments", traceId: r.id, segments: seg.segments, transitions: seg.transitions });
    if (!r.summary && (r.state === "error" || r.state === "cancelled")) this.post({ type: "traceError", traceId: r.id, message: r.error ?? r.state });
  }

  private restore(): void {
    this.postPolicy();
    const editor = vscode.window.activeTextEditor;
    const r = (editor && this.svc.store.active(editor.document.uri.toString(), editor.document.version)) ?? this.svc.store.latest();
    if (r) this.replay(r);
    if (this.svc.lastExperiment) this.post(experimentMessage(this.svc.lastExperiment));
    if (this.svc.lastPrune) this.post(this.svc.lastPrune.chart);
  }

  private async onMessage(m: WebviewMessage): Promise<void> {
    const { svc } = this;
    try {
      switch (m.type) {
        case "ready":
          this.ready = true;
          this.restore();
          break;
        case "applyPolicy": {
          const p = validatePolicy(m.policy);
          svc.policy.set(p);
          await svc.tracer.retrace();
          break;
        }
        case "selectRouterPack": {
          // Only a pack the panel was offered; the setting change applies it live (extension.ts).
          if (m.path !== null && !this.routerPacks().some((p) => p.path === m.path)) throw new Error(`not a router pack of this model: ${String(m.path)}`);
          await vscode.workspace.getConfiguration(SETTINGS_SECTION).update("routerPack", m.path ?? "", vscode.ConfigurationTarget.Global);
          break;
        }
        case "revealToken":
          await revealToken(svc, m.traceId, m.token);
          break;
        case "requestCompare":
          await vscode.commands.executeCommand("moeLens.comparePolicies", validatePolicy(m.left), validatePolicy(m.right));
          break;
        case "exportExperiment":
          await vscode.commands.executeCommand("moeLens.exportExperiment");
          break;
        case "exportSaliency":
          await vscode.commands.executeCommand("moeLens.exportSaliency");
          break;
      }
    } catch (e) {
      svc.output.error(`panel request ${m.type} failed: ${errorMessage(e)}`);
      void vscode.window.showErrorMessage(`MoE Lens: ${errorMessage(e)}`);
    }
  }

  dispose(): void {
    for (const d of this.disposables) d.dispose();
  }
}

/** Selects a token's text in its editor, if the trace still matches the document. */
export async function revealToken(svc: Services, traceId: string, token: number): Promise<void> {
  const r = svc.store.get(traceId);
  if (!r || token < 0 || token >= r.count) {
    void vscode.window.showInformationMessage("MoE Lens: that token is no longer in the document (the text changed after the trace).");
    return;
  }
  const uri = vscode.Uri.parse(r.uri);
  const doc = await vscode.workspace.openTextDocument(uri);
  if (doc.version !== r.version) {
    void vscode.window.showInformationMessage("MoE Lens: the document changed after this trace; trace it again.");
    return;
  }
  const [s, e] = r.range(token);
  const range = new vscode.Range(doc.positionAt(s), doc.positionAt(e));
  const editor = await vscode.window.showTextDocument(doc, { preserveFocus: false, selection: range });
  editor.revealRange(range, vscode.TextEditorRevealType.InCenterIfOutsideViewport);
  svc.panel.post({ type: "highlightToken", traceId, token });
}
