// Fake client streams for streaming backends: a scripted exec/attach client (RemoteCommandStreams) and a forwarded connection (ByteStream).
#pragma once

#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "cri/streaming/stream_io.h"

namespace kvcri::testing {

// Client → backend bytes: what the test feeds, then EOF; Read returns
// Unavailable once the client is gone and Cancelled after CancelRead.
class FakeByteReader : public streaming::ByteReader {
 public:
  void Feed(const std::string& d) {
    absl::MutexLock l(&mu_);
    data_ += d;
  }
  void FeedEof() {
    absl::MutexLock l(&mu_);
    eof_ = true;
  }
  void Gone() {
    absl::MutexLock l(&mu_);
    gone_ = true;
  }
  absl::StatusOr<size_t> Read(char* buf, size_t len) override {
    absl::MutexLock l(&mu_);
    auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !data_.empty() || eof_ || gone_ || cancelled_; };
    mu_.Await(absl::Condition(&ready));
    if (cancelled_) return absl::CancelledError("read cancelled");
    if (gone_) return absl::UnavailableError("client gone");
    size_t n = std::min(len, data_.size());
    data_.copy(buf, n);
    data_.erase(0, n);
    return n;
  }
  void CancelRead() override {
    absl::MutexLock l(&mu_);
    cancelled_ = true;
  }
  bool cancelled() {
    absl::MutexLock l(&mu_);
    return cancelled_;
  }

 private:
  absl::Mutex mu_;
  std::string data_ ABSL_GUARDED_BY(mu_);
  bool eof_ ABSL_GUARDED_BY(mu_) = false;
  bool gone_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

// Backend → client bytes, collected; Write fails once the client is gone.
class FakeByteWriter : public streaming::ByteWriter {
 public:
  absl::Status Write(std::string_view d) override {
    absl::MutexLock l(&mu_);
    if (gone_) return absl::UnavailableError("client gone");
    data_.append(d);
    return absl::OkStatus();
  }
  absl::Status CloseWrite() override {
    absl::MutexLock l(&mu_);
    closed_ = true;
    return absl::OkStatus();
  }
  void Gone() {
    absl::MutexLock l(&mu_);
    gone_ = true;
  }
  std::string data() {
    absl::MutexLock l(&mu_);
    return data_;
  }
  bool closed() {
    absl::MutexLock l(&mu_);
    return closed_;
  }
  // Blocks until the output holds `needle` or `timeout` passed.
  bool WaitFor(const std::string& needle, absl::Duration timeout) {
    absl::MutexLock l(&mu_);
    auto has = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return data_.find(needle) != std::string::npos; };
    return mu_.AwaitWithTimeout(absl::Condition(&has), timeout);
  }

 private:
  absl::Mutex mu_;
  std::string data_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool gone_ ABSL_GUARDED_BY(mu_) = false;
};

// One exec or attach client; streams the spec did not ask for are null.
class FakeRemoteCommandStreams : public streaming::RemoteCommandStreams {
 public:
  FakeRemoteCommandStreams(bool in, bool out, bool err, bool tty) : in_(in), out_(out), err_(err && !tty) {}
  streaming::ByteReader* Stdin() override { return in_ ? &stdin : nullptr; }
  streaming::ByteWriter* Stdout() override { return out_ ? &stdout : nullptr; }
  streaming::ByteWriter* Stderr() override { return err_ ? &stderr : nullptr; }
  std::optional<streaming::TerminalSize> NextResize() override {
    absl::MutexLock l(&mu_);
    auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !resizes_.empty() || stopped_; };
    mu_.Await(absl::Condition(&ready));
    if (resizes_.empty()) return std::nullopt;
    streaming::TerminalSize s = resizes_.front();
    resizes_.pop_front();
    return s;
  }
  void StopReading() override {
    stdin.CancelRead();
    absl::MutexLock l(&mu_);
    stopped_ = true;
  }
  void OnClientGone(std::function<void()> cb) override {
    bool now;
    {
      absl::MutexLock l(&mu_);
      now = gone_;
      if (!now) callbacks_.push_back(cb);
    }
    if (now) cb();
  }

  // Test controls.
  void Resize(uint16_t w, uint16_t h) {
    absl::MutexLock l(&mu_);
    resizes_.push_back({w, h});
  }
  // The client's connection breaks: reads and writes fail, callbacks run.
  void GoAway() {
    stdin.Gone();
    stdout.Gone();
    stderr.Gone();
    std::vector<std::function<void()>> cbs;
    {
      absl::MutexLock l(&mu_);
      gone_ = true;
      cbs.swap(callbacks_);
    }
    for (auto& cb : cbs) cb();
  }

  FakeByteReader stdin;
  FakeByteWriter stdout, stderr;

 private:
  const bool in_, out_, err_;
  absl::Mutex mu_;
  std::deque<streaming::TerminalSize> resizes_ ABSL_GUARDED_BY(mu_);
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  bool gone_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::function<void()>> callbacks_ ABSL_GUARDED_BY(mu_);
};

// One forwarded connection's client side.
class FakeByteStream : public streaming::ByteStream {
 public:
  absl::StatusOr<size_t> Read(char* buf, size_t len) override { return in.Read(buf, len); }
  void CancelRead() override { in.CancelRead(); }
  absl::Status Write(std::string_view d) override { return out.Write(d); }
  absl::Status CloseWrite() override { return out.CloseWrite(); }
  FakeByteReader in;
  FakeByteWriter out;
};

}  // namespace kvcri::testing
