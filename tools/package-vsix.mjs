#!/usr/bin/env node
// `npm run package`: builds the extension (production bundle) and packs a platform-specific
// .vsix with vsce: out/extension.js, out/webview/, the native server out/bin/moe-lens-server
// built for *this* platform, media/ (with the demo model), README and LICENSE — see
// .vscodeignore. node_modules is not packed (--no-dependencies): everything is bundled.
//
//   node tools/package-vsix.mjs [--target linux-x64] [--out dist/] [--skip-build]
//
// The target defaults to this machine (linux-x64, linux-arm64, darwin-arm64, darwin-x64,
// win32-x64). The server is native code, so build each platform's .vsix on that platform
// (or cross-compile native/ and put the binary in out/bin/ first) and pass its --target.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
const target = opt("--target", `${process.platform}-${process.arch}`);
const outDir = path.resolve(root, opt("--out", "dist"));
const pkg = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8"));

function fail(msg) {
  console.error(`package: ${msg}`);
  process.exit(1);
}
function run(cmd, argv) {
  console.log(`$ ${cmd} ${argv.join(" ")}`);
  execFileSync(cmd, argv, { cwd: root, stdio: "inherit" });
}

if (!args.includes("--skip-build")) {
  // A production build writes no source maps; drop any a development build left behind.
  for (const f of fs.readdirSync(path.join(root, "out"), { recursive: true })) if (String(f).endsWith(".map")) fs.rmSync(path.join(root, "out", String(f)));
  run(process.execPath, [path.join(root, "tools", "build.mjs"), "--production"]);
}

const exe = target.startsWith("win32") ? "moe-lens-server.exe" : "moe-lens-server";
const required = [
  ["out/extension.js", "npm run build"],
  ["out/webview/panel.js", "npm run build"],
  [`out/bin/${exe}`, "npm run build:native"],
  ["media/models/demo-moe.gguf", "build the demo model (README, tools/train)"],
];
const missing = required.filter(([f]) => !fs.existsSync(path.join(root, f)));
if (missing.length) fail(`missing:\n${missing.map(([f, how]) => `  ${f}  (${how})`).join("\n")}`);

const vsce = path.join(root, "node_modules", "@vscode", "vsce", "vsce");
if (!fs.existsSync(vsce)) fail("@vscode/vsce is not installed; run npm ci");
fs.mkdirSync(outDir, { recursive: true });
const file = path.join(outDir, `${pkg.name}-${target}-${pkg.version}.vsix`);
const extra = [];
if (!pkg.repository) extra.push("--allow-missing-repository", "--no-rewrite-relative-links");
if (!["LICENSE", "LICENSE.md", "LICENSE.txt"].some((f) => fs.existsSync(path.join(root, f)))) extra.push("--skip-license");
run(process.execPath, [vsce, "package", "--no-dependencies", "--target", target, "--out", file, ...extra]);

// Check that the pieces the extension needs at run time are inside.
const listing = execFileSync(process.execPath, [vsce, "ls", "--no-dependencies"], { cwd: root, encoding: "utf8" });
for (const [f] of required) {
  if (!listing.split("\n").some((l) => l.trim() === f)) fail(`${f} is not in the package (check .vscodeignore)`);
}
const mb = (fs.statSync(file).size / 2 ** 20).toFixed(1);
console.log(`package: ${path.relative(root, file)} (${mb} MiB, target ${target})`);
