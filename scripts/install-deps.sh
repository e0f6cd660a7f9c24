#!/usr/bin/env bash
# Installs every Debian 12 package kubevirt-cri needs to build, run and test.
# Idempotent: a second run installs nothing new. --test adds the test packages,
# --demo only those scripts/demo.sh needs.
set -euo pipefail

build_pkgs=(
  build-essential cmake pkg-config ninja-build
  protobuf-compiler libprotobuf-dev libgrpc++-dev protobuf-compiler-grpc
  libabsl-dev libvirt-dev libseccomp-dev libcap-dev libacl1-dev
  libtomlplusplus-dev nlohmann-json3-dev
  libsystemd-dev  # sd-bus: the systemd cgroup driver (runtime/cgroup/systemd_placer.cc)
  libcurl4-openssl-dev libssl-dev libarchive-dev libnl-route-3-dev libnl-3-dev
  libboost-dev zlib1g-dev  # the streaming server: Boost.Beast (HTTP, WebSocket), zlib (SPDY header blocks)
  libgtest-dev libgmock-dev libbenchmark-dev libyaml-cpp-dev
)
runtime_pkgs=(
  libvirt-daemon libvirt-daemon-driver-qemu qemu-system-x86 qemu-utils
  containernetworking-plugins iproute2 ovmf
  iptables  # containerd-shim mode: port-forward's redirect in the Pod's netns
  swtpm swtpm-tools  # the vTPM of annotation kubevirt-cri.io/tpm: libvirt runs swtpm_setup and swtpm
  # The Pod micro-VM's boot files (runtime/microvm/build-microvm.sh): crun and
  # its libraries in the initramfs, the distro kernel and its modules.
  crun linux-image-amd64 cpio kmod
)
# What test/guest/build-guest.sh needs (and cc, from build-essential), and curl: the demo guest of scripts/demo.sh.
demo_pkgs=(
  linux-image-amd64 busybox-static cpio kmod
  syslinux syslinux-common mtools dosfstools fdisk umoci curl
  qemu-guest-agent  # copied into the test guest with its libraries
  shim-signed grub-efi-amd64-signed systemd-boot-efi  # the UEFI containerDisks' boot loaders (signed and not)
)
test_pkgs=(
  "${demo_pkgs[@]}"
  skopeo docker-registry apache2-utils jq iputils-ping python3 openssl debootstrap containerd runc
  zstd  # hostile-registry test: a zstd decompression bomb layer
  clang  # the thread_safety test (clang++-14 -Wthread-safety)
  strace  # sandbox_store_test: the fsync of a new record directory's parent
  isc-dhcp-client ndisc6  # netwire_tap_test: dhclient -6 and rdisc6 against our RA/DHCPv6 responder
  golang-go golang-github-docker-spdystream-dev  # spdy_spdystream_interop: kubectl's SPDY library against our server
  # scripts/test-sanitizers.sh: ASan/UBSan/TSan and libFuzzer runtimes, llvm-symbolizer for their stacks.
  libclang-rt-14-dev llvm-14
)

want=("${build_pkgs[@]}" "${runtime_pkgs[@]}")
case "${1:-}" in
  --test) want+=("${test_pkgs[@]}") ;;
  --demo) want+=("${demo_pkgs[@]}") ;;
esac

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # A kernel package in a container must not try to build an initramfs or touch a bootloader.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's QEMU driver resolves its built-in default user "libvirt-qemu" before
# it reads qemu.conf (libvirt-daemon-system would create it; we do not need
# that package). Our embed root's qemu.conf then runs QEMU as root.
getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
getent passwd libvirt-qemu >/dev/null || useradd --system --gid libvirt-qemu --no-create-home \
  --home-dir /var/lib/libvirt --shell /usr/sbin/nologin libvirt-qemu

# docker-registry's package starts a service on :5000 where systemd runs; tests start their own.
if command -v systemctl >/dev/null && systemctl is-active -q docker-registry 2>/dev/null; then
  systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi
