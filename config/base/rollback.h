// Rollback: undo steps of a multi-step operation, run in reverse on failure.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "config/base/log.h"

namespace kvcri::base {

// Registered undo steps run in reverse order, either explicitly (Run(), which
// reports the first failure so the caller can keep its record for a retry) or
// on destruction unless Dismiss() was called. Every step runs even when an
// earlier one failed; failures are logged with the step's name. Undos must
// not throw.
class Rollback {
 public:
  using Undo = std::function<absl::Status()>;

  Rollback() = default;
  Rollback(const Rollback&) = delete;
  Rollback& operator=(const Rollback&) = delete;
  ~Rollback() { Run().IgnoreError(); }  // failures were logged by Run

  // `what` names the step in logs ("remove netns").
  void Add(std::string what, Undo undo) { undos_.push_back({std::move(what), std::move(undo)}); }
  void Dismiss() { dismissed_ = true; }

  // Runs the steps not yet run, last first, and returns the first error. A
  // second call does nothing (OK, or the first error again).
  absl::Status Run() {
    if (dismissed_) return absl::OkStatus();
    while (!undos_.empty()) {
      Step step = std::move(undos_.back());
      undos_.pop_back();
      absl::Status s = step.undo();
      if (!s.ok()) {
        LogWarn("rollback step failed", {{"step", step.what}, {"error", std::string(s.message())}});
        if (first_error_.ok()) first_error_ = s;
      }
    }
    return first_error_;
  }
  // True once a step run so far has failed: a later step (one registered
  // earlier, such as removing the record) can then keep what a retry needs.
  bool failed() const { return !first_error_.ok(); }

 private:
  struct Step {
    std::string what;
    Undo undo;
  };
  std::vector<Step> undos_;
  bool dismissed_ = false;
  absl::Status first_error_;
};

}  // namespace kvcri::base
