// Serves the built panel (out/webview) under its real CSP on 127.0.0.1 and opens it in
// Debian's Chromium. `acquireVsCodeApi` is the one piece of VS Code the page needs; the
// harness provides it (recording posted messages) in place of the extension host.
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { renderPanelHtml } from "../../shared/panel-html";
import type { HostMessage } from "../../shared/protocol";
import { ROOT } from "../helpers";

export const CHROMIUM = process.env.MOE_LENS_CHROMIUM ?? "/usr/bin/chromium";
export const ARTIFACTS = path.join(ROOT, "test-artifacts", "webview");

export interface PanelPage {
  page: Page;
  browser: Browser;
  cspViolations: string[];
  consoleErrors: string[];
  close(): Promise<void>;
  send(messages: HostMessage[]): Promise<void>;
  posted(): Promise<Array<{ type: string; [k: string]: unknown }>>;
}

function tagTypedArrays(v: unknown): unknown {
  if (ArrayBuffer.isView(v) && !(v instanceof DataView)) return { __typed: v.constructor.name, values: Array.from(v as unknown as ArrayLike<number>) };
  if (Array.isArray(v)) return v.map(tagTypedArrays);
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, tagTypedArrays(x)]));
  return v;
}

export async function openPanel(opts: { width?: number; height?: number; theme?: "dark" | "light" } = {}): Promise<PanelPage> {
  const webviewDir = path.join(ROOT, "out", "webview");
  if (!fs.existsSync(path.join(webviewDir, "panel.js"))) throw new Error("out/webview/panel.js is missing: run `npm run build`");
  const nonce = "testnonce" + Math.random().toString(36).slice(2);
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    if (url.pathname === "/") {
      res.writeHead(200, { "Content-Type": "text/html" });
      res.end(
        renderPanelHtml({ scriptUri: "/panel.js", styleUri: "/panel.css", cspSource: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, nonce }),
      );
      return;
    }
    if (url.pathname === "/favicon.ico") {
      res.writeHead(204).end();
      return;
    }
    const file = path.join(webviewDir, path.basename(url.pathname));
    if (!fs.existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "Content-Type": file.endsWith(".js") ? "text/javascript" : "text/css" });
    res.end(fs.readFileSync(file));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  const page = await browser.newPage({ viewport: { width: opts.width ?? 1100, height: opts.height ?? 900 }, deviceScaleFactor: 1 });
  const cspViolations: string[] = [];
  const consoleErrors: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error") consoleErrors.push(m.text());
  });
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  await page.exposeFunction("__cspViolation", (v: string) => cspViolations.push(v));
  const dark = (opts.theme ?? "dark") === "dark";
  await page.addInitScript(
    ({ dark }) => {
      const w = window as unknown as { __posted: unknown[]; __state: unknown; acquireVsCodeApi: () => unknown; __cspViolation: (v: string) => void };
      w.__posted = [];
      // VS Code keeps a webview's setState across hide/show; sessionStorage does the same across a reload here.
      w.__state = JSON.parse(sessionStorage.getItem("vscodeState") ?? "null") ?? undefined;
      w.acquireVsCodeApi = () => ({
        postMessage: (m: unknown) => w.__posted.push(m),
        getState: () => w.__state,
        setState: (s: unknown) => {
          w.__state = s;
          sessionStorage.setItem("vscodeState", JSON.stringify(s));
        },
      });
      document.addEventListener("securitypolicyviolation", (e) => w.__cspViolation(`${e.violatedDirective} ${e.blockedURI}`));
      // The theme variables VS Code injects into every webview.
      document.addEventListener("DOMContentLoaded", () => {
        const s = document.documentElement.style;
        s.setProperty("--vscode-foreground", dark ? "#cccccc" : "#333333");
        s.setProperty("--vscode-editor-background", dark ? "#1e1e1e" : "#ffffff");
        s.setProperty("--vscode-font-family", "sans-serif");
        document.body.classList.add(dark ? "vscode-dark" : "vscode-light");
      });
    },
    { dark },
  );
  await page.goto(`http://127.0.0.1:${port}/`);
  await page.waitForFunction(() => (window as unknown as { __posted: Array<{ type: string }> }).__posted.some((m) => m.type === "ready"));
  return {
    page,
    browser,
    cspViolations,
    consoleErrors,
    async close() {
      await browser.close();
      server.close();
    },
    async send(messages) {
      // Typed arrays are tagged to cross Playwright's JSON channel, rebuilt in the page, then
      // posted as the extension host's messages arrive: structured-cloned, binary.
      await page.evaluate(
        (ms) => {
          const revive = (v: unknown): unknown => {
            if (Array.isArray(v)) return v.map(revive);
            if (v && typeof v === "object") {
              const o = v as { __typed?: string; values?: number[] };
              if (o.__typed) return new (globalThis as unknown as Record<string, new (a: number[]) => unknown>)[o.__typed](o.values!);
              return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, revive(x)]));
            }
            return v;
          };
          for (const m of ms) window.postMessage(revive(m), "*");
        },
        tagTypedArrays(messages) as unknown[],
      );
    },
    async posted() {
      return page.evaluate(() => (window as unknown as { __posted: Array<{ type: string }> }).__posted);
    },
  };
}
