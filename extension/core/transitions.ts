// Domain transitions (definitions: docs/metrics.md, "Domain transitions").
// Pure functions, no server: labels → byte spans → token segments → per-layer domain experts →
// metrics at each transition step. Everything returned is plain data (JSON-safe except NaN),
// compatible with `DomainSegment` / `TransitionMetrics` in shared/protocol.ts.
//
// Conventions, used everywhere below:
// - A label is a byte range `[start, end)` of the UTF-8 text that is traced (`DomainSpan`).
// - A token belongs to the span that holds its LAST byte (`byteEnd - 1`; an empty span such as
//   BOS uses `byteStart`). So a token that straddles a boundary (e.g. "\n#" merged by BPE)
//   counts as the new domain, and the transition step's own text is old-domain only.
// - Segments are maximal runs of consecutive tokens in the same span; adjacent segments of the
//   same domain are merged. A transition is a pair of adjacent, contiguous segments with
//   different domains. The transition step is the old segment's last token t: its input is
//   old-domain and the token it predicts (t+1) is the first of the new domain.
// - Domain experts (per MoE layer and domain): the expert whose usage share inside the domain
//   exceeds its usage share in all other domains by the most (usage = selected with a non-zero
//   final weight; ties go to the lower expert id). Computed from a reference trace (normally
//   the baseline, all policies off) and then held fixed when policies are compared.
// - Probability on the new domain's expert at the transition step: the router probability of
//   that expert (the distribution actually used for selection, so policies show), read from
//   the trace's top-N columns, which must hold the full distribution (trace with
//   `top_n = n_expert`). Rank = 1 + the number of experts with a strictly larger probability.
// - K99, two definitions, always labelled apart:
//   · rank coverage (MoE Lens): the smallest K such that the new domain's expert is within the
//     top-K in at least 99% of the (transition, layer) cases;
//   · Affinity (“Affinity is not enough”): log δ / log(1 − p) with δ = 0.01 and p the mean
//     probability on the new domain's expert, i.e. how many draws from the router's
//     distribution find that expert with probability 99%.
// - NLL at the transition = nll[t] (nats, of the first new-domain token); NLL inside domains =
//   mean nll over tokens whose successor is in the same segment. Bits per character (BPC) =
//   NLL / ln 2 / characters of the predicted token (as “Affinity is not enough”'s transition-step BPC);
//   inside domains it is total bits / total characters.
import type { DomainSegment, TransitionMetrics } from "../../shared/protocol";
import { finiteMean } from "../../shared/metrics";
import type { Trace } from "../../shared/trace";

export type { DomainSegment, TransitionMetrics };
export type SegmentSource = DomainSegment["source"];

/** A labelled byte range of a text: UTF-8 byte offsets `[start, end)`. */
export interface DomainSpan {
  start: number;
  end: number;
  domain: string;
  source: SegmentSource;
}

/** A text to trace and its domain labels (byte spans into `text`). */
export interface LabelledText {
  text: string;
  spans: DomainSpan[];
  /** Where the labels came from; "none" when the text has neither markers nor fences. */
  source: SegmentSource | "none";
}

export const DEFAULT_PROSE_DOMAIN = "prose";

const utf8Len = (s: string) => Buffer.byteLength(s, "utf8");

/** Concatenates labelled parts (e.g. notebook cells with their languages) into one text with spans. */
export function concatLabelled(parts: Array<{ text: string; domain: string }>, source: SegmentSource = "language"): LabelledText {
  let text = "";
  let at = 0;
  const spans: DomainSpan[] = [];
  for (const p of parts) {
    const n = utf8Len(p.text);
    if (n > 0) spans.push({ start: at, end: at + n, domain: p.domain, source });
    text += p.text;
    at += n;
  }
  return { text, spans, source };
}

/** One whole text in one language (file or cell language). */
export function labelByLanguage(text: string, language: string): LabelledText {
  return concatLabelled([{ text, domain: language }], "language");
}

export const MARKER_LINE = /^<<<domain:([^>\s]+)>>>[ \t]*$/;

/**
 * Explicit marker lines (test/fixtures/README.md): a line `<<<domain:NAME>>>` starts a
 * segment holding every following line up to the next marker line or the end. The marker
 * lines (with their newline) are removed from the text. Text before the first marker stays
 * in the text unlabelled. Returns null when the text has no marker line.
 */
export function parseDomainMarkers(raw: string): LabelledText | null {
  const lines = raw.split(/(?<=\n)/); // keeps the newline on each line
  const parts: Array<{ text: string; domain: string | null }> = [{ text: "", domain: null }];
  let found = false;
  for (const line of lines) {
    const m = MARKER_LINE.exec(line.replace(/\r?\n$/, ""));
    if (m) {
      found = true;
      parts.push({ text: "", domain: m[1] });
    } else parts[parts.length - 1].text += line;
  }
  if (!found) return null;
  let text = "";
  let at = 0;
  const spans: DomainSpan[] = [];
  for (const p of parts) {
    const n = utf8Len(p.text);
    if (p.domain !== null && n > 0) spans.push({ start: at, end: at + n, domain: p.domain, source: "label" });
    text += p.text;
    at += n;
  }
  return { text, spans, source: "label" };
}

/** A domain transition at a Markdown code fence (UTF-16 offsets into the text). */
export interface DomainBoundary {
  /** UTF-16 offset (in the given text) of the first character of the new domain. */
  offset: number;
  /** UTF-16 offset of the start of the fence line that causes it. */
  lineStart: number;
  lineEnd: number;
  from: string;
  to: string;
}

/**
 * Domain transitions from Markdown code fences: prose → `lang` at an opening fence,
 * `lang` → prose at the closing one ("code" when the fence names no language). Fences of
 * ``` or ~~~ (3 or more), indented up to 3 spaces; a closing fence has the opening one's
 * character, at least its length, and no info string. `lang` is the document's own text.
 */
export function fenceBoundaries(text: string, prose = DEFAULT_PROSE_DOMAIN): DomainBoundary[] {
  const out: DomainBoundary[] = [];
  const re = /^( {0,3})(`{3,}|~{3,})[ \t]*([^\s`]*)[^\r\n]*$/gm;
  let open: { marker: string; lang: string } | undefined;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text))) {
    const lineStart = m.index;
    const lineEnd = m.index + m[0].length;
    let next = lineEnd;
    if (text[next] === "\r") next++;
    if (text[next] === "\n") next++;
    if (!open) {
      const lang = m[3] || "code";
      open = { marker: m[2], lang };
      out.push({ offset: next, lineStart, lineEnd, from: prose, to: lang });
    } else if (m[2][0] === open.marker[0] && m[2].length >= open.marker.length && !m[3]) {
      out.push({ offset: next, lineStart, lineEnd, from: open.lang, to: prose });
      open = undefined;
    }
    if (m[0].length === 0) re.lastIndex++;
  }
  return out;
}

/**
 * Markdown code fences as labels (`fenceBoundaries`): prose outside, the fence's language
 * inside. A domain starts with its first content character: the opening fence line belongs to
 * the prose before it, the closing fence line to the code. Whitespace-only spans (e.g. the
 * blank line between two blocks) join the span before them. An unclosed fence runs to the
 * end. Returns null when the text has no fence.
 */
export function markdownFenceSpans(text: string, prose = DEFAULT_PROSE_DOMAIN): LabelledText | null {
  // Cut points in UTF-16 offsets with the domain that starts there.
  const cuts: Array<{ offset: number; domain: string }> = [
    { offset: 0, domain: prose },
    ...fenceBoundaries(text, prose).map((b) => ({ offset: b.offset, domain: b.to })),
  ];
  if (cuts.length === 1) return null;
  const spans: DomainSpan[] = [];
  let bytesBefore = 0; // UTF-8 length of text.slice(0, from), kept incrementally (cuts ascend)
  for (let i = 0; i < cuts.length; i++) {
    const from = cuts[i].offset,
      to = i + 1 < cuts.length ? cuts[i + 1].offset : text.length;
    if (to <= from) continue;
    const piece = text.slice(from, to);
    const start = bytesBefore,
      end = start + utf8Len(piece);
    bytesBefore = end;
    const prev = spans[spans.length - 1];
    if (prev && (!piece.trim() || prev.domain === cuts[i].domain)) prev.end = end;
    else spans.push({ start, end, domain: cuts[i].domain, source: "fence" });
  }
  // A leading whitespace-only span joins the one after it.
  if (spans.length > 1 && !Buffer.from(text, "utf8").subarray(spans[0].start, spans[0].end).toString("utf8").trim()) {
    spans[1].start = spans[0].start;
    spans.shift();
  }
  return { text, spans, source: "fence" };
}

/** Labels from marker lines if the text has any, else from markdown fences, else none (use change points after tracing). */
export function labelText(raw: string): LabelledText {
  return parseDomainMarkers(raw) ?? markdownFenceSpans(raw) ?? { text: raw, spans: [], source: "none" };
}

/** Span index of each token (−1 = unlabelled), by the token's last byte (see the conventions above). */
export function tokenSpanIndex(trace: Trace, spans: DomainSpan[]): Int32Array {
  const c = trace.columns;
  const order = spans.map((_, i) => i).sort((a, b) => spans[a].start - spans[b].start);
  const out = new Int32Array(c.count).fill(-1);
  for (let t = 0; t < c.count; t++) {
    const b = c.byteEnd[t] > c.byteStart[t] ? c.byteEnd[t] - 1 : c.byteStart[t];
    // binary search: the last span starting at or before b
    let lo = 0,
      hi = order.length - 1,
      found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (spans[order[mid]].start <= b) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    if (found >= 0 && b < spans[order[found]].end) out[t] = order[found];
  }
  return out;
}

/** Byte spans → token segments of `trace` (which must be a trace of the labelled text). */
export function spansToSegments(trace: Trace, spans: DomainSpan[]): DomainSegment[] {
  const idx = tokenSpanIndex(trace, spans);
  const segs: DomainSegment[] = [];
  for (let t = 0; t < idx.length; t++) {
    if (idx[t] < 0) continue;
    const s = spans[idx[t]];
    const prev = segs[segs.length - 1];
    if (prev && prev.end === t && prev.domain === s.domain) prev.end = t + 1;
    else segs.push({ start: t, end: t + 1, domain: s.domain, source: s.source });
  }
  return segs;
}

export interface ChangePointOptions {
  /** Tokens on each side of a candidate boundary (default 16). */
  window?: number;
  /** Score a change point must reach; default max(minScore, median + z·1.4826·MAD of all scores), robust to the peaks themselves. */
  threshold?: number;
  /** Floor of the default threshold (default 0.3). */
  minScore?: number;
  /** z of the default threshold (default 3). */
  z?: number;
  /** Minimum distance between change points (default = window). */
  minGap?: number;
}

export interface ChangePoints {
  /** Score per token (NaN where a full window does not fit on both sides). */
  scores: Float64Array;
  threshold: number;
  /** First token of each new segment, ascending. */
  points: number[];
}

/**
 * Change points from routing shift, by a windowed mean difference: for each token t, per MoE
 * layer, the mean final gate-weight vector over the experts (each token's weights normalised
 * to sum 1) in the `window` tokens before t and in the `window` tokens from t on; the score is
 * the total-variation distance between the two (½·L1, in [0, 1]) averaged over layers. A
 * clean switch of every layer's experts scores 1 at the switch and falls off linearly to 0 a
 * window away. Change points are the local maxima at or above the threshold, greedily by
 * score, at least `minGap` apart.
 */
export function detectChangePoints(trace: Trace, opts: ChangePointOptions = {}): ChangePoints {
  const { n_moe_layers: L, k: K } = trace.header;
  const E = trace.header.model.n_expert;
  const c = trace.columns;
  const T = c.count;
  const w = Math.max(1, opts.window ?? 16);
  const minGap = opts.minGap ?? w;
  // The two windows' summed normalised weights per [layer][expert], slid one token at a time
  // (memory L·E, not T·L·E: prefix sums over a 5,000-token × 48-layer × 128-expert trace were 260 MB).
  const before = new Float64Array(L * E),
    after = new Float64Array(L * E);
  const addToken = (into: Float64Array, t: number, sign: number) => {
    for (let m = 0; m < L; m++) {
      let sum = 0;
      for (let j = 0; j < K; j++) sum += Math.max(0, c.weights[(t * L + m) * K + j]);
      if (!(sum > 0)) continue;
      for (let j = 0; j < K; j++) {
        const e = c.experts[(t * L + m) * K + j];
        if (e >= 0 && e < E) into[m * E + e] += (sign * Math.max(0, c.weights[(t * L + m) * K + j])) / sum;
      }
    }
  };
  const scores = new Float64Array(T).fill(NaN);
  const valid: number[] = [];
  if (2 * w <= T) {
    for (let t = 0; t < w; t++) addToken(before, t, 1);
    for (let t = w; t < 2 * w; t++) addToken(after, t, 1);
  }
  for (let t = w; t + w <= T; t++) {
    if (t > w) {
      // Token t-1 moves from the window after to the window before; t-1-w leaves, t+w-1 enters.
      addToken(before, t - 1 - w, -1);
      addToken(before, t - 1, 1);
      addToken(after, t - 1, -1);
      addToken(after, t + w - 1, 1);
    }
    let s = 0;
    for (let m = 0; m < L; m++) {
      let a = 0,
        b = 0;
      for (let e = 0; e < E; e++) {
        a += before[m * E + e];
        b += after[m * E + e];
      }
      // Each token adds 1 (or 0 when all its weights are 0): below ½ the window holds no weight (sliding leaves rounding dust).
      let l1 = 0;
      for (let e = 0; e < E; e++) {
        const pa = a > 0.5 ? before[m * E + e] / a : 0;
        const pb = b > 0.5 ? after[m * E + e] / b : 0;
        l1 += Math.abs(pa - pb);
      }
      s += l1 / 2;
    }
    scores[t] = L ? s / L : 0;
    valid.push(scores[t]);
  }
  let threshold = opts.threshold;
  if (threshold === undefined) {
    const median = (xs: number[]) => {
      const s = [...xs].sort((a, b) => a - b);
      return s.length ? (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : 0;
    };
    const med = median(valid);
    const mad = median(valid.map((x) => Math.abs(x - med)));
    threshold = Math.max(opts.minScore ?? 0.3, med + (opts.z ?? 3) * 1.4826 * mad);
  }
  const candidates: number[] = [];
  for (let t = w; t + w <= T; t++) {
    if (!(scores[t] >= threshold)) continue;
    const l = t > w ? scores[t - 1] : -Infinity,
      r = t + 1 + w <= T ? scores[t + 1] : -Infinity;
    if (scores[t] > l && scores[t] >= r) candidates.push(t); // first of a plateau
  }
  candidates.sort((a, b) => scores[b] - scores[a] || a - b);
  const points: number[] = [];
  for (const t of candidates) if (points.every((p) => Math.abs(p - t) >= minGap)) points.push(t);
  points.sort((a, b) => a - b);
  return { scores, threshold, points };
}

/** Segments between change points, named "segment 1", "segment 2", … (each its own domain). */
export function changePointSegments(nTokens: number, points: number[]): DomainSegment[] {
  const cuts = [0, ...points.filter((p) => p > 0 && p < nTokens), nTokens];
  const segs: DomainSegment[] = [];
  for (let i = 0; i + 1 < cuts.length; i++) {
    if (cuts[i + 1] > cuts[i]) segs.push({ start: cuts[i], end: cuts[i + 1], domain: `segment ${segs.length + 1}`, source: "change-point" });
  }
  return segs;
}

export interface DomainExperts {
  domains: string[];
  /** MoE-layer ordinal → domain index → the domain's expert (−1: the domain has no tokens). */
  experts: number[][];
  /** MoE-layer ordinal → domain index → expert → usage share inside the domain. */
  usage: number[][][];
  /** Tokens per domain. */
  tokens: number[];
}

/**
 * Domain experts per MoE layer, pooled over one or more labelled traces: for each domain d,
 * argmax over experts of usage share in d minus usage share in all other domains together.
 */
export function domainExperts(docs: Array<{ trace: Trace; segments: DomainSegment[] }>, domainOrder?: string[]): DomainExperts {
  if (!docs.length) throw new Error("domain experts need at least one labelled trace");
  const { n_moe_layers: L } = docs[0].trace.header;
  const E = docs[0].trace.header.model.n_expert;
  const domains = domainOrder ? [...domainOrder] : [];
  for (const d of docs) for (const s of d.segments) if (!domains.includes(s.domain)) domains.push(s.domain);
  const D = domains.length;
  const counts = Array.from({ length: L }, () => Array.from({ length: D }, () => new Array<number>(E).fill(0)));
  const tokens = new Array<number>(D).fill(0);
  for (const { trace, segments } of docs) {
    const K = trace.header.k;
    const c = trace.columns;
    if (trace.header.n_moe_layers !== L || trace.header.model.n_expert !== E) throw new Error("domain experts: traces of different models");
    for (const s of segments) {
      const di = domains.indexOf(s.domain);
      for (let t = s.start; t < s.end; t++) {
        tokens[di]++;
        for (let m = 0; m < L; m++)
          for (let j = 0; j < K; j++) {
            const at = (t * L + m) * K + j;
            if (c.weights[at] !== 0 && c.experts[at] >= 0 && c.experts[at] < E) counts[m][di][c.experts[at]]++;
          }
      }
    }
  }
  const totalTokens = tokens.reduce((a, b) => a + b, 0);
  const usage = counts.map((row) => row.map((u, di) => u.map((x) => (tokens[di] ? x / tokens[di] : 0))));
  const experts = counts.map((row) =>
    row.map((u, di) => {
      if (!tokens[di]) return -1;
      const others = totalTokens - tokens[di];
      let best = -1,
        bestDiff = -Infinity;
      for (let e = 0; e < E; e++) {
        let otherCount = 0;
        for (let dj = 0; dj < D; dj++) if (dj !== di) otherCount += row[dj][e];
        const diff = u[e] / tokens[di] - (others ? otherCount / others : 0);
        if (diff > bestDiff + 1e-12) {
          best = e;
          bestDiff = diff;
        }
      }
      return best;
    }),
  );
  return { domains, experts, usage, tokens };
}

/** A transition step: the last token of `from`, predicting the first token of `to`. */
export interface TransitionStep {
  token: number;
  from: string;
  to: string;
  fromSegment: number;
  toSegment: number;
}

export function transitionSteps(segments: DomainSegment[]): TransitionStep[] {
  const out: TransitionStep[] = [];
  for (let i = 0; i + 1 < segments.length; i++) {
    const a = segments[i],
      b = segments[i + 1];
    if (a.end !== b.start || a.domain === b.domain || a.end <= a.start || b.end <= b.start) continue;
    out.push({ token: a.end - 1, from: a.domain, to: b.domain, fromSegment: i, toSegment: i + 1 });
  }
  return out;
}

/** Smallest K such that `rank ≤ K` in at least `coverage` of the cases (NaN when there are none). */
export function kCoverage(ranks: number[], coverage = 0.99): number {
  const finite = ranks.filter((r) => Number.isFinite(r)).sort((a, b) => a - b);
  if (!finite.length) return NaN;
  return finite[Math.max(0, Math.ceil(coverage * finite.length - 1e-9) - 1)];
}

/** “Affinity is not enough”'s K99: log δ / log(1 − p), the draws from a router that puts p on the right
 *  expert needed to find it with probability 1 − δ (∞ when p = 0, 1 when p = 1, NaN when p is unknown). */
export function affinityK99(p: number, delta = 0.01): number {
  if (!Number.isFinite(p)) return NaN;
  if (p >= 1) return 1;
  if (p <= 0) return Infinity;
  return Math.log(delta) / Math.log(1 - p);
}

/** Full router distribution of token t at MoE-layer ordinal m (length n_expert); throws unless the trace holds it. */
export function routerDistribution(trace: Trace, t: number, m: number): Float64Array {
  const { n_moe_layers: L, top_n: N } = trace.header;
  const E = trace.header.model.n_expert;
  const c = trace.columns;
  if (N < E || !c.topIds || !c.topProbs) {
    throw new Error(`transition metrics need the full router distribution: trace with top_n = n_expert (${E}), this trace has top_n = ${N}`);
  }
  const p = new Float64Array(E);
  for (let i = 0; i < N; i++) {
    const e = c.topIds[(t * L + m) * N + i];
    if (e >= 0 && e < E) p[e] = c.topProbs[(t * L + m) * N + i];
  }
  return p;
}

/** Characters of token t (UTF-8 lead bytes of its span in `text` when given, else of its piece). */
export function tokenChars(trace: Trace, t: number, textBytes?: Uint8Array): number {
  const c = trace.columns;
  if (textBytes) {
    let n = 0;
    for (let b = c.byteStart[t]; b < c.byteEnd[t] && b < textBytes.length; b++) if ((textBytes[b] & 0xc0) !== 0x80) n++;
    return n;
  }
  return [...c.pieces[t]].length;
}

/** One transition with its metrics (a superset of the panel's `TransitionMetrics`). */
export interface TransitionDetail extends TransitionMetrics {
  /** Byte offset of the first new-domain token. */
  byte: number;
  /** Per MoE layer: the new domain's expert (−1 when unknown). */
  newExpert: number[];
  /** Characters of the predicted (first new-domain) token. */
  chars: number;
  /** nll / ln 2 / chars. */
  bpc: number;
}

export interface TransitionSummary {
  transitions: number;
  /** (transition, layer) cases with a known domain expert. */
  cases: number;
  /** Mean probability on the new domain's expert over all cases. */
  meanProb: number;
  meanRank: number;
  /** Share of cases where it is the router's top-1. */
  top1: number;
  /** K99 by rank coverage (see the header). */
  k99: number;
  /** K99 as the Affinity text defines it: affinityK99(meanProb). */
  k99Affinity: number;
  /** Mean NLL (nats) at transition steps / inside domains. */
  nllTransition: number;
  nllInside: number;
  bpcTransition: number;
  bpcInside: number;
  insideTokens: number;
}

export interface TransitionAnalysis {
  segments: DomainSegment[];
  /** Model layer index of each MoE-layer ordinal. */
  layers: number[];
  domainExperts: DomainExperts;
  transitions: TransitionDetail[];
  summary: TransitionSummary;
}

/**
 * Transition metrics of one trace with its segments. `experts` fixes the domain experts
 * (e.g. from the baseline trace when comparing policies); by default they come from this trace.
 * `text` (the traced text) gives exact character counts for BPC.
 */
export function analyzeTransitions(
  trace: Trace,
  segments: DomainSegment[],
  opts: { experts?: DomainExperts; text?: string; coverage?: number } = {},
): TransitionAnalysis {
  const L = trace.header.n_moe_layers;
  const c = trace.columns;
  const de = opts.experts ?? domainExperts([{ trace, segments }]);
  const textBytes = opts.text !== undefined ? new Uint8Array(Buffer.from(opts.text, "utf8")) : undefined;
  const steps = transitionSteps(segments);
  const transitions: TransitionDetail[] = [];
  const ranks: number[] = [];
  const probs: number[] = [];
  for (const s of steps) {
    const t = s.token;
    if (t + 1 >= c.count) continue;
    const di = de.domains.indexOf(s.to);
    const probNewExpert: number[] = [],
      rankNewExpert: number[] = [],
      newExpert: number[] = [];
    for (let m = 0; m < L; m++) {
      const e = di >= 0 ? de.experts[m][di] : -1;
      newExpert.push(e);
      if (e < 0) {
        probNewExpert.push(NaN);
        rankNewExpert.push(NaN);
        continue;
      }
      const p = routerDistribution(trace, t, m);
      let rank = 1;
      for (let x = 0; x < p.length; x++) if (p[x] > p[e]) rank++;
      probNewExpert.push(p[e]);
      rankNewExpert.push(rank);
      probs.push(p[e]);
      ranks.push(rank);
    }
    const nll = c.nll[t];
    const chars = Math.max(1, tokenChars(trace, t + 1, textBytes));
    transitions.push({
      token: t,
      from: s.from,
      to: s.to,
      probNewExpert,
      rankNewExpert,
      nll,
      byte: c.byteStart[t + 1],
      newExpert,
      chars,
      bpc: nll / Math.LN2 / chars,
    });
  }
  let insideNll = 0,
    insideChars = 0,
    insideN = 0;
  for (const seg of segments)
    for (let t = seg.start; t + 1 < seg.end; t++) {
      if (!Number.isFinite(c.nll[t])) continue;
      insideNll += c.nll[t];
      insideChars += Math.max(1, tokenChars(trace, t + 1, textBytes));
      insideN++;
    }
  const finiteT = transitions.filter((x) => Number.isFinite(x.nll));
  return {
    segments,
    layers: trace.header.model.moe_layers,
    domainExperts: de,
    transitions,
    summary: {
      transitions: transitions.length,
      cases: ranks.length,
      meanProb: finiteMean(probs),
      meanRank: finiteMean(ranks),
      top1: ranks.length ? ranks.filter((r) => r === 1).length / ranks.length : NaN,
      k99: kCoverage(ranks, opts.coverage ?? 0.99),
      k99Affinity: affinityK99(finiteMean(probs)),
      nllTransition: finiteMean(finiteT.map((x) => x.nll)),
      nllInside: insideN ? insideNll / insideN : NaN,
      bpcTransition: finiteMean(finiteT.map((x) => x.bpc)),
      bpcInside: insideChars ? insideNll / Math.LN2 / insideChars : NaN,
      insideTokens: insideN,
    },
  };
}

/** Segments of a traced text: from its labels when it has any, else from routing change points. */
export function segmentsFor(trace: Trace, labelled: LabelledText, cp: ChangePointOptions = {}): DomainSegment[] {
  if (labelled.spans.length) return spansToSegments(trace, labelled.spans);
  return changePointSegments(trace.columns.count, detectChangePoints(trace, cp).points);
}
