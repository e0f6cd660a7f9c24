// Request validation for the CRI services; errors name the field.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "cri/proto/api.pb.h"

namespace kvcri::cri {

namespace pb = ::runtime::v1;

// Pod annotation overriding a kernel-boot image's command line.
inline constexpr char kKernelCmdlineAnnotation[] = "kubevirt-cri.io/kernel-cmdline";

// Checks what RunPodSandbox needs: metadata as Kubernetes allows it (name a
// DNS-1123 subdomain, namespace a DNS-1123 label, uid of letters, digits,
// '-', '_', '.', at most 128), no control characters in hostname,
// log_directory or the kernel-cmdline annotation, an absolute log_directory
// without "..", sane port mappings. Errors name the field.
absl::Status ValidateSandboxConfig(const pb::PodSandboxConfig& config);

// Checks CreateContainer's config: metadata name (a DNS-1123 label), image,
// a relative log_path that stays inside the sandbox's log directory; no
// control characters in image or log_path.
absl::Status ValidateContainerConfig(const pb::ContainerConfig& config);

// UpdateContainerResources' linux resources: what a running VM can take
// (vCPUs from quota/period, the balloon from the memory limit, the cgroup's
// CPU knobs); InvalidArgument naming the field for the rest (hugepages,
// swap, unified keys other than kubelet's no-op ones). Both front doors.
absl::Status ValidateLinuxResources(const pb::LinuxContainerResources& r);

// A pod or container ID argument: non-empty, no path characters. Full IDs are
// 64 hex characters; a shorter unique prefix is resolved by the store.
absl::Status ValidateIdArgument(std::string_view field, std::string_view id);

// True when `path` is relative and normalizes to something below its base
// (no "..", no empty or "." result).
bool IsContainedRelativePath(std::string_view path);

}  // namespace kvcri::cri
