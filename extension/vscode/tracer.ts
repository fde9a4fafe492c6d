// Runs traces: sends the text of a document (or a range of it) to the server, streams the
// records into the trace store, the routing panel and the editor decorations, and reports
// progress with Cancel (which aborts the HTTP request, so the server stops at the next
// ubatch). One trace at a time: a new one cancels the one in flight. Every trace is added to
// its document's history (the trace store); a trace of unchanged text, range, model, router
// pack and policy reuses the stored one instead of running the server again.

import * as vscode from "vscode";
import { formatNumber } from "../../shared/format";
import { describePolicy, type Policy } from "../../shared/policy";
import { panelBatch } from "../../shared/protocol";
import { SETTINGS_SECTION } from "../core/settings";
import { requireText } from "../core/text-input";
import type { TraceRecord } from "../core/trace-store";
import type { Services } from "./services";
import { errorMessage, isCancellation } from "./server-manager";
import { editorSegments, traceTopN } from "./segments";

export interface TraceTarget {
  document: vscode.TextDocument;
  /** Undefined: the whole document. */
  range?: vscode.Range;
}

export interface TraceOptions {
  policy?: Policy;
  /** Label shown in the panel; default from the target and policy. */
  label?: string;
  /** Do not show error messages (the caller handles them). */
  quiet?: boolean;
  /** Record every expert's router probability (`probs`, f16 per token and layer); default: the setting moeLens.recordRouterProbabilities. */
  routerProbs?: boolean;
  /** Run the server even when the history holds the same trace. */
  fresh?: boolean;
}

export class Tracer {
  private inflight: AbortController | undefined;
  /** What was traced last, for re-tracing after a policy change. */
  private lastTarget: { uri: vscode.Uri; start: number; end: number; whole: boolean } | undefined;

  constructor(private readonly svc: Services) {
    svc.store.onDidEvict((evicted, kept, cap) => {
      const mb = (n: number) => `${Math.round(n / (1024 * 1024))} MB`;
      const note = `Evicted ${evicted.length} oldest trace${evicted.length === 1 ? "" : "s"} (${evicted.map((r) => r.label).join("; ")}) to stay under the ${mb(cap)} history cap (moeLens.traceHistoryMegabytes); ${mb(kept)} kept.`;
      svc.output.info(note);
      svc.panel.postHistory(note);
    });
    // The panel's history list follows the active editor's document and every change to its traces (edits cut them).
    let pending: NodeJS.Timeout | undefined;
    const refreshHistory = () => {
      if (pending) return;
      pending = setTimeout(() => {
        pending = undefined;
        svc.panel.postHistory();
      }, 250);
    };
    svc.context.subscriptions.push(vscode.window.onDidChangeActiveTextEditor(refreshHistory), svc.store.onDidChange(refreshHistory), {
      dispose: () => clearTimeout(pending),
    });
  }

  cancel(): void {
    this.inflight?.abort();
  }

  get busy(): boolean {
    return this.inflight !== undefined;
  }

  /** The last traced target, resolved against the document's current text. */
  async lastTraceTarget(): Promise<TraceTarget | undefined> {
    const t = this.lastTarget;
    if (!t) return undefined;
    const document = await vscode.workspace.openTextDocument(t.uri);
    if (t.whole) return { document };
    const start = Math.min(t.start, document.getText().length);
    const end = Math.min(t.end, document.getText().length);
    return { document, range: new vscode.Range(document.positionAt(start), document.positionAt(end)) };
  }

  /** Re-traces the last target with the current policy (after the policy changed). */
  async retrace(): Promise<TraceRecord | undefined> {
    const t = await this.lastTraceTarget();
    return t ? this.trace(t) : undefined;
  }

  async trace(target: TraceTarget, opts: TraceOptions = {}): Promise<TraceRecord | undefined> {
    const { svc } = this;
    const doc = target.document;
    const whole = !target.range || (target.range.start.isEqual(new vscode.Position(0, 0)) && target.range.end.isEqual(doc.positionAt(doc.getText().length)));
    const text = whole ? doc.getText() : doc.getText(target.range);
    if (!text.trim()) {
      if (!opts.quiet) void vscode.window.showWarningMessage("MoE Lens: nothing to trace — the text is empty.");
      return undefined;
    }
    try {
      requireText(text, vscode.workspace.asRelativePath(doc.uri));
    } catch (e) {
      if (opts.quiet) throw e;
      void vscode.window.showErrorMessage(`MoE Lens: ${errorMessage(e)}`);
      return undefined;
    }
    const base = whole ? 0 : doc.offsetAt(target.range!.start);
    const policy = opts.policy ?? svc.policy.current;
    const routerProbs = opts.routerProbs ?? vscode.workspace.getConfiguration(SETTINGS_SECTION).get<boolean>("recordRouterProbabilities", false);
    const policyLabel = describePolicy(policy);
    const label = opts.label ?? `${vscode.workspace.asRelativePath(doc.uri)}${whole ? "" : ` [${base}…${base + text.length}]`} · ${policyLabel}`;
    this.lastTarget = { uri: doc.uri, start: base, end: base + text.length, whole };

    const reused = opts.fresh ? undefined : this.reusable(doc, text, base, whole, policy, routerProbs);
    if (reused) {
      svc.store.select(reused.id);
      svc.panel.replay(reused);
      svc.panel.postHistory();
      if (reused.summary && reused.header) svc.status.setLastTrace(reused.summary, reused.header.k, policyLabel, reused.header.model.path);
      svc.decorations.refresh();
      svc.output.info(`trace ${reused.id} reused: ${reused.label} (same text, model and policy; ${reused.count} tokens)`);
      return reused;
    }

    this.inflight?.abort();
    const ac = new AbortController();
    this.inflight = ac;
    svc.status.setTracing(label);

    let rec: TraceRecord | undefined;
    try {
      const done = await vscode.window.withProgress(
        { location: vscode.ProgressLocation.Notification, title: "MoE Lens", cancellable: true },
        async (progress, token) => {
          token.onCancellationRequested(() => ac.abort());
          progress.report({ message: "waiting for the server…" });
          const client = await svc.server.ensureClient(ac.signal);
          // The router distribution, for the transition metrics (capped for models with many experts).
          const model = svc.server.modelInfo ?? (await client.modelInfo(ac.signal));
          const topN = traceTopN(model.n_expert, model.moe_layers.length, Buffer.byteLength(text, "utf8"));
          const r = svc.store.begin({
            uri: doc.uri.toString(),
            version: doc.version,
            text,
            baseOffset: base,
            wholeDocument: whole,
            label,
            policy,
          });
          rec = r;
          let total = 0,
            done = 0,
            lastPct = 0;
          svc.output.info(`trace ${r.id}: ${label} (${text.length} characters)`);
          const trace = await client.traceStream(
            { text, policy, top_n: topN, ...(routerProbs ? { probs: true } : {}) },
            {
              onHeader: (h) => {
                svc.store.setHeader(r.id, h);
                total = h.n_tokens;
                svc.panel.post({ type: "traceStart", traceId: r.id, label, header: h });
                svc.panel.postHistory();
                progress.report({ message: `tracing ${h.n_tokens} tokens (${h.n_moe_layers} MoE layers)…` });
              },
              onBatch: (b) => {
                // The batch as decoded has arrays of its own: its panel columns go to the panel as they are, its numbers are copied into the store.
                const kept = svc.store.append(r.id, b);
                if (kept) svc.panel.post({ type: "traceBatch", traceId: r.id, batch: panelBatch(kept, r.E) });
                done += b.count;
                const pct = total ? Math.floor((100 * done) / total) : 0;
                if (pct > lastPct) {
                  progress.report({ increment: pct - lastPct, message: `${done}/${total} tokens` });
                  lastPct = pct;
                }
              },
            },
            ac.signal,
          );
          const summary = trace.summary;
          svc.store.finish(r.id, summary);
          if (summary) {
            svc.panel.post({ type: "traceEnd", traceId: r.id, summary });
            svc.status.setLastTrace(summary, trace.header.k, policyLabel, trace.header.model.path);
            svc.output.info(
              `trace ${r.id} done: ${summary.n_tokens} tokens, ppl ${formatNumber(summary.ppl, 3)}, avg active ${summary.avg_active.toFixed(3)}/${trace.header.k}, ${Math.round(summary.elapsed_ms)} ms`,
            );
          }
          return r;
        },
      );
      // After the progress and the "tracing" status end: the segments are the one whole-trace pass.
      svc.status.setTracing(undefined);
      if (done.summary) this.postSegments(done, doc.languageId);
      svc.decorations.refresh();
      return done;
    } catch (e) {
      const cancelled = ac.signal.aborted || isCancellation(e);
      if (rec) {
        svc.store.finish(rec.id, undefined, cancelled ? "cancelled" : "error", errorMessage(e));
        svc.panel.post({ type: "traceError", traceId: rec.id, message: cancelled ? "cancelled" : errorMessage(e) });
      }
      if (cancelled) {
        svc.output.info(`trace cancelled: ${label}`);
        return undefined;
      }
      svc.output.error(`trace failed: ${errorMessage(e)}`);
      if (!opts.quiet) {
        void vscode.window.showErrorMessage(`MoE Lens: trace failed: ${stripPrefix(errorMessage(e))}`, "Show Log").then((a) => a && svc.output.show());
      }
      if (opts.quiet) throw e;
      return undefined;
    } finally {
      if (this.inflight === ac) {
        this.inflight = undefined;
        svc.status.setTracing(undefined);
      }
      svc.panel.postHistory();
    }
  }

  /** A stored trace that a run with these inputs would repeat (TraceStore.findReusable), if the server's model is known. */
  private reusable(doc: vscode.TextDocument, text: string, base: number, whole: boolean, policy: Policy, routerProbs?: boolean): TraceRecord | undefined {
    const { svc } = this;
    const model = svc.server.modelInfo;
    if (!model || svc.server.snapshot().state !== "ready") return undefined;
    const r = svc.store.findReusable({
      uri: doc.uri.toString(),
      version: doc.version,
      text,
      baseOffset: base,
      wholeDocument: whole,
      policy,
      modelPath: model.path,
      routerPack: model.router_pack?.path ?? null,
      topN: traceTopN(model.n_expert, model.moe_layers.length, Buffer.byteLength(text, "utf8")),
    });
    return r && (!routerProbs || r.header?.probs) ? r : undefined;
  }

  /**
   * Domain segments and transition metrics of a finished trace (segments.ts: markers, fences,
   * change points, else the language), kept for the decorations and replays and posted to the panel.
   */
  private postSegments(r: TraceRecord, languageId: string): void {
    const { svc } = this;
    if (!r.header || r.count === 0 || r.truncated) return;
    try {
      const trace = { header: r.header, columns: r.columns, summary: r.summary };
      const s = editorSegments(trace, r.text, languageId);
      svc.segments.set(r, s);
      svc.panel.post({ type: "segments", traceId: r.id, segments: s.segments, transitions: s.transitions });
      if (s.transitions.length) {
        svc.output.info(
          `trace ${r.id}: ${s.segments.length} segments (${s.source}), ${s.transitions.length} transitions${s.partial ? ` (top ${r.header.top_n} of ${r.header.model.n_expert} router probabilities recorded: P and rank only where the new domain's expert is among them)` : ""}`,
        );
      }
    } catch (e) {
      svc.output.warn(`trace ${r.id}: no transition analysis: ${errorMessage(e)}`);
    }
  }
}

function stripPrefix(m: string): string {
  return m.replace(/^MoE Lens: /, "");
}
