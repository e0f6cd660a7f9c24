// The shim's Pod network seams: a netns and CNI result that containerd's CRI made, adopted instead of created.
#pragma once

// In containerd-shim mode containerd's CRI creates the Pod's netns and runs
// CNI ADD before our shim sees the sandbox task (docs/containerd-shim.md
// section 4), and runs CNI DEL and removes the netns after the task is gone.
// The Pod orchestrator (cri::PodLifecycle) still asks its NetnsManager and
// CniRunner for both; these adapters answer from what containerd made and
// never create, configure or delete a namespace or run a plugin, so the
// orchestrator's wiring (tap + tc redirect + DHCP/RA from the interfaces)
// is the one code path for both modes.

#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "cni/cache.h"
#include "cni/cni_runner.h"
#include "sandbox/netns.h"

namespace kvcri::shim::containerd {

// Network namespaces containerd made: Adopt(id, path) before RunSandbox,
// then Create(id) answers that path. Remove only forgets it.
class AdoptedNetns final : public sandbox::NetnsManager {
 public:
  // `path` is the sandbox spec's linux.namespaces network path.
  void Adopt(std::string_view id, std::filesystem::path path);

  // The adopted path; FailedPrecondition when `id` was not adopted (a
  // sandbox spec without a network namespace: host networking, which VM
  // Pods cannot have) or the file there is not a network namespace.
  absl::StatusOr<std::filesystem::path> Create(std::string_view id) override;
  // Forgets `id`; the namespace is containerd's to remove.
  absl::Status Remove(std::string_view id) override;
  // True when the adopted path still holds a network namespace.
  absl::StatusOr<bool> Exists(std::string_view id) const override;
  // Empty: none of them is ours, so start-up never removes one as an orphan.
  absl::StatusOr<std::vector<sandbox::PinnedNetns>> ListPinned() const override {
    return std::vector<sandbox::PinnedNetns>();
  }
  // The adopted path ("" when not adopted).
  std::filesystem::path Path(std::string_view id) const override;

 private:
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::filesystem::path> paths_ ABSL_GUARDED_BY(mu_);
};

// CNI as containerd already ran it: Add reads the result off the netns's
// interfaces (cni::ReadNetnsAsCniResult, a seam for tests) and caches it, so
// GetCachedResult answers after a shim restart once the wiring has moved the
// addresses off the interfaces; Del drops that cache entry and nothing else.
class AdoptedCniRunner final : public cni::CniRunner {
 public:
  using Reader = std::function<absl::StatusOr<cni::CniResult>(const std::filesystem::path& netns,
                                                              std::string_view ifname)>;
  // `cache_dir`: where the read results are kept (the shim's work dir).
  explicit AdoptedCniRunner(std::filesystem::path cache_dir, Reader reader = nullptr);

  absl::StatusOr<cni::CniResult> Add(const cni::AttachSpec& spec) override;
  // OK while the netns holds a network namespace: containerd checks the rest.
  absl::Status Check(const cni::AttachSpec& spec) override;
  absl::Status Del(const cni::AttachSpec& spec) override;
  absl::StatusOr<cni::CniResult> GetCachedResult(std::string_view container_id, std::string_view ifname) override;

  // The cache entries' network name: not a conflist of ours.
  static constexpr std::string_view kNetworkName = "containerd-cri";

 private:
  cni::ResultCache cache_;
  Reader reader_;
};

}  // namespace kvcri::shim::containerd
