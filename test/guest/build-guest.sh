#!/usr/bin/env bash
# Builds the test guest that integration tests boot: a busybox initramfs for
# the host's Debian kernel, that kernel+initrd as an OCI "kernel image", a
# BIOS-bootable KubeVirt containerDisk, and two UEFI-bootable ones (Debian's
# signed shim + GRUB, and unsigned systemd-boot). See test/guest/README.md.
#
#   test/guest/build-guest.sh OUT_DIR
#
# Outputs in OUT_DIR: vmlinuz, initrd.img, disk.qcow2, oci-kernel/, oci-disk/,
# disk-uefi.qcow2, oci-disk-uefi/, disk-uefi-unsigned.qcow2,
# oci-disk-uefi-unsigned/.
# Skips the build when OUT_DIR/.build-hash matches the hash of this directory
# and the host inputs (kernel, modules, busybox, syslinux, EFI binaries, tool
# versions).
# Environment: KVCRI_GUEST_KVER picks the kernel (default: newest in /boot);
# KVCRI_AGENT_BIN is the static kvcri-agent to bake in (ctest passes the
# build's; default: build/runtime/kvcri-agent of this checkout).
# Needs root (a /dev/console node, and uid 107 on the containerDisk file).
set -euo pipefail

if (($# != 1)); then
  echo "usage: $0 OUT_DIR" >&2
  exit 2
fi
out="$1"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=runtime/microvm/guest-build-lib.sh
. "$here/../../runtime/microvm/guest-build-lib.sh"

# Kernel parameters baked into oci-kernel's label and the disk's syslinux.cfg.
readonly kCmdline="console=ttyS0 panic=-1 quiet"
readonly kCmdlineLabel="io.kubevirt-cri.cmdline"
readonly kDiskUid=107    # KubeVirt's qemu user owns /disk/disk.qcow2.
readonly kKernelUser=107  # oci-kernel's config User, for uid-reporting tests.
# The virtio stack and friends; their dependencies are added from modules.dep.
readonly kModules=(
  virtio_pci virtio_ring virtio virtio_net virtio_blk virtio_console virtio_rng
  virtio_balloon virtio_scsi sd_mod crct10dif_generic vfat nls_cp437 nls_ascii nls_utf8
  9p 9pnet_virtio virtiofs fuse ext4 crc32c_generic failover net_failover
  vmw_vsock_virtio_transport pvpanic_pci pvpanic_mmio button evdev efivarfs
)
readonly kSyslinuxBios=/usr/lib/syslinux/modules/bios
readonly kSyslinuxMbr=/usr/lib/syslinux/mbr/mbr.bin
# UEFI boot loaders. Signed (Secure Boot): shim, signed by Microsoft's UEFI
# CA, which OVMF_VARS_4M.ms.fd enrols, loads GRUB signed by Debian, which
# checks the kernel's Debian signature through shim. Unsigned: systemd-boot.
readonly kShim=/usr/lib/shim/shimx64.efi.signed
readonly kGrubSigned=/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed
readonly kSystemdBoot=/usr/lib/systemd/boot/efi/systemd-bootx64.efi
readonly kFirmwareLabel="io.kubevirt-cri.firmware"

die() {
  echo "build-guest: $*" >&2
  exit 1
}

missing=()
for t in busybox cpio tar depmod modprobe gzip qemu-img umoci syslinux \
  mkfs.vfat mcopy sfdisk flock sha256sum cc ldd du; do
  command -v "$t" >/dev/null || missing+=("$t")
done
((${#missing[@]} == 0)) || die "missing tools: ${missing[*]} (run scripts/install-deps.sh --test)"
[[ -f "$kSyslinuxMbr" && -f "$kSyslinuxBios/ldlinux.c32" ]] ||
  die "\"$kSyslinuxMbr\" or \"$kSyslinuxBios/ldlinux.c32\" missing (package syslinux-common)"
for f in "$kShim:shim-signed" "$kGrubSigned:grub-efi-amd64-signed" "$kSystemdBoot:systemd-boot-efi"; do
  [[ -f "${f%%:*}" ]] || die "\"${f%%:*}\" missing (package ${f#*:}; run scripts/install-deps.sh --test)"
done
readonly kQemuGa=/usr/sbin/qemu-ga
[[ -x "$kQemuGa" ]] || die "\"$kQemuGa\" missing (package qemu-guest-agent)"
# qemu-ga's shared libraries and the dynamic loader, as ldd resolves them.
mapfile -t qga_libs < <(guest_libs_of "$kQemuGa")
((${#qga_libs[@]} > 0)) || die "ldd found no libraries of \"$kQemuGa\""
[[ "$(id -u)" == 0 ]] || die "must run as root (needs mknod and chown to $kDiskUid)"

agent_bin="${KVCRI_AGENT_BIN:-$here/../../build/runtime/kvcri-agent}"
guest_check_static_agent "$agent_bin"
guest_pick_kernel "${KVCRI_GUEST_KVER:-}"

mkdir -p "$out"
out="$(cd "$out" && pwd)"
# Parallel test runs may share OUT_DIR: one builds, the others wait and reuse.
exec 9>"$out/.lock"
flock 9

input_hash="$(
  {
    echo "$kver"
    (cd "$here" && find . -type f ! -name '*.md' -print0 | LC_ALL=C sort -z |
      xargs -0 sha256sum)
    cc --version | head -n1
    sha256sum "$kernel" "$moddir/modules.dep" "$(command -v busybox)" "$agent_bin" \
      "$kSyslinuxMbr" "$kSyslinuxBios/ldlinux.c32" "$kQemuGa" "${qga_libs[@]}" \
      "$kShim" "$kGrubSigned" "$kSystemdBoot"
    umoci --version
  } | sha256sum | cut -d' ' -f1
)"
outputs=(vmlinuz initrd.img disk.qcow2 oci-kernel oci-disk disk-uefi.qcow2 oci-disk-uefi
  disk-uefi-unsigned.qcow2 oci-disk-uefi-unsigned)
up_to_date=1
for o in "${outputs[@]}"; do [[ -e "$out/$o" ]] || up_to_date=0; done
if ((up_to_date)) && [[ "$(cat "$out/.build-hash" 2>/dev/null)" == "$input_hash" ]]; then
  echo "build-guest: $out is up to date"
  exit 0
fi
rm -f "$out/.build-hash"

work="$(mktemp -d "$out/.build.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# --- initrd.img --------------------------------------------------------------
root="$work/root"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,run,tmp,www,var/log,var/run}
cp -a "$here/rootfs/." "$root/"
cp /usr/bin/busybox "$root/bin/busybox"
# The port-forward echo service (README: 127.0.0.1:7000 and 0.0.0.0:7001).
cc -static -O2 -Wall -Werror -o "$root/sbin/kvcri-echo" "$here/tools/kvcri-echo.c"
# The packet crafter tests use to send frames a good guest never would.
cc -static -Os -Wall -Werror -o "$root/sbin/kvcri-frame" "$here/tools/kvcri-frame.c"
cc -static -Os -Wall -Werror -o "$root/sbin/kvcri-dhcp6" "$here/tools/kvcri-dhcp6.c"
# The exec/port-forward agent (runtime/agent/guest/), started by /init.
install -m 0755 "$agent_bin" "$root/sbin/kvcri-agent"
while read -r applet; do
  [[ -e "$root/$applet" ]] || ln -s /bin/busybox "$root/$applet"
done < <(busybox --list-full | grep -v '^bin/busybox$')
# Debian's qemu-guest-agent, dynamically linked: the binary, its libraries
# and the loader at the paths ldd named (/lib64/ld-linux-x86-64.so.2 included).
cp "$kQemuGa" "$root/usr/sbin/qemu-ga"
for lib in "${qga_libs[@]}"; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
# The kernel opens /dev/console for PID 1 before /init mounts devtmpfs.
mknod -m 600 "$root/dev/console" c 5 1

# --show-depends prints "insmod PATH" for each module and its dependencies
# (softdeps included) and "builtin NAME" for ones compiled into the kernel.
mapfile -t kos < <(modprobe -S "$kver" --show-depends -a "${kModules[@]}" |
  awk '$1 == "insmod" { print $2 }' | sort -u)
((${#kos[@]} > 0)) || die "no modules resolved for $kver"
for ko in "${kos[@]}"; do
  mkdir -p "$root$(dirname "$ko")"
  cp "$ko" "$root$ko"
done
cp "$moddir"/modules.{builtin,builtin.modinfo,order} "$root$moddir/"
depmod -b "$root" "$kver"
# Fixed mtimes: same inputs, same initrd bytes.
find "$root" -exec touch -h -d "@$(stat -c %Y "$kernel")" {} +
(cd "$root" && find . -print0 | LC_ALL=C sort -z |
  cpio --null -o -H newc -R 0:0 --reproducible --quiet) | gzip -9n >"$work/initrd.img"
cp "$kernel" "$work/vmlinuz"

# Appends DIR/TOP (owners and modes as staged) to LAYOUT:latest as one layer.
# Not `umoci insert`: umoci 0.4.7 leaves the tar footer out (umoci#436), and
# GNU tar, Python and strict unpackers then reject the layer.
add_layer() {
  local layout="$1" dir="$2" top="$3"
  tar -C "$dir" -cf "$work/layer.tar" --format=ustar --numeric-owner \
    --sort=name --mtime="@$(stat -c %Y "$kernel")" "$top"
  umoci raw add-layer --image "$layout:latest" \
    --history.created_by "test/guest/build-guest.sh" "$work/layer.tar"
  rm -f "$work/layer.tar"
}

# --- oci-kernel: /boot/vmlinuz + /boot/initrd.img ------------------------------
mkdir -p "$work/kroot/boot"
cp "$work/vmlinuz" "$work/initrd.img" "$work/kroot/boot/"
chmod 0644 "$work/kroot/boot/"*
umoci init --layout "$work/oci-kernel"
umoci new --image "$work/oci-kernel:latest"
add_layer "$work/oci-kernel" "$work/kroot" boot
umoci config --image "$work/oci-kernel:latest" \
  --config.label "$kCmdlineLabel=$kCmdline" --config.user "$kKernelUser" \
  --author kubevirt-cri-test
umoci gc --layout "$work/oci-kernel"

# --- disk.qcow2: MBR + FAT partition with syslinux ----------------------------
# One FAT16 partition at 1 MiB (sector 2048); its boot sector's hidden-sectors
# field (-h) holds that offset, as on any partitioned disk.
part_start=2048
files_kib=$(( ($(stat -c %s "$work/vmlinuz") + $(stat -c %s "$work/initrd.img")) / 1024 ))
part_mib=$(( (files_kib + 4096) / 1024 + 1 ))
part_kib=$((part_mib * 1024))
cat >"$work/syslinux.cfg" <<EOF
SERIAL 0 115200
DEFAULT guest
PROMPT 0
TIMEOUT 0
LABEL guest
  KERNEL /vmlinuz
  INITRD /initrd.img
  APPEND $kCmdline
EOF
mkfs.vfat -C -F 16 --invariant -i 4b564352 -h "$part_start" -n KVCRIGUEST \
  "$work/part.img" "$part_kib" >/dev/null
touch -d "@$(stat -c %Y "$kernel")" "$work/syslinux.cfg"
# Not byte-reproducible: syslinux stamps ldlinux.* with the current time.
syslinux --install "$work/part.img"
MTOOLS_SKIP_CHECK=1 mcopy -m -i "$work/part.img" \
  "$work/vmlinuz" "$work/initrd.img" "$work/syslinux.cfg" ::/
truncate -s "$(((part_start / 2048 + part_mib + 1) * 1024 * 1024))" "$work/disk.raw"
printf 'label-id: 0x4b564352\nstart=%s, size=%s, type=6, bootable\n' \
  "$part_start" "$((part_kib * 2))" |
  sfdisk --quiet --label dos "$work/disk.raw"
dd if="$kSyslinuxMbr" of="$work/disk.raw" bs=440 count=1 conv=notrunc status=none
dd if="$work/part.img" of="$work/disk.raw" bs=512 seek="$part_start" conv=notrunc status=none
qemu-img convert -f raw -O qcow2 "$work/disk.raw" "$work/disk.qcow2"
rm -f "$work/disk.raw" "$work/part.img"

# --- disk-uefi*.qcow2: GPT + EFI system partition ------------------------------
# Writes QCOW2 from the tree ESP_DIR: a GPT disk with one FAT16 EFI system
# partition at 1 MiB holding it (OVMF reads FAT12/16/32 alike; FAT32 would
# need a partition of 32 MiB at least).
make_esp_disk() {
  local esp_dir="$1" qcow2="$2"
  local kib mib
  kib=$(du -sk "$esp_dir" | cut -f1)
  mib=$(((kib + 4096) / 1024 + 1))
  mkfs.vfat -C -F 16 --invariant -i 4b564355 -h "$part_start" -n KVCRIUEFI \
    "$work/esp.img" "$((mib * 1024))" >/dev/null
  find "$esp_dir" -exec touch -h -d "@$(stat -c %Y "$kernel")" {} +
  MTOOLS_SKIP_CHECK=1 mcopy -s -m -i "$work/esp.img" "$esp_dir"/* ::/
  # One MiB at the end for the backup GPT; fixed GUIDs for the same bytes.
  truncate -s "$(((part_start / 2048 + mib + 1) * 1024 * 1024))" "$work/esp-disk.raw"
  printf '%s\n' 'label: gpt' 'label-id: 4B564352-0000-4000-8000-000000000001' \
    "start=$part_start, size=$((mib * 2048)), type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=4B564352-0000-4000-8000-000000000002, name=\"EFI system\"" |
    sfdisk --quiet "$work/esp-disk.raw"
  dd if="$work/esp.img" of="$work/esp-disk.raw" bs=512 seek="$part_start" conv=notrunc status=none
  qemu-img convert -f raw -O qcow2 "$work/esp-disk.raw" "$qcow2"
  rm -f "$work/esp.img" "$work/esp-disk.raw"
}

# Signed: \EFI\BOOT\BOOTX64.EFI (the removable-media path OVMF boots without
# a boot entry) is shim, which loads grubx64.efi from beside itself. Debian's
# signed GRUB has prefix /EFI/debian built in and reads $prefix/grub.cfg (its
# embedded config falls back to the grub.cfg beside itself only when that
# one is missing). No fbx64.efi: shim would run it to write boot entries and
# reset the VM.
esp="$work/esp-signed"
mkdir -p "$esp/EFI/BOOT" "$esp/EFI/debian"
cp "$kShim" "$esp/EFI/BOOT/BOOTX64.EFI"
cp "$kGrubSigned" "$esp/EFI/BOOT/grubx64.efi"
cp "$work/vmlinuz" "$work/initrd.img" "$esp/"
printf '%s\n' 'set timeout=0' 'search --no-floppy --file --set=root /vmlinuz' "linux /vmlinuz $kCmdline" \
  'initrd /initrd.img' 'boot' >"$esp/EFI/debian/grub.cfg"
make_esp_disk "$esp" "$work/disk-uefi.qcow2"
rm -rf "$esp"

# Unsigned: systemd-boot and its loader entry (it starts the kernel's EFI stub).
esp="$work/esp-unsigned"
mkdir -p "$esp/EFI/BOOT" "$esp/loader/entries"
cp "$kSystemdBoot" "$esp/EFI/BOOT/BOOTX64.EFI"
cp "$work/vmlinuz" "$work/initrd.img" "$esp/"
printf '%s\n' 'default guest.conf' 'timeout 0' 'editor no' >"$esp/loader/loader.conf"
printf '%s\n' 'title kubevirt-cri test guest' 'linux /vmlinuz' 'initrd /initrd.img' "options $kCmdline" \
  >"$esp/loader/entries/guest.conf"
make_esp_disk "$esp" "$work/disk-uefi-unsigned.qcow2"
rm -rf "$esp"

# --- oci-disk*: exactly /disk/disk.qcow2, 107:107 -------------------------------
# Makes LAYOUT (tag latest) holding QCOW2 as /disk/disk.qcow2; further
# arguments are umoci config options (the firmware label).
make_disk_layout() {
  local layout="$1" qcow2="$2"
  shift 2
  rm -rf "$work/droot"
  mkdir -p "$work/droot/disk"
  cp "$qcow2" "$work/droot/disk/disk.qcow2"
  chown "$kDiskUid:$kDiskUid" "$work/droot/disk/disk.qcow2"
  chmod 0444 "$work/droot/disk/disk.qcow2"
  chmod 0555 "$work/droot/disk"
  umoci init --layout "$layout"
  umoci new --image "$layout:latest"
  add_layer "$layout" "$work/droot" disk
  umoci config --image "$layout:latest" --author kubevirt-cri-test "$@"
  umoci gc --layout "$layout"
}
make_disk_layout "$work/oci-disk" "$work/disk.qcow2"
make_disk_layout "$work/oci-disk-uefi" "$work/disk-uefi.qcow2" --config.label "$kFirmwareLabel=uefi"
make_disk_layout "$work/oci-disk-uefi-unsigned" "$work/disk-uefi-unsigned.qcow2" \
  --config.label "$kFirmwareLabel=uefi"

# --- publish -------------------------------------------------------------------
# umoci writes blobs 0600; let a registry or other users read the layouts too.
chmod -R a+rX "$work/oci-kernel" "$work/oci-disk" "$work/oci-disk-uefi" "$work/oci-disk-uefi-unsigned"
for o in "${outputs[@]}"; do
  rm -rf "${out:?}/$o"
  mv "$work/$o" "$out/$o"
done
echo "$input_hash" >"$out/.build-hash"
echo "build-guest: built $out (kernel $kver)"
