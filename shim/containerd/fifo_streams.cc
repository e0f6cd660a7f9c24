// FifoStreams: polled stdin with a wake-up, blocking stdout/stderr, resize and gone signals (fifo_streams.h).
#include "shim/containerd/fifo_streams.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "config/base/str.h"
#include "shim/containerd/wakeable_fd.h"

namespace kvcri::shim::containerd {

using base::StrCat;

class FifoStreams::Reader final : public streaming::ByteReader {
 public:
  explicit Reader(base::UniqueFd fd) : fd_(std::move(fd)) {}
  bool valid() const { return fd_.valid(); }
  // 0: containerd closed stdin (CloseIO); Cancelled after CancelRead.
  absl::StatusOr<size_t> Read(char* buf, size_t len) override {
    return fd_.Read([&] { return ::read(fd_.fd(), buf, len); });
  }
  void CancelRead() override { fd_.Wake(); }

 private:
  WakeableFd fd_;
};

class FifoStreams::Writer final : public streaming::ByteWriter {
 public:
  explicit Writer(base::UniqueFd fd) : fd_(std::move(fd)) {}
  absl::Status Write(std::string_view data) override {
    absl::MutexLock lock(&mu_);
    if (!fd_.valid()) return absl::FailedPreconditionError("the stream was closed");
    while (!data.empty()) {
      ssize_t n = ::write(fd_.get(), data.data(), data.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        return absl::UnavailableError(StrCat("containerd stopped reading the exec's output: ", std::strerror(errno)));
      }
      data.remove_prefix(static_cast<size_t>(n));
    }
    return absl::OkStatus();
  }
  absl::Status CloseWrite() override {
    absl::MutexLock lock(&mu_);
    fd_.Reset();
    return absl::OkStatus();
  }

 private:
  absl::Mutex mu_;
  base::UniqueFd fd_ ABSL_GUARDED_BY(mu_);
};

namespace {

// Opens a FIFO containerd created, without following a symlink and only if
// it is one. A writer retries briefly while containerd's reader is not open
// yet (ENXIO): its copy opens its ends as it starts.
absl::StatusOr<base::UniqueFd> OpenFifo(const std::string& path, bool write) {
  const int flags = (write ? O_WRONLY : O_RDONLY) | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY;
  for (int attempt = 0;; ++attempt) {
    base::UniqueFd fd(::open(path.c_str(), flags));
    if (fd.valid()) {
      struct stat st {};
      if (::fstat(fd.get(), &st) != 0 || !S_ISFIFO(st.st_mode)) {
        return absl::FailedPreconditionError(StrCat("exec stream \"", path, "\" is not a FIFO"));
      }
      // Writes block while containerd is slow; reads stay polled.
      if (write) ::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) & ~O_NONBLOCK);
      return fd;
    }
    if (!(write && errno == ENXIO) || attempt >= 100) {
      return absl::ErrnoToStatus(errno, StrCat("open exec stream \"", path, "\""));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<FifoStreams>> FifoStreams::Open(const std::string& stdin_path,
                                                               const std::string& stdout_path,
                                                               const std::string& stderr_path, bool tty) {
  std::unique_ptr<FifoStreams> s(new FifoStreams());
  if (!stdin_path.empty()) {
    absl::StatusOr<base::UniqueFd> fd = OpenFifo(stdin_path, /*write=*/false);
    if (!fd.ok()) return fd.status();
    s->stdin_ = std::make_unique<Reader>(*std::move(fd));
    if (!s->stdin_->valid()) return absl::ErrnoToStatus(errno, "eventfd");
  }
  if (!stdout_path.empty()) {
    absl::StatusOr<base::UniqueFd> fd = OpenFifo(stdout_path, /*write=*/true);
    if (!fd.ok()) return fd.status();
    s->stdout_ = std::make_unique<Writer>(*std::move(fd));
  }
  if (!stderr_path.empty() && !tty) {
    absl::StatusOr<base::UniqueFd> fd = OpenFifo(stderr_path, /*write=*/true);
    if (!fd.ok()) return fd.status();
    s->stderr_ = std::make_unique<Writer>(*std::move(fd));
  }
  return s;
}

FifoStreams::~FifoStreams() = default;

streaming::ByteReader* FifoStreams::Stdin() { return stdin_.get(); }
streaming::ByteWriter* FifoStreams::Stdout() { return stdout_.get(); }
streaming::ByteWriter* FifoStreams::Stderr() { return stderr_.get(); }

std::optional<streaming::TerminalSize> FifoStreams::NextResize() {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopped_ || pending_resize_.has_value(); };
  mu_.Await(absl::Condition(&ready));
  if (stopped_) return std::nullopt;
  std::optional<streaming::TerminalSize> out = pending_resize_;
  pending_resize_.reset();
  return out;
}

void FifoStreams::Resize(streaming::TerminalSize size) {
  absl::MutexLock lock(&mu_);
  pending_resize_ = size;
}

void FifoStreams::StopReading() {
  if (stdin_ != nullptr) stdin_->CancelRead();
  absl::MutexLock lock(&mu_);
  stopped_ = true;
}

void FifoStreams::OnClientGone(std::function<void()> cb) {
  {
    absl::MutexLock lock(&mu_);
    if (!gone_) {
      on_gone_.push_back(std::move(cb));
      return;
    }
  }
  cb();
}

void FifoStreams::Gone() {
  std::vector<std::function<void()>> cbs;
  {
    absl::MutexLock lock(&mu_);
    if (gone_) return;
    gone_ = true;
    cbs.swap(on_gone_);
  }
  for (auto& cb : cbs) cb();
}

}  // namespace kvcri::shim::containerd
