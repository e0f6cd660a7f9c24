#!/usr/bin/env bash
# Installs what kubevirt-cri needs, builds it, and runs the daemon in the
# foreground on its defaults: embedded QEMU driver, socket
# /run/kubevirt-cri/kubevirt-cri.sock. Extra arguments go to the daemon.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh
echo "kubevirt-cri: serving CRI on unix:///run/kubevirt-cri/kubevirt-cri.sock (Ctrl-C stops it; VMs keep running)" >&2
exec ./build/shim/kubevirt-cri "$@"
