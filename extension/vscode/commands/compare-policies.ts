import * as vscode from "vscode";
import { describePolicy, type Policy } from "../../../shared/policy";
import { formatNumber } from "../../../shared/format";
import type { Services } from "../services";
import { DEFAULT_AMG } from "../policy-state";
import { runExperiment } from "../experiment-runner";
import { isRevealedSelection } from "../panel";
import { describeSpeed, measurePolicySpeed, QUICK_SPEED_OPTIONS } from "../../core/speed";

/**
 * MoE Lens: Compare Policies on Selection — traces what the user chose twice, baseline and
 * the current policy (or the two policies given as arguments, as the panel's requestCompare
 * does), and shows them side by side. Both traces join the document's history (nothing is
 * replaced; an unchanged trace is reused). What is compared: the whole document, or the
 * selection when the user made one — asked when there is one, since it may be left over;
 * a selection left by clicking a heatmap cell (one token) is never taken for a choice.
 * `scope` skips the question.
 */
export function register(svc: Services): vscode.Disposable {
  return vscode.commands.registerCommand("moeLens.comparePolicies", async (left?: Policy, right?: Policy, scope?: "document" | "selection") => {
    const editor = vscode.window.activeTextEditor;
    let target: { document: vscode.TextDocument; range?: vscode.Range } | undefined;
    if (editor) {
      const selection = editor.selection.isEmpty || isRevealedSelection(editor) ? undefined : new vscode.Range(editor.selection.start, editor.selection.end);
      if (selection && !scope) {
        const chars = editor.document.offsetAt(selection.end) - editor.document.offsetAt(selection.start);
        const pick = await vscode.window.showQuickPick(
          [
            { label: "Selection", description: `${chars} characters`, scope: "selection" as const },
            { label: "Whole document", description: vscode.workspace.asRelativePath(editor.document.uri), scope: "document" as const },
          ],
          { title: "MoE Lens: compare policies on" },
        );
        if (!pick) return;
        scope = pick.scope;
      }
      target = { document: editor.document, range: selection && scope === "selection" ? selection : undefined };
    } else {
      target = await svc.tracer.lastTraceTarget();
    }
    if (!target) return void vscode.window.showWarningMessage("MoE Lens: select some text to compare policies on.");
    const cur = svc.policy.current;
    const l: Policy = left ?? {};
    const r: Policy = right ?? (Object.keys(cur).length ? cur : { amg: DEFAULT_AMG });
    void svc.panel.show(true);
    try {
      const a = await svc.tracer.trace(target, { policy: l, label: `A: ${describePolicy(l)}`, quiet: true });
      if (!a) return;
      const b = await svc.tracer.trace(target, { policy: r, label: `B: ${describePolicy(r)}`, quiet: true });
      if (!b) return;
      svc.panel.post({ type: "compare", leftTraceId: a.id, rightTraceId: b.id });
      const fmt = (x: typeof a) => (x.summary ? `ppl ${formatNumber(x.summary.ppl, 3)}, active ${x.summary.avg_active.toFixed(2)}/${x.header?.k}` : "?");
      svc.output.info(`compare: ${describePolicy(l)}: ${fmt(a)} | ${describePolicy(r)}: ${fmt(b)}`);
      // Quality and speed read together: time both policies side by side on the same text.
      const text = target.document.getText(target.range);
      const speed = await runExperiment(svc, "measuring speed", (client, signal) =>
        measurePolicySpeed(
          client,
          text,
          [
            { spec: "A", policy: l },
            { spec: "B", policy: r },
          ],
          QUICK_SPEED_OPTIONS,
          undefined,
          signal,
        ),
      );
      if (speed && a.summary?.ppl && b.summary?.ppl) {
        const line = `B against A: ${describeSpeed(speed[1], { value: b.summary.ppl, baseline: a.summary.ppl })} (trace perplexity; ${QUICK_SPEED_OPTIONS.reps} alternating rounds, server-timed)`;
        svc.panel.post({ type: "compareSpeed", leftTraceId: a.id, rightTraceId: b.id, text: line });
        svc.output.info(`compare speed: ${line}`);
      }
      return { left: a.id, right: b.id };
    } catch (e) {
      void vscode.window.showErrorMessage(`MoE Lens: compare failed: ${(e as Error).message}`);
    }
  });
}
