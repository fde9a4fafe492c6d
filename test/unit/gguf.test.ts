// Regression test for issue 17, item 10 (TypeScript side): Select Model… and the command line
// read a model's GGUF metadata before (re)starting the server. A GGUF cut inside its metadata
// (16, 24, 100 bytes) was described as "a dense model (, 0 layers…)", one cut later was
// accepted, and a folder gave "EISDIR … read" without its path. Every cut of the demo model
// must be diagnosed as truncated or corrupt, naming the file; the whole file passes.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { inspectModel, ModelFileError, requireMoeModel } from "../../extension/core/gguf";
import { DEMO_MODEL } from "../helpers";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "moe-lens-gguf-"));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

test("the demo model reads as a MoE model", async () => {
  const s = await requireMoeModel(DEMO_MODEL);
  assert.equal(s.architecture, "qwen3moe");
  assert.ok(s.isMoe && s.nExpert >= 8 && s.nLayer >= 4);
});

test("a GGUF cut anywhere is refused as truncated or corrupt, with its path", async () => {
  const whole = fs.readFileSync(DEMO_MODEL);
  const cuts = [
    8,
    16,
    24,
    100,
    1000,
    50_000,
    Math.floor(whole.length * 0.1),
    Math.floor(whole.length * 0.5),
    Math.floor(whole.length * 0.99),
    whole.length - 1,
  ];
  for (const cut of cuts) {
    const file = path.join(dir, `cut-${cut}.gguf`);
    fs.writeFileSync(file, whole.subarray(0, cut));
    await assert.rejects(inspectModel(file), (e: Error) => {
      assert.ok(e instanceof ModelFileError, `${cut}: ${e.message}`);
      assert.match(e.message, /truncated or corrupt/, `cut at ${cut} bytes`);
      assert.ok(e.message.includes(file), "names the file");
      assert.doesNotMatch(e.message, /dense/);
      return true;
    });
  }
});

// Issue 13: a metadata string length with one byte flipped made node-llama-cpp's reader abort
// the process inside fs.read (byte 27: the first key's length, now 4,278,190,100) or read
// for minutes (byte 418: a 16 MB string in a file of 8 MB). Both are corrupt, and said so.
test("a GGUF with a corrupt metadata length is refused as corrupt, with the reason", async () => {
  const whole = fs.readFileSync(DEMO_MODEL);
  for (const at of [27, 418]) {
    const file = path.join(dir, `flip-${at}.gguf`);
    const corrupt = Buffer.from(whole);
    corrupt[at] ^= 0xff;
    fs.writeFileSync(file, corrupt);
    await assert.rejects(inspectModel(file), (e: Error) => {
      assert.ok(e instanceof ModelFileError, `${at}: ${e.message}`);
      assert.match(e.message, /a string of \d+ bytes runs past the end of the file; the file is truncated or corrupt/, `byte ${at} flipped`);
      assert.ok(e.message.includes(file), "names the file");
      return true;
    });
  }
});

test("a folder, a missing file and a non-GGUF file are refused by name", async () => {
  await assert.rejects(inspectModel(dir), (e: Error) => e.message.includes(dir) && /is a folder, not a model file/.test(e.message));
  await assert.rejects(inspectModel(path.join(dir, "none.gguf")), /model file not found: .*none\.gguf/);
  const notes = path.join(dir, "notes.gguf");
  fs.writeFileSync(notes, "just some text");
  await assert.rejects(inspectModel(notes), /not a GGUF file: .*notes\.gguf/);
});
