#!/usr/bin/env bash
# The README's "First VM", offline: builds the demo guest (the test guest's
# containerDisk, test/guest/build-guest.sh), imports it as the image the
# docs/examples/ crictl files name, writes the sample bridge CNI network when
# the CNI directory has no config, and prints the crictl commands to run it.
# Run as root, with the daemon running (./scripts/run.sh in another terminal);
# running it again changes nothing.
#
#   scripts/demo.sh [DAEMON FLAGS]   e.g. --config FILE or --root DIR, if the daemon was started with them
#
# Environment: KVCRI_CNI_DIR (default /etc/cni/net.d), the daemon's [cni] conf_dir.
set -euo pipefail
cd "$(dirname "$0")/.."

readonly kImage="localhost/kubevirt-cri/demo-disk:latest"
# The same guest on a UEFI containerDisk (signed shim + GRUB): docs/examples/vm-uefi.
readonly kUefiImage="localhost/kubevirt-cri/demo-disk-uefi:latest"
readonly kConflist="docs/examples/cni/10-kubevirt-cri-demo.conflist"
readonly kCniDir="${KVCRI_CNI_DIR:-/etc/cni/net.d}"
readonly kGuestDir="build/guest"  # the integration tests' guest_images fixture builds here too
readonly kDaemon="build/shim/kubevirt-cri"
readonly kSocket="/run/kubevirt-cri/kubevirt-cri.sock"

die() {
  echo "demo: $*" >&2
  exit 1
}

[[ "$(id -u)" == 0 ]] || die "must run as root (the guest builder makes a /dev/console node; the CNI directory is root's)"
./scripts/install-deps.sh --demo
[[ -x "$kDaemon" ]] || ./scripts/build.sh

# CNI: the daemon (like containerd) uses the first valid config in the directory; never replace one.
shopt -s nullglob
existing=("$kCniDir"/*.conflist "$kCniDir"/*.conf "$kCniDir"/*.json)
shopt -u nullglob
if ((${#existing[@]} == 0)); then
  install -D -m 0644 "$kConflist" "$kCniDir/$(basename "$kConflist")"
  echo "demo: wrote $kCniDir/$(basename "$kConflist") (bridge kvcri-demo0, Pod IPs from 10.89.0.0/24)"
else
  echo "demo: $kCniDir already has a CNI config (${existing[0]}); using it"
fi

test/guest/build-guest.sh "$kGuestDir"
"$kDaemon" images import "$kGuestDir/oci-disk" "$kImage" "$@"
"$kDaemon" images import "$kGuestDir/oci-disk-uefi" "$kUefiImage" "$@"

[[ -S "$kSocket" ]] || echo "demo: no daemon answers on $kSocket yet: start ./scripts/run.sh in another terminal" >&2
command -v crictl >/dev/null || echo "demo: crictl is not installed: README.md \"First VM\" says how to get it" >&2

cat <<EOF

The demo images $kImage and $kUefiImage
(docs/examples/vm-uefi) are imported. Run the first (README.md, "First VM"):

  export CONTAINER_RUNTIME_ENDPOINT=unix://$kSocket
  cd docs/examples/vm-pod
  POD=\$(crictl --timeout 60s runp --runtime kubevirt pod.json)
  CTR=\$(crictl --timeout 60s create \$POD container.json pod.json)
  crictl --timeout 60s start \$CTR
  crictl logs -f \$CTR     # the VM's console; Ctrl-C once KUBEVIRT-CRI-GUEST-IP shows
  IP=\$(crictl inspectp -o go-template --template '{{.status.network.ip}}' \$POD)
  curl http://\$IP:8080/
  crictl --timeout 60s stop \$CTR; crictl --timeout 60s stopp \$POD; crictl rmp \$POD
EOF
