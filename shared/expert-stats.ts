// Per-layer expert statistics over a trace's selection columns: load and gate-weight mass
// per expert, balance figures, class specialisation (lift and mutual information),
// "top experts for this selection", co-activation within a layer, routing transitions
// between consecutive layers, a small token-class classifier, and the ExpertAtlas that
// accumulates class × expert counts over many documents. Every figure is PER LAYER: expert
// e of layer 0 and expert e of layer 30 are different experts and are never added together.
// A selection counts only when its gate weight is > 0 (weight 0 = dropped by a policy) and
// its expert id is in [0, E) (isSelection in metrics.ts, whose RoutingColumns is read here).
// Definitions: docs/metrics.md, "Per-layer expert figures".
// Pure code over typed arrays (no Node, no DOM): the host, the CLI and the panel import it.

import { isSelection, type RoutingColumns } from "./metrics";

export type { RoutingColumns };
/** Tokens to include: a mask (1 = in) of length count, or undefined for all. */
export type TokenMask = Uint8Array | undefined;

function checkLayer(c: RoutingColumns, layer: number, what = "layer"): void {
  if (!Number.isInteger(layer) || layer < 0 || layer >= c.L) throw new Error(`${what} ${layer} is out of range: the trace has ${c.L} MoE layers`);
}

function checkMask(c: RoutingColumns, mask: TokenMask): void {
  if (mask && mask.length !== c.count) throw new Error(`token mask has ${mask.length} entries, the trace has ${c.count} tokens`);
}

/** Calls visit(expert, weight) for each kept selection (weight > 0, id in [0, E)) of token t in one layer. */
function forEachKept(c: RoutingColumns, t: number, layer: number, visit: (expert: number, weight: number) => void): void {
  const at = (t * c.L + layer) * c.K;
  for (let j = 0; j < c.K; j++) {
    const e = c.experts[at + j],
      w = c.weights[at + j];
    if (isSelection(e, w, c.E)) visit(e, w);
  }
}

/** Tokens [from, to) of a trace of `count` tokens as a TokenMask. */
export function tokenRangeMask(count: number, from: number, to: number): Uint8Array {
  const mask = new Uint8Array(count);
  mask.fill(1, Math.max(0, from), Math.min(count, to));
  return mask;
}

/** Selections (weight > 0) of each expert in one layer over the masked tokens: Float64Array(E). */
export function layerLoad(c: RoutingColumns, layer: number, mask?: TokenMask): Float64Array {
  checkLayer(c, layer);
  checkMask(c, mask);
  const load = new Float64Array(c.E);
  for (let t = 0; t < c.count; t++) if (!mask || mask[t]) forEachKept(c, t, layer, (e) => load[e]++);
  return load;
}

/** Sum of gate weights per expert in one layer: Float64Array(E). */
export function layerWeightMass(c: RoutingColumns, layer: number, mask?: TokenMask): Float64Array {
  checkLayer(c, layer);
  checkMask(c, mask);
  const mass = new Float64Array(c.E);
  for (let t = 0; t < c.count; t++) if (!mask || mask[t]) forEachKept(c, t, layer, (e, w) => (mass[e] += w));
  return mass;
}

/** layerLoad for every layer: Float64Array(L*E), row = layer. The "expert usage" of the panel's and the report's charts. */
export function loadMatrix(c: RoutingColumns, mask?: TokenMask): Float64Array {
  const out = new Float64Array(c.L * c.E);
  for (let l = 0; l < c.L; l++) out.set(layerLoad(c, l, mask), l * c.E);
  return out;
}

export interface BalanceFigures {
  total: number;
  mean: number;
  cv: number;
  maxOverMean: number;
  entropyBits: number;
  normalisedEntropy: number;
  dead: number;
}

/** Balance of one layer's load vector (cv = population std/mean; entropy of load/total in bits, normalised by log2 E; dead = experts with load 0). All 0/NaN-safe for an empty load (total 0: cv 0, maxOverMean 0, entropy 0, dead = E). */
export function balance(load: ArrayLike<number>): BalanceFigures {
  const E = load.length;
  let total = 0,
    max = 0,
    dead = 0;
  for (let e = 0; e < E; e++) {
    total += load[e];
    if (load[e] > max) max = load[e];
    if (load[e] === 0) dead++;
  }
  if (!(total > 0)) return { total: 0, mean: 0, cv: 0, maxOverMean: 0, entropyBits: 0, normalisedEntropy: 0, dead: E };
  const mean = total / E;
  let squares = 0,
    entropyBits = 0;
  for (let e = 0; e < E; e++) {
    squares += (load[e] - mean) ** 2;
    const p = load[e] / total;
    if (p > 0) entropyBits -= p * Math.log2(p);
  }
  // One expert has no spread to normalise by: its usage is as even as it can be.
  const normalisedEntropy = E > 1 ? entropyBits / Math.log2(E) : 0;
  return { total, mean, cv: Math.sqrt(squares / E) / mean, maxOverMean: max / mean, entropyBits, normalisedEntropy, dead };
}

/** One layer's most used experts, highest load first, and the share of the rest. */
export interface RankedLoad {
  /** Expert ids by load (ties by id), at most n of them, only experts with load > 0. */
  experts: number[];
  /** Each one's share of the layer's selections (load / total). */
  shares: number[];
  /** The share of every other expert together (0 when all fit). */
  otherShare: number;
}

/**
 * A layer's n most used experts by rank, as shares of its selections. Ranks rather than ids
 * compare layers: the 1st expert of layer 0 and the 1st of layer 30 are different experts,
 * but both bars say how concentrated their layer's load is. Empty for an empty load.
 */
export function rankedLoad(load: ArrayLike<number>, n: number): RankedLoad {
  let total = 0;
  for (let e = 0; e < load.length; e++) total += load[e];
  if (!(total > 0)) return { experts: [], shares: [], otherShare: 0 };
  const experts = Array.from({ length: load.length }, (_, e) => e)
    .filter((e) => load[e] > 0)
    .sort((a, b) => load[b] - load[a] || a - b)
    .slice(0, n);
  const shares = experts.map((e) => load[e] / total);
  const shown = experts.reduce((s, e) => s + load[e], 0);
  return { experts, shares, otherShare: (total - shown) / total };
}

export interface ClassSpecialisation {
  layer: number;
  nClasses: number;
  E: number;
  /** counts[c*E+e]: selections of e by tokens of class c */
  counts: Float64Array;
  classTokens: Float64Array;
  /** lift[c*E+e] = P(e | c) / P(e) (NaN where undefined) */
  lift: Float64Array;
  /** mutual information I(class; expert) in bits, over selections (each of a token's kept slots is one (class, expert) observation) */
  miBits: number;
}

/**
 * Lift and mutual information from class × expert selection counts; the one place this
 * math lives (specialisation() on one trace and ExpertAtlas.specialisation() both use it).
 * P(e | c) = counts[c,e] / (selections of class c), P(e) = (selections of e) / (all selections);
 * lift is NaN where P(e | c) or P(e) is undefined or P(e) = 0.
 */
export function specialisationFromCounts(layer: number, nClasses: number, E: number, counts: Float64Array, classTokens: Float64Array): ClassSpecialisation {
  if (counts.length !== nClasses * E) throw new Error(`class × expert counts have ${counts.length} entries, expected ${nClasses} × ${E}`);
  const classTotal = new Float64Array(nClasses),
    expertTotal = new Float64Array(E);
  let total = 0;
  for (let c = 0; c < nClasses; c++)
    for (let e = 0; e < E; e++) {
      const n = counts[c * E + e];
      classTotal[c] += n;
      expertTotal[e] += n;
      total += n;
    }
  const lift = new Float64Array(nClasses * E).fill(NaN);
  let miBits = 0;
  for (let c = 0; c < nClasses; c++) {
    if (!(classTotal[c] > 0)) continue;
    for (let e = 0; e < E; e++) {
      if (!(expertTotal[e] > 0)) continue;
      const n = counts[c * E + e];
      lift[c * E + e] = n / classTotal[c] / (expertTotal[e] / total);
      // p(c,e) log2(p(c,e) / (p(c) p(e))) with p(c,e) = n/total.
      if (n > 0) miBits += (n / total) * Math.log2((n * total) / (classTotal[c] * expertTotal[e]));
    }
  }
  // Rounding can leave a tiny negative for independent data; MI is never below 0.
  return { layer, nClasses, E, counts, classTokens, lift, miBits: Math.max(0, miBits) };
}

/** Adds one layer's class × expert selection counts and class token counts of a trace to the given arrays. */
function accumulateClassCounts(c: RoutingColumns, layer: number, labels: Int32Array, nClasses: number, counts: Float64Array, classTokens: Float64Array): void {
  for (let t = 0; t < c.count; t++) {
    const cls = labels[t];
    if (cls < 0 || cls >= nClasses) continue;
    classTokens[cls]++;
    const row = cls * c.E;
    forEachKept(c, t, layer, (e) => counts[row + e]++);
  }
}

function checkLabels(c: RoutingColumns, labels: Int32Array, nClasses: number): void {
  if (labels.length !== c.count) throw new Error(`class labels have ${labels.length} entries, the trace has ${c.count} tokens`);
  if (!Number.isInteger(nClasses) || nClasses < 1) throw new Error(`number of classes must be a positive integer, got ${nClasses}`);
  for (let t = 0; t < labels.length; t++)
    if (labels[t] < -1 || labels[t] >= nClasses)
      throw new Error(`class label ${labels[t]} of token ${t} is out of range: expected -1 (not counted) or 0…${nClasses - 1}`);
}

/** labels: class id per token (-1 = not counted). */
export function specialisation(c: RoutingColumns, layer: number, labels: Int32Array, nClasses: number): ClassSpecialisation {
  checkLayer(c, layer);
  checkLabels(c, labels, nClasses);
  const counts = new Float64Array(nClasses * c.E),
    classTokens = new Float64Array(nClasses);
  accumulateClassCounts(c, layer, labels, nClasses, counts, classTokens);
  return specialisationFromCounts(layer, nClasses, c.E, counts, classTokens);
}

export interface ExpertForSelection {
  expert: number;
  inside: number;
  outside: number;
  /** share of the selection's selections / share outside; Infinity when outside is 0 and inside > 0 */
  lift: number;
}

/** Experts of one layer ranked by lift for the masked tokens against the rest (ties by inside count), top n, only experts with inside > 0. */
export function topExpertsFor(c: RoutingColumns, layer: number, mask: Uint8Array, n: number): ExpertForSelection[] {
  checkLayer(c, layer);
  checkMask(c, mask);
  const inside = new Float64Array(c.E),
    outside = new Float64Array(c.E);
  for (let t = 0; t < c.count; t++) forEachKept(c, t, layer, (e) => (mask[t] ? inside : outside)[e]++);
  const insideTotal = inside.reduce((s, x) => s + x, 0),
    outsideTotal = outside.reduce((s, x) => s + x, 0);
  const ranked: ExpertForSelection[] = [];
  for (let e = 0; e < c.E; e++) {
    if (!(inside[e] > 0)) continue;
    const lift = outside[e] > 0 ? inside[e] / insideTotal / (outside[e] / outsideTotal) : Infinity;
    ranked.push({ expert: e, inside: inside[e], outside: outside[e], lift });
  }
  ranked.sort((a, b) => b.lift - a.lift || b.inside - a.inside || a.expert - b.expert);
  return ranked.slice(0, Math.max(0, n));
}

/** An expert's standing in one class of a ClassSpecialisation. */
export interface ExpertForClass {
  expert: number;
  /** Selections of the expert by the class's tokens. */
  selections: number;
  /** P(e | c) / P(e). */
  lift: number;
}

/** Per class (in class order), its experts ranked by lift (ties by selections, then id), top n, only experts the class selected. */
export function topExpertsByClass(s: ClassSpecialisation, n: number): ExpertForClass[][] {
  return Array.from({ length: s.nClasses }, (_, cls) => {
    const ranked: ExpertForClass[] = [];
    for (let e = 0; e < s.E; e++) {
      const selections = s.counts[cls * s.E + e];
      if (selections > 0) ranked.push({ expert: e, selections, lift: s.lift[cls * s.E + e] });
    }
    ranked.sort((a, b) => b.lift - a.lift || b.selections - a.selections || a.expert - b.expert);
    return ranked.slice(0, Math.max(0, n));
  });
}

/** Co-activation in one layer: counts[a*E+b] = tokens whose kept selections include both a and b (a != b; symmetric; diagonal = layerLoad). */
export function coActivation(c: RoutingColumns, layer: number, mask?: TokenMask): Float64Array {
  checkLayer(c, layer);
  checkMask(c, mask);
  const E = c.E,
    counts = new Float64Array(E * E);
  const kept: number[] = [];
  for (let t = 0; t < c.count; t++) {
    if (mask && !mask[t]) continue;
    kept.length = 0;
    forEachKept(c, t, layer, (e) => {
      counts[e * E + e]++;
      // A token counts once per pair even if the same id were selected twice.
      if (!kept.includes(e)) kept.push(e);
    });
    for (let i = 0; i < kept.length; i++)
      for (let j = i + 1; j < kept.length; j++) {
        counts[kept[i] * E + kept[j]]++;
        counts[kept[j] * E + kept[i]]++;
      }
  }
  return counts;
}

/** Routing transitions from layer l to l+1: counts[a*E+b] = tokens that select a in layer l and b in layer l+1 (every kept pair, K×K per token). */
export function layerTransitions(c: RoutingColumns, layer: number, mask?: TokenMask): Float64Array {
  checkLayer(c, layer);
  if (layer + 1 >= c.L) throw new Error(`layer ${layer} is the last MoE layer: there is no layer ${layer + 1} to transition to`);
  checkMask(c, mask);
  const E = c.E,
    counts = new Float64Array(E * E);
  const from: number[] = [];
  for (let t = 0; t < c.count; t++) {
    if (mask && !mask[t]) continue;
    from.length = 0;
    forEachKept(c, t, layer, (a) => from.push(a));
    forEachKept(c, t, layer + 1, (b) => {
      for (const a of from) counts[a * E + b]++;
    });
  }
  return counts;
}

/**
 * Token classes for specialisation, decided on the piece with its leading and trailing
 * whitespace removed (the "core"; tokenizers glue a space to the word that follows it):
 * - whitespace: a non-empty piece of whitespace only;
 * - number: the core is digits, optionally in groups joined by one `.`, `,` or `_` (`42`, `3.14`, `1,000`);
 * - word: the core is letters, combining marks, digits, `_` and apostrophes, with at least one letter (`the`, `don't`, `x1`, `foo_bar`);
 * - code symbol: the core is punctuation/symbol characters only, at least one of them one of CODE_SYMBOL_CHARS (`{`, `=>`, `::`, `#`);
 * - punctuation: the core is punctuation characters (Unicode P) only, none of CODE_SYMBOL_CHARS (`.`, `,`, `("`, `—`);
 * - other: everything else (the empty piece, emoji and other symbols, mixes such as `a.b` or `x+1`, bytes that are not text).
 */
export const TOKEN_CLASSES: readonly string[] = ["word", "number", "punctuation", "whitespace", "code symbol", "other"];
/** The characters that make a run of punctuation a code symbol rather than prose punctuation. */
export const CODE_SYMBOL_CHARS = "{}[]<>=+*/\\|&^%$#@~`_";

const NUMBER_CORE = /^\p{Nd}+(?:[.,_]\p{Nd}+)*$/u;
const WORD_CORE = /^[\p{L}\p{M}\p{Nd}_'’]*\p{L}[\p{L}\p{M}\p{Nd}_'’]*$/u;
const SYMBOL_CORE = /^[\p{P}\p{S}]+$/u;
const PUNCTUATION_CORE = /^\p{P}+$/u;

export function tokenClass(piece: string): number {
  const core = piece.trim();
  if (!core) return piece ? 3 : 5;
  if (NUMBER_CORE.test(core)) return 1;
  if (WORD_CORE.test(core)) return 0;
  const hasCodeChar = [...core].some((ch) => CODE_SYMBOL_CHARS.includes(ch));
  if (hasCodeChar && SYMBOL_CORE.test(core)) return 4;
  if (!hasCodeChar && PUNCTUATION_CORE.test(core)) return 2;
  return 5;
}

/** Mask of tokens whose piece matches a regex (on the piece text). */
export function regexMask(pieces: readonly string[], re: RegExp): Uint8Array {
  const mask = new Uint8Array(pieces.length);
  for (let t = 0; t < pieces.length; t++) {
    // A /g or /y regex keeps its position between test() calls; each piece starts afresh.
    re.lastIndex = 0;
    mask[t] = re.test(pieces[t]) ? 1 : 0;
  }
  return mask;
}

/** Class labels of a trace's tokens by tokenClass, for specialisation(…, TOKEN_CLASSES.length). */
export function tokenClassLabels(pieces: readonly string[]): Int32Array {
  return Int32Array.from(pieces, tokenClass);
}

/** The JSON form of an ExpertAtlas (ExpertAtlas.toJSON / fromJSON). */
export interface ExpertAtlasJson {
  format: "moe-lens-atlas";
  version: 1;
  L: number;
  K: number;
  E: number;
  documents: number;
  /** One entry per class: tokens[layer] and selections[layer*E+expert]. */
  classes: { name: string; tokens: number[]; selections: number[] }[];
}

/**
 * Class × expert selection counts per layer accumulated over any number of traces
 * (documents), keeping counts only, so a corpus of any size fits in memory: for each class
 * (a document's domain or label, by name) L×E selection counts and L token counts. Traces are
 * added one at a time and can be dropped after add(); atlases built apart merge().
 */
export class ExpertAtlas {
  readonly classNames: string[] = [];
  /** Per class: selections[layer*E+expert]. */
  private readonly selections: Float64Array[] = [];
  /** Per class: tokens[layer] (the same for every layer when each trace covers all layers, kept per layer as the counts are). */
  private readonly tokens: Float64Array[] = [];
  documents = 0;

  constructor(
    readonly L: number,
    readonly K: number,
    readonly E: number,
  ) {
    for (const [name, v] of [
      ["L (MoE layers)", L],
      ["K (experts per token)", K],
      ["E (experts)", E],
    ] as const)
      if (!Number.isInteger(v) || v < 1) throw new Error(`expert atlas: ${name} must be a positive integer, got ${v}`);
  }

  /** The id of a class by name, added when new. */
  classId(name: string): number {
    let id = this.classNames.indexOf(name);
    if (id < 0) {
      id = this.classNames.length;
      this.classNames.push(name);
      this.selections.push(new Float64Array(this.L * this.E));
      this.tokens.push(new Float64Array(this.L));
    }
    return id;
  }

  /** Adds one trace (one document): labels[t] indexes classNames (-1 = token not counted). */
  add(c: RoutingColumns, labels: Int32Array, classNames: readonly string[]): void {
    this.addTokens(c, labels, classNames);
    this.documents++;
  }

  /** Adds tokens without counting a document: for a document that arrives in batches (count it once with `documents++`). */
  addTokens(c: RoutingColumns, labels: Int32Array, classNames: readonly string[]): void {
    if (c.L !== this.L || c.E !== this.E || c.K !== this.K)
      throw new Error(`expert atlas is for ${this.L} layers × ${this.E} experts, k = ${this.K}; the trace has ${c.L} × ${c.E}, k = ${c.K}`);
    checkLabels(c, labels, classNames.length);
    // Map the trace's class ids to the atlas's, then count into a scratch block per layer.
    const ids = classNames.map((name) => this.classId(name));
    const n = classNames.length;
    const counts = new Float64Array(n * this.E),
      classTokens = new Float64Array(n);
    for (let l = 0; l < this.L; l++) {
      counts.fill(0);
      classTokens.fill(0);
      accumulateClassCounts(c, l, labels, n, counts, classTokens);
      for (let k = 0; k < n; k++) {
        const sel = this.selections[ids[k]];
        for (let e = 0; e < this.E; e++) sel[l * this.E + e] += counts[k * this.E + e];
        this.tokens[ids[k]][l] += classTokens[k];
      }
    }
  }

  /** Adds another atlas's counts (same shape; classes matched by name). */
  merge(other: ExpertAtlas): void {
    if (other.L !== this.L || other.E !== this.E || other.K !== this.K)
      throw new Error(`cannot merge an atlas of ${other.L} layers × ${other.E} experts, k = ${other.K} into one of ${this.L} × ${this.E}, k = ${this.K}`);
    other.classNames.forEach((name, k) => {
      const id = this.classId(name);
      const sel = this.selections[id],
        tok = this.tokens[id];
      other.selections[k].forEach((v, i) => (sel[i] += v));
      other.tokens[k].forEach((v, i) => (tok[i] += v));
    });
    this.documents += other.documents;
  }

  /** Class × expert specialisation of one layer, over every class the atlas holds. */
  specialisation(layer: number): ClassSpecialisation {
    if (!Number.isInteger(layer) || layer < 0 || layer >= this.L) throw new Error(`layer ${layer} is out of range: the atlas has ${this.L} MoE layers`);
    const n = this.classNames.length,
      E = this.E;
    const counts = new Float64Array(n * E),
      classTokens = new Float64Array(n);
    for (let k = 0; k < n; k++) {
      counts.set(this.selections[k].subarray(layer * E, (layer + 1) * E), k * E);
      classTokens[k] = this.tokens[k][layer];
    }
    return specialisationFromCounts(layer, n, E, counts, classTokens);
  }

  /** Selections of each expert of one layer over all classes: Float64Array(E). */
  layerLoad(layer: number): Float64Array {
    if (!Number.isInteger(layer) || layer < 0 || layer >= this.L) throw new Error(`layer ${layer} is out of range: the atlas has ${this.L} MoE layers`);
    const load = new Float64Array(this.E);
    for (const sel of this.selections) for (let e = 0; e < this.E; e++) load[e] += sel[layer * this.E + e];
    return load;
  }

  /** Tokens counted in one layer over all classes. */
  layerTokens(layer: number): number {
    return this.tokens.reduce((s, tok) => s + tok[layer], 0);
  }

  toJSON(): ExpertAtlasJson {
    return {
      format: "moe-lens-atlas",
      version: 1,
      L: this.L,
      K: this.K,
      E: this.E,
      documents: this.documents,
      classes: this.classNames.map((name, k) => ({ name, tokens: Array.from(this.tokens[k]), selections: Array.from(this.selections[k]) })),
    };
  }

  static fromJSON(json: unknown): ExpertAtlas {
    const j = json as Partial<ExpertAtlasJson> | null;
    if (!j || typeof j !== "object" || j.format !== "moe-lens-atlas") throw new Error(`not an expert atlas: expected "format": "moe-lens-atlas"`);
    if (j.version !== 1) throw new Error(`expert atlas version ${String(j.version)} is not supported (expected 1)`);
    const atlas = new ExpertAtlas(Number(j.L), Number(j.K), Number(j.E));
    if (!Number.isInteger(j.documents) || (j.documents as number) < 0) throw new Error(`expert atlas: "documents" must be a count, got ${String(j.documents)}`);
    atlas.documents = j.documents as number;
    if (!Array.isArray(j.classes)) throw new Error(`expert atlas: "classes" must be an array`);
    for (const cls of j.classes) {
      const name = cls?.name;
      if (typeof name !== "string") throw new Error(`expert atlas: a class has no name`);
      if (atlas.classNames.includes(name)) throw new Error(`expert atlas: class "${name}" appears twice`);
      const okCounts = (xs: unknown, n: number) =>
        Array.isArray(xs) && xs.length === n && xs.every((x) => typeof x === "number" && x >= 0 && Number.isFinite(x));
      if (!okCounts(cls.tokens, atlas.L)) throw new Error(`expert atlas: class "${name}" must have ${atlas.L} non-negative token counts`);
      if (!okCounts(cls.selections, atlas.L * atlas.E))
        throw new Error(`expert atlas: class "${name}" must have ${atlas.L} × ${atlas.E} non-negative selection counts`);
      const id = atlas.classId(name);
      atlas.tokens[id].set(cls.tokens);
      atlas.selections[id].set(cls.selections);
    }
    return atlas;
  }
}
