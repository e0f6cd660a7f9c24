// ExitFileWatcher (exit_watcher.h): one inotify instance and thread for every running plain container.
#include "cri/exit_watcher.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "config/base/log.h"
#include "config/base/str.h"

namespace kvcri::cri {

namespace {
constexpr char kExitName[] = "exit";
}  // namespace

ExitFileWatcher::ExitFileWatcher(std::function<void(const std::string&)> on_exit)
    : on_exit_(std::move(on_exit)),
      inotify_(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC)),
      stop_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (!inotify_.valid() || !stop_.valid()) {
    base::LogWarn("exit watcher unavailable; exits are seen at the state poll", {{"error", std::strerror(errno)}});
    return;
  }
  thread_ = std::thread([this] { Loop(); });
}

ExitFileWatcher::~ExitFileWatcher() {
  if (thread_.joinable()) {
    uint64_t one = 1;
    (void)!::write(stop_.get(), &one, sizeof one);
    thread_.join();
  }
}

absl::Status ExitFileWatcher::Watch(const std::string& id, const std::string& dir) {
  if (!inotify_.valid()) return absl::UnavailableError("no inotify instance");
  // The agent writes the exit file whole under a temporary name, then renames it.
  int wd = ::inotify_add_watch(inotify_.get(), dir.c_str(),
                               IN_MOVED_TO | IN_CLOSE_WRITE | IN_DELETE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW);
  if (wd < 0) return absl::ErrnoToStatus(errno, base::StrCat("inotify watch \"", dir, "\""));
  absl::MutexLock l(&mu_);
  if (auto it = by_id_.find(id); it != by_id_.end() && it->second != wd) {
    by_wd_.erase(it->second);
    ::inotify_rm_watch(inotify_.get(), it->second);
  }
  by_wd_[wd] = id;
  by_id_[id] = wd;
  return absl::OkStatus();
}

void ExitFileWatcher::Unwatch(const std::string& id) {
  absl::MutexLock l(&mu_);
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return;
  ::inotify_rm_watch(inotify_.get(), it->second);
  by_wd_.erase(it->second);
  by_id_.erase(it);
}

void ExitFileWatcher::Loop() {
  alignas(inotify_event) char buf[16384];
  for (;;) {
    pollfd fds[2] = {{inotify_.get(), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents != 0) return;
    ssize_t n = ::read(inotify_.get(), buf, sizeof buf);
    if (n <= 0) continue;
    std::vector<std::string> exited;
    {
      absl::MutexLock l(&mu_);
      for (char* p = buf; p < buf + n;) {
        auto* e = reinterpret_cast<inotify_event*>(p);
        p += sizeof(inotify_event) + e->len;
        auto it = by_wd_.find(e->wd);
        if (it == by_wd_.end()) continue;
        const bool named_exit = e->len > 0 && std::strcmp(e->name, kExitName) == 0;
        if (named_exit || (e->mask & (IN_DELETE_SELF | IN_IGNORED)) != 0) exited.push_back(it->second);
        if ((e->mask & IN_IGNORED) != 0) {
          by_id_.erase(it->second);
          by_wd_.erase(it);
        }
      }
    }
    for (const std::string& id : exited) on_exit_(id);
  }
}

}  // namespace kvcri::cri
