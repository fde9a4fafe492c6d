// `npm test` entry for the @vscode/test-electron harness: runs it where VS Code desktop is
// available (VSCODE_EXECUTABLE_PATH or `code` on PATH), and is skipped elsewhere — it
// never downloads VS Code.
import test from "node:test";
import { findVSCodeDesktop, main, SKIP_MESSAGE } from "../electron/run";

const exe = findVSCodeDesktop();
if (!exe) console.log(`# electron harness: ${SKIP_MESSAGE}`);

test("VS Code desktop extension-host suite (@vscode/test-electron)", { skip: exe ? false : SKIP_MESSAGE, timeout: 300_000 }, async () => {
  await main();
});
