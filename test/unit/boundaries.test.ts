// The import boundaries of ARCHITECTURE.md, as eslint.config.mjs enforces them
// (tools/eslint-boundaries.mjs): a probe file in each folder imports across each boundary,
// and the project's own ESLint configuration must refuse exactly the crossings.
// Type information is switched off for the probes (they are not in tsconfig's program);
// every other rule of the configuration applies as in `npm run lint`.
import assert from "node:assert/strict";
import path from "node:path";
import { describe, test } from "node:test";
import { ESLint } from "eslint";
import { ROOT } from "../helpers";

const eslint = new ESLint({
  cwd: ROOT,
  overrideConfig: {
    files: ["**/*.ts"],
    languageOptions: { parserOptions: { projectService: false } },
    rules: { "@typescript-eslint/no-floating-promises": "off", "@typescript-eslint/no-misused-promises": "off" },
  },
});

/** Boundary errors (no-restricted-imports / no-restricted-globals) of `code` placed at `file`. */
async function crossings(file: string, code: string): Promise<string[]> {
  const [r] = await eslint.lintText(code, { filePath: path.join(ROOT, file) });
  const other = r.messages.filter((m) => !/^no-restricted-(imports|globals)$/.test(m.ruleId ?? ""));
  assert.deepEqual(
    other.map((m) => m.message),
    [],
    `${file}: only boundary findings expected`,
  );
  return r.messages.map((m) => m.message);
}

const importOf = (spec: string) => `import * as probe from "${spec}";\nexport const used = probe;\n`;

/** [folder of the probe file, import specifier, allowed?] */
const CASES: Array<[string, string, boolean]> = [
  ["webview/probe.ts", "../shared/policy", true],
  ["webview/probe.ts", "./store", true],
  ["webview/probe.ts", "chart.js", true],
  ["webview/probe.ts", "../extension/core/policy-parse", false],
  ["webview/probe.ts", "../extension/vscode/panel", false],
  ["webview/probe.ts", "vscode", false],
  ["webview/probe.ts", "node:fs", false],
  ["shared/probe.ts", "./wire", true],
  ["shared/probe.ts", "../extension/core/metrics", false],
  ["shared/probe.ts", "../webview/store", false],
  ["shared/probe.ts", "node:path", false],
  ["extension/core/probe.ts", "../../shared/protocol", true],
  ["extension/core/probe.ts", "node:fs", true],
  ["extension/core/probe.ts", "./trace-store", true],
  ["extension/core/probe.ts", "../../webview/store", false],
  ["extension/core/probe.ts", "vscode", false],
  ["extension/core/probe.ts", "../vscode/format", false],
  ["extension/core/probe.ts", "../cli/args", false],
  ["extension/vscode/probe.ts", "vscode", true],
  ["extension/vscode/probe.ts", "../core/trace-store", true],
  ["extension/vscode/probe.ts", "../../shared/protocol", true],
  ["extension/vscode/probe.ts", "../../webview/store", false],
  ["extension/vscode/commands/probe.ts", "../../cli/args", false],
  ["extension/vscode/commands/probe.ts", "../../../webview/main", false],
  ["extension/cli/probe.ts", "../core/export", true],
  ["extension/cli/probe.ts", "../../shared/policy", true],
  ["extension/cli/probe.ts", "vscode", false],
  ["extension/cli/probe.ts", "../vscode/format", false],
  ["extension/cli/probe.ts", "../../webview/store", false],
];

describe("import boundaries (eslint.config.mjs)", () => {
  for (const [file, spec, allowed] of CASES) {
    test(`${path.dirname(file)} ${allowed ? "may" : "may not"} import ${spec}`, async () => {
      const found = await crossings(file, importOf(spec));
      if (allowed) assert.deepEqual(found, []);
      else assert.match(found.join("\n"), /import is restricted/, `${file} importing ${spec} must be refused`);
    });
  }

  test("type-only imports are refused as well", async () => {
    assert.match(
      (await crossings("webview/probe.ts", 'import type { Services } from "../extension/vscode/services";\nexport type S = Services;\n')).join(),
      /restricted/,
    );
  });

  test("shared/ and webview/ may not use Node globals (they run in the browser)", async () => {
    for (const file of ["shared/probe.ts", "webview/probe.ts"]) {
      assert.match((await crossings(file, 'export const b = Buffer.from("x");\n')).join(), /Buffer/);
    }
  });

  test("tests may import anything", async () => {
    assert.deepEqual(await crossings("test/unit/probe.test.ts", importOf("../../webview/store")), []);
  });
});
