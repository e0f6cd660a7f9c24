#!/usr/bin/env bash
# Checks the source rules the docs state (docs/architecture.md, STYLE.md):
#  1. includes point down the module graph only (no module includes "upward"
#     or a sibling), runtime/image/ is a module of its own, and cri/ includes
#     interfaces, not the implementations shim/ wires;
#  2. every source file opens with a one-line `//` comment saying what it is
#     for: line 1 of every .h and .cc, before a header's `#pragma once`.
# Prints one "path:line: problem" per violation; exits 1 if there is any.
# Usage: scripts/check-source.sh [source root]   (default: the repository)
set -euo pipefail
root="${1:-$(cd "$(dirname "$0")/.." && pwd)}"
cd "$root"

# Files exempted from the opening-comment rule while another branch rewrites
# them; empty is the normal state.
pending_comment=()

mapfile -t files < <(find cri runtime sandbox cni shim config test -type f \( -name '*.h' -o -name '*.cc' \) | sort)
if ((${#files[@]} == 0)); then
  echo "check-source: no sources under $root" >&2
  exit 1
fi

# Prints why `file` may not include "inc" (our module paths only); nothing when it may.
include_problem() {
  local file="$1" inc="$2"
  case "$inc" in cri/* | shim/* | runtime/* | sandbox/* | cni/* | config/*) ;; *) return 0 ;; esac
  local from="${file%%/*}" to="${inc%%/*}"
  [[ "$file" == runtime/image/* ]] && from=image
  [[ "$inc" == runtime/image/* ]] && to=image
  case "$from:$to" in
    config:config) ;;
    config:*) echo "config/ includes nothing of ours outside config/" ;;
    image:image | image:config) ;;
    image:*) echo "runtime/image/ is its own module: it includes config/ only" ;;
    runtime:image) echo "runtime/ does not include runtime/image/ (its own target, linked by cri/ and shim/)" ;;
    runtime:runtime | runtime:config | sandbox:sandbox | sandbox:config | cni:cni | cni:config) ;;
    runtime:* | sandbox:* | cni:*) echo "$from/ includes config/ and itself only (no cri/, shim/ or sibling modules)" ;;
    cri:shim) echo "cri/ does not include shim/" ;;
    cri:*)
      # shim/ wires the implementations; cri/ sees their interfaces.
      case "$inc" in
        sandbox/file_sandbox_store.h | runtime/libvirt_*.h | cni/exec_cni_runner.h)
          echo "cri/ includes interfaces, not implementations shim/ wires" ;;
      esac ;;
  esac
}

bad=0
for f in "${files[@]}"; do
  while IFS=: read -r line text; do
    inc="${text#*\"}"
    inc="${inc%%\"*}"
    problem="$(include_problem "$f" "$inc")"
    if [[ -n "$problem" ]]; then
      echo "$f:$line: includes \"$inc\": $problem"
      bad=1
    fi
  done < <(grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" || true)

  first="$(head -n 1 "$f")"
  if [[ ! "$first" =~ ^//\ [^[:space:]] ]]; then
    pending=0
    for p in "${pending_comment[@]}"; do [[ "$f" == "$p" ]] && pending=1; done
    if ((!pending)); then
      echo "$f:1: does not open with a one-line // comment saying what the file is for"
      bad=1
    fi
  else
    for p in "${pending_comment[@]}"; do
      [[ "$f" == "$p" ]] && echo "note: $f has its opening comment now; drop it from pending_comment" >&2
    done
  fi
done

if ((bad)); then
  echo "check-source: violations found (rules: scripts/check-source.sh)" >&2
  exit 1
fi
echo "check-source: ${#files[@]} files follow the include and header-comment rules"
