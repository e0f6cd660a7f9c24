// RunInNetns: a short-lived thread that joins a network namespace and runs one function.
#include "config/base/netns_exec.h"

#include <fcntl.h>
#include <sched.h>

#include <cerrno>
#include <thread>

#include "config/base/str.h"
#include "config/base/unique_fd.h"

namespace kvcri::base {

absl::Status RunInNetns(const std::filesystem::path& netns_path, const std::function<absl::Status()>& fn) {
  // Opened here so a bad path fails before a thread exists.
  UniqueFd ns(::open(netns_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!ns.valid()) {
    return absl::ErrnoToStatus(errno, StrCat("open network namespace \"", netns_path.string(), "\""));
  }
  absl::Status result;
  // A dedicated thread, because setns changes only the calling thread and a
  // pooled thread must never come back in another namespace. (std::thread
  // reports failure by throwing; we do not catch, so running out of threads
  // terminates the daemon like running out of memory would.)
  std::thread worker([&] {
    if (::setns(ns.get(), CLONE_NEWNET) != 0) {
      result =
          absl::ErrnoToStatus(errno, StrCat("setns into network namespace \"", netns_path.string(), "\""));
      return;
    }
    result = fn();
  });
  worker.join();
  return result;
}

}  // namespace kvcri::base
