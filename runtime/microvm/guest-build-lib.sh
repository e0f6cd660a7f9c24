# Shell functions shared by the guest image builders (runtime/microvm/build-microvm.sh, test/guest/build-guest.sh): the kernel, the static agent, a binary's libraries.
# Sourced, not run. Each function calls `die` (the caller's) on failure.

# Sets kver, kernel and moddir: version $1 (empty: the newest
# /boot/vmlinuz-*-amd64 of linux-image-amd64), checked readable with modules.
guest_pick_kernel() {
  kver="$1"
  if [[ -z "$kver" ]]; then
    local kernels=(/boot/vmlinuz-*-amd64)
    [[ -e "${kernels[0]}" ]] || die "no /boot/vmlinuz-*-amd64 (package linux-image-amd64)"
    kernel="$(printf '%s\n' "${kernels[@]}" | sort -V | tail -n1)"
    kver="${kernel#/boot/vmlinuz-}"
  fi
  kernel="/boot/vmlinuz-$kver"
  moddir="/lib/modules/$kver"
  [[ -r "$kernel" ]] || die "kernel \"$kernel\" not readable"
  [[ -f "$moddir/modules.dep" ]] || die "\"$moddir/modules.dep\" missing"
}

# Fails unless $1 is an executable static kvcri-agent: guests have no libc of
# ours (a sanitizer build is dynamic and would not run there).
guest_check_static_agent() {
  [[ -x "$1" ]] || die "kvcri-agent \"$1\" missing: build it (ninja -C build kvcri-agent) or set KVCRI_AGENT_BIN"
  if ldd "$1" >/dev/null 2>&1; then die "kvcri-agent \"$1\" is not a static executable"; fi
}

# Prints the shared libraries of binary $1 and its dynamic loader, as ldd
# resolves them, one path per line; fails when there are none.
guest_libs_of() {
  local libs
  libs="$(ldd "$1" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u)"
  [[ -n "$libs" ]] || die "ldd found no libraries of \"$1\""
  printf '%s\n' "$libs"
}
