// Issue 13: "Trace Selection" with an empty selection traced the cursor's line and replaced
// the document's trace. A bare cursor now means the whole document; a selection, made in
// either direction, its own span (extension/vscode/trace-scope.ts).
import assert from "node:assert/strict";
import { test } from "node:test";
import { selectionTraceSpan } from "../../extension/vscode/trace-scope";

test("an empty selection traces the whole document, wherever the cursor is", () => {
  assert.equal(selectionTraceSpan(0, 0), undefined);
  assert.equal(selectionTraceSpan(137, 137), undefined);
});

test("a selection traces its span, whichever way it was dragged", () => {
  assert.deepEqual(selectionTraceSpan(10, 42), { start: 10, end: 42 });
  assert.deepEqual(selectionTraceSpan(42, 10), { start: 10, end: 42 });
});
