#!/usr/bin/env node
// `npm run fmt` (rewrite) and `npm run fmt:check` (report, exit 1 when a file would change):
// prettier over the TypeScript, JavaScript, JSON and CSS (.prettierrc.json, .prettierignore)
// and clang-format over native/ (native/.clang-format). prettier is a pinned devDependency;
// clang-format is a system tool (Debian: `apt-get install clang-format`): when it is missing
// this says so and the C++ part fails, rather than passing silently.
//   node tools/fmt.mjs --write|--check [--only ts|cpp]
import { spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const write = process.argv.includes("--write");
const check = process.argv.includes("--check");
const only = process.argv.includes("--only") ? process.argv[process.argv.indexOf("--only") + 1] : undefined;
if (write === check) {
  console.error("usage: node tools/fmt.mjs --write|--check [--only ts|cpp]");
  process.exit(2);
}

/** The C++ sources clang-format owns: every tracked .cpp/.h under native/. */
function nativeSources() {
  const r = spawnSync("git", ["ls-files", "native/*.cpp", "native/*.h", "native/**/*.cpp", "native/**/*.h"], { cwd: root, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`git ls-files failed: ${r.stderr}`);
  return [...new Set(r.stdout.split("\n").filter(Boolean))];
}

let failed = false;

if (only !== "cpp") {
  const prettier = path.join(root, "node_modules", ".bin", "prettier");
  const r = spawnSync(prettier, [write ? "--write" : "--check", "--log-level", write ? "warn" : "log", "**/*.{ts,mjs,js,json,css}"], {
    cwd: root,
    stdio: "inherit",
  });
  if (r.error) {
    console.error(`fmt: cannot run prettier (${r.error.message}); run npm ci`);
    failed = true;
  } else if (r.status !== 0) failed = true;
}

if (only !== "ts") {
  const version = spawnSync("clang-format", ["--version"], { encoding: "utf8" });
  if (version.error) {
    console.error(
      "fmt: clang-format is not installed, so native/ was not " +
        (write ? "formatted" : "checked") +
        ". Install it (Debian/Ubuntu: apt-get install clang-format; macOS: brew install clang-format) and run this again.",
    );
    failed = true;
  } else {
    const files = nativeSources();
    const args = write ? ["-i", "--style=file"] : ["--dry-run", "--Werror", "--style=file"];
    const r = spawnSync("clang-format", [...args, ...files], { cwd: root, stdio: "inherit" });
    if (r.status !== 0) failed = true;
    else console.log(`clang-format (${version.stdout.trim()}): ${files.length} native files ${write ? "formatted" : "already formatted"}`);
  }
}

process.exit(failed ? 1 : 0);
