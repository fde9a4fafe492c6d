// @vscode/test-electron harness, for machines with VS Code desktop. It never downloads:
// it uses the build named by VSCODE_EXECUTABLE_PATH, or the `code` found on PATH, and
// otherwise reports "no VS Code desktop available, skipped" and exits 0.
//
//   npx esbuild test/electron/run.ts --bundle --platform=node --format=cjs --outfile=out/test/electron-run.js \
//     --external:@vscode/test-electron --external:esbuild && node out/test/electron-run.js
// (test/e2e/electron.test.ts runs the same from `npm test`.)
//
// The suite (suite.ts) is bundled with esbuild (vscode external) and run inside the desktop
// extension host with this checkout as the extension under development.

import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { execFileSync } from "node:child_process";
import { createRequire } from "node:module";
import type * as Esbuild from "esbuild";
import type * as TestElectron from "@vscode/test-electron";

export const SKIP_MESSAGE = "no VS Code desktop available, skipped";

function repoRoot(): string {
  for (let dir = process.cwd(); ; dir = path.dirname(dir)) {
    const p = path.join(dir, "package.json");
    if (fs.existsSync(p) && JSON.parse(fs.readFileSync(p, "utf8")).name === "moe-lens") return dir;
    if (path.dirname(dir) === dir) throw new Error("run from the moe-lens checkout");
  }
}

/** The VS Code desktop executable (Electron binary), or undefined. */
export function findVSCodeDesktop(): string | undefined {
  const env = process.env.VSCODE_EXECUTABLE_PATH;
  if (env) return fs.existsSync(env) ? env : undefined;
  let cli: string;
  try {
    cli = execFileSync(process.platform === "win32" ? "where" : "which", ["code"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] })
      .split(/\r?\n/)[0]
      .trim();
  } catch {
    return undefined;
  }
  if (!cli) return undefined;
  const real = fs.realpathSync(cli);
  // The `code` CLI script lives in <install>/bin/code (Linux, Windows: <install>/bin/code.cmd)
  // or <App>/Contents/Resources/app/bin/code (macOS); the Electron binary is elsewhere.
  const bin = path.dirname(real);
  const candidates =
    process.platform === "darwin"
      ? [path.resolve(bin, "../../../MacOS/Electron"), path.resolve(bin, "../../../MacOS/Code")]
      : process.platform === "win32"
        ? [path.resolve(bin, "../Code.exe"), path.resolve(bin, "../Code - Insiders.exe")]
        : [path.resolve(bin, "../code"), path.resolve(bin, "../code-insiders"), path.resolve(bin, "../codium")];
  // code-server also installs a `code`-like script; it is not a desktop build.
  return candidates.find((c) => fs.existsSync(c) && fs.statSync(c).isFile() && !/code-server/.test(c));
}

export async function main(): Promise<"skipped" | "passed"> {
  const exe = findVSCodeDesktop();
  if (!exe) {
    console.log(SKIP_MESSAGE);
    return "skipped";
  }
  const root = repoRoot();
  const req = createRequire(path.join(root, "package.json"));
  const esbuild = req("esbuild") as typeof Esbuild;
  const { runTests } = req("@vscode/test-electron") as typeof TestElectron;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "moe-lens-electron-"));
  const suite = path.join(tmp, "suite.js");
  await esbuild.build({
    entryPoints: [path.join(root, "test", "electron", "suite.ts")],
    bundle: true,
    platform: "node",
    format: "cjs",
    target: "node20",
    external: ["vscode"],
    outfile: suite,
    logLevel: "warning",
  });
  const workspace = path.join(tmp, "workspace");
  fs.mkdirSync(workspace);
  fs.writeFileSync(path.join(workspace, "sample.md"), "Mixture-of-experts routing, traced token by token.\n");
  try {
    await runTests({
      vscodeExecutablePath: exe,
      extensionDevelopmentPath: root,
      extensionTestsPath: suite,
      launchArgs: [workspace, "--disable-extensions", "--disable-workspace-trust", "--skip-welcome", "--skip-release-notes"],
    });
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  return "passed";
}

// Entry point only when this file (or its bundle) is the program, not when a test imports it.
if (require.main === module && !/\.test\.[cm]?[jt]s$/.test(process.argv[1] ?? "")) {
  main().then(
    () => process.exit(0),
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
}
