// The trace history list in the panel (webview/history.ts), in headless Chromium under the
// real CSP: the host's `history` message lists the document's traces newest first, marks the
// shown one and the stale ones, says what the memory cap evicted, and the list's buttons send
// back only the user's intent (selectTrace, removeTrace) for the trace they belong to.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { HostMessage } from "../../shared/protocol";
import { openPanel, type PanelPage } from "./harness";

let panel: PanelPage;

before(async () => {
  panel = await openPanel({ width: 400, height: 700 });
});
after(async () => panel?.close());

const MB = 1024 * 1024;
const history: HostMessage = {
  type: "history",
  document: "file:///doc.md",
  entries: [
    {
      traceId: "t1",
      label: "doc.md · baseline",
      tokens: 5288,
      state: "done",
      active: false,
      current: true,
      bytes: 90 * MB,
      createdAt: Date.UTC(2026, 0, 1, 10),
    },
    {
      traceId: "t2",
      label: "doc.md [0…40] · baseline",
      tokens: 9,
      state: "done",
      active: false,
      current: false,
      bytes: MB,
      createdAt: Date.UTC(2026, 0, 1, 11),
    },
    { traceId: "t3", label: "B: AMG τ=0.5", tokens: 5288, state: "done", active: true, current: true, bytes: 90 * MB, createdAt: Date.UTC(2026, 0, 1, 12) },
  ],
  usedBytes: 181 * MB,
  capBytes: 512 * MB,
  note: "Evicted 1 oldest trace (old.md · baseline) to stay under the 512 MB history cap.",
};

test("the history lists the document's traces newest first, the shown one and the stale ones marked", async () => {
  const { page } = panel;
  assert.equal(await page.locator("#trace-history").isHidden(), true, "no list before there is a history");
  await panel.send([history]);
  await page.locator("#trace-history > summary").click();
  const rows = page.locator("#trace-history li[data-trace-id]");
  assert.deepEqual(await rows.evaluateAll((els) => els.map((e) => (e as HTMLElement).dataset.traceId)), ["t3", "t2", "t1"]);
  assert.equal(await page.locator('#trace-history li.active[data-trace-id="t3"]').count(), 1);
  assert.match(await page.locator('#trace-history li[data-trace-id="t2"]').innerText(), /stale: the text changed/);
  assert.match(await page.locator("#trace-history > summary").innerText(), /History \(3\) · 181 of 512 MB/);
  assert.match(await page.locator("#trace-history li.note").innerText(), /Evicted 1 oldest trace/);
  assert.deepEqual(panel.cspViolations, []);
  assert.deepEqual(panel.consoleErrors, []);
});

test("switching and removing send the trace's id to the host", async () => {
  const { page } = panel;
  await page.locator('#trace-history li[data-trace-id="t1"] button.link').click();
  await page.locator('#trace-history li[data-trace-id="t2"] button.icon').click();
  const sent = (await panel.posted()).filter((m) => m.type === "selectTrace" || m.type === "removeTrace");
  assert.deepEqual(sent, [
    { type: "selectTrace", traceId: "t1" },
    { type: "removeTrace", traceId: "t2" },
  ]);
  await panel.send([{ ...history, entries: [], note: undefined } as HostMessage]);
  assert.equal(await page.locator("#trace-history").isHidden(), true, "an empty history hides the list");
});
