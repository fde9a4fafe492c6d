#!/usr/bin/env bash
# The README's first command: set everything up, then run MoE Lens's main job on the
# bundled demo model (trace a mixed-domain sample under several gating policies, print the
# summary table and write an HTML report).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
node bin/moe-lens.js demo --out out/demo-report.html
