#!/usr/bin/env bash
# Builds the Debian package: ./scripts/package.sh [BUILD_DIR]
# Configures and builds the daemon in BUILD_DIR (default ./build), then runs
# `cpack -G DEB` there. Prints the path of kubevirt-cri_<version>-<release>_<arch>.deb.
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build}"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" >/dev/null
cmake --build "$build" --target kubevirt-cri -j"$(nproc)"
(cd "$build" && cpack -G DEB >/dev/null)
deb=$(ls -t "$build"/kubevirt-cri_*.deb | head -1)
dpkg-deb --info "$deb" | sed -n '/Package:/,$p'
echo "$deb"
