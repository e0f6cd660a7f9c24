// AdoptedNetns and AdoptedCniRunner: containerd's netns and CNI result behind our seams (adopted_network.h).
#include "shim/containerd/adopted_network.h"

#include "cni/netns_links.h"
#include "cni/result.h"
#include "config/base/status_macros.h"
#include "config/base/str.h"

namespace kvcri::shim::containerd {

void AdoptedNetns::Adopt(std::string_view id, std::filesystem::path path) {
  absl::MutexLock lock(&mu_);
  paths_[std::string(id)] = std::move(path);
}

absl::StatusOr<std::filesystem::path> AdoptedNetns::Create(std::string_view id) {
  std::filesystem::path path = Path(id);
  if (path.empty()) {
    return absl::FailedPreconditionError(base::StrCat(
        "sandbox \"", id, "\" has no network namespace in its OCI spec (linux.namespaces): a kubevirt VM Pod "
        "cannot use host networking"));
  }
  ASSIGN_OR_RETURN(bool netns, sandbox::IsNetworkNamespace(path));
  if (!netns) {
    return absl::FailedPreconditionError(
        base::StrCat("the network namespace path \"", path.string(), "\" of sandbox \"", id,
                     "\" is not a network namespace"));
  }
  return path;
}

absl::Status AdoptedNetns::Remove(std::string_view id) {
  absl::MutexLock lock(&mu_);
  paths_.erase(std::string(id));
  return absl::OkStatus();
}

absl::StatusOr<bool> AdoptedNetns::Exists(std::string_view id) const {
  std::filesystem::path path = Path(id);
  if (path.empty()) return false;
  return sandbox::IsNetworkNamespace(path);
}

std::filesystem::path AdoptedNetns::Path(std::string_view id) const {
  absl::MutexLock lock(&mu_);
  auto it = paths_.find(std::string(id));
  return it == paths_.end() ? std::filesystem::path() : it->second;
}

AdoptedCniRunner::AdoptedCniRunner(std::filesystem::path cache_dir, Reader reader)
    : cache_(std::move(cache_dir)), reader_(std::move(reader)) {
  if (!reader_) {
    reader_ = [](const std::filesystem::path& netns, std::string_view ifname) {
      return cni::ReadNetnsAsCniResult(netns, ifname);
    };
  }
}

absl::StatusOr<cni::CniResult> AdoptedCniRunner::Add(const cni::AttachSpec& spec) {
  ASSIGN_OR_RETURN(cni::CniResult result, reader_(spec.netns, spec.ifname));
  cni::CacheEntry entry;
  entry.network_name = std::string(kNetworkName);
  entry.container_id = spec.container_id;
  entry.ifname = spec.ifname;
  entry.netns = spec.netns;
  entry.config_source = "containerd's CRI plugin";
  entry.config_json = "{}";
  entry.capability_args_json = "{}";
  entry.result_json = result.raw_json.empty() ? cni::CniResultToJson(result) : result.raw_json;
  RETURN_IF_ERROR(cache_.Put(entry));
  return result;
}

absl::Status AdoptedCniRunner::Check(const cni::AttachSpec& spec) {
  ASSIGN_OR_RETURN(bool netns, sandbox::IsNetworkNamespace(spec.netns));
  if (!netns) return absl::NotFoundError(base::StrCat("network namespace \"", spec.netns, "\" is gone"));
  return absl::OkStatus();
}

absl::Status AdoptedCniRunner::Del(const cni::AttachSpec& spec) {
  return cache_.Remove(kNetworkName, spec.container_id, spec.ifname);
}

absl::StatusOr<cni::CniResult> AdoptedCniRunner::GetCachedResult(std::string_view container_id,
                                                                 std::string_view ifname) {
  ASSIGN_OR_RETURN(cni::CacheEntry entry, cache_.Get(kNetworkName, container_id, ifname));
  return cni::ParseCniResult(entry.result_json, "cached result");
}

}  // namespace kvcri::shim::containerd
