// native/API.md describes the wire contract in prose: it must name every key that
// shared/wire.ts and shared/policy.ts list (as a quoted JSON key), so the document cannot
// fall behind the code. test/integration/wire-contract.test.ts checks the same lists
// against the running server.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { test } from "node:test";
import * as policy from "../../shared/policy";
import * as wire from "../../shared/wire";
import { ROOT } from "../helpers";

test("native/API.md names every key of the wire contract", () => {
  const doc = fs.readFileSync(path.join(ROOT, "native", "API.md"), "utf8");
  const lists = (Object.entries({ ...wire, ...policy }) as Array<[string, unknown]>).filter(
    (e): e is [string, string[]] => e[0].endsWith("_KEYS") && Array.isArray(e[1]),
  );
  assert.ok(lists.length >= 15, `found the key lists: ${lists.map(([n]) => n).join(", ")}`);
  const missing = lists.flatMap(([name, keys]) => keys.filter((k) => !doc.includes(`"${k}"`)).map((k) => `${name}: "${k}"`));
  assert.deepEqual(missing, [], "keys native/API.md does not mention");
});
