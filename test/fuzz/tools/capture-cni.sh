#!/usr/bin/env bash
# Captures real CNI results as seed inputs: Debian's containernetworking-plugins
# (bridge + host-local, ptp, static, loopback) run for ADD in a scratch network
# namespace at spec versions 0.4.0 and 1.0.0, each plugin's stdout saved, then
# DEL. Root. Usage: capture-cni.sh OUT_DIR
set -euo pipefail
out=$(realpath -m "$1")
mkdir -p "$out"
bin=/usr/lib/cni
ns=kvfzcni$$
work=$(mktemp -d)
cleanup() {
  ip netns del "$ns" 2>/dev/null || true
  ip link del kvfzbr0 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$ns"
# run PLUGIN VERSION NAME CONFIG_JSON_TAIL
run() {
  local plugin=$1 version=$2 name=$3 tail=$4 conf
  conf="{\"cniVersion\":\"$version\",\"name\":\"kvfz\",\"type\":\"$plugin\"$tail}"
  for cmd in ADD DEL; do
    CNI_COMMAND=$cmd CNI_CONTAINERID=fuzz$$ CNI_NETNS=/run/netns/$ns CNI_IFNAME=eth0 CNI_PATH=$bin \
      "$bin/$plugin" <<<"$conf" >"$work/stdout" || { cat "$work/stdout" >&2; return 1; }
    if [[ $cmd == ADD ]]; then cp "$work/stdout" "$out/$name-$version.json"; fi
  done
}
ipam=",\"ipam\":{\"type\":\"host-local\",\"dataDir\":\"$work/ipam\",\"ranges\":[[{\"subnet\":\"10.89.7.0/24\",\"gateway\":\"10.89.7.1\"}],[{\"subnet\":\"fd89:7::/64\"}]],\"routes\":[{\"dst\":\"0.0.0.0/0\"},{\"dst\":\"10.96.0.0/12\",\"gw\":\"10.89.7.1\"}]}"
dns=",\"dns\":{\"nameservers\":[\"10.96.0.10\"],\"domain\":\"cluster.local\",\"search\":[\"default.svc.cluster.local\",\"svc.cluster.local\"],\"options\":[\"ndots:5\"]}"
for v in 0.4.0 1.0.0; do
  run bridge "$v" bridge ",\"bridge\":\"kvfzbr0\",\"isGateway\":true$ipam$dns"
  run ptp "$v" ptp "$ipam"
  run static "$v" static-ipam ",\"ipam\":{\"type\":\"static\",\"addresses\":[{\"address\":\"10.89.8.5/24\",\"gateway\":\"10.89.8.1\"}],\"routes\":[{\"dst\":\"0.0.0.0/0\"}],\"dns\":{\"nameservers\":[\"10.89.8.1\"]}}"
  run loopback "$v" loopback ""
done
ls -l "$out"
