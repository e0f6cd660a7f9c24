#!/usr/bin/env bash
# Builds the Pod micro-VM's boot files from this host's Debian packages: the
# kernel of linux-image-amd64 and an initramfs whose /init is kvcri-agent,
# with Debian's crun (and the libraries it links), and the virtio, virtio-fs
# and network modules of that kernel. See docs/microvm.md.
#
#   build-microvm.sh OUT_DIR
#
# Outputs in OUT_DIR: vmlinuz, initramfs.img (an uncompressed newc cpio:
# under TCG unpacking gzip costs more boot time than reading the bytes).
# Skips the build when OUT_DIR/.build-hash matches the inputs.
# Environment: KVCRI_MICROVM_KVER picks the kernel (default: newest in
# /boot); KVCRI_AGENT_BIN the static kvcri-agent (default: the installed
# /usr/share/kubevirt-cri/guest/kvcri-agent, else build/runtime/kvcri-agent
# of this checkout); KVCRI_CRUN the crun binary (default /usr/bin/crun).
# Needs root (a /dev/console node).
set -euo pipefail

if (($# != 1)); then
  echo "usage: $0 OUT_DIR" >&2
  exit 2
fi
out="$1"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=runtime/microvm/guest-build-lib.sh
. "$here/guest-build-lib.sh"

# The virtio stack, virtio-fs (container roots), the NIC and block volumes;
# their dependencies come from modprobe.
readonly kModules=(
  virtio_pci virtio_net virtio_blk virtio_console virtio_rng virtiofs fuse ext4 crc32c_generic
  failover net_failover overlay
)

die() {
  echo "build-microvm: $*" >&2
  exit 1
}

missing=()
for t in cpio modprobe ldd sha256sum flock; do
  command -v "$t" >/dev/null || missing+=("$t")
done
((${#missing[@]} == 0)) || die "missing tools: ${missing[*]} (run scripts/install-deps.sh)"
[[ "$(id -u)" == 0 ]] || die "must run as root (needs mknod for /dev/console)"

crun="${KVCRI_CRUN:-/usr/bin/crun}"
[[ -x "$crun" ]] || die "crun \"$crun\" missing (package crun)"
agent_bin="${KVCRI_AGENT_BIN:-}"
if [[ -z "$agent_bin" ]]; then
  agent_bin=/usr/share/kubevirt-cri/guest/kvcri-agent
  [[ -x "$agent_bin" ]] || agent_bin="$here/../../build/runtime/kvcri-agent"
fi
guest_check_static_agent "$agent_bin"  # it is the guest's init, with no libc beside it
guest_pick_kernel "${KVCRI_MICROVM_KVER:-}"
# crun's shared libraries and the dynamic loader.
mapfile -t crun_libs < <(guest_libs_of "$crun")
((${#crun_libs[@]} > 0)) || die "ldd found no libraries of \"$crun\""
# Module paths in load order, dependencies first, each once.
mapfile -t kos < <(modprobe -S "$kver" --show-depends -a "${kModules[@]}" |
  awk '$1 == "insmod" && !seen[$2]++ { print $2 }')
((${#kos[@]} > 0)) || die "no modules resolved for $kver"

mkdir -p "$out"
out="$(cd "$out" && pwd)"
exec 9>"$out/.lock"
flock 9

input_hash="$(
  {
    echo "$kver"
    sha256sum "$0" "$kernel" "$agent_bin" "$crun" "${crun_libs[@]}" "${kos[@]}"
  } | sha256sum | cut -d' ' -f1
)"
if [[ -e "$out/vmlinuz" && -e "$out/initramfs.img" && "$(cat "$out/.build-hash" 2>/dev/null)" == "$input_hash" ]]; then
  echo "build-microvm: $out is up to date"
  exit 0
fi
rm -f "$out/.build-hash"
work="$(mktemp -d "$out/.build.XXXXXX")"
trap 'rm -rf "$work"' EXIT

root="$work/root"
mkdir -p "$root"/{dev,proc,sys,run,tmp,newroot,etc/kvcri,usr/bin,sbin}
install -m 0755 "$agent_bin" "$root/init"
# A build tree's agent carries debug info the guest only pays for in boot time.
if command -v strip >/dev/null; then strip --strip-debug "$root/init"; fi
ln "$root/init" "$root/sbin/kvcri-agent"
install -m 0755 "$crun" "$root/usr/bin/crun"
for lib in "${crun_libs[@]}"; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
for ko in "${kos[@]}"; do
  mkdir -p "$root$(dirname "$ko")"
  cp "$ko" "$root$ko"
done
printf '%s\n' "${kos[@]}" >"$root/etc/kvcri/modules"
# The kernel opens /dev/console for PID 1 before /init mounts devtmpfs.
mknod -m 600 "$root/dev/console" c 5 1
# Fixed mtimes: same inputs, same bytes.
find "$root" -exec touch -h -d "@$(stat -c %Y "$kernel")" {} +
(cd "$root" && find . -print0 | LC_ALL=C sort -z |
  cpio --null -o -H newc -R 0:0 --reproducible --quiet) >"$work/initramfs.img"
cp "$kernel" "$work/vmlinuz"
chmod 0644 "$work/vmlinuz" "$work/initramfs.img"
mv -f "$work/vmlinuz" "$work/initramfs.img" "$out/"
echo "$input_hash" >"$out/.build-hash"
echo "build-microvm: built $out (kernel $kver, $(du -k "$out/initramfs.img" | cut -f1) KiB initramfs)"
