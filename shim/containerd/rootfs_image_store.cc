// RootfsImageStore: registered rootfs boot files behind the ImageStore seam (rootfs_image_store.h).
#include "shim/containerd/rootfs_image_store.h"

#include "config/base/status_macros.h"
#include "config/base/str.h"
#include "shim/containerd/rootfs_image.h"

namespace kvcri::shim::containerd {

absl::StatusOr<runtime::image::ImageInfo> RootfsImageStore::Add(const std::string& ref,
                                                                const std::filesystem::path& rootfs,
                                                                const std::string& image_name,
                                                                const std::map<std::string, std::string>& labels) {
  std::string cmdline;
  if (auto it = labels.find(std::string(runtime::image::kCmdlineLabel)); it != labels.end()) cmdline = it->second;
  ASSIGN_OR_RETURN(runtime::image::BootInfo boot, BootFromRootfs(rootfs, cmdline));
  runtime::image::ImageInfo info;
  // Not a content digest (containerd has that): an id that names the task's
  // rootfs, so records and logs say where the VM's disk came from.
  info.id = base::StrCat("rootfs:", ref);
  if (!image_name.empty()) info.repo_tags.push_back(image_name);
  info.labels = labels;
  info.boot = std::move(boot);
  info.pinned = true;
  absl::MutexLock lock(&mu_);
  if (images_.contains(ref)) return absl::AlreadyExistsError(base::StrCat("rootfs image \"", ref, "\" is already registered"));
  images_.emplace(ref, info);
  if (!image_name.empty()) latest_by_name_[image_name] = ref;
  return info;
}

void RootfsImageStore::Forget(const std::string& ref) {
  absl::MutexLock lock(&mu_);
  auto it = images_.find(ref);
  if (it == images_.end()) return;
  for (const std::string& name : it->second.repo_tags) {
    if (auto n = latest_by_name_.find(name); n != latest_by_name_.end() && n->second == ref) latest_by_name_.erase(n);
  }
  images_.erase(it);
}

absl::StatusOr<runtime::image::ImageInfo> RootfsImageStore::Import(const std::filesystem::path&, std::string_view,
                                                                   std::string_view) {
  return absl::UnimplementedError("images are containerd's in containerd-shim mode: import them with ctr or crictl");
}

absl::StatusOr<runtime::image::ImageInfo> RootfsImageStore::Resolve(std::string_view ref) {
  absl::MutexLock lock(&mu_);
  auto it = images_.find(ref);
  if (it == images_.end()) {
    if (auto n = latest_by_name_.find(std::string(ref)); n != latest_by_name_.end()) it = images_.find(n->second);
  }
  if (it == images_.end()) return absl::NotFoundError(base::StrCat("image \"", ref, "\" is not a registered rootfs"));
  return it->second;
}

absl::StatusOr<std::vector<runtime::image::ImageInfo>> RootfsImageStore::List() {
  absl::MutexLock lock(&mu_);
  std::vector<runtime::image::ImageInfo> out;
  for (const auto& [ref, info] : images_) out.push_back(info);
  return out;
}

absl::Status RootfsImageStore::Remove(std::string_view ref, const runtime::image::ImageInUseFn&) {
  return absl::UnimplementedError(
      base::StrCat("image \"", ref, "\": containerd's image garbage collection owns images in containerd-shim mode"));
}

}  // namespace kvcri::shim::containerd
