#!/usr/bin/env bash
# Sets up a fresh machine for MoE Lens: system packages, npm dependencies, the native
# server (from the llama.cpp source bundled in node-llama-cpp), the TypeScript bundles and
# the real VS Code workbench (code-server) used by the end-to-end tests. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for cmd_pkg in cmake:cmake g++:g++ make:make git:git chromium:chromium rg:ripgrep clang-format:clang-format; do
  command -v "${cmd_pkg%%:*}" >/dev/null 2>&1 || need_apt+=("${cmd_pkg##*:}")
done
# code-server's kerberos module builds against these headers.
[ -f /usr/include/gssapi/gssapi.h ] || need_apt+=(libkrb5-dev)
# MOE_LENS_VULKAN=1 (CI sets it) adds the Vulkan build (out/bin-vulkan, test/vulkan): headers,
# the shader compiler, and Mesa's software Vulkan driver (lavapipe), which stands in for a GPU
# on machines without one. Off by default: a first Vulkan build takes about 25 minutes on 2 cores.
if [ "${MOE_LENS_VULKAN:-0}" = 1 ]; then
  [ -f /usr/include/vulkan/vulkan.h ] || need_apt+=(libvulkan-dev)
  command -v glslc >/dev/null 2>&1 || need_apt+=(glslc)
  ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 || need_apt+=(mesa-vulkan-drivers)
  # ggml-vulkan's CMake finds the SPIR-V headers as a package (SPIRV-HeadersConfig.cmake)
  [ -f /usr/share/cmake/SPIRV-Headers/SPIRV-HeadersConfig.cmake ] || need_apt+=(spirv-headers)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing system packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

echo "setup: npm ci"
npm ci --no-audit --no-fund
echo "setup: native build (cached under ~/.cache/moe-lens/native)"
npm run build:native
# Without it the Vulkan suite skips, saying why.
if [ "${MOE_LENS_VULKAN:-0}" = 1 ]; then
  echo "setup: Vulkan build (out/bin-vulkan; cached likewise)"
  MOE_LENS_GPU=vulkan npm run build:native
fi
echo "setup: TypeScript bundles"
npm run build
if [ -x tools/setup-e2e.sh ] || [ -f tools/setup-e2e.sh ]; then
  echo "setup: code-server for the end-to-end tests"
  bash tools/setup-e2e.sh
fi
echo "setup: done"
