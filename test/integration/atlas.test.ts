// `moe-lens atlas DIR` as a user runs it (node bin/moe-lens.js, the real server, the demo
// model) on test/fixtures/atlas/: per-layer totals are tokens × k, MI stays within
// [0, log2 min(classes, E)], the counts equal those computed from the same file's trace
// export (also under AMG, where dropped slots must not count), classes by language id or by
// folder, --add-to merges into a saved atlas, and bad input is refused with a clear message.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { requireFile, ROOT, SERVER_BIN } from "../helpers";
import { ExpertAtlas, type ExpertAtlasJson } from "../../shared/expert-stats";
import type { AtlasDocument, AtlasLayerSummary } from "../../extension/core/atlas";

const CLI = path.join(ROOT, "bin", "moe-lens.js");
const CORPUS = path.join(ROOT, "test", "fixtures", "atlas");
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "moe-lens-atlas-"));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

requireFile(SERVER_BIN, "run `npm run build:native`");
requireFile(path.join(ROOT, "out", "cli.js"), "run `npm run build`");

function runCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "",
    stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.on("exit", (code) => resolve({ code, stdout, stderr })));
}

interface AtlasOutput {
  documents: AtlasDocument[];
  skipped: { file: string; reason: string }[];
  layers: AtlasLayerSummary[];
  atlas: ExpertAtlasJson;
}

async function atlasJson(args: string[]): Promise<AtlasOutput> {
  const r = await runCli(["atlas", ...args, "--threads", "2", "--json"]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as AtlasOutput;
}

/** Per-layer expert load ([layer][expert], weight > 0) computed from a `trace --out F.json` export, independently of shared/expert-stats.ts. */
async function loadFromExport(file: string, extra: string[]): Promise<{ tokens: number; load: number[][] }> {
  const out = path.join(dir, `${path.basename(file)}-${extra.join("")}.json`);
  const r = await runCli(["trace", file, "--out", out, "--threads", "2", ...extra]);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(fs.readFileSync(out, "utf8")) as {
    model: { n_expert: number };
    moe_layers: number[];
    tokens: { layers: { experts: number[]; weights: number[] }[] }[];
  };
  const load = j.moe_layers.map(() => new Array<number>(j.model.n_expert).fill(0));
  for (const t of j.tokens) t.layers.forEach((l, m) => l.experts.forEach((e, s) => l.weights[s] > 0 && load[m][e]++));
  return { tokens: j.tokens.length, load };
}

describe("moe-lens atlas DIR (issue 13)", () => {
  test("by language id: totals are tokens × k per layer, MI within [0, log2 min(classes, E)], --out is the same atlas", async () => {
    const out = path.join(dir, "atlas.json");
    const r = await atlasJson([CORPUS, "--out", out]);
    const atlas = ExpertAtlas.fromJSON(r.atlas);
    assert.equal(r.documents.length, 8);
    assert.equal(atlas.documents, 8);
    assert.deepEqual(atlas.classNames, ["markdown", "python", "plaintext"]);
    assert.deepEqual(r.skipped, []);
    const tokens = r.documents.reduce((s, d) => s + d.tokens, 0);
    assert.ok(tokens > 500, `${tokens} tokens`);
    const maxMi = Math.log2(Math.min(atlas.classNames.length, atlas.E));
    assert.equal(r.layers.length, atlas.L);
    for (let l = 0; l < atlas.L; l++) {
      const load = atlas.layerLoad(l);
      assert.equal(
        load.reduce((s, x) => s + x, 0),
        tokens * atlas.K,
        `layer ${l}: every token's k slots are selections under the model's own routing`,
      );
      assert.equal(atlas.layerTokens(l), tokens);
      const s = atlas.specialisation(l);
      assert.ok(s.miBits >= 0 && s.miBits <= maxMi, `layer ${l}: MI ${s.miBits} outside [0, ${maxMi}]`);
      assert.equal(r.layers[l].miBits, s.miBits);
      assert.equal(r.layers[l].balance.total, tokens * atlas.K);
      for (const name of atlas.classNames) {
        const top = r.layers[l].topExperts[name];
        assert.equal(top.length, 3);
        assert.ok(top[0].lift >= top[1].lift && top[1].lift >= top[2].lift, `layer ${l}, ${name}: ranked by lift`);
      }
    }
    // Per class, the token counts are those of its documents.
    const python = atlas.classNames.indexOf("python");
    assert.equal(
      atlas.specialisation(0).classTokens[python],
      r.documents.filter((d) => d.className === "python").reduce((s, d) => s + d.tokens, 0),
    );
    assert.deepEqual(ExpertAtlas.fromJSON(JSON.parse(fs.readFileSync(out, "utf8"))).toJSON(), r.atlas);
  });

  test("the counts equal those of the file's own trace export, also under AMG where dropped slots do not count", async () => {
    const file = path.join(CORPUS, "code", "gcd.py");
    for (const policy of [[], ["--amg", "0.5"]]) {
      const r = await atlasJson([CORPUS, "--glob", "code/gcd.py", ...policy]);
      const atlas = ExpertAtlas.fromJSON(r.atlas);
      const fromExport = await loadFromExport(file, policy);
      assert.equal(r.documents[0].tokens, fromExport.tokens);
      let total = 0;
      for (let l = 0; l < atlas.L; l++) {
        assert.deepEqual([...atlas.layerLoad(l)], fromExport.load[l], `layer ${l}, policy ${policy.join(" ") || "baseline"}`);
        total += fromExport.load[l].reduce((s, x) => s + x, 0);
      }
      if (policy.length) assert.ok(total < fromExport.tokens * atlas.L * atlas.K, `AMG 0.5 dropped no slot (${total} selections)`);
    }
  });

  test("--class-by folder, and --add-to merges a saved atlas: code + the rest = the whole folder", async () => {
    const whole = await atlasJson([CORPUS, "--class-by", "folder"]);
    assert.deepEqual(whole.atlas.classes.map((c) => c.name).sort(), [".", "code", "de", "en", "math"]);
    const codeOnly = path.join(dir, "code-atlas.json");
    await atlasJson([CORPUS, "--class-by", "folder", "--glob", "code/*", "--out", codeOnly]);
    const merged = await atlasJson([CORPUS, "--class-by", "folder", "--glob", "de/*,en/*,math/*,README.md", "--add-to", codeOnly]);
    assert.equal(merged.atlas.documents, whole.atlas.documents);
    const byName = (j: ExpertAtlasJson) => Object.fromEntries(j.classes.map((c) => [c.name, c]));
    assert.deepEqual(byName(merged.atlas), byName(whole.atlas));
  });

  test("the printed table names every layer, and bad input is refused with a clear message", async () => {
    const r = await runCli(["atlas", CORPUS, "--glob", "*.md", "--threads", "2"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /3 files, \d+ tokens traced into an atlas of 3 documents, \d+ MoE layers × \d+ experts, k = \d+; classes: markdown/);
    assert.match(r.stdout, /layer\s+MI \(bits\)\s+cv\s+max\/mean\s+entropy \(norm\.\)\s+dead\s+top experts of markdown \(lift\)/);
    assert.match(r.stdout, /\n0\s+\d\.\d{4}\s+\d\.\d{3}\s+\d+\.\d{2}\s+\d\.\d{3}\s+\d+\s+(e\d+ ×\d+\.\d{2} ?){3}\n/);

    const missing = await runCli(["atlas", path.join(dir, "nowhere")]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /no such folder: .*nowhere/);
    const badClass = await runCli(["atlas", CORPUS, "--class-by", "size"]);
    assert.equal(badClass.code, 2);
    assert.match(badClass.stderr, /--class-by must be "language" or "folder", got "size"/);
    const noMatch = await runCli(["atlas", CORPUS, "--glob", "*.rs", "--threads", "2"]);
    assert.equal(noMatch.code, 2);
    assert.match(noMatch.stderr, /no files in .* match \*\.rs/);

    // A binary file is skipped and listed; a folder of nothing but binary files is an error.
    const mixed = path.join(dir, "mixed");
    fs.mkdirSync(mixed);
    fs.writeFileSync(path.join(mixed, "blob.bin"), Buffer.from([0x00, 0xff, 0xfe, 0x80]));
    const onlyBinary = await runCli(["atlas", mixed, "--threads", "2"]);
    assert.equal(onlyBinary.code, 1);
    assert.match(onlyBinary.stderr, /none of the 1 files in .* is text that can be traced/);
    fs.copyFileSync(path.join(CORPUS, "math", "arithmetic.txt"), path.join(mixed, "arithmetic.txt"));
    const withText = await atlasJson([mixed]);
    assert.deepEqual(withText.skipped, [{ file: "blob.bin", reason: "not UTF-8 text" }]);
    assert.equal(withText.documents.length, 1);
    const badAtlas = path.join(dir, "bad-atlas.json");
    fs.writeFileSync(badAtlas, JSON.stringify({ format: "something else" }));
    const badAddTo = await runCli(["atlas", CORPUS, "--add-to", badAtlas]);
    assert.equal(badAddTo.code, 2);
    assert.match(badAddTo.stderr, /--add-to .*bad-atlas\.json: not an expert atlas/);
  });
});
