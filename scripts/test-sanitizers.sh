#!/usr/bin/env bash
# The sanitizer half of CI (scripts/test.sh runs it after the normal build and
# ctest): clang-14 builds of only what the runs need, not the daemon or the
# integration tests (docs/testing.md).
#  1. build-asan (KVCRI_SANITIZE=address,undefined, KVCRI_FUZZ=ON): every unit
#     test, then every fuzz target for KVCRI_FUZZ_SECONDS (default 15 here,
#     60 in a plain `ctest -L fuzz`) on its seed corpus and regressions.
#  2. build-tsan (KVCRI_SANITIZE=thread): the unit tests of the threaded parts
#     (console copier, Pod orchestrator with its op tracker and VM monitor,
#     image pull single-flight, sandbox store).
# Prints how long each step took. Usage: test-sanitizers.sh [asan|tsan]...
set -euo pipefail
cd "$(dirname "$0")/.."
steps=("$@")
((${#steps[@]})) || steps=(asan tsan)
export KVCRI_FUZZ_SECONDS=${KVCRI_FUZZ_SECONDS:-15}
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
# -O1 and line tables only: what the sanitizers' docs recommend, and half the
# compile time of -O2 -g on this 2-core budget; stacks still have file:line.
configure() {  # configure DIR CMAKE_ARGS...
  local dir=$1
  shift
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang-14 \
    -DCMAKE_CXX_COMPILER=clang++-14 -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only -DNDEBUG" \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only -DNDEBUG" "${launcher[@]}" "$@" >/dev/null
}
# Symbolized stacks; one report fails the run (the builds use -fno-sanitize-recover).
symbolizer=$(command -v llvm-symbolizer-14 || command -v llvm-symbolizer || true)
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1${symbolizer:+:external_symbolizer_path=$symbolizer}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${symbolizer:+:external_symbolizer_path=$symbolizer}"
export LSAN_OPTIONS="suppressions=$PWD/test/sanitizers/lsan.supp:print_suppressions=0"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1${symbolizer:+:external_symbolizer_path=$symbolizer}"
rc=0
timed() {  # timed NAME CMD...: runs CMD, records the first failure, says how long it took
  local name=$1 start=$SECONDS
  shift
  if "$@"; then echo "test-sanitizers: $name passed in $((SECONDS - start)) s"; else
    echo "test-sanitizers: $name FAILED after $((SECONDS - start)) s"
    rc=1
  fi
}
for step in "${steps[@]}"; do
  case "$step" in
    asan)
      configure build-asan -DKVCRI_SANITIZE=address,undefined -DKVCRI_FUZZ=ON
      # kubevirt-cri too: every module's file then passes clang's thread-safety analysis here.
      timed "asan build" ninja -C build-asan unit_tests fuzz_all spdy_echo_server kubevirt-cri
      # The static source checks are the normal build's; here only the binaries.
      timed "asan+ubsan unit tests" ctest --test-dir build-asan -L unit --output-on-failure --timeout 600 -j2
      timed "fuzz targets (${KVCRI_FUZZ_SECONDS} s each)" \
        ctest --test-dir build-asan -L fuzz --output-on-failure --timeout $((KVCRI_FUZZ_SECONDS * 2 + 120)) -j2
      ;;
    tsan)
      configure build-tsan -DKVCRI_SANITIZE=thread
      timed "tsan build" ninja -C build-tsan unit_tests
      # That unit_tests holds only the threaded parts' test files (test/CMakeLists.txt).
      timed "tsan threaded unit tests" build-tsan/test/unit_tests
      ;;
    *) echo "test-sanitizers: unknown step \"$step\" (asan, tsan)" >&2; exit 2 ;;
  esac
done
exit "$rc"
