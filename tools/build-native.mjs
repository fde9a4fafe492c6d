#!/usr/bin/env node
// Builds the native side (moe-lens-server, its C++ tests, and the llama.cpp reference tools
// llama-perplexity and test-llama-archs) from the llama.cpp source bundled in the pinned
// node-llama-cpp package. No network: the source is a git bundle inside node_modules.
//
// The source clone and the CMake build directory live in a cache outside the checkout,
// keyed by llama.cpp version, patch hash and backend, so rebuilding on one machine is
// incremental while a cold machine builds from scratch with the same command.
//
// llama.cpp is patched: every native/patches/*.patch is applied, in name order, to the clean
// tree (native/patches/README.md says what each changes and why). A patch that does not apply
// stops the build with the file's name and git's reason.
//
// Environment: MOE_LENS_GPU=cuda|vulkan|metal selects a GPU backend (default: CPU; a GPU
// build's binaries go to out/bin-<backend>/ instead of out/bin/);
// MOE_LENS_CACHE_DIR overrides the cache root; MOE_LENS_JOBS the parallel build jobs;
// MOE_LENS_LLAMA_SRC=DIR builds against a llama.cpp tree you are editing (patches are not
// applied to it; see native/patches/README.md for the round trip).
// MOE_LENS_SANITIZE=address (ASan + UBSan) or thread (TSan) builds the server and the C++
// tests instrumented, in their own cache directory, into out/bin-asan/ or out/bin-tsan/
// (the fuzzer takes them with --server; see native/API.md, "Hardening").
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const nodeLlamaDir = path.join(repoRoot, "node_modules", "node-llama-cpp", "llama");
const bundlePath = path.join(nodeLlamaDir, "gitRelease.bundle");
const patchesDir = path.join(repoRoot, "native", "patches");

const BACKEND_FLAGS = {
  cpu: [],
  cuda: ["-DGGML_CUDA=ON"],
  vulkan: ["-DGGML_VULKAN=ON"],
  metal: ["-DGGML_METAL=ON"],
};
// Every build has llama.cpp's RPC backend (a model's layers spread over `ggml-rpc-server`s on
// other machines) besides its local one.
const COMMON_FLAGS = ["-DGGML_RPC=ON"];
const TARGETS = ["moe-lens-server", "moe-lens-native-tests", "moe-lens-bench", "ggml-rpc-server", "llama-perplexity", "test-llama-archs"];
const SANITIZERS = { address: "asan", thread: "tsan" };

function fail(message) {
  console.error(`build:native: ${message}`);
  process.exit(1);
}

function run(cmd, args, opts = {}) {
  console.log(`$ ${cmd} ${args.join(" ")}`);
  execFileSync(cmd, args, { stdio: "inherit", ...opts });
}

const backend = (process.env.MOE_LENS_GPU || "cpu").toLowerCase();
if (!(backend in BACKEND_FLAGS)) fail(`unknown MOE_LENS_GPU=${backend}; use one of ${Object.keys(BACKEND_FLAGS).join(", ")}`);
const sanitize = (process.env.MOE_LENS_SANITIZE || "").toLowerCase();
if (sanitize && !(sanitize in SANITIZERS)) fail(`unknown MOE_LENS_SANITIZE=${sanitize}; use one of ${Object.keys(SANITIZERS).join(", ")}`);
if (!fs.existsSync(bundlePath)) fail(`${bundlePath} is missing; run \`npm ci\` first`);

const llamaTag = JSON.parse(fs.readFileSync(path.join(nodeLlamaDir, "llama.cpp.info.json"), "utf8")).tag;
const nodeLlamaVersion = JSON.parse(fs.readFileSync(path.join(repoRoot, "node_modules", "node-llama-cpp", "package.json"), "utf8")).version;
const patchFiles = fs.existsSync(patchesDir)
  ? fs
      .readdirSync(patchesDir)
      .filter((f) => f.endsWith(".patch"))
      .sort()
  : [];
const patchHash = createHash("sha256");
for (const f of patchFiles) patchHash.update(f).update(fs.readFileSync(path.join(patchesDir, f)));
// MOE_LENS_PORTABLE=1 builds for any CPU of the architecture (no -march=native), for a .vsix
// meant for other machines.
const portable = process.env.MOE_LENS_PORTABLE === "1";
const configureFlags = [
  ...COMMON_FLAGS,
  ...BACKEND_FLAGS[backend],
  ...(portable ? ["-DGGML_NATIVE=OFF"] : []),
  ...(sanitize ? [`-DMOE_LENS_SANITIZE=${sanitize}`] : []),
];
const flagsHash = createHash("sha256").update(configureFlags.join(" ")).digest("hex").slice(0, 6);
const devSrc = process.env.MOE_LENS_LLAMA_SRC ? path.resolve(process.env.MOE_LENS_LLAMA_SRC) : null;
if (devSrc && !fs.existsSync(path.join(devSrc, "include", "llama.h"))) fail(`MOE_LENS_LLAMA_SRC=${devSrc} is not a llama.cpp tree`);
const source = devSrc ? `dev-${createHash("sha256").update(devSrc).digest("hex").slice(0, 8)}` : `p${patchHash.digest("hex").slice(0, 10)}`;
const key = `llama-${llamaTag}-nlc${nodeLlamaVersion}-${source}-${backend}${portable ? "-portable" : ""}${sanitize ? `-${SANITIZERS[sanitize]}` : ""}-f${flagsHash}`;
// The CPU build goes to out/bin/ (what the extension bundles and the tests use); a GPU or
// sanitizer build goes beside it, to out/bin-<backend>/ or out/bin-asan|tsan/, so builds can be
// compared and the CPU one is never overwritten.
const outBinDir = path.join(repoRoot, "out", sanitize ? `bin-${SANITIZERS[sanitize]}` : backend === "cpu" ? "bin" : `bin-${backend}`);

const cacheRoot = process.env.MOE_LENS_CACHE_DIR || path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache"), "moe-lens");
const cacheDir = path.join(cacheRoot, "native", key);
const srcDir = devSrc ?? path.join(cacheDir, "llama.cpp");
const buildDir = path.join(cacheDir, "build");
fs.mkdirSync(cacheDir, { recursive: true });

// Source: clone the bundle once per key and apply our patches on top. The tree counts as ready
// only once every patch applied (the marker), so an interrupted or failed patch is redone.
const patchedMarker = path.join(cacheDir, "patched");
if (!devSrc && !fs.existsSync(patchedMarker)) {
  fs.rmSync(srcDir, { recursive: true, force: true });
  run("git", ["-c", "advice.detachedHead=false", "clone", "--quiet", bundlePath, srcDir]);
  for (const f of patchFiles) {
    const patch = path.join(patchesDir, f);
    try {
      execFileSync("git", ["-C", srcDir, "apply", "--check", patch], { stdio: "pipe" });
    } catch (e) {
      fail(
        `native/patches/${f} does not apply to llama.cpp ${llamaTag} (node-llama-cpp ${nodeLlamaVersion}):\n` +
          `${String(e.stderr || e.message).trim()}\n` +
          "Rebase the patch on the new tree (native/patches/README.md) or pin the previous node-llama-cpp.",
      );
    }
    run("git", ["-C", srcDir, "apply", patch]);
  }
  fs.writeFileSync(patchedMarker, patchFiles.join("\n") + "\n");
}

// CMake ties a build directory to one source directory, and every clone of this project
// (CI clones into a new directory each run) has its own path. So CMake builds a mirror of
// native/ kept in the cache: files are copied only when their content changed, so their
// timestamps, and the incremental build, survive from one checkout to the next.
const nativeMirror = path.join(cacheDir, "native-src");
function mirror(from, to) {
  fs.mkdirSync(to, { recursive: true });
  const wanted = new Set(fs.readdirSync(from).filter((n) => n !== "patches"));
  for (const name of fs.readdirSync(to)) if (!wanted.has(name)) fs.rmSync(path.join(to, name), { recursive: true, force: true });
  for (const name of wanted) {
    const src = path.join(from, name),
      dst = path.join(to, name);
    if (fs.statSync(src).isDirectory()) mirror(src, dst);
    else if (!fs.existsSync(dst) || !fs.readFileSync(src).equals(fs.readFileSync(dst))) fs.copyFileSync(src, dst);
  }
}
mirror(path.join(repoRoot, "native"), nativeMirror);
console.log(`build:native: native/ mirrored to ${nativeMirror} (compiler messages name files there)`);

const jobs = process.env.MOE_LENS_JOBS || String(Math.max(1, os.availableParallelism()));
// A configure that failed (a missing package, say) still leaves CMakeCache.txt but generates
// nothing (cmake_install.cmake comes with every generator's output); configure again then.
if (!fs.existsSync(path.join(buildDir, "cmake_install.cmake"))) fs.rmSync(path.join(buildDir, "CMakeCache.txt"), { force: true });
if (!fs.existsSync(path.join(buildDir, "CMakeCache.txt"))) {
  // Sanitizer builds keep optimisation (the fuzz must run at a useful speed) and add debug info.
  run("cmake", [
    "-S",
    nativeMirror,
    "-B",
    buildDir,
    `-DCMAKE_BUILD_TYPE=${sanitize ? "RelWithDebInfo" : "Release"}`,
    `-DLLAMA_SOURCE_DIR=${srcDir}`,
    ...configureFlags,
  ]);
}
// --llama-only: just llama.cpp's own tools (rpc-server and the reference tools)
const targets = sanitize ? TARGETS.slice(0, 2) : process.argv.includes("--llama-only") ? TARGETS.filter((t) => !t.startsWith("moe-lens-")) : TARGETS;
run("cmake", ["--build", buildDir, "--config", "Release", "-j", jobs, "--target", ...targets]);

fs.mkdirSync(outBinDir, { recursive: true });
for (const t of targets) {
  const exe = process.platform === "win32" ? `${t}.exe` : t;
  // Copy then rename: a running server keeps its old binary (no ETXTBSY).
  const dest = path.join(outBinDir, exe);
  fs.copyFileSync(path.join(buildDir, "bin", exe), `${dest}.tmp`);
  fs.chmodSync(`${dest}.tmp`, 0o755);
  fs.renameSync(`${dest}.tmp`, dest);
}
fs.writeFileSync(path.join(outBinDir, "build-info.json"), JSON.stringify({ llamaTag, nodeLlamaVersion, backend, portable, sanitize, key }, null, 2) + "\n");
console.log(`build:native: ${targets.join(", ")} -> ${path.relative(repoRoot, outBinDir)}/ (cache ${cacheDir})`);
