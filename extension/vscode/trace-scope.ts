// What "Trace Selection" traces (pure: no `vscode` import, so test/unit/trace-scope.test.ts
// loads it). A bare cursor traces the whole document, as "Trace Document" does: tracing the
// cursor's line instead replaced a long document trace with a few tokens without a word.

/** A character span of the document, start ≤ end. */
export interface TextSpan {
  start: number;
  end: number;
}

/**
 * The span to trace for a selection given by its anchor and active offsets, or undefined
 * for the whole document (an empty selection).
 */
export function selectionTraceSpan(anchor: number, active: number): TextSpan | undefined {
  if (anchor === active) return undefined;
  return { start: Math.min(anchor, active), end: Math.max(anchor, active) };
}
