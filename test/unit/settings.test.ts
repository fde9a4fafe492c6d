import test from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { DEFAULT_SETTINGS, expandPath, needsRestart, readSettings, SETTING_LIMITS } from "../../extension/core/settings";
import { validatePolicy } from "../../extension/core/policy-parse";

const ROOT = process.env.MOE_LENS_ROOT ?? process.cwd();
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8"));

test("unset settings read as the defaults", () => {
  const { settings, problems } = readSettings(() => undefined, validatePolicy);
  assert.deepEqual(settings, DEFAULT_SETTINGS);
  assert.deepEqual(problems, []);
});

test("valid values are kept; out-of-range or wrong types fall back with a message", () => {
  const raw: Record<string, unknown> = {
    modelPath: " /m/x.gguf ",
    threads: 8,
    contextSize: 10,
    gpuLayers: 1.5,
    serverPath: 42,
    defaultPolicy: { amg: { threshold: 0.7 } },
  };
  const { settings, problems } = readSettings((k) => raw[k], validatePolicy);
  assert.equal(settings.modelPath, "/m/x.gguf");
  assert.equal(settings.threads, 8);
  assert.equal(settings.contextSize, SETTING_LIMITS.contextSize.default);
  assert.equal(settings.gpuLayers, 0);
  assert.equal(settings.serverPath, "");
  assert.deepEqual(settings.defaultPolicy.amg?.threshold, 0.7);
  assert.equal(problems.length, 3);
  assert.ok(problems.some((p) => /moeLens\.contextSize .*64…131072/.test(p)));
});

test("an invalid default policy falls back to baseline with the validator's message", () => {
  const { settings, problems } = readSettings((k) => (k === "defaultPolicy" ? { amg: { threshold: 7 } } : undefined), validatePolicy);
  assert.deepEqual(settings.defaultPolicy, {});
  assert.equal(problems.length, 1);
  assert.match(problems[0], /defaultPolicy/);
});

test("restart is needed for server settings, not for the policy", () => {
  assert.equal(needsRestart(DEFAULT_SETTINGS, { ...DEFAULT_SETTINGS, threads: 4 }), true);
  assert.equal(needsRestart(DEFAULT_SETTINGS, { ...DEFAULT_SETTINGS, modelPath: "/x.gguf" }), true);
  assert.equal(needsRestart(DEFAULT_SETTINGS, { ...DEFAULT_SETTINGS, defaultPolicy: { amg: { threshold: 0.5 } } }), false);
  assert.equal(needsRestart(DEFAULT_SETTINGS, { ...DEFAULT_SETTINGS, rpcServers: ["10.0.0.2:50052"] }), true, "workers are chosen at load");
  assert.equal(needsRestart({ ...DEFAULT_SETTINGS, rpcServers: ["a:1"] }, { ...DEFAULT_SETTINGS, rpcServers: ["a:1"] }), false, "equal lists are no change");
  assert.equal(needsRestart(DEFAULT_SETTINGS, { ...DEFAULT_SETTINGS, routerPack: "/p.gguf" }), false, "a router pack is applied live");
});

test("paths expand ~ and ${workspaceFolder}", () => {
  assert.equal(expandPath("~/m.gguf", "/home/u"), "/home/u/m.gguf");
  assert.equal(expandPath("${workspaceFolder}/models/a.gguf", "/h", "/ws"), "/ws/models/a.gguf");
  assert.equal(expandPath("/abs/a.gguf", "/h", "/ws"), "/abs/a.gguf");
});

test("manifest: settings in package.json match the defaults and limits the code uses", () => {
  const props = pkg.contributes.configuration.properties;
  assert.equal(props["moeLens.modelPath"].default, DEFAULT_SETTINGS.modelPath);
  assert.equal(props["moeLens.serverPath"].default, DEFAULT_SETTINGS.serverPath);
  assert.deepEqual(props["moeLens.defaultPolicy"].default, DEFAULT_SETTINGS.defaultPolicy);
  for (const [k, lim] of Object.entries(SETTING_LIMITS)) {
    const p = props[`moeLens.${k}`];
    assert.equal(p.type, "integer", k);
    assert.equal(p.default, lim.default, k);
    assert.equal(p.minimum, lim.min, k);
    assert.equal(p.maximum, lim.max, k);
  }
  for (const [k, p] of Object.entries(props) as Array<[string, { description?: string; markdownDescription?: string }]>) {
    assert.ok(p.description || p.markdownDescription, `${k} has a description`);
  }
});

test("manifest: every contributed command is registered by extension/vscode, lazily activated", () => {
  const dir = path.join(ROOT, "extension", "vscode");
  const src = fs
    .readdirSync(dir, { recursive: true })
    .filter((f) => String(f).endsWith(".ts"))
    .map((f) => fs.readFileSync(path.join(dir, String(f)), "utf8"))
    .join("\n");
  for (const c of pkg.contributes.commands) {
    assert.equal(c.category, "MoE Lens", c.command);
    assert.ok(src.includes(`registerCommand("${c.command}"`), `${c.command} is registered`);
  }
  for (const e of pkg.activationEvents ?? []) assert.match(e, /^on(View|Command|WebviewPanel):/, "only onView/onCommand/onWebviewPanel activation");
  // The editor tab comes back after a reload only if its serializer's extension is activated for it.
  assert.ok(pkg.activationEvents.includes("onWebviewPanel:moeLens.routingEditor"));
  assert.ok(src.includes("registerWebviewPanelSerializer(ROUTING_EDITOR_TYPE"), "the editor tab's serializer is registered");
  assert.deepEqual(pkg.extensionKind, ["workspace"]);
  assert.equal(pkg.main, "./out/extension.js");
  assert.ok(pkg.contributes.views.moeLens.some((v: { id: string; type: string }) => v.id === "moeLens.routingPanel" && v.type === "webview"));
});

test("rpcServers: HOST:PORT strings kept, anything else ignored with a message", () => {
  const ok = readSettings((k) => (k === "rpcServers" ? ["10.0.0.2:50052", " [::1]:50053 ", "worker-b:1"] : undefined));
  assert.deepEqual(ok.settings.rpcServers, ["10.0.0.2:50052", "[::1]:50053", "worker-b:1"]);
  assert.deepEqual(ok.problems, []);
  for (const bad of ["10.0.0.2", ["10.0.0.2"], ["host:port"], [1234], ["a b:1"]]) {
    const r = readSettings((k) => (k === "rpcServers" ? bad : undefined));
    assert.deepEqual(r.settings.rpcServers, [], JSON.stringify(bad));
    assert.match(r.problems.join(), /moeLens.rpcServers must be a list of HOST:PORT/);
  }
});
