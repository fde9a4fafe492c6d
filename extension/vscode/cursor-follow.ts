// Cursor follow: the editor → panel direction of "the cursor and the heatmap follow each
// other". When the selection moves in a document whose current version has a trace, the
// panels mark the token under the cursor (highlightToken) and scroll to it if it is out of
// view. The token is found as the hover finds it (TraceStore.tokensAt on the document
// version; the last token of a split character). Debounced, so holding an arrow key sends
// one mark when it stops; off with the setting moeLens.followCursor.
//
// No ping-pong: a click in the panel selects the token in the editor (revealToken), whose
// selection maps back to the same token, and RoutingPanel.highlight does not send a token
// it has just marked; the panel scrolls only for a token out of view.

import * as vscode from "vscode";
import { SETTINGS_SECTION } from "../core/settings";
import type { Services } from "./services";

/** How long the selection must rest before the panel follows (ms). */
export const FOLLOW_DEBOUNCE_MS = 100;

export class CursorFollow implements vscode.Disposable {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private readonly listener: vscode.Disposable;

  constructor(private readonly svc: Services) {
    this.listener = vscode.window.onDidChangeTextEditorSelection((e) => this.schedule(e.textEditor));
  }

  private schedule(editor: vscode.TextEditor): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.follow(editor);
    }, FOLLOW_DEBOUNCE_MS);
  }

  private follow(editor: vscode.TextEditor): void {
    if (!vscode.workspace.getConfiguration(SETTINGS_SECTION).get<boolean>("followCursor", true)) return;
    if (editor !== vscode.window.activeTextEditor || !this.svc.panel.visible) return;
    const doc = editor.document;
    // A selection (a token the panel revealed, or the user's) is followed from its start.
    const sel = editor.selection;
    const hit = this.svc.store.tokensAt(doc.uri.toString(), doc.version, doc.offsetAt(sel.isEmpty ? sel.active : sel.start));
    if (!hit) return;
    this.svc.panel.highlight(hit.trace.id, hit.tokens[hit.tokens.length - 1]);
  }

  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    this.listener.dispose();
  }
}
