#!/usr/bin/env node
// One bundler (esbuild) for all three TypeScript outputs:
//   out/extension.js      the VS Code extension host (CommonJS, `vscode` external)
//   out/cli.js            the `moe-lens` command line (shares extension/core with the host)
//   out/webview/panel.js  the routing panel (browser IIFE) plus panel.css
// `--watch` rebuilds on change.
import * as esbuild from "esbuild";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const watch = process.argv.includes("--watch");
const production = process.argv.includes("--production");

const common = { bundle: true, sourcemap: !production, minify: production, logLevel: "info", absWorkingDir: repoRoot };

const builds = [
  {
    ...common,
    entryPoints: ["extension/vscode/extension.ts"],
    outfile: "out/extension.js",
    platform: "node",
    format: "cjs",
    target: "node20",
    external: ["vscode"],
  },
  {
    ...common,
    entryPoints: ["extension/cli/main.ts"],
    outfile: "out/cli.js",
    platform: "node",
    format: "cjs",
    target: "node20",
  },
  {
    ...common,
    entryPoints: ["webview/main.ts"],
    outfile: "out/webview/panel.js",
    platform: "browser",
    format: "iife",
    target: "chrome120",
  },
].filter((b) => fs.existsSync(path.join(repoRoot, b.entryPoints[0])));

/** The panel's stylesheet is not bundled: it is copied next to panel.js. */
function copyCss() {
  const css = path.join(repoRoot, "webview", "panel.css");
  if (!fs.existsSync(css)) return;
  fs.mkdirSync(path.join(repoRoot, "out", "webview"), { recursive: true });
  fs.copyFileSync(css, path.join(repoRoot, "out", "webview", "panel.css"));
}

if (watch) {
  // `npm run watch` (and the VS Code task of the same name): rebuild every bundle on change.
  for (const b of builds) await (await esbuild.context(b)).watch();
  copyCss();
  fs.watch(path.join(repoRoot, "webview"), (_event, name) => {
    if (name === "panel.css") copyCss();
  });
} else {
  await Promise.all(builds.map((b) => esbuild.build(b)));
  copyCss();
}
