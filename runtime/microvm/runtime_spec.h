// The OCI runtime spec (config.json) crun runs a plain-image container from inside the Pod micro-VM, built from the container's CRI request and its image config.
#pragma once

// The conversion follows what containerd's CRI plugin (1.6/1.7) makes of the
// same ContainerConfig, so an image behaves as it does under runc:
//   args:  command (else the image Entrypoint) + args (else, with no
//          command, the image Cmd); neither → InvalidArgument;
//   env:   PATH default, HOSTNAME, then the image's Env, then the request's,
//          a later key replacing an earlier one;
//   cwd:   working_dir, else the image's WorkingDir, else /;
//   user:  run_as_username / run_as_user [+ run_as_group], else the image's
//          User ("name", "uid", "name:group", "uid:gid", …), names looked
//          up in the container's own /etc/passwd and /etc/group; groups of
//          /etc/group listing the user plus supplemental_groups;
//   caps:  containerd's 14 defaults; add/drop by CRI name ("NET_ADMIN"),
//          "ALL" in add gives every capability, in drop none, the other
//          names applied after it; privileged: every capability;
//   masked/readonly paths as given (kubelet sends its defaults), else
//          containerd's defaults; none when privileged;
//   seccomp: Unconfined, RuntimeDefault (docs/microvm.md) or a Localhost
//          profile's JSON; none when privileged.
// What differs, because the VM is the Pod: the network, IPC and UTS
// namespaces are the guest's own (the Pod's), so there are no namespace
// entries for them; a Pod-shared PID namespace is joined by path; Pod
// sysctls are the guest's, set by the agent, not per container.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"

namespace kvcri::runtime::microvm {

enum class SeccompKind { kUnconfined, kRuntimeDefault, kLocalhost };
enum class PidMode {
  kContainer,  // a PID namespace of its own
  kPod,        // the Pod's (ContainerRequest::pod_pid_namespace)
  kNode,       // the guest's root PID namespace (hostPID: the VM is the node the Pod sees)
};

// A host path the daemon has already placed on the Pod's share, bound into
// the container.
struct BindMount {
  std::string guest_source;    // absolute, in the guest (below /run/kvcri/pod)
  std::string container_path;  // absolute, in the container
  bool read_only = false;
};

struct ContainerResources {
  int64_t cpu_period = 0, cpu_quota = 0, cpu_shares = 0;
  int64_t memory_limit_bytes = 0;
  int64_t oom_score_adj = 0;
  std::string cpuset_cpus, cpuset_mems;
};

// The part of a CRI ContainerConfig (and its sandbox) the spec needs,
// already validated by cri/ for the field-level rules (absolute paths, …).
struct ContainerRequest {
  std::string id;
  std::vector<std::string> command, args;
  std::vector<std::pair<std::string, std::string>> env;
  std::string working_dir;
  std::optional<int64_t> run_as_user, run_as_group;
  std::string run_as_username;
  std::vector<int64_t> supplemental_groups;
  bool privileged = false, no_new_privs = false, readonly_rootfs = false;
  bool tty = false, stdin = false;
  std::vector<std::string> add_capabilities, drop_capabilities;
  // nullopt: the request had none (containerd's defaults apply).
  std::optional<std::vector<std::string>> masked_paths, readonly_paths;
  SeccompKind seccomp = SeccompKind::kUnconfined;
  std::string seccomp_localhost_json;  // kLocalhost: the profile file's contents
  PidMode pid = PidMode::kContainer;
  std::string pod_pid_namespace;  // kPod: /proc/<pid>/ns/pid in the guest
  std::string hostname;           // the Pod's, for HOSTNAME
  std::vector<BindMount> mounts;
  // The container was given block devices (bound in through `mounts` from
  // the guest's /dev/disk/by-id): its device cgroup allows block devices.
  // The micro-VM's only block devices are the Pod's own volumes.
  bool block_devices = false;
  ContainerResources resources;
};

// What the image config says about the process.
struct ImageProcess {
  std::string user;
  std::vector<std::string> env, entrypoint, cmd;
  std::string working_dir;
};

struct PasswdEntry {
  std::string name;
  uint32_t uid = 0, gid = 0;
  std::string home;
};
struct GroupEntry {
  std::string name;
  uint32_t gid = 0;
  std::vector<std::string> members;
};
// The container root's user database.
struct UserDb {
  std::vector<PasswdEntry> users;
  std::vector<GroupEntry> groups;
};

// Parses passwd(5) and group(5) text; malformed lines are skipped, as libc does.
UserDb ParseUserDb(std::string_view passwd, std::string_view group);

// Reads <rootfs>/etc/passwd and /etc/group without leaving the root (the
// image is untrusted: symlinks resolve inside it), at most 4 MiB each;
// a missing file is an empty database.
absl::StatusOr<UserDb> ReadUserDb(const std::filesystem::path& rootfs);

// The spec, with root.path "rootfs" (the bundle's). InvalidArgument naming
// the field for what cannot be honoured: no command, an unknown user or
// group name, an unknown capability, a Localhost profile that is not a
// seccomp profile object.
absl::StatusOr<nlohmann::json> BuildRuntimeSpec(const ContainerRequest& req, const ImageProcess& image,
                                                const UserDb& users);

// A container's cgroups in the guest: crun makes and removes
// <parent>/ctr (cgroupsPath); the parent stays until the container's exit
// is recorded, so its memory.events still counts the OOM kills (SPAWN's
// oom_cgroup).
std::string GuestCgroupParent(const std::string& container_id);  // "/sys/fs/cgroup/kvcri/<id>"

// containerd's default capability set, "CAP_" names.
const std::vector<std::string>& DefaultCapabilities();
// Every capability this kernel generation knows (CAP_CHOWN … CAP_CHECKPOINT_RESTORE).
const std::vector<std::string>& AllCapabilities();

}  // namespace kvcri::runtime::microvm
