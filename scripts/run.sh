#!/usr/bin/env bash
# Installs what kubevirt-cri needs, builds it, and runs the daemon in the
# foreground on its defaults: embedded QEMU driver, socket
# /run/kubevirt-cri/kubevirt-cri.sock. Extra arguments go to the daemon.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh
# The Pod micro-VM's kernel and initramfs (plain-image containers), from this
# machine's Debian packages, where [microvm] in the config looks by default.
KVCRI_AGENT_BIN="$PWD/build/runtime/kvcri-agent" ./runtime/microvm/build-microvm.sh /var/lib/kubevirt-cri/microvm
echo "kubevirt-cri: serving CRI on unix:///run/kubevirt-cri/kubevirt-cri.sock (Ctrl-C stops it; VMs keep running)" >&2
exec ./build/shim/kubevirt-cri "$@"
