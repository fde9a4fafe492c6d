// The real-workbench harness for the end-to-end tests: code-server 4.100.3 (VS Code
// 1.100.3, installed by tools/setup-e2e.sh outside this project's node_modules) with this
// extension in its extensions directory, driven by playwright-core and Debian's Chromium.
// tools/setup-e2e.sh installs code-server; ARCHITECTURE.md ("Tests") says where this fits.

import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { createRequire } from "node:module";
import type { Browser, Frame, Page } from "playwright-core";
import type * as PlaywrightCore from "playwright-core";

export const CODE_SERVER_VERSION = "4.100.3";

/** The repository root (tests run from it; the bundled test file may live elsewhere). */
export function repoRoot(): string {
  for (const start of [process.cwd(), __dirname]) {
    let dir = start;
    for (;;) {
      const pkg = path.join(dir, "package.json");
      if (fs.existsSync(pkg) && JSON.parse(fs.readFileSync(pkg, "utf8")).name === "moe-lens") return dir;
      const up = path.dirname(dir);
      if (up === dir) break;
      dir = up;
    }
  }
  throw new Error("cannot find the moe-lens repository root (run the tests from the checkout)");
}

/**
 * Where the extension under test lives (package.json, out/, media/): this checkout, or
 * $MOE_LENS_E2E_EXTENSION_DIR (for example an unpacked .vsix's extension/ folder).
 */
export function extensionSource(root = repoRoot()): string {
  return process.env.MOE_LENS_E2E_EXTENSION_DIR ? path.resolve(process.env.MOE_LENS_E2E_EXTENSION_DIR) : root;
}

/** Same location rule as tools/setup-e2e.sh. */
export function codeServerDir(): string {
  if (process.env.MOE_LENS_CODE_SERVER_DIR) return process.env.MOE_LENS_CODE_SERVER_DIR;
  const cacheRoot = process.env.MOE_LENS_CACHE_DIR || path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache"), "moe-lens");
  return path.join(cacheRoot, `code-server-${CODE_SERVER_VERSION}`);
}

export function codeServerEntry(): string {
  return path.join(codeServerDir(), "node_modules", "code-server", "out", "node", "entry.js");
}

export const chromiumPath = process.env.MOE_LENS_CHROMIUM || "/usr/bin/chromium";

/** Why the e2e tests cannot run here (skip), or undefined when they can. */
export function skipReason(): string | undefined {
  if (!fs.existsSync(codeServerEntry())) {
    return `code-server ${CODE_SERVER_VERSION} is not installed (${codeServerDir()}); run tools/setup-e2e.sh to enable the end-to-end tests`;
  }
  if (!fs.existsSync(chromiumPath)) return `Chromium not found at ${chromiumPath}; apt-get install chromium (or set MOE_LENS_CHROMIUM)`;
  return undefined;
}

/** Fails clearly when a built piece the full tests need is missing. */
export function requireBuilt(root: string, files: Array<[string, string]>): void {
  const missing = files.filter(([f]) => !fs.existsSync(path.join(root, f)));
  if (missing.length) {
    throw new Error(`missing build outputs for the end-to-end tests:\n${missing.map(([f, how]) => `  ${f} — ${how}`).join("\n")}`);
  }
}

export function playwright(root: string): typeof PlaywrightCore {
  return createRequire(path.join(root, "package.json"))("playwright-core");
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

export interface Workbench {
  root: string;
  tmp: string;
  workspace: string;
  userData: string;
  port: number;
  url: string;
  codeServer: ChildProcess;
  browser: Browser;
  page: Page;
  artifacts: string;
  log: string[];
  close(): Promise<void>;
}

/**
 * The extension folder code-server loads: package.json, out/ and media/ of this checkout,
 * copied as an installed .vsix would be (with symlinks VS Code cannot tell which extension a
 * call comes from, and notifications say "Source: Null Extension Description").
 */
function installExtension(root: string, extDir: string): string {
  const pkg = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8"));
  const dir = path.join(extDir, `${pkg.publisher}.${pkg.name}-${pkg.version}`);
  fs.mkdirSync(dir, { recursive: true });
  for (const f of ["package.json", "out", "media", "README.md", "LICENSE"]) {
    if (fs.existsSync(path.join(root, f))) fs.cpSync(path.join(root, f), path.join(dir, f), { recursive: true, dereference: true });
  }
  return dir;
}

export async function startWorkbench(opts: { sampleName: string; sampleText: string; settings?: Record<string, unknown> }): Promise<Workbench> {
  const root = repoRoot();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "moe-lens-e2e-"));
  const workspace = path.join(tmp, "workspace");
  const userData = path.join(tmp, "user-data");
  const extDir = path.join(tmp, "extensions");
  const artifacts = path.join(root, "test-artifacts", "e2e");
  fs.mkdirSync(workspace, { recursive: true });
  fs.mkdirSync(path.join(userData, "User"), { recursive: true });
  fs.mkdirSync(artifacts, { recursive: true });
  installExtension(extensionSource(root), extDir);
  fs.writeFileSync(path.join(workspace, opts.sampleName), opts.sampleText);
  fs.writeFileSync(
    path.join(userData, "User", "settings.json"),
    JSON.stringify(
      {
        "security.workspace.trust.enabled": false,
        "workbench.startupEditor": "none",
        "workbench.tips.enabled": false,
        "workbench.welcomePage.walkthroughs.openOnInstall": false,
        "telemetry.telemetryLevel": "off",
        "extensions.autoUpdate": false,
        "extensions.autoCheckUpdates": false,
        "update.mode": "none",
        "chat.commandCenter.enabled": false,
        "editor.hover.delay": 300,
        "editor.minimap.enabled": false,
        "files.simpleDialog.enable": true,
        ...opts.settings,
      },
      null,
      2,
    ),
  );

  const port = await freePort();
  const log: string[] = [];
  const codeServer = spawn(
    process.execPath,
    [
      codeServerEntry(),
      "--bind-addr",
      `127.0.0.1:${port}`,
      "--auth",
      "none",
      "--user-data-dir",
      userData,
      "--extensions-dir",
      extDir,
      "--disable-telemetry",
      "--disable-update-check",
      "--disable-workspace-trust",
      "--disable-getting-started-override",
      workspace,
    ],
    { cwd: tmp, detached: true, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, MOE_LENS_E2E: "1" } },
  );
  const collect = (d: Buffer) => log.push(...d.toString().split("\n").filter(Boolean));
  codeServer.stdout!.on("data", collect);
  codeServer.stderr!.on("data", collect);

  let browser: Browser | undefined;
  const close = async () => {
    await browser?.close().catch(() => undefined);
    if (codeServer.pid && codeServer.exitCode === null) {
      // Our code-server and everything it started (extension host, moe-lens-server): its own process group.
      try {
        process.kill(-codeServer.pid, "SIGTERM");
      } catch {
        /* already gone */
      }
      await new Promise((r) => setTimeout(r, 500));
      try {
        process.kill(-codeServer.pid, "SIGKILL");
      } catch {
        /* gone */
      }
    }
    if (!process.env.MOE_LENS_E2E_KEEP) fs.rmSync(tmp, { recursive: true, force: true });
  };

  try {
    const url = `http://127.0.0.1:${port}/?folder=${encodeURIComponent(workspace)}`;
    await waitForHttp(`http://127.0.0.1:${port}/healthz`, 60_000, () => codeServer.exitCode, log);
    const { chromium } = playwright(root);
    browser = await chromium.launch({
      executablePath: chromiumPath,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
      ],
    });
    const context = await browser.newContext({ viewport: { width: 1500, height: 950 } });
    const page = await context.newPage();
    await page.goto(url);
    await page.locator(".monaco-workbench").waitFor({ timeout: 90_000 });
    // Let the workbench settle (extensions scanned, explorer restored).
    await page.locator(".part.statusbar").waitFor({ timeout: 60_000 });
    return { root, tmp, workspace, userData, port, url, codeServer, browser, page, artifacts, log, close };
  } catch (e) {
    await close();
    throw new Error(`code-server did not start: ${(e as Error).message}\n${log.slice(-30).join("\n")}`);
  }
}

async function waitForHttp(url: string, timeoutMs: number, exited: () => number | null, log: string[]): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (exited() !== null) throw new Error(`code-server exited (${exited()}): ${log.slice(-10).join("\n")}`);
    try {
      const r = await fetch(url);
      if (r.ok) return;
    } catch {
      /* not up yet */
    }
    if (Date.now() > end) throw new Error(`${url} not reachable after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 300));
  }
}

// ---- driving the workbench ------------------------------------------------------------

/**
 * Runs a command from the palette. The palette can close right after it opened: a webview that
 * was just clicked (the panel's editor tab) takes the keyboard focus a moment later, and the
 * quick input closes on blur. Seen in CI as a fill that waited 30 s for a hidden input. So the
 * title is typed with a short timeout, and the palette opened again if it went away.
 */
export async function runCommand(page: Page, title: string): Promise<void> {
  const input = page.locator(".quick-input-widget .quick-input-box input");
  for (let attempt = 1; ; attempt++) {
    await closeQuickInput(page);
    await openCommandPalette(page);
    const row = page.locator(".quick-input-widget .monaco-list-row", { hasText: title }).first();
    const listed = await input
      .fill(`>${title}`, { timeout: 5_000 })
      .then(() => row.waitFor({ timeout: 15_000 }))
      .then(
        () => true,
        () => false,
      );
    if (listed) return row.click();
    if (attempt === 3) throw new Error(`the command palette closed before "${title}" could be chosen, three times`);
  }
}

/**
 * F1 until the quick input shows. A press can be lost: while a quick input is still closing,
 * or while a webview (the panel in an editor tab) holds the keyboard focus, seen in CI as a
 * palette that never opened (15 s) in the middle of the Open Routing Panel in Editor scenario.
 */
async function openCommandPalette(page: Page): Promise<void> {
  const input = page.locator(".quick-input-widget .quick-input-box input");
  for (let attempt = 1; ; attempt++) {
    await page.keyboard.press("F1");
    const shown = await input.waitFor({ state: "visible", timeout: 5_000 }).then(
      () => true,
      () => false,
    );
    if (shown) return;
    if (attempt === 3) throw new Error("the command palette did not open after three presses of F1");
    // Give the keyboard back to the workbench: the editor, if one is shown.
    await page
      .locator(".editor-instance .monaco-editor .view-lines")
      .first()
      .click({ position: { x: 5, y: 5 }, timeout: 2_000 })
      .catch(() => undefined);
  }
}

export async function closeQuickInput(page: Page): Promise<void> {
  const widget = page.locator(".quick-input-widget");
  if (await widget.isVisible().catch(() => false)) {
    await page.keyboard.press("Escape");
    await widget.waitFor({ state: "hidden", timeout: 2_000 }).catch(() => undefined);
  }
}

/**
 * Answers code-server's simple file dialog (a quick input holding a path) with `fsPath`.
 * The dialog fills in its start folder asynchronously; the path is typed after that. A folder
 * is accepted with the dialog's OK button (`okLabel`): Enter would open it instead.
 */
export async function answerFileDialog(
  page: Page,
  title: string | RegExp,
  fsPath: string,
  opts: { okLabel?: string; screenshotAs?: () => Promise<unknown> } = {},
): Promise<void> {
  await page.locator(".quick-input-widget .quick-input-title", { hasText: title }).waitFor({ timeout: 15_000 });
  const input = page.locator(".quick-input-widget .quick-input-box input");
  for (let i = 0; i < 50 && !(await input.inputValue()).endsWith("/"); i++) await page.waitForTimeout(100);
  await page.waitForTimeout(300);
  await input.fill(fsPath);
  for (let i = 0; i < 20 && (await input.inputValue()) !== fsPath; i++) {
    await page.waitForTimeout(200);
    await input.fill(fsPath);
  }
  await page.waitForTimeout(500);
  await opts.screenshotAs?.();
  if (!opts.okLabel) return void (await page.keyboard.press("Enter"));
  // The first press may only open the typed folder; the next one accepts it.
  const titleShown = page.locator(".quick-input-widget .quick-input-title", { hasText: title });
  for (let i = 0; i < 3 && (await titleShown.isVisible()); i++) {
    await page.locator(".quick-input-widget .monaco-button", { hasText: opts.okLabel }).click();
    await page.waitForTimeout(700);
  }
}

/** Opens a workspace file through Quick Open and waits for its editor. */
export async function openFile(page: Page, name: string): Promise<void> {
  await closeQuickInput(page);
  await openCommandPalette(page);
  const input = page.locator(".quick-input-widget .quick-input-box input");
  await input.fill(name);
  const row = page.locator(".quick-input-widget .monaco-list-row", { hasText: name }).first();
  await row.waitFor({ timeout: 20_000 });
  await row.click();
  await page.locator(`.tabs-container .tab[aria-label*="${name}"]`).first().waitFor({ timeout: 20_000 });
  await page.locator(".monaco-editor .view-lines").first().waitFor();
}

/** The MoE Lens status bar item's text. */
export async function statusText(page: Page): Promise<string> {
  const item = page.locator(".statusbar-item", { hasText: /· (ready|stopped|starting|tracing|restarting|failed) ·/ }).first();
  return ((await item.textContent({ timeout: 5_000 }).catch(() => "")) ?? "").trim();
}

export async function waitForStatus(page: Page, re: RegExp, timeoutMs: number): Promise<string> {
  const end = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < end) {
    last = await statusText(page);
    if (re.test(last)) return last;
    await page.waitForTimeout(250);
  }
  throw new Error(`status bar did not match ${re} within ${timeoutMs} ms; last: "${last}"`);
}

/** Texts of the visible notification toasts. */
export async function notifications(page: Page): Promise<string[]> {
  return page.locator(".notifications-toasts .notification-list-item").allTextContents();
}

export async function waitForNotification(page: Page, re: RegExp, timeoutMs: number): Promise<string> {
  const end = Date.now() + timeoutMs;
  let seen: string[] = [];
  while (Date.now() < end) {
    seen = await notifications(page);
    const hit = seen.find((t) => re.test(t));
    if (hit) return hit;
    await page.waitForTimeout(250);
  }
  throw new Error(`no notification matching ${re} within ${timeoutMs} ms; seen: ${JSON.stringify(seen)}`);
}

export async function clearNotifications(page: Page): Promise<void> {
  await runCommand(page, "Notifications: Clear All Notifications").catch(() => undefined);
}

/** The body text of every frame (webviews are nested iframes). */
export async function frameTexts(page: Page): Promise<Array<{ frame: Frame; text: string }>> {
  const out: Array<{ frame: Frame; text: string }> = [];
  for (const frame of page.frames()) {
    if (frame === page.mainFrame()) continue;
    const text = await frame.evaluate(() => document.body?.innerText ?? "").catch(() => "");
    out.push({ frame, text });
  }
  return out;
}

/** The routing panel's frame: the webview frame whose document loaded our panel script. */
export async function panelFrame(page: Page, timeoutMs = 30_000): Promise<Frame> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    for (const frame of page.frames()) {
      if (frame === page.mainFrame()) continue;
      const ours = await frame.evaluate(() => Array.from(document.scripts).some((s) => /panel\.js/.test(s.src))).catch(() => false);
      if (ours) return frame;
    }
    await page.waitForTimeout(300);
  }
  throw new Error("the routing panel webview did not load (no frame with out/webview/panel.js)");
}

export async function waitForFrameText(page: Page, re: RegExp, timeoutMs: number): Promise<string> {
  const end = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < end) {
    const f = await panelFrame(page, Math.max(1000, end - Date.now()));
    last = await f.evaluate(() => document.body?.innerText ?? "").catch(() => "");
    if (re.test(last)) return last;
    await page.waitForTimeout(300);
  }
  throw new Error(`the routing panel did not show ${re} within ${timeoutMs} ms; it shows: ${JSON.stringify(last.slice(0, 600))}`);
}

export async function screenshot(wb: Workbench, name: string): Promise<string> {
  const file = path.join(wb.artifacts, `${name}.png`);
  await wb.page.screenshot({ path: file });
  return file;
}

// ---- processes -------------------------------------------------------------------------

/** Descendants of a pid (from /proc), with their command lines. */
export function descendants(pid: number): Array<{ pid: number; cmd: string }> {
  const children = new Map<number, number[]>();
  for (const d of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(d));
      children.set(ppid, list);
    } catch {
      /* exited */
    }
  }
  const out: Array<{ pid: number; cmd: string }> = [];
  const walk = (p: number) => {
    for (const c of children.get(p) ?? []) {
      let cmd = "";
      try {
        cmd = fs.readFileSync(`/proc/${c}/cmdline`, "utf8").replace(/\0/g, " ").trim();
      } catch {
        /* exited */
      }
      out.push({ pid: c, cmd });
      walk(c);
    }
  };
  walk(pid);
  return out;
}

/** Pids of moe-lens-server processes started by this workbench's extension host. */
export function serverPids(wb: Workbench): number[] {
  return descendants(wb.codeServer.pid!)
    .filter((p) => /moe-lens-server(\s|$)/.test(p.cmd))
    .map((p) => p.pid);
}
