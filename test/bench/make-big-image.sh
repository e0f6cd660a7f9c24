#!/usr/bin/env bash
# Builds a 1 GiB containerDisk OCI layout for the same-image benchmark:
#   test/bench/make-big-image.sh GUEST_DIR OUT_LAYOUT [SIZE_MIB]
# The test guest's bootable disk (GUEST_DIR/disk.qcow2, from build-guest.sh)
# converted to raw and filled up to SIZE_MIB (default 1024) with random data
# after its partition, so the image really carries 1 GiB (no sparse holes, no
# compression gains). The guest boots from it as from the small one.
set -euo pipefail
guest=$(realpath "${1:?usage: make-big-image.sh GUEST_DIR OUT_LAYOUT [SIZE_MIB]}")
out=$(realpath -m "${2:?usage: make-big-image.sh GUEST_DIR OUT_LAYOUT [SIZE_MIB]}")
size_mib="${3:-1024}"
work=$(mktemp -d /tmp/kvcri-big-XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/root/disk"
qemu-img convert -f qcow2 -O raw "$guest/disk.qcow2" "$work/root/disk/disk.raw"
used_bytes=$(stat -c %s "$work/root/disk/disk.raw")
used_mib=$(((used_bytes + 1048575) / 1048576))
dd if=/dev/urandom of="$work/root/disk/disk.raw" bs=1M seek="$used_mib" count="$((size_mib - used_mib))" \
  conv=notrunc status=none
chmod 0444 "$work/root/disk/disk.raw"
rm -rf "$out"
umoci init --layout "$out"
umoci new --image "$out:latest"
tar -C "$work/root" -cf "$work/layer.tar" --format=ustar --numeric-owner disk
umoci raw add-layer --image "$out:latest" "$work/layer.tar"
umoci gc --layout "$out"
chmod -R a+rX "$out"
echo "make-big-image: $out ($(du -sm "$out" | cut -f1) MiB)"
