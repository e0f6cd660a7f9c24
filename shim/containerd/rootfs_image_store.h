// RootfsImageStore: the ImageStore seam over container tasks' mounted rootfs, for the orchestrator in containerd-shim mode.
#pragma once

// containerd owns images in shim mode (it pulled them, its snapshotter
// unpacked them); cri::PodLifecycle still resolves a container's image
// through runtime::image::ImageStore. The shim registers each container
// task's mounted rootfs under a reference before CreateContainer; Resolve
// answers from what BootFromRootfs found there. Nothing is imported, pulled,
// listed to kubelet or removed by us: containerd's CRI serves the image API.

#include <filesystem>
#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "runtime/image/image_store.h"

namespace kvcri::shim::containerd {

class RootfsImageStore final : public runtime::image::ImageStore {
 public:
  // Reads the boot files of the rootfs mounted at `rootfs` and registers it
  // as `ref` (the shim uses the container task id). `image_name` is the CRI
  // image name (annotation io.kubernetes.cri.image-name), `labels` the image
  // config's labels when known (the kernel command line, the firmware).
  // InvalidArgument as BootFromRootfs refuses; AlreadyExists for a `ref`
  // already registered.
  absl::StatusOr<runtime::image::ImageInfo> Add(const std::string& ref, const std::filesystem::path& rootfs,
                                                const std::string& image_name,
                                                const std::map<std::string, std::string>& labels);
  // Forgets `ref` (the task's rootfs is being unmounted). OK when unknown.
  void Forget(const std::string& ref);

  // UNIMPLEMENTED: containerd imports and pulls in this mode.
  absl::StatusOr<runtime::image::ImageInfo> Import(const std::filesystem::path& oci_layout_dir, std::string_view ref,
                                                   std::string_view layout_tag) override;
  // By the registered reference, or by image name: the rootfs registered
  // last under that name (the caller serializes Add and the Resolve that
  // follows it). NotFound naming it otherwise.
  absl::StatusOr<runtime::image::ImageInfo> Resolve(std::string_view ref) override;
  absl::StatusOr<std::vector<runtime::image::ImageInfo>> List() override;
  // UNIMPLEMENTED: containerd's image garbage collection owns the images.
  absl::Status Remove(std::string_view ref, const runtime::image::ImageInUseFn& in_use) override;
  // Zero: the snapshots are containerd's and counted by its ImageFsInfo.
  absl::StatusOr<runtime::image::ImageFsUsage> FsUsage() override { return runtime::image::ImageFsUsage{}; }

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, runtime::image::ImageInfo, std::less<>> images_ ABSL_GUARDED_BY(mu_);
  // Image name → the reference registered last with it.
  std::map<std::string, std::string, std::less<>> latest_by_name_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kvcri::shim::containerd
