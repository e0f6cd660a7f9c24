// FifoStreams: an exec's stdio FIFOs from containerd as the streaming seam the exec dispatcher runs sessions over.
#pragma once

// containerd's CRI hands a Task Exec three FIFO paths (stdin, stdout,
// stderr; empty when not asked for) and relays them to kubelet's streaming
// session or collects them for ExecSync. The daemon's ExecDispatcher runs an
// exec over streaming::RemoteCommandStreams; this is that interface over the
// FIFOs, so the guest agents serve both front doors the same way. Resizes
// arrive as Task ResizePty calls, the client's going away as a Kill.
//
// Stdin is opened non-blocking and polled with a wake-up eventfd, so
// StopReading ends a blocked read; EOF comes when containerd closes its end
// (CloseIO). Writes block while containerd does not read (its own copy
// drains them), and fail once containerd closed the FIFO.

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "config/base/unique_fd.h"
#include "cri/streaming/stream_io.h"

namespace kvcri::shim::containerd {

class FifoStreams final : public streaming::RemoteCommandStreams {
 public:
  // Opens the FIFOs named (an empty path: that stream is not wanted;
  // stderr is ignored with a tty, whose pty merges it). NotFound or
  // FailedPrecondition naming the path when one cannot be opened.
  static absl::StatusOr<std::unique_ptr<FifoStreams>> Open(const std::string& stdin_path,
                                                           const std::string& stdout_path,
                                                           const std::string& stderr_path, bool tty);
  ~FifoStreams() override;

  streaming::ByteReader* Stdin() override;
  streaming::ByteWriter* Stdout() override;
  streaming::ByteWriter* Stderr() override;
  std::optional<streaming::TerminalSize> NextResize() override;
  void StopReading() override;
  void OnClientGone(std::function<void()> cb) override;

  // A Task ResizePty: the next NextResize answer (only the latest is kept).
  void Resize(streaming::TerminalSize size);
  // A Kill of the exec, or the shim going away: the OnClientGone callbacks run.
  void Gone();

  class Reader;
  class Writer;

 private:
  FifoStreams() = default;

  std::unique_ptr<Reader> stdin_;
  std::unique_ptr<Writer> stdout_, stderr_;
  absl::Mutex mu_;
  std::optional<streaming::TerminalSize> pending_resize_ ABSL_GUARDED_BY(mu_);
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  bool gone_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::function<void()>> on_gone_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kvcri::shim::containerd
