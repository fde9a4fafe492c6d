// Regression test for issue 17, item 5 (Markdown injection in the domain-transition hover):
// the hover text of a transition mark came from the document (a fence's info string, a
// marker line's domain name) and was rendered as Markdown, so a fence line
// ```[click](command:workbench.action.quit) became a command link and
// ```![p](https://evil.example/pixel.png) a remote image. Every hover is rendered here by a
// real CommonMark renderer (markdown-it, HTML allowed, stricter than VS Code's hovers), and
// must show the document's text literally, with no link, image or HTML element.
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { test } from "node:test";
import { fenceBoundaries } from "../../extension/core/transitions";
import { labelEditorText } from "../../extension/vscode/segments";
import { formatTokenHover, mdEscape, transitionHover } from "../../extension/vscode/format";
import type { TokenInfo } from "../../extension/core/trace-store";

const MarkdownIt = createRequire(__filename)("markdown-it") as new (opts: { html: boolean }) => { render(md: string): string };
const renderer = new MarkdownIt({ html: true });

/** The rendered HTML and its visible text. */
function render(md: string): { html: string; text: string } {
  const html = renderer.render(md);
  const text = html
    .replace(/<[^>]*>/g, "")
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&quot;/g, '"')
    .replace(/&amp;/g, "&")
    .trim();
  return { html, text };
}

function assertInert(md: string, literal: string): void {
  const { html, text } = render(md);
  assert.doesNotMatch(html, /<(a|img|script|iframe|h\d|ul|ol|table|code|em|strong)\b/i, `rendered as plain text: ${html}`);
  assert.ok(text.includes(literal), `shows ${JSON.stringify(literal)} literally: ${JSON.stringify(text)}`);
}

const ATTACKS = [
  "[click](command:workbench.action.quit)",
  "![p](https://evil.example/pixel.png)",
  "<img src=https://evil.example/x.png>",
  "[x]: https://evil.example",
  "**bold**_em_`code`",
  "&lt;b&gt;",
];

test("fence info strings from the document reach the transition hover as literal text", () => {
  for (const attack of ATTACKS) {
    const text = `Some prose.\n\`\`\`${attack}\nx = 1\n\`\`\`\nMore prose.\n`;
    const b = fenceBoundaries(text);
    assert.equal(b.length, 2, attack);
    assert.equal(b[0].to, attack.split(/[\s`]/)[0], "the fence's info string is the domain name, as the document has it");
    for (const x of b) assertInert(transitionHover(x.from, x.to, "at token 3"), `domain transition ${x.from} → ${x.to} at token 3`);
  }
});

test("marker-line domain names reach the hover as literal text", () => {
  const labelled = labelEditorText("<<<domain:[click](command:workbench.action.quit)>>>\nabc\n<<<domain:![p](https://evil.example/p.png)>>>\ndef\n");
  const [a, b] = labelled.spans.map((s) => s.domain);
  assertInert(transitionHover(a, b, "at token 5 (label)"), `${a} → ${b} at token 5 (label)`);
});

test("the token hover escapes the token's text and the policy label", () => {
  const token: TokenInfo = {
    index: 0,
    piece: "[click](command:x)`",
    tokenId: 7,
    start: 0,
    end: 1,
    nll: 1,
    experts: Int32Array.from([1, 2]),
    weights: Float32Array.from([0.5, 0.5]),
    entropy: Float32Array.from([1]),
    active: Uint8Array.from([2]),
  };
  const md = formatTokenHover(token, { moeLayers: [0], k: 2, trainedK: 2, policyLabel: "![p](https://evil.example/p.png)" });
  const { html } = render(md);
  assert.doesNotMatch(html, /<(a|img)\b/i, html);
  assert.match(render(md.split("\n")[1]).text, /!\[p\]\(https:\/\/evil\.example\/p\.png\)/);
});

test("mdEscape leaves nothing Markdown would read as syntax", () => {
  const every = Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)).join("");
  assertInert(mdEscape(every), every.trim());
  assertInert(mdEscape("# heading\n- item\n1. one\n| a | b |"), "# heading - item 1. one | a | b |");
});
