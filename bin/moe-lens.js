#!/usr/bin/env node
// The `moe-lens` command: the bundled CLI (built by `npm run build` into out/cli.js).
const path = require("node:path");
const fs = require("node:fs");
const cli = path.join(__dirname, "..", "out", "cli.js");
if (!fs.existsSync(cli)) {
  process.stderr.write("moe-lens: error: out/cli.js is missing; run `npm run build` first\n");
  process.exit(1);
}
require(cli);
