// ExitFileWatcher: tells the Pod orchestrator at once when the guest's agent writes a plain container's exit file (inotify on its bundle directory).
#pragma once

// Without it an exit would be seen at the next state poll; init containers
// run one after another, so each would cost a poll interval. The watch is
// only a hint: the callback re-reads the exit file (ContainerRunner::Exited),
// and the safety sweep still polls. The guest may change the watched
// directory; the worst it can do is cause spurious callbacks.

#include <functional>
#include <map>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "config/base/unique_fd.h"

namespace kvcri::cri {

class ExitFileWatcher {
 public:
  // `on_exit(id)` runs on the watcher's thread with no lock held.
  explicit ExitFileWatcher(std::function<void(const std::string&)> on_exit);
  ~ExitFileWatcher();
  ExitFileWatcher(const ExitFileWatcher&) = delete;
  ExitFileWatcher& operator=(const ExitFileWatcher&) = delete;

  // Watches `dir` (the bundle) for its "exit" file; replaces an earlier watch of `id`.
  absl::Status Watch(const std::string& id, const std::string& dir);
  void Unwatch(const std::string& id);

 private:
  void Loop();

  std::function<void(const std::string&)> on_exit_;
  base::UniqueFd inotify_;
  base::UniqueFd stop_;  // eventfd
  absl::Mutex mu_;
  std::map<int, std::string> by_wd_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> by_id_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace kvcri::cri
