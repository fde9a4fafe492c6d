// Lint for the whole project: TypeScript (extension host, CLI, shared, webview, tests) with
// type information, the build and test tools (tools/*.mjs, bin/), and the import boundaries
// between folders (tools/eslint-boundaries.mjs).
import js from "@eslint/js";
import globals from "globals";
import tseslint from "typescript-eslint";
import { boundaries } from "./tools/eslint-boundaries.mjs";

export default tseslint.config(
  { ignores: ["out/**", "node_modules/**", "media/**", ".cache/**", "test-artifacts/**", "dist/**", "tools/code-server/**", "tools/train/**"] },
  {
    files: ["**/*.ts"],
    extends: [...tseslint.configs.recommended],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/no-non-null-assertion": "off",
      eqeqeq: ["error", "always", { null: "ignore" }],
      "@typescript-eslint/no-unused-expressions": ["error", { allowShortCircuit: true, allowTernary: true }],
      // Type-aware: a promise is awaited, returned, or explicitly `void`ed, and never passed where a plain callback is expected.
      // node:test's test() and describe() return promises the runner itself awaits.
      "@typescript-eslint/no-floating-promises": [
        "error",
        {
          allowForKnownSafeCalls: [
            { from: "package", package: "node:test", name: ["test", "describe", "it", "suite", "before", "after", "beforeEach", "afterEach"] },
          ],
        },
      ],
      "@typescript-eslint/no-misused-promises": "error",
      "@typescript-eslint/consistent-type-imports": ["error", { fixStyle: "inline-type-imports" }],
    },
  },
  {
    files: ["**/*.mjs", "bin/**/*.js"],
    extends: [js.configs.recommended],
    languageOptions: { globals: globals.node },
    rules: {
      "no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      eqeqeq: ["error", "always", { null: "ignore" }],
    },
  },
  { files: ["bin/**/*.js"], languageOptions: { sourceType: "commonjs" } },
  ...boundaries,
);
