#!/usr/bin/env bash
# Installs the .deb into a clean Debian 12 chroot and checks it works:
#
#   scripts/test-deb.sh DEB [WORKDIR] [GUEST_OCI_DIR]
#
#  1. WORKDIR/bookworm-minbase.tgz (debootstrap --variant=minbase, made once
#     and cached) unpacked into a fresh WORKDIR/chroot; downloaded .debs are
#     cached in WORKDIR/apt-archives for the next run;
#  2. `apt-get install ./kubevirt-cri_*.deb` inside it (dependencies from the
#     Debian mirror); checks the files, the conffile and the libvirt-qemu user;
#  3. runs the unit's ExecStart by hand (systemd is not PID 1 in a chroot) and
#     waits for the socket to answer Version and Status (cri_probe);
#  4. with GUEST_OCI_DIR: imports it, starts a VM Pod, then `apt-get remove`s
#     the package and stops the daemon as systemd would (SIGTERM to the main
#     process, KillMode=process), and checks the VM's QEMU still runs;
#  5. cleans up: the VM's QEMU, mounts, the chroot.
# Needs root, debootstrap and the project's CRI client, test/tools/cri_probe
# (env CRI_PROBE, default: cri_probe next to the .deb's build dir test/).
# Fails loudly.
set -euo pipefail

deb=$(realpath "${1:?usage: test-deb.sh DEB [WORKDIR] [GUEST_OCI_DIR]}")
work=$(realpath -m "${2:-$(dirname "$deb")/deb-test}")
guest="${3:-}"
root="$work/chroot"
sock_rel=/run/kubevirt-cri/kubevirt-cri.sock
daemon_pid=""
ctr=""
fail() { echo "test-deb: FAIL: $*" >&2; exit 1; }
step() { echo "test-deb: $*" >&2; }

[[ $EUID -eq 0 ]] || fail "must run as root"
command -v debootstrap >/dev/null || fail "debootstrap is not installed (apt-get install debootstrap)"
probe=${CRI_PROBE:-$(dirname "$deb")/test/cri_probe}
[[ -x $probe ]] || fail "CRI client \"$probe\" not found (ninja cri_probe, or set CRI_PROBE)"
[[ -z $guest || -f $guest/index.json ]] || fail "GUEST_OCI_DIR \"$guest\" is not an OCI layout"

cleanup() {
  set +e
  [[ -n $daemon_pid ]] && kill "$daemon_pid" 2>/dev/null
  # The QEMU of the VM this test started (the container ID is unique).
  if [[ -n $ctr ]]; then
    for p in $(pgrep -f "qemu-system-x86_64 .*kvcri-$ctr"); do kill -9 "$p"; done
  fi
  sleep 1
  for m in $(awk -v r="$root" '$2 == r || index($2, r "/") == 1 {print $2}' /proc/mounts | sort -r); do
    umount -l "$m"
  done
  rm -rf "$root"
  ip link del kvcri-deb0 2>/dev/null
}

# The Debian mirror this host's apt uses (CI may have its own), else deb.debian.org.
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
[[ -n $mirror ]] || mirror=$(awk '$1 == "deb" && $3 ~ /^bookworm$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}

mkdir -p "$work/apt-archives/partial"
seed="$work/bookworm-minbase.tgz"
if [[ ! -f $seed ]]; then
  step "debootstrap bookworm (once; cached as $seed)"
  rm -rf "$work/seed"
  debootstrap --variant=minbase bookworm "$work/seed" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    fail "debootstrap failed, see $work/debootstrap.log"
  tar -C "$work/seed" -czf "$seed.tmp" . && mv "$seed.tmp" "$seed"
  rm -rf "$work/seed"
fi

if [[ -d $root ]]; then cleanup; fi
trap cleanup EXIT
mkdir -p "$root"
tar -C "$root" -xzf "$seed"
# The chroot's / must be a mount point: libvirt gives QEMU a private mount
# namespace and makes / a slave mount there (EINVAL on a plain directory).
mount --bind "$root" "$root"
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys" && mount --make-rslave "$root/sys"
mount --rbind /dev "$root/dev" && mount --make-rslave "$root/dev"
mount -t tmpfs tmpfs "$root/run"
mount --bind "$work/apt-archives" "$root/var/cache/apt/archives"
cp /etc/resolv.conf "$root/etc/resolv.conf"
# The host's apt proxy settings, if any, apply inside too.
for f in /etc/apt/apt.conf.d/*proxy* /etc/apt/apt.conf.d/*Proxy*; do [[ -f $f ]] && cp "$f" "$root/etc/apt/apt.conf.d/"; done
cp "$deb" "$root/tmp/"
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"; }

step "apt-get install ./$(basename "$deb") in a clean bookworm chroot"
start=$SECONDS
in_root apt-get update -qq >"$work/apt.log" 2>&1 || fail "apt-get update failed, see $work/apt.log"
in_root apt-get install -y -q --no-install-recommends "/tmp/$(basename "$deb")" >>"$work/apt.log" 2>&1 ||
  fail "apt-get install failed, see $work/apt.log"
step "installed in $((SECONDS - start)) s"

[[ -x $root/usr/bin/kubevirt-cri ]] || fail "/usr/bin/kubevirt-cri missing"
[[ -f $root/lib/systemd/system/kubevirt-cri.service ]] || fail "unit missing"
[[ -f $root/usr/share/kubevirt-cri/runtimeclass.yaml ]] || fail "runtimeclass.yaml missing"
[[ -f $root/usr/share/doc/kubevirt-cri/operator-guide.md ]] || fail "operator guide missing"
grep -qx /etc/kubevirt-cri/config.toml "$root/var/lib/dpkg/info/kubevirt-cri.conffiles" ||
  fail "/etc/kubevirt-cri/config.toml is not a conffile"
in_root getent passwd libvirt-qemu >/dev/null || fail "postinst did not create the libvirt-qemu user"
grep -q '^KillMode=process$' "$root/lib/systemd/system/kubevirt-cri.service" || fail "unit lacks KillMode=process"

exec_start=$(sed -n 's/^ExecStart=//p' "$root/lib/systemd/system/kubevirt-cri.service")
[[ -n $exec_start ]] || fail "no ExecStart in the unit"
step "running the unit's ExecStart by hand: $exec_start"
# No KVM check here: accelerator = "auto" picks TCG where KVM cannot run guests.
# A private mount namespace whose / is the chroot (pivot_root), as on a real
# host: libvirt builds a private /dev for QEMU from the mount table, which a
# plain chroot confuses. The tmpfs on /run is shared with us (the socket).
unshare --mount --propagation private -- /bin/sh -c \
  'cd "$1" && mkdir -p .oldroot && pivot_root . .oldroot && shift && exec /usr/sbin/chroot . /usr/bin/env -i \
   PATH=/usr/sbin:/usr/bin:/sbin:/bin /bin/sh -c "umount -l /.oldroot && rmdir /.oldroot && exec $*"' \
  sh "$root" "$exec_start" >"$work/daemon.log" 2>&1 &
daemon_pid=$!
cri=("$probe" "$root$sock_rel")
for _ in $(seq 300); do
  "${cri[@]}" version >/dev/null 2>&1 && break
  kill -0 "$daemon_pid" 2>/dev/null || fail "daemon exited: $(tail -5 "$work/daemon.log")"
  sleep 0.2
done
"${cri[@]}" version | grep -q 'RuntimeName: kubevirt-cri' || fail "Version did not answer on $sock_rel"
"${cri[@]}" status | grep -q '^RuntimeReady=true' || fail "Status: RuntimeReady is not true: $("${cri[@]}" status)"
step "socket $sock_rel answers Version and Status"

if [[ -n $guest ]]; then
  cp -r "$guest" "$root/tmp/guest"
  in_root kubevirt-cri images import /tmp/guest kvcri.test/guest:latest >>"$work/daemon.log" 2>&1 ||
    fail "images import failed, see $work/daemon.log"
  mkdir -p "$root/tmp/pods" "$root/etc/cni/net.d"
  # A node network for the Pod: a bridge of its own, removed by cleanup.
  echo '{"cniVersion": "1.0.0", "name": "deb-test", "plugins": [{"type": "bridge", "bridge": "kvcri-deb0",
    "ipam": {"type": "host-local", "subnet": "10.251.0.0/24"}}]}' >"$root/etc/cni/net.d/10-deb-test.conflist"
  ids=$("${cri[@]}" run-vm deb-vm kvcri.test/guest:latest) || fail "starting the VM Pod failed"
  pod=${ids% *}
  ctr=${ids#* }
  qemu=$(pgrep -f "qemu-system-x86_64 .*kvcri-$ctr" || true)
  [[ -n $qemu ]] || fail "no QEMU process for container $ctr"
  step "VM Pod $pod runs (QEMU pid $qemu); removing the package"
  in_root apt-get remove -y -q kubevirt-cri >>"$work/apt.log" 2>&1 || fail "apt-get remove failed, see $work/apt.log"
  # What `systemctl stop` does with KillMode=process: SIGTERM to the main process only.
  kill -TERM "$daemon_pid"
  wait "$daemon_pid" || fail "daemon did not exit cleanly on SIGTERM"
  daemon_pid=""
  sleep 2
  kill -0 "$qemu" 2>/dev/null || fail "the VM's QEMU (pid $qemu) died with the package removal or daemon stop"
  [[ ! -e $root/usr/bin/kubevirt-cri ]] || fail "binary still present after remove"
  [[ -f $root/etc/kubevirt-cri/config.toml ]] || fail "remove (not purge) must keep the conffile"
  step "after apt-get remove and daemon stop the VM's QEMU (pid $qemu) still runs"
fi
step "PASS"
