#!/usr/bin/env bash
# Prints, from the last ctest run in a build tree, its slowest tests and the tests it failed, each failure with the
# last lines of its output (scripts/test.sh calls it at the very end, where CI's kept tail shows it).
# Usage: ctest-report.sh DIR [LINES]
set -euo pipefail
dir=${1:?build directory}
lines=${2:-40}
failed=$dir/Testing/Temporary/LastTestsFailed.log
log=$dir/Testing/Temporary/LastTest.log
[[ -f $log ]] || { echo "ctest-report: no ctest run recorded in $dir"; exit 0; }
# LastTest.log holds one section per test: "N/M Testing: NAME" ... "Test time = S sec".
echo "ctest-report: slowest tests of the last run:"
awk '/^[0-9]+\/[0-9]+ Testing: / { sub(/^[0-9]+\/[0-9]+ Testing: /, ""); name = $0 }
     /^Test time = / { printf "%8.1f s  %s\n", $4, name }' "$log" | sort -rn | head -12
# ctest leaves an old LastTestsFailed.log in place after a run with no failures: only a fresh one counts.
if [[ ! -s $failed ]] || (($(stat -c %Y "$failed") < $(stat -c %Y "$log") - 5)); then
  echo "ctest-report: no failed tests"
  exit 0
fi
echo "ctest-report: $(wc -l <"$failed") failed test(s):"
while IFS=: read -r _ name; do
  echo "---- $name (last $lines lines) ----"
  awk -v name="$name" '
    /^[0-9]+\/[0-9]+ Testing: / { t = $0; sub(/^[0-9]+\/[0-9]+ Testing: /, "", t); inside = (t == name); next }
    inside { print }
    inside && /^"[^"]*" end time:/ { inside = 0 }
  ' "$log" | tail -n "$lines"
done <"$failed"
