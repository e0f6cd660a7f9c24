#!/bin/bash
# Runs our SPDY/3.1 server (spdy_echo_server) against moby/spdystream, the library kubectl and client-go speak SPDY with.
# Usage: test/interop/spdystream-interop.sh <spdy_echo_server binary>
# Needs golang-go and golang-github-docker-spdystream-dev (scripts/install-deps.sh --test).
set -euo pipefail
server_bin="${1:?usage: $0 <spdy_echo_server binary>}"
here="$(cd "$(dirname "$0")" && pwd)"
gopath=/usr/share/gocode
[[ -d "$gopath/src/github.com/docker/spdystream" ]] || { echo "golang-github-docker-spdystream-dev is missing (scripts/install-deps.sh --test)" >&2; exit 1; }
command -v go >/dev/null || { echo "go is missing: install golang-go (scripts/install-deps.sh --test)" >&2; exit 1; }
work="$(mktemp -d)"
server_pid=""
cleanup() {
  [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
cp "$here/spdystream_client.go" "$work/main.go"
(cd "$work" && GO111MODULE=off GOPATH="$gopath" GOCACHE="${GOCACHE:-$work/cache}" GOFLAGS= go build -o client main.go)
"$server_bin" >"$work/server.out" 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 50); do
  grep -q listening "$work/server.out" 2>/dev/null && break
  sleep 0.1
done
addr="$(sed -n 's/^listening on //p' "$work/server.out")"
[[ -n "$addr" ]] || { echo "spdy_echo_server did not start:" >&2; cat "$work/server.log" >&2; exit 1; }
if ! timeout 120 "$work/client" "$addr"; then
  echo "--- server log" >&2
  cat "$work/server.log" >&2
  exit 1
fi
