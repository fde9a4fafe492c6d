// The status bar item: model, server state and active policy, plus the last trace's
// average active experts. The tooltip has the details (pid, path, architecture).

import * as vscode from "vscode";
import { formatNumber } from "../../shared/format";
import type { TraceSummary } from "../../shared/wire";
import { statusText } from "./format";
import type { ServerSnapshot } from "./server-manager";

const ICONS: Record<ServerSnapshot["state"], string> = {
  stopped: "$(circle-slash)",
  starting: "$(loading~spin)",
  ready: "$(pulse)",
  restarting: "$(sync~spin)",
  failed: "$(error)",
};

export class StatusBar implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem("moeLens.status", vscode.StatusBarAlignment.Left, 10);
  private server: ServerSnapshot = { state: "stopped", modelPath: "" };
  private policyLabel = "baseline";
  private last: { summary: TraceSummary; k: number; policy: string; modelPath: string } | undefined;
  private tracing: string | undefined;

  constructor() {
    this.item.name = "MoE Lens";
    this.item.command = "moeLens.showPanel";
    this.render();
    this.item.show();
  }

  setServer(s: ServerSnapshot): void {
    this.server = s;
    this.render();
  }
  setPolicy(label: string): void {
    this.policyLabel = label;
    this.render();
  }
  setTracing(what: string | undefined): void {
    this.tracing = what;
    this.render();
  }
  setLastTrace(summary: TraceSummary, k: number, policy: string, modelPath: string): void {
    this.last = { summary, k, policy, modelPath };
    this.render();
  }

  private render(): void {
    const s = this.server;
    const text = statusText({
      state: s.state,
      modelPath: s.modelPath,
      loadedModelPath: s.state === "ready" ? s.model?.path : undefined,
      tracing: !!this.tracing,
      policyLabel: this.policyLabel,
      last: this.last && { avgActive: this.last.summary.avg_active, k: this.last.k, modelPath: this.last.modelPath },
    });
    this.item.text = `${this.tracing ? "$(loading~spin)" : ICONS[s.state]} ${text}`;
    const md = new vscode.MarkdownString(undefined, true);
    md.appendMarkdown(`**MoE Lens** — server ${s.state}${s.pid ? ` (pid ${s.pid})` : ""}\n\n`);
    md.appendText(`Model: ${s.model?.path ?? s.modelPath}\n`);
    if (s.model) {
      md.appendText(
        `${s.model.architecture}: ${s.model.n_expert} experts, k=${s.model.n_expert_used}, ${s.model.moe_layers.length} MoE layers, gating ${s.model.gating}\n`,
      );
    }
    md.appendText(`Policy: ${this.policyLabel}\n`);
    if (this.last) {
      const t = this.last.summary;
      md.appendText(
        `Last trace (${this.last.policy}, ${this.last.modelPath}): ${t.n_tokens} tokens, ppl ${formatNumber(t.ppl, 2)}, active experts ${t.avg_active.toFixed(2)}/${this.last.k}, ${Math.round(t.elapsed_ms)} ms\n`,
      );
    }
    if (s.error) md.appendText(`Last error: ${s.error}\n`);
    this.item.tooltip = md;
    this.item.accessibilityInformation = { label: `MoE Lens ${text}` };
    this.item.backgroundColor =
      s.state === "failed"
        ? new vscode.ThemeColor("statusBarItem.errorBackground")
        : s.state === "restarting"
          ? new vscode.ThemeColor("statusBarItem.warningBackground")
          : undefined;
  }

  dispose(): void {
    this.item.dispose();
  }
}
