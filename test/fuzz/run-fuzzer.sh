#!/usr/bin/env bash
# Runs one libFuzzer target for a bounded time (ctest -L fuzz): on a scratch
# copy of its seed corpus and regression inputs, so nothing is written into
# the source tree. Fails on any crash, sanitizer report, leak, timeout or OOM;
# the input that caused it is kept as ./crash-*, ./leak-*, ./timeout-* or
# ./oom-* in the directory ctest runs it from (the build tree).
# Usage: run-fuzzer.sh BINARY CORPUS_DIR REGRESSIONS_DIR SECONDS MAX_LEN
# KVCRI_FUZZ_SECONDS in the environment overrides SECONDS.
set -euo pipefail
bin=$1 corpus=$2 regressions=$3 seconds=${KVCRI_FUZZ_SECONDS:-$4} max_len=$5
[[ -d "$corpus" ]] || { echo "run-fuzzer: seed corpus \"$corpus\" is missing" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/kvcri-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/corpus" "$work/regressions"
cp -r "$corpus"/. "$work/corpus/"
[[ -d "$regressions" ]] && cp -r "$regressions"/. "$work/regressions/"
# -timeout: one input taking 10 s is a hang; -rss_limit_mb / -malloc_limit_mb:
# no parser may need more memory than this, whatever a header declares.
# Leaks are checked (ASan's LeakSanitizer) at every new input that allocates.
exec "$bin" -max_total_time="$seconds" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
  -malloc_limit_mb=512 -print_final_stats=1 -artifact_prefix="$PWD/" \
  "$work/corpus" "$work/regressions"
