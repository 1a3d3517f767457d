#!/usr/bin/env bash
# Configures and builds crm-events-sink with CMake + Ninja into build/ (or
# $BUILD_DIR). Extra arguments are passed to `cmake --build` (e.g. --target X).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" >/dev/null
cmake --build "$BUILD_DIR" -j "$(nproc)" "$@"
