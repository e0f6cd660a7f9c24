// Typed, proto-free inputs of the Pod orchestrator, converted from CRI requests in cri/convert.cc.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "cri/volumes.h"
#include "runtime/microvm/runtime_spec.h"
#include "sandbox/records.h"

namespace kvcri::cri {

// RunPodSandbox after validation: the record to create (ID, state, phase and
// times are the orchestrator's) and the resolved VM runtime handler.
struct SandboxDraft {
  sandbox::SandboxRecord record;
  std::string runtime_handler;
  // The ID to give the sandbox: empty (the daemon's path) generates one;
  // containerd-shim mode passes containerd's, so that records, domains and
  // containerd's tasks share one name (sandbox::IsValidId, not in use).
  std::string id;
};

// The resources CreateContainer or UpdateContainerResources asked for
// (0 / empty = not set). Fields a VM cannot take are refused before a draft
// is made (cri/container_update.cc).
struct ContainerResources {
  int64_t cpu_quota = 0;
  int64_t cpu_period = 0;
  int64_t memory_limit_bytes = 0;
  int64_t cpu_shares = 0;
  std::string cpuset_cpus;
  std::string cpuset_mems;
};

// The record's copy of what was asked for (ContainerStatus reports it).
inline sandbox::ContainerLinuxResources RecordResources(const ContainerResources& r) {
  sandbox::ContainerLinuxResources out;
  out.cpu_period = r.cpu_period;
  out.cpu_quota = r.cpu_quota;
  out.cpu_shares = r.cpu_shares;
  out.memory_limit_in_bytes = r.memory_limit_bytes;
  out.cpuset_cpus = r.cpuset_cpus;
  out.cpuset_mems = r.cpuset_mems;
  return out;
}

// CreateContainer after validation.
struct ContainerDraft {
  std::string sandbox_id;  // as the caller gave it (full ID or prefix)
  sandbox::ContainerMetadata metadata;
  std::string image;
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> annotations;
  std::string log_path;
  ContainerResources resources;
  VolumePlan volumes;  // checked and resolved by ValidateVolumes
  // The process a plain-image container runs (docs/microvm.md): command,
  // args, env, user, security context as the request gave them; id,
  // hostname, mounts and the Localhost seccomp profile's text are filled
  // in by CreateContainer. A VM-disk container ignores it.
  runtime::microvm::ContainerRequest process;
  // SeccompKind::kLocalhost: the profile's host path (localhost_ref).
  std::string seccomp_localhost_path;
  // As SandboxDraft::id: empty generates one.
  std::string id;
};

}  // namespace kvcri::cri
