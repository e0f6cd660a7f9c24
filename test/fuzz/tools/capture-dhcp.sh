#!/usr/bin/env bash
# Captures a real DHCPv4 exchange as seed inputs: busybox udhcpc (the test
# guest's client) against busybox udhcpd over a veth pair between two scratch
# network namespaces, every frame on the client's side saved as one file.
# Root. Usage: capture-dhcp.sh OUT_DIR  (writes frame-NN-<type>.bin)
set -euo pipefail
out=$(realpath -m "$1")
mkdir -p "$out"
tag=kvfz$$
cli=${tag}c srv=${tag}s
work=$(mktemp -d)
cleanup() {
  [[ -n "${sniff:-}" ]] && kill "$sniff" 2>/dev/null || true
  [[ -n "${udhcpd:-}" ]] && kill "$udhcpd" 2>/dev/null || true
  ip netns del "$cli" 2>/dev/null || true
  ip netns del "$srv" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$cli"
ip netns add "$srv"
ip link add veth0 netns "$cli" type veth peer name veth1 netns "$srv"
# The MAC test/fuzz/dhcp_responder_fuzz.cc leases to, so the frames reach its replies.
ip -n "$cli" link set veth0 address 0a:58:0a:59:00:02 up
ip -n "$srv" addr add 10.89.0.1/24 dev veth1
ip -n "$srv" link set veth1 up
cat >"$work/udhcpd.conf" <<CONF
start 10.89.0.2
end 10.89.0.2
interface veth1
lease_file $work/leases
option subnet 255.255.255.0
option router 10.89.0.1
option dns 10.96.0.10
option domain cluster.local
option search default.svc.cluster.local svc.cluster.local cluster.local
option mtu 1450
option staticroutes 10.96.0.0/12 10.89.0.1
CONF
touch "$work/leases"
ip netns exec "$srv" busybox udhcpd -f "$work/udhcpd.conf" >/dev/null 2>&1 &
udhcpd=$!
# Every frame on the client's interface, both directions.
ip netns exec "$cli" python3 - "$out" <<'PY' &
import socket, sys, os
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
s.bind(("veth0", 0))
s.settimeout(8)
n = 0
names = {1: "discover", 2: "offer", 3: "request", 4: "decline", 5: "ack", 6: "nak", 7: "release", 8: "inform"}
try:
    while n < 12:
        f = s.recv(4096)
        if len(f) < 42 or f[12:14] != b"\x08\x00" or f[23] != 17:
            continue
        opts = f[42 + 240:]
        kind = "dhcp"
        i = 0
        while i + 1 < len(opts):
            if opts[i] == 0: i += 1; continue
            if opts[i] == 255: break
            if opts[i] == 53: kind = names.get(opts[i + 2], "dhcp"); break
            i += 2 + opts[i + 1]
        with open(os.path.join(sys.argv[1], "frame-%02d-%s.bin" % (n, kind)), "wb") as o:
            o.write(f)
        n += 1
except socket.timeout:
    pass
PY
sniff=$!
sleep 1
# -q: release on exit too (a RELEASE frame); -O: ask for the options udhcpd serves.
ip netns exec "$cli" busybox udhcpc -i veth0 -n -q -R -t 3 -T 1 -s /bin/true -O search -O staticroutes -O mtu \
  -x hostname:vm-pod >/dev/null 2>&1 || true
ip netns exec "$cli" busybox udhcpc -i veth0 -n -q -t 3 -T 1 -s /bin/true -r 10.89.0.2 >/dev/null 2>&1 || true
wait "$sniff" || true
sniff=
ls "$out"
