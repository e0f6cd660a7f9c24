#!/usr/bin/env bash
# Installs everything (build, runtime and test packages), builds, and runs
# every test: unit and integration, then the sanitizer builds (scripts/test-sanitizers.sh).
# `scripts/test.sh -L unit` runs the fast half alone (ctest arguments skip the sanitizer builds).
set -euo pipefail
cd "$(dirname "$0")/.."
# CI keeps only the end of the output: each phase's time is printed again
# there, and the failed tests with the end of their output.
summary=()
phase() {  # phase NAME CMD...: runs CMD and records how long it took and how it ended
  local name=$1 start=$SECONDS status=0
  shift
  "$@" || status=$?
  summary+=("$(printf '%-34s %5d s  exit %d' "$name" $((SECONDS - start)) "$status")")
  echo "test.sh: $name took $((SECONDS - start)) s (exit $status)"
  return "$status"
}
sanitizers=0
[[ $# -eq 0 && "${KVCRI_SANITIZERS:-1}" != 0 ]] && sanitizers=1
phase install ./scripts/install-deps.sh --test
# A full run compiles and runs the unit tests in the ASan+UBSan tree only
# (scripts/test-sanitizers.sh): building them under gcc too cost ~6 minutes.
if ((sanitizers)); then
  export KVCRI_CMAKE_ARGS="-DKVCRI_UNIT_TESTS=OFF"
else
  export KVCRI_CMAKE_ARGS="-DKVCRI_UNIT_TESTS=ON"
fi
phase build ./scripts/build.sh
# Integration tests boot real guests under TCG; two at a time fit 2 cores.
rc=0
# The sanitizer builds are clang's and run its thread-safety analysis as they
# compile (cmake/sanitizers.cmake): the separate pass would only cost time.
skip=()
((sanitizers)) && skip=(-E '^thread_safety$')
ctest_rc=0
phase ctest ctest --test-dir build --output-on-failure --timeout 1200 -j2 "${skip[@]}" "$@" || ctest_rc=$?
rc=$ctest_rc
# The full run (no ctest arguments, as .ci/run calls it) adds the sanitizer
# builds: unit tests and fuzz targets under ASan+UBSan, the threaded unit
# tests under TSan (docs/testing.md). KVCRI_SANITIZERS=0 skips them.
if ((sanitizers)); then
  phase sanitizers ./scripts/test-sanitizers.sh || rc=$?
fi
echo "==== test.sh summary ===="
printf '%s\n' "${summary[@]}"
./scripts/ctest-report.sh build
exit "$rc"
