// PID 1 duties of kvcri-agent in a Pod micro-VM: the filesystems, kernel modules and loopback a container runtime needs, set up before the agent serves.
#pragma once

// Plain C++ without absl, like the rest of the guest binary (static, small).
//
// The micro-VM's initramfs (runtime/microvm/build-microvm.sh) has no other
// init: the kernel runs /init, which is kvcri-agent. It prepares the guest,
// then serves the host as in any guest; orphans reparent to it and its
// SIGCHLD loop (waitpid(-1)) reaps them.

namespace kvcri::runtime::agent {

// Where the host's per-Pod virtio-fs share (container bundles and their
// roots) is mounted, and the tag the host gives it (runtime/microvm/microvm.h).
inline constexpr char kPodShareTag[] = "kvcri-pod";
inline constexpr char kPodShareDir[] = "/run/kvcri/pod";
// Kernel modules to load, one absolute path per line, in load order
// (dependencies first), written by the initramfs builder.
inline constexpr char kModuleList[] = "/etc/kvcri/modules";

// Whether this process is the guest's init.
bool IsGuestInit();

// Mounts /proc, /sys, /dev (+ pts, shm), /run, /tmp and the cgroup v2
// hierarchy with every controller enabled for children; loads the listed
// modules; brings up lo; takes the hostname and each NIC's addresses
// (IPv4 and IPv6, one kvcri.ip per address), gateways and MTU from the
// kernel command line (kvcri.hostname=<name>,
// kvcri.ip=<ifname>,<address>/<prefix>[,<gateway>[,<mtu>]]); mounts the
// Pod share when the VM has one. Each
// failure is printed on the console and the rest still runs: the host sees
// what does not work when it uses it, and the console says why.
void InitGuest();

// PID 1 must never exit (the kernel panics): the VM powers off instead.
[[noreturn]] void PowerOff();

}  // namespace kvcri::runtime::agent
