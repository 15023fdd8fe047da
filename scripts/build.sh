#!/usr/bin/env bash
# Installs what is missing (Debian/Ubuntu, apt-get), then configures and builds into build/.
# Uses python3's torch (with CUDA) when it is importable, else Debian's libtorch-dev (CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}

torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null || true)

# Looks for the tool or header itself, not the package, so hand-installed tools count too (the GPU
# machine has cmake 4 from pip and no network, so it must not reach apt-get).
need=()
for tool in cmake:cmake g++:g++ make:make git:git; do
  command -v "${tool%%:*}" >/dev/null || need+=("${tool##*:}")
done
# ICU copied by scripts/carry_icu.sh stands in for libicu-dev where it cannot be installed.
carried_icu=""
if [ ! -f /usr/include/unicode/regex.h ] && [ ! -d .carry/icu ] && [ -f .carry/icu.tar.xz ]; then
  tar xJf .carry/icu.tar.xz -C .carry
fi
if [ ! -f /usr/include/unicode/regex.h ] && [ -f .carry/icu/include/unicode/regex.h ]; then
  carried_icu=$PWD/.carry/icu
  export LD_LIBRARY_PATH=$carried_icu/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
for header in CLI/CLI.hpp:libcli11-dev nlohmann/json.hpp:nlohmann-json3-dev gtest/gtest.h:libgtest-dev \
              unicode/regex.h:libicu-dev; do
  [ "${header%%/*}" = unicode ] && [ -n "$carried_icu" ] && continue
  [ -f "/usr/include/${header%%:*}" ] || [ -f "/usr/local/include/${header%%:*}" ] || need+=("${header##*:}")
done
[ -n "$torch_prefix" ] || [ -f /usr/include/torch/csrc/api/include/torch/torch.h ] || need+=(libtorch-dev)
# The report test renders HTML in headless Chromium: scripts/test.sh asks for it (LB_WITH_CHROMIUM=1).
if [ "${LB_WITH_CHROMIUM:-0}" = 1 ] && [ -z "$torch_prefix" ]; then
  command -v chromium >/dev/null || command -v chromium-browser >/dev/null || need+=(chromium)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
fi

args=(-DCMAKE_BUILD_TYPE=Release)
[ -n "$torch_prefix" ] && args+=("-DCMAKE_PREFIX_PATH=$torch_prefix" -DCMAKE_CUDA_ARCHITECTURES=90)
[ -n "$carried_icu" ] && args+=("-DICU_ROOT=$carried_icu")
command -v ninja >/dev/null && args+=(-G Ninja)
# LB_SHARED_DIR (the GPU machine's carried copy of ../shared) reaches the tests as an absolute path.
shared=()
[ -n "${LB_SHARED_DIR:-}" ] && shared=("-DLB_SHARED_DIR=$(realpath "$LB_SHARED_DIR")")
if [ -f "$BUILD_DIR/CMakeCache.txt" ]; then
  [ ${#shared[@]} -eq 0 ] || cmake -B "$BUILD_DIR" "${shared[@]}"
else
  cmake -S . -B "$BUILD_DIR" "${args[@]}" "${shared[@]}"
fi
# LB_BUILD_TARGET (e.g. layoutbench) builds one target: a short GPU call that needs no tests.
cmake --build "$BUILD_DIR" -j "$(nproc)" ${LB_BUILD_TARGET:+--target "$LB_BUILD_TARGET"}
