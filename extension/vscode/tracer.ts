// Runs traces: sends the text of a document (or a range of it) to the server, streams the
// records into the trace store, the routing panel and the editor decorations, and reports
// progress with Cancel (which aborts the HTTP request, so the server stops at the next
// ubatch). One trace at a time: a new one cancels the one in flight.

import * as vscode from "vscode";
import { formatNumber } from "../../shared/format";
import { describePolicy, type Policy } from "../../shared/policy";
import { concatBatches } from "../../shared/trace";
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
}

export class Tracer {
  private inflight: AbortController | undefined;
  /** What was traced last, for re-tracing after a policy change. */
  private lastTarget: { uri: vscode.Uri; start: number; end: number; whole: boolean } | undefined;

  constructor(private readonly svc: Services) {}

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
    const policyLabel = describePolicy(policy);
    const label = opts.label ?? `${vscode.workspace.asRelativePath(doc.uri)}${whole ? "" : ` [${base}…${base + text.length}]`} · ${policyLabel}`;
    this.lastTarget = { uri: doc.uri, start: base, end: base + text.length, whole };

    this.inflight?.abort();
    const ac = new AbortController();
    this.inflight = ac;
    svc.status.setTracing(label);

    let rec: TraceRecord | undefined;
    try {
      return await vscode.window.withProgress(
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
          const trace = await client.trace(
            { text, policy, top_n: topN },
            {
              onHeader: (h) => {
                svc.store.setHeader(r.id, h);
                total = h.n_tokens;
                svc.panel.post({ type: "traceStart", traceId: r.id, label, header: h });
                progress.report({ message: `tracing ${h.n_tokens} tokens (${h.n_moe_layers} MoE layers)…` });
              },
              onBatch: (b) => {
                const kept = svc.store.append(r.id, b);
                if (kept) svc.panel.post({ type: "traceBatch", traceId: r.id, batch: kept });
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
          if (summary) this.postSegments(r, doc.languageId);
          svc.decorations.refresh();
          return r;
        },
      );
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
    }
  }

  /**
   * Domain segments and transition metrics of a finished trace (segments.ts: markers, fences,
   * change points, else the language), kept for the decorations and replays and posted to the panel.
   */
  private postSegments(r: TraceRecord, languageId: string): void {
    const { svc } = this;
    if (!r.header || r.count === 0 || r.truncated) return;
    try {
      const trace = { header: r.header, columns: concatBatches(r.header, r.batches), summary: r.summary };
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
