// WakeableFd: an fd read with poll beside an eventfd that another thread writes to end the wait (exec stdin, forwarded sockets).
#pragma once

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <functional>

#include "absl/status/statusor.h"
#include "config/base/unique_fd.h"

namespace kvcri::shim::containerd {

class WakeableFd {
 public:
  explicit WakeableFd(base::UniqueFd fd) : fd_(std::move(fd)), wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}
  bool valid() const { return fd_.valid() && wake_.valid(); }
  int fd() const { return fd_.get(); }

  // Blocks until `fd` is readable (or hung up), then returns what `read`
  // (a non-blocking read of it: bytes, 0 at EOF, -1 with errno) gave;
  // EAGAIN/EINTR wait again. Cancelled once Wake was called, also later.
  absl::StatusOr<size_t> Read(const std::function<ssize_t()>& read) {
    while (true) {
      pollfd fds[2] = {{fd_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        return absl::ErrnoToStatus(errno, "poll");
      }
      if (fds[1].revents & POLLIN) return absl::CancelledError("the read was stopped");
      if (!(fds[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      const ssize_t n = read();
      if (n >= 0) return static_cast<size_t>(n);
      if (errno == EINTR || errno == EAGAIN) continue;
      return absl::ErrnoToStatus(errno, "read");
    }
  }
  // Ends a blocked Read and every later one; from any thread.
  void Wake() {
    const uint64_t one = 1;
    (void)!::write(wake_.get(), &one, sizeof one);
  }

 private:
  base::UniqueFd fd_, wake_;
};

}  // namespace kvcri::shim::containerd
