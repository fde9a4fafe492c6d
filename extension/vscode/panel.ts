// The routing panel's host side, whichever container shows it: the "Routing" webview view
// (activity bar container "MoE Lens", or the bottom panel) and the editor tab of "Open
// Routing Panel in Editor" (a WebviewPanel beside the text, brought back after a window
// reload by this class as its WebviewPanelSerializer); both may be open at once.
// Serves the panel built from webview/ (renderPanelHtml with a fresh nonce and a strict CSP;
// scripts and styles only from out/webview), forwards every HostMessage to every loaded
// panel, and handles the panels' requests (apply a policy, reveal a token, compare two
// policies). A panel's state is restored by replaying the newest trace from the store to it
// whenever it (re)loads.

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
/** The editor tab's webview type (Open Routing Panel in Editor). */
export const ROUTING_EDITOR_TYPE = "moeLens.routingEditor";

/** One copy of the panel: its webview, its container, and whether it has said `ready`. */
interface PanelWebview {
  readonly webview: vscode.Webview;
  readonly container: vscode.WebviewView | vscode.WebviewPanel;
  ready: boolean;
}

export class RoutingPanel implements vscode.WebviewViewProvider, vscode.WebviewPanelSerializer, vscode.Disposable {
  private view: vscode.WebviewView | undefined;
  private editorPanel: vscode.WebviewPanel | undefined;
  private readonly panels = new Set<PanelWebview>();
  /** While one panel is restored (replayed after its `ready`), `post` goes to it alone, not again to the others. */
  private restoring: PanelWebview | undefined;
  private readonly disposables: vscode.Disposable[] = [];
  private svc!: Services;
  /** The token last marked by highlightToken ("traceId:token"), so a cursor move never sends the mark a panel click just sent. */
  private lastHighlight = "";

  constructor(private readonly extensionUri: vscode.Uri) {}

  attach(svc: Services): void {
    this.svc = svc;
  }

  /** Whether any copy of the panel (side bar, bottom panel or editor tab) is visible. */
  get visible(): boolean {
    return [...this.panels].some((p) => p.container.visible);
  }

  resolveWebviewView(view: vscode.WebviewView): void {
    this.view = view;
    this.serve(view.webview, view);
    view.onDidDispose(() => {
      if (this.view === view) this.view = undefined;
    });
  }

  /** Opens the panel in an editor tab beside the text (or reveals the one already open). */
  openInEditor(): void {
    if (this.editorPanel) {
      this.editorPanel.reveal(undefined, true);
      return;
    }
    this.adoptEditorPanel(
      vscode.window.createWebviewPanel(ROUTING_EDITOR_TYPE, "MoE Lens: Routing", { viewColumn: vscode.ViewColumn.Beside, preserveFocus: true }),
    );
  }

  /**
   * The editor tab as VS Code brings it back after a window reload (WebviewPanelSerializer,
   * registered for ROUTING_EDITOR_TYPE). Nothing is read from `state`: like every copy of the
   * panel, it is replayed from the trace store once it says `ready`.
   */
  async deserializeWebviewPanel(panel: vscode.WebviewPanel): Promise<void> {
    this.adoptEditorPanel(panel);
  }

  private adoptEditorPanel(panel: vscode.WebviewPanel): void {
    panel.iconPath = vscode.Uri.joinPath(this.extensionUri, "media", "moe-lens.svg");
    this.editorPanel = panel;
    this.serve(panel.webview, panel);
    panel.onDidDispose(() => {
      if (this.editorPanel === panel) this.editorPanel = undefined;
    });
  }

  /** Loads the panel into a webview and wires its messages; it receives messages once it posts `ready`. */
  private serve(webview: vscode.Webview, container: vscode.WebviewView | vscode.WebviewPanel): void {
    const webviewRoot = vscode.Uri.joinPath(this.extensionUri, "out", "webview");
    webview.options = {
      enableScripts: true,
      localResourceRoots: [webviewRoot, vscode.Uri.joinPath(this.extensionUri, "media")],
    };
    webview.html = renderPanelHtml({
      scriptUri: webview.asWebviewUri(vscode.Uri.joinPath(webviewRoot, "panel.js")).toString(),
      styleUri: webview.asWebviewUri(vscode.Uri.joinPath(webviewRoot, "panel.css")).toString(),
      cspSource: webview.cspSource,
      nonce: crypto.randomBytes(16).toString("base64url"),
    });
    const panel: PanelWebview = { webview, container, ready: false };
    this.panels.add(panel);
    const listener = webview.onDidReceiveMessage((m: WebviewMessage) => void this.onMessage(panel, m));
    container.onDidDispose(() => {
      this.panels.delete(panel);
      listener.dispose();
    });
  }

  /** Reveals the panel: the editor tab when one is open, else the side-bar view (resolving it if it was never opened). */
  async show(preserveFocus = true): Promise<void> {
    if (this.editorPanel) this.editorPanel.reveal(undefined, preserveFocus);
    else if (this.view) this.view.show(preserveFocus);
    else await vscode.commands.executeCommand(`${ROUTING_VIEW_ID}.focus`, { preserveFocus });
  }

  /** Sends a message to every loaded panel; one not loaded yet gets the state replayed from the store when it loads. */
  post(m: HostMessage): void {
    for (const p of this.panels) if (p.ready && (!this.restoring || p === this.restoring)) void p.webview.postMessage(m);
  }

  /**
   * Marks a token in the panels' heatmaps (highlightToken), unless it is the token marked
   * last: a click in the panel selects the token in the editor, and that selection must not
   * send the same mark back.
   */
  highlight(traceId: string, token: number): void {
    const key = `${traceId}:${token}`;
    if (key === this.lastHighlight) return;
    this.lastHighlight = key;
    this.post({ type: "highlightToken", traceId, token });
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
    for (const b of r.panelBatches()) this.post({ type: "traceBatch", traceId: r.id, batch: b });
    if (r.summary) this.post({ type: "traceEnd", traceId: r.id, summary: r.summary });
    const seg = this.svc.segments.get(r);
    if (seg && !r.truncated) this.post({ type: "segments", traceId: r.id, segments: seg.segments, transitions: seg.transitions });
    if (!r.summary && (r.state === "error" || r.state === "cancelled")) this.post({ type: "traceError", traceId: r.id, message: r.error ?? r.state });
  }

  /**
   * The history of the active editor's document (else of the newest trace's document), with
   * `note` when the memory cap has just evicted traces.
   */
  postHistory(note?: string): void {
    const editor = vscode.window.activeTextEditor;
    const uri = editor?.document.uri.toString() ?? this.svc.store.latest()?.uri;
    if (!uri) return;
    const { store } = this.svc;
    const version = editor?.document.uri.toString() === uri ? editor.document.version : undefined;
    const active = version !== undefined ? store.active(uri, version) : store.latest(uri);
    this.post({
      type: "history",
      document: uri,
      entries: store.history(uri).map((r) => ({
        traceId: r.id,
        label: r.label,
        tokens: r.count,
        state: r.state,
        active: r === active,
        current: (version === undefined || r.version === version) && !r.truncated,
        bytes: r.bytes,
        createdAt: r.createdAt,
      })),
      usedBytes: store.usedBytes,
      capBytes: store.cap,
      note,
    });
  }

  /** What a panel that (re)loads needs, sent to it alone: the policy, the newest trace, the last experiment and prune chart. */
  private restore(panel: PanelWebview): void {
    this.restoring = panel;
    this.lastHighlight = "";
    try {
      this.restoreState();
    } finally {
      this.restoring = undefined;
    }
  }

  private restoreState(): void {
    this.postPolicy();
    const editor = vscode.window.activeTextEditor;
    const r = (editor && this.svc.store.active(editor.document.uri.toString(), editor.document.version)) ?? this.svc.store.latest();
    if (r) this.replay(r);
    this.postHistory();
    if (this.svc.lastExperiment) this.post(experimentMessage(this.svc.lastExperiment));
    if (this.svc.lastPrune) this.post(this.svc.lastPrune.chart);
    if (this.svc.lastAtlas) this.post(this.svc.lastAtlas);
  }

  private async onMessage(panel: PanelWebview, m: WebviewMessage): Promise<void> {
    const { svc } = this;
    try {
      switch (m.type) {
        case "ready":
          panel.ready = true;
          this.restore(panel);
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
        case "routerTop": {
          // Only the asking panel: the answer fills the details box it shows.
          const r = svc.store.get(String(m.traceId));
          const token = Number(m.token),
            layer = Number(m.layer);
          const top = r ? r.routerTop(token, layer) : { ids: [], probs: [] };
          void panel.webview.postMessage({ type: "routerTop", traceId: String(m.traceId), token, layer, ...top } satisfies HostMessage);
          break;
        }
        case "selectTrace": {
          const r = svc.store.select(String(m.traceId));
          if (!r) throw new Error(`that trace is no longer in the history (${String(m.traceId)})`);
          this.replay(r);
          svc.decorations.refresh();
          this.postHistory();
          break;
        }
        case "removeTrace":
          if (svc.store.removeById(String(m.traceId))) {
            svc.decorations.refresh();
            this.postHistory();
          }
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

/** The selection revealToken made last (a heatmap click), so commands can tell it from one the user made. */
let revealedSelection: { uri: string; version: number; start: number; end: number } | undefined;

/** True when this editor's selection is the one a heatmap click left, not the user's own. */
export function isRevealedSelection(editor: vscode.TextEditor): boolean {
  const r = revealedSelection,
    doc = editor.document;
  return (
    !!r &&
    r.uri === doc.uri.toString() &&
    r.version === doc.version &&
    doc.offsetAt(editor.selection.start) === r.start &&
    doc.offsetAt(editor.selection.end) === r.end
  );
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
  revealedSelection = { uri: r.uri, version: doc.version, start: s, end: e };
  // In the column that already shows the document: a click in the panel's editor tab must not open the text over the panel.
  const shown = vscode.window.visibleTextEditors.find((e) => e.document === doc);
  const editor = await vscode.window.showTextDocument(doc, { viewColumn: shown?.viewColumn, preserveFocus: false, selection: range });
  editor.revealRange(range, vscode.TextEditorRevealType.InCenterIfOutsideViewport);
  svc.panel.highlight(traceId, token);
}
