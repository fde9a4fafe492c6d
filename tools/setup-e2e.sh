#!/usr/bin/env bash
# Installs the real VS Code workbench the end-to-end tests drive: code-server 4.100.3
# (VS Code 1.100.3, the last line on Node 20), from the npm registry, into a cache directory
# outside this project's node_modules, following ../shared notes "real-vscode-e2e.md".
# Its dependency tree is pinned by tools/code-server/package-lock.json (`npm ci`).
#
#   tools/setup-e2e.sh            install (idempotent; a second run takes well under a second)
#   tools/setup-e2e.sh --print    print the install directory and exit
#
# Location: $MOE_LENS_CODE_SERVER_DIR, else ${MOE_LENS_CACHE_DIR:-$XDG_CACHE_HOME/moe-lens or
# ~/.cache/moe-lens}/code-server-4.100.3. test/e2e/env.ts resolves the same path.
# Needs: node/npm, Debian's chromium (/usr/bin/chromium or $MOE_LENS_CHROMIUM), ripgrep
# (seeds @vscode/ripgrep's download cache), libkrb5-dev (headers for code-server's kerberos
# module). On Debian: apt-get install -y chromium ripgrep libkrb5-dev
set -euo pipefail

VERSION=4.100.3
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
lock="$here/code-server/package-lock.json"
lock_hash="$(sha256sum "$lock" | cut -c1-16)"
cache_root="${MOE_LENS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/moe-lens}"
dir="${MOE_LENS_CODE_SERVER_DIR:-$cache_root/code-server-$VERSION}"
entry="$dir/node_modules/code-server/out/node/entry.js"

if [[ "${1:-}" == "--print" ]]; then echo "$dir"; exit 0; fi

if [[ -f "$entry" && -f "$dir/.installed-$lock_hash" ]]; then
  echo "setup-e2e: code-server $VERSION already installed in $dir"
  exit 0
fi

missing=()
command -v rg >/dev/null 2>&1 || missing+=(ripgrep)
[[ -x "${MOE_LENS_CHROMIUM:-/usr/bin/chromium}" ]] || missing+=(chromium)
if ! [[ -f /usr/include/gssapi/gssapi.h || -f /usr/include/krb5.h || -f /usr/include/gssapi.h ]]; then missing+=(libkrb5-dev); fi
if ((${#missing[@]})); then
  echo "setup-e2e: missing system packages: ${missing[*]}" >&2
  echo "setup-e2e: install them with: apt-get install -y ${missing[*]}" >&2
  exit 1
fi

mkdir -p "$dir"
# Its own package.json and lockfile, so nothing of this lands in the project's node_modules.
cp "$here/code-server/package.json" "$lock" "$dir/"
rm -f "$dir"/.installed-*

# @vscode/ripgrep's postinstall downloads rg; seed its cache with Debian's rg, one entry per
# @vscode/ripgrep version code-server 4.100.x may pull in.
tmp="$(node -e 'console.log(require("os").tmpdir())')"
rgstage="$(mktemp -d)"
cp "$(command -v rg)" "$rgstage/rg"
for v in 1.15.11 1.15.12 1.15.13 1.15.14 1.18.0; do
  d="$tmp/vscode-ripgrep-cache-$v"
  for triple in x86_64-unknown-linux-musl aarch64-unknown-linux-musl; do
    f="$d/ripgrep-v13.0.0-10-$triple.tar.gz"
    if [[ ! -f "$f" ]]; then mkdir -p "$d"; tar czf "$f" -C "$rgstage" rg; fi
  done
done
rm -rf "$rgstage"

echo "setup-e2e: installing code-server@$VERSION (tools/code-server/package-lock.json) into $dir (about a minute)"
# npm 11 blocks dependency install scripts unless allowed; code-server's own postinstall
# needs unsafe-perm as root; npx must never prompt.
(
  cd "$dir"
  npm_config_unsafe_perm=true npm_config_yes=true npm_config_dangerously_allow_all_scripts=true \
  npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false \
    npm ci
)

if [[ ! -f "$entry" ]]; then
  echo "setup-e2e: install finished but $entry is missing" >&2
  exit 1
fi
node "$dir/node_modules/code-server/out/node/entry.js" --version >/dev/null
touch "$dir/.installed-$lock_hash"
echo "setup-e2e: code-server $VERSION ready in $dir"
