// The extension's keybindings (package.json contributes.keybindings, issue 13): each names a
// contributed command, the main commands have one, and all are chords behind one prefix
// (ctrl+alt+m, on macOS cmd+alt+m) that VS Code binds nothing to by default, so the second
// key can be any letter without replacing a default, and no chord is given twice.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { ROOT } from "../helpers";

interface Keybinding {
  command: string;
  key: string;
  mac?: string;
}

const manifest = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")) as {
  contributes: { commands: Array<{ command: string }>; keybindings?: Keybinding[] };
};
const keybindings = manifest.contributes.keybindings ?? [];

test("every keybinding names a contributed command", () => {
  const commands = new Set(manifest.contributes.commands.map((c) => c.command));
  for (const k of keybindings) assert.ok(commands.has(k.command), `${k.key} → ${k.command}, which package.json does not contribute`);
});

test("the main commands have keybindings", () => {
  const bound = new Set(keybindings.map((k) => k.command));
  for (const c of ["moeLens.traceSelection", "moeLens.traceDocument", "moeLens.showPanel", "moeLens.toggleAmg"]) assert.ok(bound.has(c), c);
});

test("every keybinding is a chord behind ctrl+alt+m (cmd+alt+m on macOS), each used once", () => {
  for (const k of keybindings) {
    assert.match(k.key, /^ctrl\+alt\+m [a-z]$/, k.command);
    assert.equal(k.mac, k.key.replace(/^ctrl\+/, "cmd+"), `${k.command}: the same chord on macOS`);
  }
  const keys = keybindings.map((k) => k.key);
  assert.equal(new Set(keys).size, keys.length, `a chord used twice: ${keys.join(", ")}`);
});
