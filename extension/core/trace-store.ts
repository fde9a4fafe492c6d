// Traces kept per document and document version, mapped to exact UTF-16 ranges.
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

export class TraceRecord {
  readonly id: string;
  readonly uri: string;
  version: number;
  readonly label: string;
  readonly policy: Policy;
  readonly wholeDocument: boolean;
  /** The text sent to the server (kept for re-tracing with another policy and for export). */
  readonly text: string;
  header?: TraceHeader;
  summary?: TraceSummary;
  state: TraceState = "streaming";
  error?: string;
  /** True once an edit has cut tokens off this trace (summary numbers then describe the old text). */
  truncated = false;
  readonly createdAt = Date.now();

  /** Batches as received (possibly trimmed), for replay to a webview and for export. */
  readonly batches: TraceBatch[] = [];
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
   * Adds a batch; returns the part that was kept (all of it, a prefix, or nothing when an
   * edit has made the rest stale). Batches must arrive in order.
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
    const kept = keep === b.count ? b : sliceBatch(b, this.L, this.K, this.N, 0, keep);
    if (keep < b.count) {
      this.closed = true;
      this.truncated = true;
    }
    if (this.count + keep > this.starts.length) this.grow(this.count + keep);
    this.starts.set(s.subarray(0, keep), this.count);
    this.ends.set(e.subarray(0, keep), this.count);
    this.batches.push(kept);
    this.count += keep;
    return kept;
  }

  finish(summary: TraceSummary | undefined, state: TraceState = "done", error?: string): void {
    this.summary = summary;
    this.state = state;
    this.error = error;
    this.mapper = undefined; // no more batches: free the byte map
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
    const L = this.L,
      K = this.K,
      N = this.N;
    let lo = 0,
      hi = this.batches.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.batches[mid].start <= i) lo = mid;
      else hi = mid - 1;
    }
    const b = this.batches[lo];
    const j = i - b.start;
    const [start, end] = this.range(i);
    const lastKept = i === this.count - 1 && this.truncated;
    return {
      index: i,
      piece: b.pieces[j],
      tokenId: b.tokenIds[j],
      start,
      end,
      nll: lastKept ? NaN : b.nll[j],
      experts: b.experts.subarray(j * L * K, (j + 1) * L * K),
      weights: b.weights.subarray(j * L * K, (j + 1) * L * K),
      entropy: b.entropy.subarray(j * L, (j + 1) * L),
      active: b.active.subarray(j * L, (j + 1) * L),
      topIds: N > 0 && b.topIds ? b.topIds.subarray(j * L * N, (j + 1) * L * N) : undefined,
      topProbs: N > 0 && b.topProbs ? b.topProbs.subarray(j * L * N, (j + 1) * L * N) : undefined,
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
      // Trim stored batches to the kept tokens.
      while (this.batches.length && this.batches[this.batches.length - 1].start >= keep) this.batches.pop();
      const last = this.batches[this.batches.length - 1];
      if (last && last.start + last.count > keep) {
        this.batches[this.batches.length - 1] = sliceBatch(last, this.L, this.K, this.N, 0, keep - last.start);
      }
    }
    if (rel === 0) this.closed = true;
  }

  get isEmpty(): boolean {
    return this.count === 0;
  }
}

/** A sub-range [from, to) of a batch's tokens, as a new batch (views where possible). */
export function sliceBatch(b: TraceBatch, L: number, K: number, N: number, from: number, to: number): TraceBatch {
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
  };
}

export type StoreListener = (uri: string) => void;

/** All traces, per document URI. The newest trace of a document is its active one. */
export class TraceStore {
  private readonly byUri = new Map<string, TraceRecord[]>();
  private readonly byId = new Map<string, TraceRecord>();
  private readonly listeners = new Set<StoreListener>();
  /** Traces kept per document (older ones are evicted first). */
  constructor(readonly perDocument = 4) {}

  onDidChange(l: StoreListener): { dispose(): void } {
    this.listeners.add(l);
    return { dispose: () => this.listeners.delete(l) };
  }

  private fire(uri: string): void {
    for (const l of this.listeners) l(uri);
  }

  begin(o: BeginTraceOptions): TraceRecord {
    const r = new TraceRecord(o);
    const list = this.byUri.get(o.uri) ?? [];
    list.push(r);
    while (list.length > this.perDocument) {
      const old = list.shift()!;
      this.byId.delete(old.id);
    }
    this.byUri.set(o.uri, list);
    this.byId.set(r.id, r);
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
    if (r && kept) this.fire(r.uri);
    return kept;
  }

  finish(id: string, summary: TraceSummary | undefined, state: TraceState = "done", error?: string): void {
    const r = this.byId.get(id);
    if (!r) return;
    r.finish(summary, state, error);
    // A failed or cancelled trace with no tokens is of no use.
    if (state !== "done" && r.count === 0) this.remove(r);
    this.fire(r.uri);
  }

  remove(r: TraceRecord): void {
    this.byId.delete(r.id);
    const list = this.byUri.get(r.uri);
    if (!list) return;
    const i = list.indexOf(r);
    if (i >= 0) list.splice(i, 1);
    if (!list.length) this.byUri.delete(r.uri);
  }

  /** Traces of a document valid for exactly this version, oldest first. */
  forDocument(uri: string, version: number): TraceRecord[] {
    return (this.byUri.get(uri) ?? []).filter((r) => r.version === version && r.count > 0);
  }

  /** The newest trace of a document valid for this version. */
  active(uri: string, version: number): TraceRecord | undefined {
    const list = this.forDocument(uri, version);
    return list[list.length - 1];
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
