// Conversions between CRI protos and our records and drafts.
#pragma once

#include "absl/status/statusor.h"

#include "cri/proto/api.pb.h"
#include "cri/pod_drafts.h"
#include "sandbox/records.h"

namespace kvcri::cri {

namespace pb = ::runtime::v1;

// CRI config → a new sandbox record (ID, state, phase and times are the caller's).
sandbox::SandboxRecord SandboxRecordFromConfig(const pb::PodSandboxConfig& config);

// CRI linux resources → ours (CreateContainer, UpdateContainerResources).
ContainerResources ResourcesFromPb(const pb::LinuxContainerResources& r);

// CreateContainer's request → a draft; `volumes` is ValidateVolumes' result.
ContainerDraft ContainerDraftFromRequest(const pb::CreateContainerRequest& req, VolumePlan volumes);
// The process part of a plain-image container (ContainerDraft::process).
runtime::microvm::ContainerRequest ProcessFromPb(const pb::ContainerConfig& c);
// CreateContainer's whole check and conversion (container_create.cc): the
// request's IDs and config validated, devices and mounts resolved, a draft.
// InvalidArgument or NotFound naming the field. Both front doors use it (the
// shim rebuilds the request from containerd's OCI spec).
absl::StatusOr<ContainerDraft> ValidatedContainerDraft(const pb::CreateContainerRequest& req);

void ToPb(const sandbox::SandboxRecord& r, pb::PodSandbox* out);
void ToPb(const sandbox::SandboxRecord& r, pb::PodSandboxStatus* out);
void ToPb(const sandbox::ContainerRecord& r, pb::Container* out);
// `log_directory` is the sandbox's: ContainerStatus reports the full log path.
void ToPb(const sandbox::ContainerRecord& r, const std::string& log_directory, pb::ContainerStatus* out);

pb::PodSandboxState ToPb(sandbox::SandboxState s);
pb::ContainerState ToPb(sandbox::ContainerState s);

}  // namespace kvcri::cri
