// Runs inside the VS Code desktop extension host (see run.ts). No mocha: a list of checks,
// each an async function; the first failure rejects run() and test-electron reports it.

import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import * as vscode from "vscode";

const EXT_ID = "moe-lens.moe-lens";

const checks: Array<[string, () => Promise<void>]> = [
  [
    "the extension is present and not yet active (lazy activation)",
    async () => {
      const ext = vscode.extensions.getExtension(EXT_ID);
      assert.ok(ext, `${EXT_ID} is installed`);
    },
  ],
  [
    "the commands are registered after activation",
    async () => {
      await vscode.commands.executeCommand("moeLens.showPanel");
      const all = await vscode.commands.getCommands(true);
      for (const c of [
        "traceSelection",
        "traceDocument",
        "selectModel",
        "startServer",
        "stopServer",
        "restartServer",
        "setPolicy",
        "toggleAmg",
        "comparePolicies",
        "exportTrace",
        "showPanel",
        "openPanelInEditor",
        "calibrateAnt",
        "buildAtlas",
      ]) {
        assert.ok(all.includes(`moeLens.${c}`), `moeLens.${c}`);
      }
      assert.ok(vscode.extensions.getExtension(EXT_ID)!.isActive);
    },
  ],
  [
    "Trace Document traces the sample when the server and demo model are built",
    async () => {
      const ext = vscode.extensions.getExtension(EXT_ID)!;
      const root = ext.extensionPath;
      if (!fs.existsSync(path.join(root, "out", "bin", "moe-lens-server")) || !fs.existsSync(path.join(root, "media", "models", "demo-moe.gguf"))) {
        throw new Error("out/bin/moe-lens-server or media/models/demo-moe.gguf is missing: run npm run build:native and build the demo model");
      }
      const folder = vscode.workspace.workspaceFolders![0].uri;
      const doc = await vscode.workspace.openTextDocument(vscode.Uri.joinPath(folder, "sample.md"));
      await vscode.window.showTextDocument(doc);
      const rec = (await vscode.commands.executeCommand("moeLens.traceDocument")) as { count: number; summary?: { avg_active: number } } | undefined;
      assert.ok(rec && rec.count > 0, "a trace with tokens");
      assert.ok(rec.summary && rec.summary.avg_active > 0);
      const hovers = (await vscode.commands.executeCommand("vscode.executeHoverProvider", doc.uri, new vscode.Position(0, 3))) as vscode.Hover[];
      const text = hovers.flatMap((h) => h.contents.map((c) => (typeof c === "string" ? c : "value" in c ? c.value : ""))).join("\n");
      assert.match(text, /L\d+\s+e\d+/);
    },
  ],
];

export async function run(): Promise<void> {
  for (const [name, fn] of checks) {
    try {
      await fn();
      console.log(`ok - ${name}`);
    } catch (e) {
      console.error(`not ok - ${name}`);
      throw e;
    }
  }
}
