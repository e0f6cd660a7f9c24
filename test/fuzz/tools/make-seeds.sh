#!/usr/bin/env bash
# Makes the seed inputs that come from our own tools rather than a capture:
# disk headers from qemu-img and the test guest's disk, layers made with GNU
# tar as test/guest/build-guest.sh makes them (the guest's own layers are
# 10 MiB; these keep its shapes with tiny files), console bursts from a real
# guest console log, and the config files we ship.
# Usage: make-seeds.sh GUEST_DIR CONSOLE_LOG OUT_DIR  (root: mknod)
set -euo pipefail
guest=$(realpath "$1")
console=$(realpath "$2")
out=$(realpath -m "$3")
src=$(cd "$(dirname "$0")/../../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"/{disk_format,tar_extract,console_log,config_toml}

# disk_format: the first 16 KiB of each image (the header and its extensions).
head16() { head -c 16384 "$1" >"$out/disk_format/$2"; }
head16 "$guest/disk.qcow2" guest-disk.qcow2
qemu-img convert -O raw "$guest/disk.qcow2" "$work/disk.raw"
head16 "$work/disk.raw" guest-disk.raw
qemu-img create -q -f qcow2 -o compat=0.10 "$work/v2.qcow2" 1G && head16 "$work/v2.qcow2" v2.qcow2
qemu-img create -q -f qcow2 -o compat=1.1,cluster_size=512 "$work/v3-512.qcow2" 64M && head16 "$work/v3-512.qcow2" v3-cluster512.qcow2
qemu-img create -q -f qcow2 -b "$guest/disk.qcow2" -F qcow2 "$work/backed.qcow2" && head16 "$work/backed.qcow2" backing-file.qcow2
qemu-img create -q -f qcow2 -o data_file="$work/data.raw" "$work/ext.qcow2" 64M && head16 "$work/ext.qcow2" external-data.qcow2
qemu-img create -q -f qcow2 --object secret,id=s0,data=kvcri -o encrypt.format=luks,encrypt.key-secret=s0 \
  "$work/luks.qcow2" 64M && head16 "$work/luks.qcow2" encrypted-luks.qcow2

# tar_extract: layer shapes (ustar, numeric owners, like build-guest.sh).
layer() {  # layer NAME DIR [tar args...]: NAME.tar, NAME.tar.gz, NAME.tar.zst of DIR
  local name=$1 dir=$2
  shift 2
  tar -C "$dir" -cf "$work/$name.tar" --format=ustar --numeric-owner --owner=0 --group=0 "$@" .
  cp "$work/$name.tar" "$out/tar_extract/$name.tar"
}
mk() { rm -rf "$work/t"; mkdir -p "$work/t"; }
qcow2_head=$(head -c 512 "$guest/disk.qcow2" | base64 -w0)
mk; mkdir -p "$work/t/disk"; base64 -d <<<"$qcow2_head" >"$work/t/disk/disk.qcow2"; chmod 0555 "$work/t/disk"
layer containerdisk "$work/t"
gzip -9nc "$work/containerdisk.tar" >"$out/tar_extract/containerdisk.tar.gz"
zstd -q -19 -c "$work/containerdisk.tar" >"$out/tar_extract/containerdisk.tar.zst"
mk; mkdir -p "$work/t/boot"; printf 'MZ kernel' >"$work/t/boot/vmlinuz"; printf '070701 initrd' >"$work/t/boot/initrd.img"
layer kernel "$work/t"
mk; mkdir -p "$work/t/disk" "$work/t/boot"; ln -s ../other "$work/t/disk/link.img"; ln -s /etc/passwd "$work/t/boot/vmlinuz"
layer symlinks "$work/t"
mk; mkdir -p "$work/t/boot" "$work/t/disk"; printf 'k' >"$work/t/boot/vmlinuz"; ln "$work/t/boot/vmlinuz" "$work/t/disk/hard.img"
mkfifo "$work/t/boot/initrd.img"
layer hardlink-fifo "$work/t"
mk; mkdir -p "$work/t/disk"; mknod "$work/t/disk/sda" b 8 0
layer device "$work/t"
mk; mkdir -p "$work/t/disk"; touch "$work/t/disk/.wh.disk.qcow2" "$work/t/disk/.wh..wh..opq"; printf 'raw' >"$work/t/disk/new.img"
layer whiteouts "$work/t"
mk; mkdir -p "$work/t/disk/a" "$work/t/disk/b"; printf '1' >"$work/t/disk/a/x"; printf '2' >"$work/t/disk/b.img"
layer nested "$work/t"
# Two layers, as the harness splits them: the disk, then a whiteout of it and a kernel.
sep=$'\n--kvcri-next-layer--\n'
{ cat "$work/containerdisk.tar"; printf '%s' "$sep"; cat "$work/whiteouts.tar"; } >"$out/tar_extract/two-layers.tar"
# Names a layer must be refused for (GNU tar writes them with -P).
mk; printf 'x' >"$work/t/evil"
tar -C "$work/t" -cf "$out/tar_extract/dotdot-name.tar" --format=ustar -P --transform 's,^evil$,../../evil,' evil
tar -C "$work/t" -cf "$out/tar_extract/absolute-name.tar" --format=ustar -P --transform 's,^evil$,/disk/evil,' evil
# pax headers (long names) and GNU sparse files, which libarchive also reads.
mk; mkdir -p "$work/t/disk"; truncate -s 1M "$work/t/disk/sparse.img"; printf 'end' >>"$work/t/disk/sparse.img"
tar -C "$work/t" -cf "$out/tar_extract/gnu-sparse.tar" --format=gnu --sparse .
mk; mkdir -p "$work/t/disk/$(printf 'n%.0s' $(seq 120))"; printf 'p' >"$work/t/disk/$(printf 'n%.0s' $(seq 120))/f"
tar -C "$work/t" -cf "$out/tar_extract/pax-long-name.tar" --format=pax .

# console_log: the harness's burst framing ([pause][len hi][len lo][bytes])
# around slices of a real serial console (kernel messages, \r\n endings).
burst() {  # burst OUT PAUSE FILE OFFSET LEN...: bursts of FILE at OFFSET
  local o=$1 pause=$2 f=$3 off=$4
  shift 4
  : >"$o"
  for len in "$@"; do
    printf "\\x$(printf %02x "$pause")\\x$(printf %02x $((len >> 8)))\\x$(printf %02x $((len & 255)))" >>"$o"
    tail -c +"$((off + 1))" "$f" | head -c "$len" >>"$o"
    off=$((off + len))
  done
}
burst "$out/console_log/boot-start" 0 "$console" 0 700 300 1
burst "$out/console_log/boot-slow" 12 "$console" 2000 90 10 200
burst "$out/console_log/guest-ready" 1 "$console" "$(($(stat -c %s "$console") - 1500))" 1000 500
printf '\x00\x00\x50%s\x14\x00\x00' "$(head -c 80 /dev/zero | tr '\0' 'x')" >"$out/console_log/long-line-then-pause"
printf '\x00\x00\x06\xff\xfe\xc3\x28\r\n' >"$out/console_log/invalid-utf8"

# config_toml: the files we ship and document.
cp "$src/config/kubevirt-cri.toml" "$out/config_toml/kubevirt-cri.toml"
cp "$src/config/snippets/containerd-config.toml" "$out/config_toml/containerd-snippet.toml"
ls "$out"/*
