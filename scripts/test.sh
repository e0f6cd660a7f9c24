#!/usr/bin/env bash
# Installs everything (build, runtime and test packages), builds, and runs
# every test: unit and integration. `scripts/test.sh -L unit` runs the fast half.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh --test
./scripts/build.sh
# Integration tests boot real guests under TCG; two at a time fit 2 cores.
exec ctest --test-dir build --output-on-failure --timeout 1200 -j2 "$@"
