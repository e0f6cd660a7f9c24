// Fake ImageStore for cri/ unit tests: images by exact reference, every call can fail.
#pragma once

#include <map>
#include <string>

#include "absl/synchronization/mutex.h"
#include "runtime/image/image_store.h"

namespace kvcri::testing {

// Images by exact reference; Import is not supported (tests Add directly).
class FakeImageStore : public runtime::image::ImageStore {
 public:
  void Add(const std::string& ref, runtime::image::ImageInfo info) {
    absl::MutexLock l(&mu);
    images[ref] = std::move(info);
  }
  absl::StatusOr<runtime::image::ImageInfo> Import(const std::filesystem::path&, std::string_view,
                                                   std::string_view) override {
    return absl::UnimplementedError("fake");
  }
  absl::StatusOr<runtime::image::ImageInfo> Resolve(std::string_view ref) override {
    absl::MutexLock l(&mu);
    if (!resolve_error.ok()) return resolve_error;
    auto it = images.find(std::string(ref));
    if (it == images.end()) return absl::NotFoundError("image \"" + std::string(ref) + "\" not found");
    return it->second;
  }
  absl::StatusOr<std::vector<runtime::image::ImageInfo>> List() override {
    absl::MutexLock l(&mu);
    if (!list_error.ok()) return list_error;
    std::vector<runtime::image::ImageInfo> out;
    for (const auto& [ref, info] : images) out.push_back(info);
    return out;
  }
  absl::Status Remove(std::string_view ref, const runtime::image::ImageInUseFn& in_use) override {
    absl::MutexLock l(&mu);
    if (!remove_error.ok()) return remove_error;
    auto it = images.find(std::string(ref));
    if (it == images.end()) return absl::NotFoundError("absent");
    if (in_use(it->second.id)) return absl::FailedPreconditionError("in use");
    images.erase(it);
    return absl::OkStatus();
  }
  absl::StatusOr<runtime::image::ImageFsUsage> FsUsage() override {
    absl::MutexLock l(&mu);
    if (!fs_usage_error.ok()) return fs_usage_error;
    return runtime::image::ImageFsUsage{1, 1};
  }

  absl::Mutex mu;
  absl::Status resolve_error ABSL_GUARDED_BY(mu);
  absl::Status list_error ABSL_GUARDED_BY(mu);
  absl::Status remove_error ABSL_GUARDED_BY(mu);
  absl::Status fs_usage_error ABSL_GUARDED_BY(mu);
  std::map<std::string, runtime::image::ImageInfo> images ABSL_GUARDED_BY(mu);
};

}  // namespace kvcri::testing
