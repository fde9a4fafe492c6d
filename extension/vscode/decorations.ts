// Editor decorations for the active trace of each visible editor:
//   - routing shifts: tokens whose selected experts differ from the previous token's
//     (mean over MoE layers of 1 − Jaccard) far more than usual in this trace: mean + 1σ
//     (dotted) and mean + 2σ (solid);
//   - domain transitions: the segments the tracer computed for the finished trace
//     (segments.ts: marker lines, Markdown code fences, routing change points), marked on
//     the line of the transition step (the old domain's last token: the opening fence or
//     marker line) with the domains, the NLL there and the mean probability on the new
//     domain's expert. While a trace streams in (no segments yet), or after an edit cut it,
//     Markdown code fences are marked from the text alone, at the fence line.
// Recomputed when the store changes (a trace streams in, an edit cuts it) or the visible
// editors change; an editor whose document version has no trace gets no decorations.
// Hover texts are untrusted Markdown with the document's text escaped (format.ts
// transitionHover): a fence's info string is the document's, not ours.

import * as vscode from "vscode";
import type { TraceRecord, TraceStore } from "../core/trace-store";
import { routingShifts } from "../core/metrics";
import { fenceBoundaries } from "../core/transitions";
import { shiftThresholds, transitionHover } from "./format";
import { transitionLabel, type EditorSegments } from "./segments";

export class Decorations implements vscode.Disposable {
  private readonly strong = vscode.window.createTextEditorDecorationType({
    borderWidth: "0 0 2px 0",
    borderStyle: "solid",
    borderColor: new vscode.ThemeColor("editorWarning.foreground"),
    overviewRulerColor: new vscode.ThemeColor("editorWarning.foreground"),
    overviewRulerLane: vscode.OverviewRulerLane.Right,
  });
  private readonly medium = vscode.window.createTextEditorDecorationType({
    borderWidth: "0 0 1px 0",
    borderStyle: "dotted",
    borderColor: new vscode.ThemeColor("editorInfo.foreground"),
  });
  private readonly transition = vscode.window.createTextEditorDecorationType({
    isWholeLine: true,
    backgroundColor: new vscode.ThemeColor("diffEditor.insertedLineBackground"),
    after: { color: new vscode.ThemeColor("editorCodeLens.foreground"), margin: "0 0 0 2em", fontStyle: "italic" },
  });
  private timer: NodeJS.Timeout | undefined;
  private readonly disposables: vscode.Disposable[];

  constructor(
    private readonly store: TraceStore,
    private readonly segments?: WeakMap<TraceRecord, EditorSegments>,
  ) {
    this.disposables = [store.onDidChange(() => this.refresh()), vscode.window.onDidChangeVisibleTextEditors(() => this.refresh())];
  }

  /** Recompute soon (coalesces bursts of batches). */
  refresh(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      for (const e of vscode.window.visibleTextEditors) this.apply(e);
    }, 100);
  }

  private apply(editor: vscode.TextEditor): void {
    const doc = editor.document;
    const r = this.store.active(doc.uri.toString(), doc.version);
    if (!r || !r.header) {
      editor.setDecorations(this.strong, []);
      editor.setDecorations(this.medium, []);
      editor.setDecorations(this.transition, []);
      return;
    }
    const strong: vscode.Range[] = [],
      medium: vscode.Range[] = [];
    const shifts = shiftsOf(r);
    const { medium: MEDIUM, strong: STRONG } = shiftThresholds(shifts);
    for (let i = 1; i < r.count; i++) {
      const [s, e] = r.range(i);
      if (s === e) continue;
      const rng = new vscode.Range(doc.positionAt(s), doc.positionAt(e));
      if (shifts[i] >= STRONG) strong.push(rng);
      else if (shifts[i] >= MEDIUM) medium.push(rng);
    }
    const trans: vscode.DecorationOptions[] = [];
    const tracedEnd = r.end;
    const seg = r.truncated ? undefined : this.segments?.get(r);
    for (const x of seg?.transitions ?? []) {
      if (x.token < 0 || x.token + 1 >= r.count) continue;
      const line = doc.lineAt(doc.positionAt(r.range(x.token)[0]).line);
      trans.push({
        range: new vscode.Range(line.range.end, line.range.end),
        renderOptions: { after: { contentText: transitionLabel(x) } },
        hoverMessage: new vscode.MarkdownString(
          transitionHover(x.from, x.to, `at token ${x.token} (${seg!.source === "change-point" ? "routing change point" : seg!.source})`),
        ),
      });
    }
    for (const b of seg ? [] : fenceBoundaries(r.text)) {
      const lineStart = r.base + b.lineStart;
      if (lineStart >= tracedEnd) break;
      // Transition step: the last token before the new domain starts.
      const first = r.tokensAt(r.base + b.offset)[0];
      const step = first !== undefined ? first - 1 : -1;
      const nll = step >= 0 ? r.token(step).nll : NaN;
      const pos = doc.positionAt(lineStart);
      trans.push({
        range: new vscode.Range(pos, pos),
        renderOptions: { after: { contentText: `${b.from} → ${b.to}${Number.isFinite(nll) ? ` · NLL ${nll.toFixed(2)}` : ""}` } },
        hoverMessage: new vscode.MarkdownString(transitionHover(b.from, b.to, step >= 0 ? `at token ${step}` : "")),
      });
    }
    editor.setDecorations(this.strong, strong);
    editor.setDecorations(this.medium, medium);
    editor.setDecorations(this.transition, trans);
  }

  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    for (const d of this.disposables) d.dispose();
    this.strong.dispose();
    this.medium.dispose();
    this.transition.dispose();
  }
}

const cache = new WeakMap<TraceRecord, { count: number; shifts: Float32Array }>();

function shiftsOf(r: TraceRecord): Float32Array {
  const c = cache.get(r);
  if (c && c.count === r.count) return c.shifts;
  const n = r.count;
  // The trace's own columns (views, no copy).
  const shifts = routingShifts(r.columns, n, r.L, r.K);
  cache.set(r, { count: n, shifts });
  return shifts;
}
