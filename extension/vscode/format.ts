// Pure presentation helpers for the editor layer (hover text, shift marks, status text).
// No `vscode` import, so test/unit/hover-format.test.ts loads it.

import { fileName } from "../../shared/format";
import { finiteMean } from "../../shared/metrics";
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
  /** The model the server runs now, when it is not the one that made this trace (trace header's model path). */
  otherModelNow?: string;
}

const LN2 = Math.log(2);

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

/**
 * Text as Markdown that renders as exactly that text: every character Markdown could read
 * as syntax (links, images, emphasis, code, HTML, headings, lists, tables) is
 * backslash-escaped, and line breaks become spaces. Everything a hover or decoration shows
 * that comes from a document (fence languages, domain names, token text) goes through it.
 */
export function mdEscape(s: string): string {
  return s.replace(/[\\`*_{}[\]()<>#+\-.!|~&:"']/g, (c) => "\\" + c).replace(/\r?\n|\r/g, " ");
}

/** The hover of a domain-transition mark, as Markdown (the domains are the document's text). */
export function transitionHover(from: string, to: string, detail: string): string {
  return mdEscape(`MoE Lens: domain transition ${from} → ${to}${detail ? ` ${detail}` : ""}`);
}

/** Hovers of more layers than this fold their header into one summary line, so 48 layers fit ~50 lines. */
export const HOVER_FULL_LAYERS = 12;
/** The widest line a hover writes (characters), so it never wraps in a hover of normal width. */
export const HOVER_MAX_LINE = 100;

/** A gate weight in exactly three characters: ".17", "1.0", " --" for a dropped slot (weight 0), "  ?" when unknown. */
export function compactWeight(w: number): string {
  if (!Number.isFinite(w)) return "  ?";
  if (w === 0) return " --";
  if (w >= 0.995) return "1.0";
  return w.toFixed(2).replace(/^0/, "");
}

/**
 * One line per MoE layer, a layer × k table in fixed-width cells:
 * `L12  e3   .61 e117 .39 e8    --  H=1.20 act 2`: layer index (model numbering), the k
 * selected experts with their final weights in router order (a slot the policy dropped,
 * weight 0, shows `--`; an empty slot blanks), router entropy in nats, experts active after
 * AMG. Cells have one width per hover, so 48 layers × k 8 of 128 experts stay ~90 characters.
 */
export function layerLines(t: TokenInfo, ctx: HoverContext): string[] {
  const L = t.entropy.length,
    K = ctx.k;
  const layerW = Math.max(...ctx.moeLayers.map((l) => String(l).length), String(L - 1).length);
  let maxExpert = 0;
  for (let i = 0; i < L * K; i++) maxExpert = Math.max(maxExpert, t.experts[i]);
  const idW = 1 + String(maxExpert).length;
  const lines: string[] = [];
  for (let l = 0; l < L; l++) {
    const cells: string[] = [];
    for (let s = 0; s < K; s++) {
      const e = t.experts[l * K + s];
      cells.push(e < 0 ? " ".repeat(idW + 4) : `${`e${e}`.padEnd(idW)} ${compactWeight(t.weights[l * K + s])}`);
    }
    const layer = ctx.moeLayers[l] ?? l;
    lines.push(`L${String(layer).padEnd(layerW)}  ${cells.join(" ")}  H=${t.entropy[l].toFixed(2)} act ${t.active[l]}`);
  }
  return lines;
}

/** `s` cut to `max` characters, the cut marked with "…". */
function clip(s: string, max: number): string {
  return s.length <= max ? s : s.slice(0, Math.max(0, max - 1)) + "…";
}

/**
 * The hover for one token, as Markdown: a header, then a code block of layer lines. Up to
 * HOVER_FULL_LAYERS layers the header has two lines (token and id; NLL in nats and bits,
 * mean entropy, active experts, policy); beyond, one summary line of at most HOVER_MAX_LINE
 * characters (NLL in nats and entropy in nats without their units; the token text and the
 * policy label clipped to fit), so a 48-layer token is 51 lines.
 */
export function formatTokenHover(t: TokenInfo, ctx: HoverContext): string {
  const nllNats = Number.isFinite(t.nll) ? `NLL ${t.nll.toFixed(2)} nats` : "NLL n/a";
  const act = `active ${finiteMean(t.active).toFixed(2)}/${ctx.trainedK}`;
  const meanH = `mean H ${finiteMean(t.entropy).toFixed(2)} nats`;
  const piece = (p: string) => `\`${p.replace(/`/g, "ˋ")}\``;
  let head: string;
  if (t.entropy.length <= HOVER_FULL_LAYERS) {
    const nll = Number.isFinite(t.nll) ? `${nllNats} (${(t.nll / LN2).toFixed(2)} bits)` : nllNats;
    head = `**MoE Lens** · token ${t.index} ${piece(showPiece(t.piece))} (id ${t.tokenId})  \n${nll} · ${meanH} · ${act} · ${mdEscape(ctx.policyLabel)}`;
  } else {
    const nll = Number.isFinite(t.nll) ? `NLL ${t.nll.toFixed(2)}` : nllNats;
    const start = `**MoE Lens** · token ${t.index} ${piece(clip(showPiece(t.piece), 10))} · ${nll} · mean H ${finiteMean(t.entropy).toFixed(2)} · act ${finiteMean(t.active).toFixed(2)}/${ctx.trainedK} · `;
    // Clip before escaping, so a cut never splits an escape; then shorten until the escaped label fits.
    let room = HOVER_MAX_LINE - start.length;
    let policy = mdEscape(clip(ctx.policyLabel, room));
    while (policy.length > HOVER_MAX_LINE - start.length && room > 1) policy = mdEscape(clip(ctx.policyLabel, --room));
    head = start + policy;
  }
  const notes: string[] = [];
  if (ctx.alsoTokens && ctx.alsoTokens.length > 1) notes.push(`This character is split across tokens ${ctx.alsoTokens.join(", ")}.`);
  if (ctx.truncated) notes.push("The text changed after this trace; tokens from the edit on were dropped.");
  if (ctx.otherModelNow) notes.push(`Stale: traced with another model; the server now runs ${modelLabel(ctx.otherModelNow)}. Trace again to see its routing.`);
  return [head, "```text", ...layerLines(t, ctx), "```", ...notes.map((n) => `*${n}*`)].join("\n");
}

/**
 * Which shifts to mark. Absolute values depend on the model (with k=8 of 128 experts almost
 * every token changes most of its experts), so the marks are relative to the trace:
 * medium at mean + 1σ, strong at mean + 2σ, and never below 0.2 (nearly constant routing).
 */
export function shiftThresholds(shifts: ArrayLike<number>): { medium: number; strong: number } {
  const n = shifts.length - 1; // token 0 has no predecessor
  if (n < 2) return { medium: Infinity, strong: Infinity };
  let sum = 0,
    sq = 0;
  for (let i = 1; i < shifts.length; i++) {
    sum += shifts[i];
    sq += shifts[i] * shifts[i];
  }
  const mean = sum / n;
  const sd = Math.sqrt(Math.max(0, sq / n - mean * mean));
  return { medium: Math.max(0.2, mean + sd), strong: Math.max(0.2, mean + 2 * sd) };
}

/** Short model name for the status bar: file name without ".gguf". */
/** What the status bar needs to say; `loadedModelPath` is the running server's model (only when ready). */
export interface StatusInput {
  state: "stopped" | "starting" | "ready" | "restarting" | "failed";
  /** The model the server runs or is starting with. */
  modelPath: string;
  loadedModelPath?: string;
  tracing: boolean;
  policyLabel: string;
  /** The last finished trace: its average active experts, k, and the model that made it. */
  last?: { avgActive: number; k: number; modelPath: string };
}

/**
 * The status bar's text (without its icon): model · state · policy · active experts. The
 * active-expert figure is shown only while the server is ready with the model that made the
 * last trace, so a model switch never shows the old model's figure beside the new one.
 */
export function statusText(i: StatusInput): string {
  const model = modelLabel((i.state === "ready" && i.loadedModelPath) || i.modelPath || "demo-moe");
  const state = i.tracing ? "tracing" : i.state === "starting" || i.state === "restarting" ? `loading ${model}` : i.state;
  const current = i.last && i.state === "ready" && i.last.modelPath === i.loadedModelPath;
  const act = current ? ` · act ${i.last!.avgActive.toFixed(2)}/${i.last!.k}` : "";
  return `${model} · ${state} · ${i.policyLabel}${act}`;
}

export function modelLabel(path: string): string {
  return fileName(path).replace(/\.gguf$/i, "");
}
