// Who may import whom (ARCHITECTURE.md, "Boundaries"), as ESLint `no-restricted-imports`
// rules per folder. eslint.config.mjs applies them; test/unit/boundaries.test.ts lints
// probe files that cross each boundary and expects these errors.
//
//   shared/            → nothing outside shared/ (it runs in the browser and in Node alike)
//   webview/           → shared/ and npm packages (chart.js, @vscode-elements)
//   extension/core/    → shared/ and Node (never vscode, webview/, extension/vscode, extension/cli)
//   extension/vscode/  → extension/core/, shared/, vscode (never webview/ or extension/cli)
//   extension/cli/     → extension/core/, shared/ (never vscode, webview/, extension/vscode)
// Tests and tools may import anything.

/** A relative import that names one of these folders anywhere in its path, or the bare module. */
const folder = (...names) => `(^|/)(${names.join("|")})(/|$)`;

const NODE = { regex: "^node:", message: "shared/ and webview/ run in the browser: no Node modules here." };
const rule = (message, ...patterns) => ["error", { patterns: patterns.map((p) => (typeof p === "string" ? { regex: p, message } : p)) }];

export const boundaries = [
  {
    files: ["shared/**/*.ts"],
    rules: {
      "no-restricted-imports": rule("shared/ holds the contracts both sides import: it imports nothing outside shared/.", "^\\.\\.(/|$)", "^vscode$", NODE),
      "no-restricted-globals": [
        "error",
        ...["Buffer", "process", "require", "__dirname"].map((name) => ({ name, message: "shared/ also runs in the webview (a browser)." })),
      ],
    },
  },
  {
    files: ["webview/**/*.ts"],
    rules: {
      "no-restricted-imports": rule("The webview imports only shared/ (and npm packages): never host code.", "^\\.\\./(?!shared/)", "^vscode$", NODE),
      "no-restricted-globals": ["error", ...["Buffer", "process", "require", "__dirname"].map((name) => ({ name, message: "The webview is a browser page." }))],
    },
  },
  {
    files: ["extension/core/**/*.ts"],
    rules: {
      "no-restricted-imports": rule(
        "extension/core imports only shared/ and Node: never vscode, webview/, extension/vscode or extension/cli.",
        folder("webview", "vscode", "cli", "test", "tools"),
      ),
    },
  },
  {
    files: ["extension/vscode/**/*.ts"],
    rules: {
      "no-restricted-imports": rule(
        "extension/vscode imports extension/core, shared/ and vscode: never webview/ or extension/cli.",
        folder("webview", "cli", "test", "tools"),
      ),
    },
  },
  {
    files: ["extension/cli/**/*.ts"],
    rules: {
      "no-restricted-imports": rule(
        "extension/cli imports extension/core and shared/: never vscode, webview/ or extension/vscode.",
        folder("webview", "vscode", "test", "tools"),
      ),
    },
  },
];
