// Per-ID marks of lifecycle calls in flight, so slow work runs with no lock held.
#pragma once

#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace kvcri::cri {

// containerd keeps Starting/Removing flags per container under a short
// per-ID lock; this is that, for any ID. A call marks the IDs it works on,
// then does its slow work (CNI, libvirt, disk) holding no lock at all. A
// conflicting call on the same ID waits for the mark to go (its mutex is
// released while it waits, so calls on other IDs never wait), and gives up
// with FailedPrecondition naming the operation in flight.
//
// Shared marks coexist (two containers of one Pod starting); an exclusive
// mark (StopPodSandbox, RemovePodSandbox, RemoveContainer) excludes all.
class OpTracker {
 public:
  enum class Mode { kShared, kExclusive };

  // Releases its mark on destruction. Move-only.
  class Hold {
   public:
    Hold() = default;
    Hold(Hold&& o) noexcept : tracker_(o.tracker_), id_(std::move(o.id_)), mode_(o.mode_) { o.tracker_ = nullptr; }
    Hold& operator=(Hold&& o) noexcept;
    Hold(const Hold&) = delete;
    Hold& operator=(const Hold&) = delete;
    ~Hold() { Release(); }

   private:
    friend class OpTracker;
    Hold(OpTracker* t, std::string id, Mode mode) : tracker_(t), id_(std::move(id)), mode_(mode) {}
    void Release();
    OpTracker* tracker_ = nullptr;
    std::string id_;
    Mode mode_ = Mode::kShared;
  };

  // Marks `id` for `op` ("StartContainer"), waiting up to `wait` for a
  // conflicting mark to go.
  absl::StatusOr<Hold> Acquire(std::string_view id, Mode mode, std::string_view op, absl::Duration wait);
  // The operations in flight on `id` ("StopPodSandbox"), empty when idle.
  std::string Busy(std::string_view id) const;
  bool Idle(std::string_view id) const { return Busy(id).empty(); }

 private:
  struct Marks {
    int shared = 0;
    std::string shared_op;  // the latest shared op, for messages
    bool exclusive = false;
    std::string exclusive_op;
  };
  void Release(const std::string& id, Mode mode);

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Marks> marks_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kvcri::cri
