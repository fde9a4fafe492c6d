#!/usr/bin/env node
// `npm test`: every suite the project has, in order, then one summary line.
//   1. lint (eslint), type-check (tsc --noEmit) and format check (prettier, clang-format: npm run fmt)
//   2. build (esbuild bundles)
//   3. native C++ unit tests (out/bin/moe-lens-native-tests; skipped with one line when the
//      native build is missing, so `npm test -- unit` runs without llama.cpp)
//   4. node:test suites: test/unit, test/webview, test/integration, test/vulkan, test/e2e
//      (bundled by esbuild); test/vulkan compares the Vulkan build (out/bin-vulkan/) with the
//      CPU build and skips, test by test, where there is no Vulkan build
// Exits non-zero on any failure. `npm test -- unit integration` runs only those suites.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const SUITES = ["unit", "webview", "integration", "vulkan", "e2e"];
const only = process.argv.slice(2).filter((a) => SUITES.includes(a));
const suites = only.length ? only : SUITES;
const results = { passed: 0, failed: 0, skipped: 0 };
const failures = [];

function step(name, cmd, args, opts = {}) {
  console.log(`\n=== ${name}: ${cmd} ${args.join(" ")}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: "inherit", ...opts });
  const ok = r.status === 0;
  if (!ok) failures.push(name);
  return ok;
}

function listTests(dir) {
  const abs = path.join(root, "test", dir);
  if (!fs.existsSync(abs)) return [];
  return fs
    .readdirSync(abs, { recursive: true })
    .filter((f) => String(f).endsWith(".test.ts"))
    .map((f) => path.join(abs, String(f)))
    .sort();
}

if (!only.length) {
  if (step("lint", "npx", ["eslint", "--max-warnings=0", "."])) results.passed++;
  else results.failed++;
  if (step("typecheck", "npx", ["tsc", "-p", ".", "--noEmit"])) results.passed++;
  else results.failed++;
  if (step("format", "node", ["tools/fmt.mjs", "--check"])) results.passed++;
  else results.failed++;
}
if (!step("build", "node", ["tools/build.mjs"])) {
  console.error("build failed; not running the tests");
  process.exit(1);
}

const nativeTests = path.join(root, "out", "bin", process.platform === "win32" ? "moe-lens-native-tests.exe" : "moe-lens-native-tests");
if (!only.length || only.includes("unit")) {
  if (!fs.existsSync(nativeTests)) {
    // The unit suite runs without the llama.cpp build; the native tests need it.
    console.log("\n=== native C++ unit tests: skipped, out/bin/moe-lens-native-tests is missing (npm run build:native builds it)");
    results.skipped++;
  } else {
    console.log("\n=== native C++ unit tests");
    const r = spawnSync(nativeTests, [], { encoding: "utf8" });
    process.stdout.write(r.stdout);
    const m = /(\d+) passed, (\d+) failed/.exec(r.stdout);
    if (m) {
      results.passed += Number(m[1]);
      results.failed += Number(m[2]);
    }
    if (r.status !== 0) failures.push("native");
  }
}

const outDir = path.join(root, "out", "test");
fs.rmSync(outDir, { recursive: true, force: true });
for (const suite of suites) {
  const files = listTests(suite);
  if (!files.length) continue;
  const bundled = [];
  for (const f of files) {
    const outfile = path.join(outDir, suite, path.relative(path.join(root, "test", suite), f).replace(/\.ts$/, ".js"));
    await esbuild.build({
      entryPoints: [f],
      outfile,
      bundle: true,
      platform: "node",
      format: "cjs",
      target: "node20",
      sourcemap: "inline",
      external: ["playwright-core", "esbuild", "eslint", "vscode"],
      logLevel: "warning",
    });
    bundled.push(outfile);
  }
  const tap = path.join(outDir, `${suite}.tap`);
  console.log(`\n=== ${suite} tests (${files.length} files)`);
  const r = spawnSync(
    process.execPath,
    [
      "--test",
      "--test-concurrency=1",
      "--test-reporter=spec",
      "--test-reporter-destination=stdout",
      "--test-reporter=tap",
      `--test-reporter-destination=${tap}`,
      ...bundled,
    ],
    { cwd: root, stdio: "inherit", env: { ...process.env, MOE_LENS_ROOT: root } },
  );
  const summary = fs.existsSync(tap) ? fs.readFileSync(tap, "utf8") : "";
  const count = (k) => Number((new RegExp(`^# ${k} (\\d+)`, "m").exec(summary) ?? [0, 0])[1]);
  results.passed += count("pass");
  results.failed += count("fail") + count("cancelled");
  results.skipped += count("skipped");
  if (r.status !== 0) failures.push(suite);
}

console.log(`\n${failures.length ? `FAILED suites: ${failures.join(", ")}` : "all suites green"}`);
console.log(`tests: ${results.passed} passed, ${results.failed} failed, ${results.skipped} skipped`);
process.exit(failures.length || results.failed ? 1 : 0);
