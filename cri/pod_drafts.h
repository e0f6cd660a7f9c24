// Typed, proto-free inputs of the Pod orchestrator, converted from CRI requests in cri/convert.cc.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "cri/volumes.h"
#include "sandbox/records.h"

namespace kvcri::cri {

// RunPodSandbox after validation: the record to create (ID, state, phase and
// times are the orchestrator's) and the resolved VM runtime handler.
struct SandboxDraft {
  sandbox::SandboxRecord record;
  std::string runtime_handler;
};

// The resources CreateContainer asked for (0 = not set).
struct ContainerResources {
  int64_t cpu_quota = 0;
  int64_t cpu_period = 0;
  int64_t memory_limit_bytes = 0;
};

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
};

}  // namespace kvcri::cri
