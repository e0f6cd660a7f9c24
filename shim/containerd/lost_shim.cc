// CleanUpLostShim: reopen the dead shim's Pod from its records and finish its teardown (lost_shim.h).
#include "shim/containerd/lost_shim.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>

#include <cerrno>

#include "config/base/file_util.h"
#include "config/base/log.h"
#include "config/base/status_macros.h"
#include "config/base/str.h"
#include "config/base/unique_fd.h"
#include "shim/containerd/bootstrap.h"
#include "shim/containerd/names.h"
#include "shim/containerd/rootfs_image.h"
#include "shim/containerd/shim_pod.h"
#include "shim/containerd/spec_drafts.h"

namespace kvcri::shim::containerd {

absl::StatusOr<VmExit> CleanUpLostShim(const config::Config& node, const std::string& task_id,
                                       std::string_view config_json, const std::filesystem::path& bundle) {
  const VmExit killed{kKilledExitStatus, absl::Now()};
  ASSIGN_OR_RETURN(SpecFacts facts, ReadSpecFacts(config_json));
  const std::string sandbox_id = facts.container_type == kContainerTypeSandbox ? task_id : facts.sandbox_id;
  if (facts.container_type == kContainerTypeContainer) {
    // Ours to undo whether or not the records are still there.
    base::LogIfError(UnmountRootfs(bundle / "rootfs"), "delete: rootfs");
  }
  absl::StatusOr<config::Config> pod_config = PodConfig(node, sandbox_id);
  if (!pod_config.ok()) {  // not a Pod of ours (no CRI annotations): nothing kept
    base::LogWarn("delete: no Pod state to clean up", {{"id", task_id}, {"error", std::string(pod_config.status().message())}});
    return killed;
  }
  if (!std::filesystem::exists(pod_config->root)) {
    base::LogInfo("delete: the Pod's state is already gone", {{"id", task_id}, {"root", pod_config->root.string()}});
    return killed;
  }

  // One run per Pod at a time: libvirt's embedded root admits one process.
  const std::filesystem::path lock_path = pod_config->root.parent_path() / (pod_config->root.filename().string() + ".lock");
  base::UniqueFd lock(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!lock.valid()) return absl::ErrnoToStatus(errno, base::StrCat("open \"", lock_path.string(), "\""));
  while (::flock(lock.get(), LOCK_EX) < 0) {
    if (errno != EINTR) return absl::ErrnoToStatus(errno, base::StrCat("flock \"", lock_path.string(), "\""));
  }
  struct Unlink {
    std::filesystem::path p;
    bool last = false;
    ~Unlink() {
      if (last) ::unlink(p.c_str());
    }
  } unlink_lock{lock_path};
  if (!std::filesystem::exists(pod_config->root)) return killed;  // the sandbox's run took it all

  ASSIGN_OR_RETURN(std::unique_ptr<VmTasks> vm, VmTasks::Open(node, sandbox_id, nullptr));
  VmExit exit = killed;
  if (facts.container_type == kContainerTypeSandbox) {
    RETURN_IF_ERROR(vm->RemoveSandbox(task_id));
    unlink_lock.last = true;
  } else if (absl::StatusOr<VmTaskState> state = vm->State(task_id); state.ok()) {
    if (state->status == pb::RUNNING) RETURN_IF_ERROR(vm->Signal(task_id, SIGKILL));
    ASSIGN_OR_RETURN(exit, vm->RemoveContainer(task_id));
  }
  base::LogInfo("delete: cleaned up after a lost shim",
                {{"id", task_id}, {"sandbox", sandbox_id}, {"exit_status", base::StrCat(exit.status)}});
  return exit;
}

}  // namespace kvcri::shim::containerd
