#!/usr/bin/env bash
# Configures and builds kubevirt-cri into ./build (Ninja, RelWithDebInfo).
set -euo pipefail
cd "$(dirname "$0")/.."
# KVCRI_CMAKE_ARGS: more cache settings, e.g. -DKVCRI_UNIT_TESTS=OFF (scripts/test.sh).
read -r -a extra <<<"${KVCRI_CMAKE_ARGS:-}"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" "${extra[@]}" >/dev/null
cmake --build build -j"$(nproc)"
