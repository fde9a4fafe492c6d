// Hover on a traced token: its experts and weights per MoE layer, NLL, entropy, active
// experts. Only for the trace of exactly this document version (the store drops or cuts
// traces on edits), so a hover never describes text that is not there; a trace made with
// another model than the one the server runs now says so.

import * as vscode from "vscode";
import { describePolicy } from "../../shared/policy";
import type { TraceStore } from "../core/trace-store";
import { formatTokenHover } from "./format";

export class RoutingHoverProvider implements vscode.HoverProvider {
  constructor(
    private readonly store: TraceStore,
    /** The model the server runs now (undefined while none is ready). */
    private readonly currentModel: () => string | undefined,
  ) {}

  provideHover(doc: vscode.TextDocument, pos: vscode.Position): vscode.Hover | undefined {
    const hit = this.store.tokensAt(doc.uri.toString(), doc.version, doc.offsetAt(pos));
    if (!hit || !hit.trace.header) return undefined;
    const { trace, tokens } = hit;
    const h = trace.header!;
    const t = trace.token(tokens[tokens.length - 1]);
    const now = this.currentModel();
    const md = new vscode.MarkdownString(
      formatTokenHover(t, {
        moeLayers: h.model.moe_layers,
        k: h.k,
        trainedK: h.model.n_expert_used_trained,
        policyLabel: describePolicy(trace.policy),
        truncated: trace.truncated,
        alsoTokens: tokens.length > 1 ? tokens : undefined,
        otherModelNow: now && now !== h.model.path ? now : undefined,
      }),
    );
    md.supportThemeIcons = false;
    return new vscode.Hover(md, new vscode.Range(doc.positionAt(t.start), doc.positionAt(t.end)));
  }
}
