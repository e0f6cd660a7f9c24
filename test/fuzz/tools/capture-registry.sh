#!/usr/bin/env bash
# Captures real registry traffic as seed inputs: Debian's docker-registry
# (open, htpasswd and token-auth configurations, as test/client/registry_fixture
# runs it), the test guest images pushed with skopeo (OCI and Docker schema 2),
# and every answer saved as `curl -si` prints it.
# Usage: capture-registry.sh GUEST_DIR OUT_DIR  (GUEST_DIR from test/guest/build-guest.sh)
# Writes OUT_DIR/{oci_json,registry_auth,registry_manifest}/.
set -euo pipefail
guest=$(realpath "$1")
out=$(realpath -m "$2")
mkdir -p "$out"/{oci_json,registry_auth,registry_manifest}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# start NAME EXTRA_CONFIG: a registry on a free port; prints the port.
start() {
  local name=$1 extra=$2 p
  p=$(port)
  mkdir -p "$work/$name"
  printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n%s' \
    "$work/$name/storage" "$p" "$extra" >"$work/$name/config.yml"
  docker-registry serve "$work/$name/config.yml" >"$work/$name/log" 2>&1 &
  pids+=($!)
  for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$p/v2/" && break; sleep 0.2; done
  echo "$p"
}
accept='Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json'

open=$(start open "")
skopeo copy --quiet --dest-tls-verify=false "oci:$guest/oci-disk:latest" "docker://127.0.0.1:$open/kvcri/disk:latest"
skopeo copy --quiet --dest-tls-verify=false --format v2s2 "oci:$guest/oci-kernel:latest" \
  "docker://127.0.0.1:$open/kvcri/kernel:v2s2"
for ref in disk:latest kernel:v2s2; do
  name=${ref/:/-}
  curl -si -H "$accept" "http://127.0.0.1:$open/v2/kvcri/${ref%%:*}/manifests/${ref##*:}" \
    >"$out/registry_manifest/200-$name.http"
  # The body alone: a manifest, and the config it points at.
  curl -s -H "$accept" "http://127.0.0.1:$open/v2/kvcri/${ref%%:*}/manifests/${ref##*:}" >"$out/oci_json/manifest-$name.json"
  cfg=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["config"]["digest"])' \
    "$out/oci_json/manifest-$name.json")
  curl -s "http://127.0.0.1:$open/v2/kvcri/${ref%%:*}/blobs/$cfg" >"$out/oci_json/config-$name.json"
done
cp "$guest/oci-disk/index.json" "$out/oci_json/index-oci-layout.json"
curl -si -H "$accept" "http://127.0.0.1:$open/v2/kvcri/disk/manifests/missing" >"$out/registry_manifest/404-unknown-tag.http"
curl -si -H "$accept" "http://127.0.0.1:$open/v2/kvcri/nothing/manifests/latest" >"$out/registry_manifest/404-unknown-repo.http"

htpasswd -Bbn kvuser kvpass >"$work/htpasswd"
basic=$(start basic "auth:
  htpasswd:
    realm: kvcri-test
    path: $work/htpasswd
")
curl -si -H "$accept" "http://127.0.0.1:$basic/v2/kvcri/disk/manifests/latest" >"$work/401-basic.http"

openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/token.key" -out "$work/token.crt" -days 1 \
  -subj /CN=kvcri-token >/dev/null 2>&1
tok=$(start token "auth:
  token:
    realm: http://127.0.0.1:1/token
    service: kvcri-test-registry
    issuer: kvcri-test-issuer
    rootcertbundle: $work/token.crt
")
curl -si -H "$accept" "http://127.0.0.1:$tok/v2/kvcri/disk/manifests/latest" >"$work/401-bearer.http"
curl -si "http://127.0.0.1:$tok/v2/" >"$work/401-bearer-base.http"

# registry_auth inputs: the header value, then the token endpoint's answer
# (the shape distribution's token server sends: token, access_token, expires_in, issued_at).
token_answer=$'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"token":"eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJrdmNyaS10ZXN0LWlzc3VlciJ9.c2ln","access_token":"eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJrdmNyaS10ZXN0LWlzc3VlciJ9.c2ln","expires_in":300,"issued_at":"2026-12-02T00:00:00Z"}\n'
for f in 401-basic 401-bearer 401-bearer-base; do
  value=$(grep -i '^www-authenticate:' "$work/$f.http" | head -1 | sed 's/^[^:]*: //' | tr -d '\r')
  printf '%s\n%s' "$value" "$token_answer" >"$out/registry_auth/$f"
  # registry_manifest: the challenge, the token, the manifest.
  { cat "$work/$f.http"; printf '%s' "$token_answer"; cat "$out/registry_manifest/200-disk-latest.http"; } \
    >"$out/registry_manifest/$f-then-200.http"
done
printf '%s\n%s' "$(grep -i '^www-authenticate:' "$work/401-bearer.http" | sed 's/^[^:]*: //' | tr -d '\r')" \
  $'HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n\r\n{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}\n' \
  >"$out/registry_auth/401-bearer-refused"
cp "$work/401-basic.http" "$out/registry_manifest/401-basic-no-creds.http"
ls -l "$out"/*
