#!/usr/bin/env bash
# README command 2: build (installing what is missing) and run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
LB_WITH_CHROMIUM=${LB_WITH_CHROMIUM:-1} scripts/build.sh
cd "${BUILD_DIR:-build}"
ctest --output-on-failure -j "$(nproc)" "$@"
