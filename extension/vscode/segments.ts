// Domain segments and transition metrics of an editor trace (pure: no `vscode` import, so
// test/unit/vscode-segments.test.ts loads it). The tracer asks the server for the router
// distribution (`top_n`, see `traceTopN`), and when a trace is done computes its segments
// with extension/core/transitions.ts and posts them to the panel (a `segments` message).
//
// Label sources, first that applies (the editor traces the document's own text, so every
// span is a byte range of that text; nothing is removed from it):
//   1. marker lines `<<<domain:NAME>>>` (test/fixtures/README.md): as transitions.ts
//      `parseDomainMarkers`, except that the marker lines stay in the text. A marker line
//      belongs to the domain before it, as an opening code fence belongs to the prose before
//      it, so the transition step is the marker line's last token and every token is labelled;
//   2. markdown code fences (transitions.ts `markdownFenceSpans`);
//   3. routing change points (transitions.ts `detectChangePoints`), "segment 1", "segment 2", …;
//   4. none of those: the whole text is one segment named after the document's language.
// With a capped `top_n` (models with many experts) the probability and rank of the new
// domain's expert are known only where it is among the recorded top-N; elsewhere they are
// NaN (the panel shows "–"), and NLL is always there. When the trace also recorded every
// expert's probability (`moeLens.recordRouterProbabilities`: the f16 `routerProbs`), they
// are exact for every expert, read from that distribution.
import {
  analyzeTransitions,
  changePointSegments,
  detectChangePoints,
  domainExperts,
  labelByLanguage,
  markdownFenceSpans,
  MARKER_LINE,
  spansToSegments,
  transitionSteps,
  type ChangePointOptions,
  type DomainSegment,
  type DomainSpan,
  type LabelledText,
  type TransitionMetrics,
} from "../core/transitions";
import { finiteMean } from "../../shared/metrics";
import { halfToFloat } from "../../shared/half";
import type { Trace } from "../../shared/trace";

/** Never record more router probabilities per layer than this. */
export const TOP_N_CAP = 64;
/** Memory allowed for the top-N columns of one trace (ids + probabilities, 8 bytes per entry). */
export const TOP_N_BUDGET_BYTES = 64 * 1024 * 1024;

/**
 * `top_n` to trace with: the full distribution (`n_expert`) when it is small enough, else
 * capped at TOP_N_CAP and at what fits the memory budget for the text's estimated tokens
 * (UTF-8 bytes / 2, a generous estimate), but never below min(n_expert, 8).
 */
export function traceTopN(nExpert: number, nMoeLayers: number, textBytes: number, budget = TOP_N_BUDGET_BYTES): number {
  if (!(nExpert > 0)) return 0;
  const tokens = Math.max(1, Math.ceil(textBytes / 2));
  const fits = Math.floor(budget / (tokens * Math.max(1, nMoeLayers) * 8));
  return Math.max(Math.min(nExpert, 8), Math.min(nExpert, TOP_N_CAP, fits));
}

const utf8Len = (s: string) => Buffer.byteLength(s, "utf8");

/** Marker lines as labels, keeping the marker lines in the text (see the header). Null when there are none. */
export function markerSpansInPlace(raw: string): LabelledText | null {
  const spans: DomainSpan[] = [];
  let at = 0,
    found = false;
  for (const line of raw.split(/(?<=\n)/)) {
    const n = utf8Len(line);
    const m = MARKER_LINE.exec(line.replace(/\r?\n$/, ""));
    if (m) {
      found = true;
      // A domain with no text (two markers in a row) is dropped; its marker line goes to the domain before.
      if (spans.length && spans[spans.length - 1].start === spans[spans.length - 1].end) spans.pop();
      const prev = spans[spans.length - 1];
      if (prev && prev.end === at) prev.end = at + n;
      spans.push({ start: at + n, end: at + n, domain: m[1], source: "label" });
    } else if (spans.length) spans[spans.length - 1].end = at + n;
    at += n;
  }
  if (!found) return null;
  return { text: raw, spans: spans.filter((s) => s.end > s.start), source: "label" };
}

/** Labels of an editor text: markers (kept in place), else markdown fences, else none. */
export function labelEditorText(text: string): LabelledText {
  return markerSpansInPlace(text) ?? markdownFenceSpans(text) ?? { text, spans: [], source: "none" };
}

export interface EditorSegments {
  segments: DomainSegment[];
  transitions: TransitionMetrics[];
  source: DomainSegment["source"];
  /** True when the trace holds only part of the router distribution (probabilities and ranks may be NaN). */
  partial: boolean;
}

/** Segments and transition metrics of a finished trace of `text` (see the header for the label sources). */
export function editorSegments(trace: Trace, text: string, languageId: string, cp: ChangePointOptions = {}): EditorSegments {
  const T = trace.columns.count;
  const labelled = labelEditorText(text);
  let segments: DomainSegment[];
  if (labelled.spans.length) segments = spansToSegments(trace, labelled.spans);
  else {
    const points = T > 0 ? detectChangePoints(trace, cp).points : [];
    segments = points.length ? changePointSegments(T, points) : T > 0 ? spansToSegments(trace, labelByLanguage(text, languageId || "text").spans) : [];
  }
  const source = segments[0]?.source ?? "language";
  const partial = trace.header.top_n < trace.header.model.n_expert || !trace.columns.topIds || !trace.columns.topProbs;
  // With the full f16 distribution recorded, partialTransitions is exact for every expert.
  if (transitionSteps(segments).length === 0) return { segments, transitions: [], source, partial };
  const transitions = partial
    ? partialTransitions(trace, segments)
    : analyzeTransitions(trace, segments, { text }).transitions.map(({ token, from, to, probNewExpert, rankNewExpert, nll }) => ({
        token,
        from,
        to,
        probNewExpert,
        rankNewExpert,
        nll,
      }));
  return { segments, transitions, source, partial };
}

/**
 * Transition metrics from a trace with only the top-N router probabilities: the new domain's
 * expert's probability and rank where it is among the top N (rank = 1 + the recorded experts
 * with a strictly larger probability, exact since all others are smaller), NaN elsewhere.
 * Where the trace holds every expert's probability (`routerProbs`, f16), both come from that
 * distribution instead, for every expert (rank = 1 + experts with a strictly larger f16 value).
 */
export function partialTransitions(trace: Trace, segments: DomainSegment[]): TransitionMetrics[] {
  const { n_moe_layers: L, top_n: N } = trace.header;
  const E = trace.header.model.n_expert;
  const c = trace.columns;
  const full = c.routerProbs && E > 0 && c.routerProbs.length >= c.count * L * E ? c.routerProbs : undefined;
  const de = domainExperts([{ trace, segments }]);
  const out: TransitionMetrics[] = [];
  for (const s of transitionSteps(segments)) {
    const t = s.token;
    if (t + 1 >= c.count) continue;
    const di = de.domains.indexOf(s.to);
    const probNewExpert: number[] = [],
      rankNewExpert: number[] = [];
    for (let m = 0; m < L; m++) {
      const e = di >= 0 ? de.experts[m][di] : -1;
      let p = NaN,
        rank = NaN;
      if (e >= 0 && full) {
        const base = (t * L + m) * E;
        p = halfToFloat(full[base + e]);
        rank = 1;
        for (let x = 0; x < E; x++) if (halfToFloat(full[base + x]) > p) rank++;
      } else if (e >= 0 && N > 0 && c.topIds && c.topProbs) {
        const base = (t * L + m) * N;
        for (let i = 0; i < N; i++) if (c.topIds[base + i] === e) p = c.topProbs[base + i];
        if (Number.isFinite(p)) {
          rank = 1;
          for (let i = 0; i < N; i++) if (c.topProbs[base + i] > p) rank++;
        }
      }
      probNewExpert.push(p);
      rankNewExpert.push(rank);
    }
    out.push({ token: t, from: s.from, to: s.to, probNewExpert, rankNewExpert, nll: c.nll[t] });
  }
  return out;
}

/** The text of a transition decoration: "prose → python · NLL 2.31 · P(new expert) .42". */
export function transitionLabel(x: TransitionMetrics): string {
  const p = finiteMean(x.probNewExpert);
  return `${x.from} → ${x.to}${Number.isFinite(x.nll) ? ` · NLL ${x.nll.toFixed(2)}` : ""}${Number.isFinite(p) ? ` · P(new expert) ${p.toFixed(2)}` : ""}`;
}
