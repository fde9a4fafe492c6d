// Traces kept per document and document version, mapped to exact UTF-16 ranges: each
// document's trace history (traces, selection traces, compares), a trace as one set of typed
// columns (no per-token objects, no kept batches), reused for an unchanged re-trace and
// evicted oldest first under a memory cap (TraceStore).
//
// A trace is tied to the text it was computed on. When that text changes, the store keeps
// only what is still true and at the right place:
//   - an edit *after* the traced range changes nothing;
//   - an edit *before* a selection trace shifts it (a selection is traced on its own text,
//     so preceding text is not its context);
//   - an edit inside the traced range (or anywhere before it, for a whole-document trace,
//     whose context starts at offset 0) keeps only the tokens that end strictly before
//     the edit — the model is causal, so their routing is unchanged — and drops the rest.
//     The token that touches the edit is dropped too: its tokenization and its next-token
//     NLL may differ in the new text. A trace with nothing left is removed.
//   - tokens still streaming in after such an edit are cut the same way when they arrive.
//   - a lookup with a document version the store has not seen returns nothing.
// No `vscode` import: unit-tested in test/unit/trace-store.test.ts.

import type { Policy } from "../../shared/policy";
import { panelBatch, type PanelBatch } from "../../shared/protocol";
import type { TraceBatch } from "../../shared/trace";
import type { TraceHeader, TraceSummary } from "../../shared/wire";
import { Utf8ToUtf16 } from "./offsets";

export type TraceState = "streaming" | "done" | "error" | "cancelled";

/** One content change, as VS Code reports it (offsets in the document *before* the change). */
export interface TextChange {
  rangeOffset: number;
  rangeLength: number;
  text: string;
}

export interface BeginTraceOptions {
  uri: string;
  version: number;
  /** The exact text sent to the server. */
  text: string;
  /** UTF-16 offset of `text` inside the document. */
  baseOffset: number;
  /** True when `text` is the whole document (its context starts at offset 0). */
  wholeDocument: boolean;
  label: string;
  policy: Policy;
  id?: string;
}

export interface TokenInfo {
  index: number;
  piece: string;
  tokenId: number;
  /** Document UTF-16 range for the current version. */
  start: number;
  end: number;
  /** NLL (nats) of the next token; NaN where there is none or where it was cut by an edit. */
  nll: number;
  /** [layer][slot] views into the trace's arrays. */
  experts: Int32Array;
  weights: Float32Array;
  entropy: Float32Array;
  active: Uint8Array;
  topIds?: Int32Array;
  topProbs?: Float32Array;
}

let nextId = 1;

/** The per-token arrays of a trace (every TraceBatch field but `start`, `count` and `pieces`). */
type ColumnName =
  "tokenIds" | "byteStart" | "byteEnd" | "nll" | "experts" | "weights" | "entropy" | "active" | "topIds" | "topProbs" | "expertNorms" | "routerProbs";
type Column = Int32Array | Float32Array | Uint8Array | Uint16Array;
const COLUMN_NAMES: readonly ColumnName[] = [
  "tokenIds",
  "byteStart",
  "byteEnd",
  "nll",
  "experts",
  "weights",
  "entropy",
  "active",
  "topIds",
  "topProbs",
  "expertNorms",
  "routerProbs",
];

/** Values per token in each column, for a trace of L MoE layers, k slots, top-N and E experts. */
function columnWidths(L: number, K: number, N: number, E: number): Record<ColumnName, number> {
  return {
    tokenIds: 1,
    byteStart: 1,
    byteEnd: 1,
    nll: 1,
    experts: L * K,
    weights: L * K,
    entropy: L,
    active: L,
    topIds: L * N,
    topProbs: L * N,
    expertNorms: L * K,
    routerProbs: L * E,
  };
}

/** Tokens per batch when a stored trace is handed out in pieces (panel replay, exports). */
export const REPLAY_BATCH_TOKENS = 512;
/** Rough cost of one JS string beside its characters, for the memory figure. */
const STRING_OVERHEAD_BYTES = 32;

export class TraceRecord {
  readonly id: string;
  readonly uri: string;
  version: number;
  readonly label: string;
  readonly policy: Policy;
  readonly wholeDocument: boolean;
  /** The text sent to the server (kept for re-tracing with another policy and for export). */
  readonly text: string;
  /** UTF-16 offset of `text` in the document when it was traced (for recognising a re-trace of the same range). */
  readonly tracedOffset: number;
  header?: TraceHeader;
  summary?: TraceSummary;
  state: TraceState = "streaming";
  error?: string;
  /** True once an edit has cut tokens off this trace (summary numbers then describe the old text). */
  truncated = false;
  readonly createdAt = Date.now();

  /**
   * The trace's columns, one growing typed array per field (allocated for the header's token
   * count), so a trace is one copy of its numbers: no per-token objects, no kept batches.
   * Only [0, count) of each is valid.
   */
  private cols = new Map<ColumnName, Column>();
  private capacity = 0;
  private readonly pieces: string[] = [];
  private pieceChars = 0;
  private mapper: Utf8ToUtf16 | undefined;
  private starts = new Int32Array(64);
  private ends = new Int32Array(64);
  /** Tokens received and kept. */
  count = 0;
  /** Current UTF-16 offset of the start of `text` in the document. */
  base: number;
  /** Offset relative to `base` from which text has been edited; tokens ending at or after it are dropped. */
  private cutRel = Infinity;
  /** Set when streaming tokens were refused because of an edit: no later token is accepted. */
  private closed = false;

  constructor(o: BeginTraceOptions) {
    this.id = o.id ?? `t${nextId++}`;
    this.uri = o.uri;
    this.version = o.version;
    this.label = o.label;
    this.policy = o.policy;
    this.wholeDocument = o.wholeDocument;
    this.text = o.text;
    this.base = o.baseOffset;
    this.tracedOffset = o.baseOffset;
    this.mapper = new Utf8ToUtf16(o.text);
  }

  /** End (exclusive) of the traced range in the current document. */
  get end(): number {
    return this.base + Math.min(this.text.length, this.cutRel);
  }

  get L(): number {
    return this.header?.n_moe_layers ?? 0;
  }
  get K(): number {
    return this.header?.k ?? 0;
  }
  get N(): number {
    return this.header?.top_n ?? 0;
  }
  /** Experts per layer in the full router distribution (`routerProbs`'s width). */
  get E(): number {
    return this.header?.model.n_expert ?? 0;
  }

  private get widths(): Record<ColumnName, number> {
    return columnWidths(this.L, this.K, this.N, this.E);
  }

  setHeader(h: TraceHeader): void {
    this.header = h;
    if (h.n_tokens > this.starts.length) this.grow(h.n_tokens);
  }

  private grow(min: number): void {
    let cap = this.starts.length;
    while (cap < min) cap *= 2;
    const s = new Int32Array(cap),
      e = new Int32Array(cap);
    s.set(this.starts.subarray(0, this.count));
    e.set(this.ends.subarray(0, this.count));
    this.starts = s;
    this.ends = e;
  }

  /**
   * Room for `min` tokens in every column `b` carries (a column first seen in `b` is created).
   * The first allocation is the header's token count, so a trace is allocated once.
   */
  private reserve(min: number, b: TraceBatch): void {
    const w = this.widths;
    const cap = min > this.capacity ? Math.max(min, this.header?.n_tokens ?? 0, this.capacity * 2) : this.capacity;
    for (const name of COLUMN_NAMES) {
      const incoming = b[name];
      const old = this.cols.get(name);
      if (!incoming && !old) continue;
      if (old && cap === this.capacity) continue;
      const Ctor = (incoming ?? old)!.constructor as new (n: number) => Column;
      const fresh = new Ctor(cap * w[name]);
      if (old) fresh.set(old.subarray(0, this.count * w[name]));
      this.cols.set(name, fresh);
    }
    this.capacity = cap;
  }

  /** Copies tokens [from, from + n) of `b` to the end of the columns. */
  private store(b: TraceBatch, from: number, n: number): void {
    this.reserve(this.count + n, b);
    const w = this.widths;
    for (const [name, col] of this.cols) {
      const src = b[name];
      if (src) col.set(src.subarray(from * w[name], (from + n) * w[name]), this.count * w[name]);
    }
    for (let i = from; i < from + n; i++) {
      this.pieces.push(b.pieces[i]);
      this.pieceChars += b.pieces[i].length;
    }
  }

  /**
   * Adds a batch (its numbers are copied into the trace's columns; the batch is not kept);
   * returns the part that was kept (all of it, a prefix, or nothing when an edit has made the
   * rest stale). Batches must arrive in order.
   */
  append(b: TraceBatch): TraceBatch | undefined {
    if (!this.header) throw new Error("trace batch before header");
    if (this.closed || !this.mapper) return undefined;
    if (b.start !== this.count) {
      // A gap means tokens were lost: refuse the rest rather than misplace anything.
      this.closed = true;
      return undefined;
    }
    let keep = 0;
    const s = new Int32Array(b.count),
      e = new Int32Array(b.count);
    for (let i = 0; i < b.count; i++) {
      const [rs, re] = this.mapper.span(b.byteStart[i], b.byteEnd[i]);
      if (re >= this.cutRel && !(re === rs && rs < this.cutRel)) break;
      s[i] = rs;
      e[i] = re;
      keep++;
    }
    if (keep === 0) {
      this.closed = true;
      this.truncated = true;
      return undefined;
    }
    const kept = keep === b.count ? b : sliceBatch(b, this.L, this.K, this.N, 0, keep, this.E);
    if (keep < b.count) {
      this.closed = true;
      this.truncated = true;
    }
    if (this.count + keep > this.starts.length) this.grow(this.count + keep);
    this.starts.set(s.subarray(0, keep), this.count);
    this.ends.set(e.subarray(0, keep), this.count);
    this.store(b, 0, keep);
    this.count += keep;
    return kept;
  }

  finish(summary: TraceSummary | undefined, state: TraceState = "done", error?: string): void {
    this.summary = summary;
    this.state = state;
    this.error = error;
    this.mapper = undefined; // no more batches: free the byte map
    this.compact();
  }

  /** Gives back the room reserved for tokens that never came (a cancelled or cut trace). */
  private compact(): void {
    if (this.capacity <= this.count) return;
    const w = this.widths;
    for (const [name, col] of this.cols) this.cols.set(name, col.slice(0, this.count * w[name]));
    this.capacity = this.count;
  }

  /** Tokens [from, to) as a batch of views into the columns (no copy; valid until the next append or cut). */
  view(from = 0, to = this.count): TraceBatch {
    const w = this.widths;
    const col = <T extends Column>(name: ColumnName) => {
      const c = this.cols.get(name) as T | undefined;
      return c ? (c.subarray(from * w[name], to * w[name]) as T) : undefined;
    };
    return {
      start: from,
      count: to - from,
      tokenIds: col<Int32Array>("tokenIds") ?? new Int32Array(0),
      byteStart: col<Int32Array>("byteStart") ?? new Int32Array(0),
      byteEnd: col<Int32Array>("byteEnd") ?? new Int32Array(0),
      pieces: from === 0 && to === this.pieces.length ? this.pieces : this.pieces.slice(from, to),
      nll: col<Float32Array>("nll") ?? new Float32Array(0),
      experts: col<Int32Array>("experts") ?? new Int32Array(0),
      weights: col<Float32Array>("weights") ?? new Float32Array(0),
      entropy: col<Float32Array>("entropy") ?? new Float32Array(0),
      active: col<Uint8Array>("active") ?? new Uint8Array(0),
      topIds: col<Int32Array>("topIds"),
      topProbs: col<Float32Array>("topProbs"),
      expertNorms: col<Float32Array>("expertNorms"),
      routerProbs: col<Uint16Array>("routerProbs"),
    };
  }

  /** The whole trace as one batch of views (what segments, statistics and exports read). */
  get columns(): TraceBatch {
    return this.view();
  }

  /** The trace in pieces of REPLAY_BATCH_TOKENS tokens, as views (no copy). */
  get batches(): TraceBatch[] {
    const out: TraceBatch[] = [];
    for (let from = 0; from < this.count; from += REPLAY_BATCH_TOKENS) out.push(this.view(from, Math.min(this.count, from + REPLAY_BATCH_TOKENS)));
    return out;
  }

  /**
   * The trace in pieces, as the panel draws it (shared/protocol.ts PanelBatch), each with
   * arrays of its own: what postMessage sends (VS Code sends a view's whole underlying
   * buffer, so views of the columns must not cross).
   */
  *panelBatches(): Generator<PanelBatch> {
    for (const v of this.batches) yield withOwnArrays(panelBatch(v, this.E));
  }

  /** The recorded top router probabilities of token t in MoE layer m, highest first (empty when none were recorded). */
  routerTop(t: number, m: number): { ids: number[]; probs: number[] } {
    const N = this.N;
    const v = t >= 0 && t < this.count && m >= 0 && m < this.L ? this.view(t, t + 1) : undefined;
    if (!v?.topIds || !v.topProbs || N === 0) return { ids: [], probs: [] };
    return { ids: Array.from(v.topIds.subarray(m * N, (m + 1) * N)), probs: Array.from(v.topProbs.subarray(m * N, (m + 1) * N)) };
  }

  /** Bytes this trace holds (columns, token ranges, pieces and text), for the history's memory cap. */
  get bytes(): number {
    let n = this.starts.byteLength + this.ends.byteLength + 2 * this.text.length + 2 * this.pieceChars + STRING_OVERHEAD_BYTES * this.pieces.length;
    for (const c of this.cols.values()) n += c.byteLength;
    return n;
  }

  /** Document UTF-16 range of token i, current version. */
  range(i: number): [number, number] {
    return [this.base + this.starts[i], this.base + this.ends[i]];
  }

  /** Token indices whose range contains the document offset (several when tokens split one character). */
  tokensAt(offset: number): number[] {
    const rel = offset - this.base;
    if (rel < 0 || this.count === 0) return [];
    // last token with start <= rel
    let lo = 0,
      hi = this.count - 1,
      at = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.starts[mid] <= rel) {
        at = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    const out: number[] = [];
    for (let i = at; i >= 0; i--) {
      if (this.ends[i] > rel && this.starts[i] < this.ends[i]) out.push(i);
      else if (this.ends[i] <= rel && this.starts[i] < rel) break;
    }
    return out.reverse();
  }

  token(i: number): TokenInfo {
    if (i < 0 || i >= this.count) throw new RangeError(`token ${i} out of range 0..${this.count - 1}`);
    const b = this.view(i, i + 1);
    const [start, end] = this.range(i);
    const lastKept = i === this.count - 1 && this.truncated;
    return {
      index: i,
      piece: this.pieces[i],
      tokenId: b.tokenIds[0],
      start,
      end,
      nll: lastKept ? NaN : b.nll[0],
      experts: b.experts,
      weights: b.weights,
      entropy: b.entropy,
      active: b.active,
      topIds: this.N > 0 ? b.topIds : undefined,
      topProbs: this.N > 0 ? b.topProbs : undefined,
    };
  }

  /**
   * Applies one content change (offsets in the document before it). Returns false when
   * nothing of the trace is left.
   */
  applyChange(c: TextChange): boolean {
    const changeStart = c.rangeOffset;
    const changeEnd = c.rangeOffset + c.rangeLength;
    const delta = c.text.length - c.rangeLength;
    const traceEnd = this.end;
    if (changeStart >= traceEnd) return this.count > 0 || this.state === "streaming";
    if (changeEnd <= this.base && !this.wholeDocument) {
      this.base += delta;
      return true;
    }
    // The edit reaches into the traced text (or its context): cut at the edit.
    const rel = Math.max(0, changeStart - this.base);
    this.cut(rel);
    return this.count > 0 || (this.state === "streaming" && !this.closed);
  }

  private cut(rel: number): void {
    this.truncated = true;
    if (rel < this.cutRel) this.cutRel = rel;
    let keep = this.count;
    while (keep > 0 && this.ends[keep - 1] >= rel && !(this.ends[keep - 1] === this.starts[keep - 1] && this.starts[keep - 1] < rel)) keep--;
    if (keep < this.count) {
      this.count = keep;
      this.closed = true;
      this.pieces.length = keep;
      this.pieceChars = this.pieces.reduce((n, p) => n + p.length, 0);
    }
    if (rel === 0) this.closed = true;
  }

  get isEmpty(): boolean {
    return this.count === 0;
  }
}

/** The batch with each typed array that is a view into a larger buffer copied into one of its own (the other fields as they are). */
function withOwnArrays<T extends object>(b: T): T {
  const shares = (v: unknown) => ArrayBuffer.isView(v) && v.byteLength !== v.buffer.byteLength;
  return Object.fromEntries(Object.entries(b).map(([k, v]) => [k, shares(v) ? (v as Int32Array).slice() : v])) as T;
}

/** A sub-range [from, to) of a batch's tokens, as a new batch with arrays of its own; E (experts) is needed only for `routerProbs`. */
export function sliceBatch(b: TraceBatch, L: number, K: number, N: number, from: number, to: number, E = 0): TraceBatch {
  return {
    start: b.start + from,
    count: to - from,
    tokenIds: b.tokenIds.slice(from, to),
    byteStart: b.byteStart.slice(from, to),
    byteEnd: b.byteEnd.slice(from, to),
    pieces: b.pieces.slice(from, to),
    nll: b.nll.slice(from, to),
    experts: b.experts.slice(from * L * K, to * L * K),
    weights: b.weights.slice(from * L * K, to * L * K),
    entropy: b.entropy.slice(from * L, to * L),
    active: b.active.slice(from * L, to * L),
    topIds: b.topIds ? b.topIds.slice(from * L * N, to * L * N) : undefined,
    topProbs: b.topProbs ? b.topProbs.slice(from * L * N, to * L * N) : undefined,
    expertNorms: b.expertNorms ? b.expertNorms.slice(from * L * K, to * L * K) : undefined,
    routerProbs: b.routerProbs && E > 0 ? b.routerProbs.slice(from * L * E, to * L * E) : undefined,
  };
}

export type StoreListener = (uri: string) => void;
/** Told which traces the memory cap evicted (oldest first), and the memory kept afterwards. */
export type EvictionListener = (evicted: TraceRecord[], keptBytes: number, capBytes: number) => void;

/** The default of `moeLens.traceHistoryMegabytes`. */
export const DEFAULT_HISTORY_MEGABYTES = 512;

/** What a re-trace would send: a stored trace with all of it the same is reused instead. */
export interface ReuseKey {
  uri: string;
  version: number;
  text: string;
  baseOffset: number;
  wholeDocument: boolean;
  policy: Policy;
  /** The model the server runs now (its path) and the router pack in use (null: the model's own routers). */
  modelPath: string;
  routerPack: string | null;
  /** The top-N asked for now: a trace recorded with fewer router probabilities is not reused. */
  topN: number;
}

/** A policy as a canonical string (keys sorted at every depth), so equal policies compare equal. */
export function policyKey(p: Policy): string {
  const canon = (v: unknown): unknown =>
    v && typeof v === "object" && !Array.isArray(v)
      ? Object.fromEntries(
          Object.keys(v as Record<string, unknown>)
            .sort()
            .map((k) => [k, canon((v as Record<string, unknown>)[k])]),
        )
      : v;
  return JSON.stringify(canon(p));
}

/**
 * All traces, per document URI: each document's history (traces, selection traces, both
 * sides of compares), oldest first. The active trace of a document is the one the user
 * selected in the history, else the newest. Memory is capped (`capBytes`, all documents
 * together): when a new trace would pass it, the oldest finished traces are evicted first and
 * the eviction is reported to the eviction listeners; a trace still streaming is never evicted.
 */
export class TraceStore {
  private readonly byUri = new Map<string, TraceRecord[]>();
  private readonly byId = new Map<string, TraceRecord>();
  private readonly selected = new Map<string, string>();
  private readonly listeners = new Set<StoreListener>();
  private readonly evictionListeners = new Set<EvictionListener>();

  /**
   * @param perDocument traces kept per document (older ones are evicted first)
   * @param capBytes memory of all traces together (see the class comment)
   */
  constructor(
    readonly perDocument = 32,
    private capBytes = DEFAULT_HISTORY_MEGABYTES * 1024 * 1024,
  ) {}

  onDidChange(l: StoreListener): { dispose(): void } {
    this.listeners.add(l);
    return { dispose: () => this.listeners.delete(l) };
  }

  onDidEvict(l: EvictionListener): { dispose(): void } {
    this.evictionListeners.add(l);
    return { dispose: () => this.evictionListeners.delete(l) };
  }

  private fire(uri: string): void {
    for (const l of this.listeners) l(uri);
  }

  get cap(): number {
    return this.capBytes;
  }

  /** Changes the memory cap (evicting at once if the traces kept now exceed it). */
  setCap(bytes: number): void {
    if (!(bytes > 0)) throw new RangeError(`trace history cap must be positive, got ${bytes}`);
    this.capBytes = bytes;
    this.enforceCap();
  }

  /** Bytes held by all traces. */
  get usedBytes(): number {
    let n = 0;
    for (const r of this.byId.values()) n += r.bytes;
    return n;
  }

  /** Evicts the oldest finished traces until the rest fit the cap; reports what went. */
  private enforceCap(): void {
    let used = this.usedBytes;
    if (used <= this.capBytes) return;
    const evicted: TraceRecord[] = [];
    const oldestFirst = [...this.byId.values()].filter((r) => r.state !== "streaming").sort((a, b) => a.createdAt - b.createdAt);
    for (const r of oldestFirst) {
      if (used <= this.capBytes) break;
      used -= r.bytes;
      this.remove(r);
      evicted.push(r);
    }
    if (!evicted.length) return;
    for (const l of this.evictionListeners) l(evicted, used, this.capBytes);
    for (const uri of new Set(evicted.map((r) => r.uri))) this.fire(uri);
  }

  begin(o: BeginTraceOptions): TraceRecord {
    const r = new TraceRecord(o);
    const list = this.byUri.get(o.uri) ?? [];
    list.push(r);
    while (list.length > this.perDocument) this.remove(list[0]);
    this.byUri.set(o.uri, list);
    this.byId.set(r.id, r);
    this.selected.delete(o.uri); // the new trace is the document's active one
    this.fire(o.uri);
    return r;
  }

  get(id: string): TraceRecord | undefined {
    return this.byId.get(id);
  }

  setHeader(id: string, h: TraceHeader): void {
    this.byId.get(id)?.setHeader(h);
  }

  append(id: string, b: TraceBatch): TraceBatch | undefined {
    const r = this.byId.get(id);
    const kept = r?.append(b);
    if (r && kept) {
      // The first batch allocates the whole trace: make room for it now.
      if (b.start === 0) this.enforceCap();
      this.fire(r.uri);
    }
    return kept;
  }

  finish(id: string, summary: TraceSummary | undefined, state: TraceState = "done", error?: string): void {
    const r = this.byId.get(id);
    if (!r) return;
    r.finish(summary, state, error);
    // A failed or cancelled trace with no tokens is of no use.
    if (state !== "done" && r.count === 0) this.remove(r);
    this.enforceCap();
    this.fire(r.uri);
  }

  remove(r: TraceRecord): void {
    this.byId.delete(r.id);
    if (this.selected.get(r.uri) === r.id) this.selected.delete(r.uri);
    const list = this.byUri.get(r.uri);
    if (!list) return;
    const i = list.indexOf(r);
    if (i >= 0) list.splice(i, 1);
    if (!list.length) this.byUri.delete(r.uri);
  }

  /** Removes a trace by id (the history's remove button); false when there is none. */
  removeById(id: string): boolean {
    const r = this.byId.get(id);
    if (!r) return false;
    this.remove(r);
    this.fire(r.uri);
    return true;
  }

  /** Makes a trace its document's active one (the history's switch). */
  select(id: string): TraceRecord | undefined {
    const r = this.byId.get(id);
    if (!r) return undefined;
    this.selected.set(r.uri, r.id);
    this.fire(r.uri);
    return r;
  }

  /** A document's history, oldest first, whatever the versions. */
  history(uri: string): TraceRecord[] {
    return [...(this.byUri.get(uri) ?? [])];
  }

  /**
   * A finished, uncut trace of exactly this text, range, model, router pack and policy, with
   * at least the router probabilities asked for now: a re-trace would give the same numbers.
   */
  findReusable(k: ReuseKey): TraceRecord | undefined {
    const want = policyKey(k.policy);
    const list = this.byUri.get(k.uri) ?? [];
    for (let i = list.length - 1; i >= 0; i--) {
      const r = list[i];
      if (r.state !== "done" || r.truncated || !r.header || r.count === 0 || r.version !== k.version) continue;
      if (r.text !== k.text || r.base !== k.baseOffset || r.wholeDocument !== k.wholeDocument) continue;
      if (r.header.model.path !== k.modelPath || (r.header.model.router_pack?.path ?? null) !== k.routerPack) continue;
      if (r.header.top_n < k.topN || policyKey(r.policy) !== want) continue;
      return r;
    }
    return undefined;
  }

  /** Traces of a document valid for exactly this version, oldest first. */
  forDocument(uri: string, version: number): TraceRecord[] {
    return (this.byUri.get(uri) ?? []).filter((r) => r.version === version && r.count > 0);
  }

  /** The active trace of a document valid for this version: the one selected in its history, else the newest. */
  active(uri: string, version: number): TraceRecord | undefined {
    const list = this.forDocument(uri, version);
    const sel = this.selected.get(uri);
    return list.find((r) => r.id === sel) ?? list[list.length - 1];
  }

  /** The newest trace of a document whatever its version (for replaying into a panel). */
  latest(uri?: string): TraceRecord | undefined {
    if (uri) {
      const list = this.byUri.get(uri);
      return list?.[list.length - 1];
    }
    let best: TraceRecord | undefined;
    for (const list of this.byUri.values()) for (const r of list) if (!best || r.createdAt >= best.createdAt) best = r;
    return best;
  }

  /** Tokens under a document offset in the active trace of that version. */
  tokensAt(uri: string, version: number, offset: number): { trace: TraceRecord; tokens: number[] } | undefined {
    const r = this.active(uri, version);
    if (!r) return undefined;
    const tokens = r.tokensAt(offset);
    return tokens.length ? { trace: r, tokens } : undefined;
  }

  /**
   * Applies a document change event. `changes` are applied in order, each with offsets in
   * the document as left by the previous one (VS Code's order). Traces that were not at
   * `newVersion - 1`, or that an edit empties, are dropped.
   */
  applyEdit(uri: string, newVersion: number, changes: readonly TextChange[]): void {
    const list = this.byUri.get(uri);
    if (!list) return;
    for (const r of [...list]) {
      if (r.version === newVersion) continue; // already at this version (e.g. a dirty-state event)
      if (r.version !== newVersion - 1 || changes.length === 0) {
        this.remove(r);
        continue;
      }
      let alive = true;
      for (const c of changes) if (!(alive = r.applyChange(c))) break;
      if (!alive) this.remove(r);
      else r.version = newVersion;
    }
    this.fire(uri);
  }

  closeDocument(uri: string): void {
    const list = this.byUri.get(uri);
    if (!list) return;
    for (const r of [...list]) this.remove(r);
    this.fire(uri);
  }

  get size(): number {
    return this.byId.size;
  }
}
