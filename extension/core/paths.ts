// Where the bundled pieces live, relative to the extension (or repository) root.
import fs from "node:fs";
import path from "node:path";

/** The repository / extension root: the nearest ancestor of this bundle with our package.json. */
export function repoRootFromHere(start: string = __dirname): string {
  let dir = start;
  for (;;) {
    const pkg = path.join(dir, "package.json");
    if (fs.existsSync(pkg)) {
      try {
        if (JSON.parse(fs.readFileSync(pkg, "utf8")).name === "moe-lens") return dir;
      } catch {
        // not ours; keep walking up
      }
    }
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`cannot find the MoE Lens root above ${start}`);
    dir = parent;
  }
}

const exe = (name: string) => (process.platform === "win32" ? `${name}.exe` : name);

/** The llama.cpp backend a native build was made for (`MOE_LENS_GPU`, tools/build-native.mjs). */
export type NativeBackend = "cpu" | "cuda" | "vulkan" | "metal";

/** Where a build's binaries are: out/bin/ for the CPU build, out/bin-<backend>/ for a GPU build. */
export function nativeBinDir(root: string, backend: NativeBackend = "cpu"): string {
  return path.join(root, "out", backend === "cpu" ? "bin" : `bin-${backend}`);
}

export function defaultServerBinary(root: string, backend: NativeBackend = "cpu"): string {
  return path.join(nativeBinDir(root, backend), exe("moe-lens-server"));
}

export function llamaToolBinary(root: string, tool: "llama-perplexity" | "test-llama-archs" | "ggml-rpc-server", backend: NativeBackend = "cpu"): string {
  return path.join(nativeBinDir(root, backend), exe(tool));
}

export function demoModelPath(root: string): string {
  return path.join(root, "media", "models", "demo-moe.gguf");
}

export function demoSamplePath(root: string): string {
  return path.join(root, "test", "fixtures", "demo-sample.md");
}
