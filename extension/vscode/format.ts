// Pure presentation helpers for the editor layer (hover text, routing shifts, domain
// transitions, status text). No `vscode` import, so test/unit/hover-format.test.ts loads it.

import type { TokenInfo } from "../core/trace-store";

export interface HoverContext {
  /** Model layer index of each traced MoE layer (header.model.moe_layers). */
  moeLayers: number[];
  /** Expert slots per layer. */
  k: number;
  /** Trained k (for "active 1.5/2"). */
  trainedK: number;
  policyLabel: string;
  truncated?: boolean;
  /** Tokens sharing this character (a token split a multi-byte character). */
  alsoTokens?: number[];
}

const LN2 = Math.log(2);

/** ".61" for 0.61, "1.00" for 1, "0" for 0 — weights in two digits, without the leading zero. */
export function fmtWeight(w: number): string {
  if (!Number.isFinite(w)) return "?";
  if (w === 0) return "0";
  if (w >= 0.995) return w.toFixed(2);
  return w.toFixed(2).replace(/^0/, "");
}

/** A token's text as shown in a hover: visible whitespace, control characters escaped. */
export function showPiece(p: string): string {
  return p
    .replace(/\\/g, "\\\\")
    .replace(/\r/g, "\\r")
    .replace(/\n/g, "\\n")
    .replace(/\t/g, "\\t")
    .replace(/ /g, "·")
    .replace(/[\u0000-\u001f\u007f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

/** Escapes text for Markdown outside code. */
export function mdEscape(s: string): string {
  return s.replace(/[\\`*_[\]<>|~]/g, (c) => "\\" + c);
}

/**
 * One line per MoE layer, `L12  e3 .61 · e7 .39  H=1.20  act 2`: layer index (model
 * numbering), selected experts with their final weights in router order (a zero-gated
 * expert shows weight 0), router entropy in nats, experts active after AMG.
 */
export function layerLines(t: TokenInfo, ctx: HoverContext): string[] {
  const L = t.entropy.length, K = ctx.k;
  const layerW = Math.max(...ctx.moeLayers.map((l) => String(l).length), String(L - 1).length);
  const lines: string[] = [];
  // Pad the expert column to the widest row so H= and act line up.
  const cols: string[] = [];
  for (let l = 0; l < L; l++) {
    const parts: string[] = [];
    for (let s = 0; s < K; s++) {
      const e = t.experts[l * K + s];
      if (e < 0) continue;
      parts.push(`e${e} ${fmtWeight(t.weights[l * K + s])}`);
    }
    cols.push(parts.join(" · "));
  }
  const colW = Math.max(0, ...cols.map((c) => c.length));
  for (let l = 0; l < L; l++) {
    const layer = ctx.moeLayers[l] ?? l;
    lines.push(`L${String(layer).padEnd(layerW)}  ${cols[l].padEnd(colW)}  H=${t.entropy[l].toFixed(2)}  act ${t.active[l]}`);
  }
  return lines;
}

export function meanOf(a: ArrayLike<number>): number {
  if (!a.length) return NaN;
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i];
  return s / a.length;
}

/** The hover for one token, as Markdown (a summary line, then a code block of layer lines). */
export function formatTokenHover(t: TokenInfo, ctx: HoverContext): string {
  const nll = Number.isFinite(t.nll) ? `NLL ${t.nll.toFixed(2)} nats (${(t.nll / LN2).toFixed(2)} bits)` : "NLL n/a";
  const act = meanOf(t.active);
  const head =
    `**MoE Lens** · token ${t.index} \`${showPiece(t.piece).replace(/`/g, "ˋ")}\` (id ${t.tokenId})  \n` +
    `${nll} · mean H ${meanOf(t.entropy).toFixed(2)} nats · active ${act.toFixed(2)}/${ctx.trainedK} · ${mdEscape(ctx.policyLabel)}`;
  const notes: string[] = [];
  if (ctx.alsoTokens && ctx.alsoTokens.length > 1) notes.push(`This character is split across tokens ${ctx.alsoTokens.join(", ")}.`);
  if (ctx.truncated) notes.push("The text changed after this trace; tokens from the edit on were dropped.");
  return [head, "```text", ...layerLines(t, ctx), "```", ...notes.map((n) => `*${n}*`)].join("\n");
}

/**
 * Routing shift of each token from the previous one: the mean over MoE layers of
 * 1 − Jaccard(S_t, S_{t−1}), with S the experts that kept a non-zero weight.
 * Token 0 gets 0. `experts`/`weights` are row-major [token][layer][slot].
 */
export function routingShifts(experts: Int32Array, weights: Float32Array, n: number, L: number, K: number): Float32Array {
  const out = new Float32Array(n);
  const prev = new Set<number>(), cur = new Set<number>();
  for (let t = 1; t < n; t++) {
    let sum = 0;
    for (let l = 0; l < L; l++) {
      prev.clear();
      cur.clear();
      for (let s = 0; s < K; s++) {
        const a = ((t - 1) * L + l) * K + s, b = (t * L + l) * K + s;
        if (weights[a] !== 0 && experts[a] >= 0) prev.add(experts[a]);
        if (weights[b] !== 0 && experts[b] >= 0) cur.add(experts[b]);
      }
      let inter = 0;
      for (const e of cur) if (prev.has(e)) inter++;
      const union = prev.size + cur.size - inter;
      sum += union === 0 ? 0 : 1 - inter / union;
    }
    out[t] = L ? sum / L : 0;
  }
  return out;
}

/**
 * Which shifts to mark. Absolute values depend on the model (with k=8 of 128 experts almost
 * every token changes most of its experts), so the marks are relative to the trace:
 * medium at mean + 1σ, strong at mean + 2σ, and never below 0.2 (nearly constant routing).
 */
export function shiftThresholds(shifts: ArrayLike<number>): { medium: number; strong: number } {
  const n = shifts.length - 1; // token 0 has no predecessor
  if (n < 2) return { medium: Infinity, strong: Infinity };
  let sum = 0, sq = 0;
  for (let i = 1; i < shifts.length; i++) {
    sum += shifts[i];
    sq += shifts[i] * shifts[i];
  }
  const mean = sum / n;
  const sd = Math.sqrt(Math.max(0, sq / n - mean * mean));
  return { medium: Math.max(0.2, mean + sd), strong: Math.max(0.2, mean + 2 * sd) };
}

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
 * `lang` → prose at the closing one. Fences of ``` or ~~~ (3+), any indentation up to 3.
 */
export function fenceBoundaries(text: string, prose = "prose"): DomainBoundary[] {
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

/** Short model name for the status bar: file name without ".gguf". */
export function modelLabel(path: string): string {
  const base = path.split(/[\\/]/).pop() || path;
  return base.replace(/\.gguf$/i, "");
}
