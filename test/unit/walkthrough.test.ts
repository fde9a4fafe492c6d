// The getting-started walkthrough (package.json contributes.walkthroughs, issue 13): its steps
// cover the researcher's first session in order, every command a step links to or completes
// on is contributed, and every step's markdown exists under media/walkthrough/ and is packaged.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { ROOT } from "../helpers";

interface Step {
  id: string;
  title: string;
  description: string;
  media: { markdown?: string; image?: string; altText?: string };
  completionEvents?: string[];
}

const manifest = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")) as {
  contributes: { commands: Array<{ command: string }>; walkthroughs?: Array<{ id: string; title: string; steps: Step[] }> };
};
const walkthroughs = manifest.contributes.walkthroughs ?? [];
const commands = new Set(manifest.contributes.commands.map((c) => c.command));

test("one walkthrough, its steps in the order of a first session", () => {
  assert.equal(walkthroughs.length, 1);
  assert.deepEqual(
    walkthroughs[0].steps.map((s) => s.id),
    ["pickModel", "traceDocument", "readHeatmap", "togglePolicy", "comparePolicies", "exportTrace"],
  );
});

test("every step links to a contributed command and completes on one", () => {
  for (const s of walkthroughs[0].steps) {
    const links = [...s.description.matchAll(/\(command:([\w.]+)\)/g)].map((m) => m[1]);
    assert.ok(links.length > 0, `${s.id}: a command link`);
    for (const c of links) assert.ok(commands.has(c), `${s.id} links to ${c}, which package.json does not contribute`);
    assert.ok(s.completionEvents?.length, `${s.id}: a completion event`);
    for (const e of s.completionEvents!) {
      const m = /^onCommand:([\w.]+)$/.exec(e);
      assert.ok(m, `${s.id}: ${e} is an onCommand event`);
      assert.ok(commands.has(m[1]), `${s.id} completes on ${m[1]}, which package.json does not contribute`);
    }
  }
});

test("every step's markdown exists under media/walkthrough/, names its step's command, and is packaged", () => {
  for (const s of walkthroughs[0].steps) {
    const md = s.media.markdown;
    assert.ok(md && md.startsWith("media/walkthrough/") && md.endsWith(".md"), `${s.id}: media.markdown under media/walkthrough/`);
    const file = path.join(ROOT, md);
    assert.ok(fs.existsSync(file), `${s.id}: ${md} exists`);
    const text = fs.readFileSync(file, "utf8");
    assert.match(text, /^# /, `${md} starts with a heading`);
    assert.ok(text.includes(s.title.split(" ")[0]), `${md} is about "${s.title}"`);
  }
  const onDisk = fs.readdirSync(path.join(ROOT, "media", "walkthrough")).filter((f) => f.endsWith(".md"));
  assert.deepEqual(onDisk.sort(), walkthroughs[0].steps.map((s) => path.basename(s.media.markdown!)).sort(), "no stray or missing walkthrough pages");
  // .vscodeignore excludes everything, then lets media/** back into the .vsix.
  assert.match(fs.readFileSync(path.join(ROOT, ".vscodeignore"), "utf8"), /^!media\/\*\*$/m, "the .vsix ships media/walkthrough");
  // and the README's screenshots, which the extension's details page shows from the package
  const images = [...fs.readFileSync(path.join(ROOT, "README.md"), "utf8").matchAll(/\]\((docs\/images\/[^)]+)\)/g)].map((m) => m[1]);
  assert.ok(images.length >= 5, `README screenshots: ${images.join(", ")}`);
  for (const img of images) assert.ok(fs.existsSync(path.join(ROOT, img)), `${img} exists`);
  assert.match(fs.readFileSync(path.join(ROOT, ".vscodeignore"), "utf8"), /^!docs\/images\/\*\*$/m, "the .vsix ships docs/images");
});
