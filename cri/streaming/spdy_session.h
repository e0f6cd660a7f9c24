// One SPDY/3.1 connection: its reader thread, streams as blocking byte streams, flow control, PING, RST_STREAM and GOAWAY.
#pragma once

// The server side (kubelet's role) accepts the client's odd-numbered streams
// and answers each with an empty SYN_REPLY at once (client-go waits for it);
// the client side (our test client) opens them. Either way the peer is
// untrusted: a frame it may not send ends the connection with GOAWAY, a
// stream-level error resets that stream only.
//
// Flow control. We advertise StreamLimits::receive_window per stream (SETTINGS)
// and for the session (WINDOW_UPDATE on stream 0), and give credit back as the
// consumer reads, so no stream holds more than that. client-go's spdystream
// does no flow control at all: it never sends SETTINGS or WINDOW_UPDATE and
// ignores ours. So a peer counts as flow-controlling once it sent either; a
// flow-controlling peer that overruns a window gets RST_STREAM
// FLOW_CONTROL_ERROR (session: GOAWAY), while an overrun from a peer that never
// spoke flow control is met with backpressure: the reader stops reading the
// socket until the consumer made room, so memory stays bounded either way.
// On the send side we honour the peer's windows; when one is exhausted and
// the peer has never spoken flow control, we wait kLegacyPeerGrace for a
// WINDOW_UPDATE and then stop counting windows for this connection.

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "config/base/unique_fd.h"
#include "cri/streaming/spdy_frame.h"
#include "cri/streaming/spdy_headers.h"
#include "cri/streaming/stream_io.h"

namespace kvcri::streaming::spdy {

inline constexpr absl::Duration kLegacyPeerGrace = absl::Seconds(1);
// Data frames we send carry at most this much (or max_frame_bytes if smaller).
inline constexpr size_t kMaxDataFramePayload = 16 << 10;

class Session;

// One stream. Read/Write/CloseWrite are the ByteStream contract; the object
// stays valid after the session ends (calls then fail with Unavailable).
class Stream : public ByteStream {
 public:
  uint32_t id() const { return id_; }
  const HeaderList& headers() const { return headers_; }
  // Client side: waits for the peer's SYN_REPLY (or a reset / the end).
  absl::Status WaitReply(absl::Duration timeout);
  absl::StatusOr<size_t> Read(char* buf, size_t len) override;
  absl::Status Write(std::string_view data) override;
  absl::Status CloseWrite() override;
  // Local only: blocked and later reads return Cancelled (nothing is sent;
  // what the peer still sends is dropped and credited back).
  void CancelRead() override;
  // RST_STREAM with `status`; later reads and writes fail with Cancelled.
  void Reset(uint32_t status);

 private:
  friend class Session;
  Stream(Session* session, uint32_t id, HeaderList headers) : session_(session), id_(id), headers_(std::move(headers)) {}
  Session* session_;  // must outlive every use of the stream
  const uint32_t id_;
  const HeaderList headers_;
  // All guarded by session_->mu_.
  std::string recv_;            // bytes received, not yet read
  bool remote_fin_ = false;     // peer half-closed
  bool local_fin_ = false;      // we half-closed
  bool reset_ = false;          // either side reset it
  bool read_cancelled_ = false;  // CancelRead(): the consumer stopped reading
  bool replied_ = false;        // client side: SYN_REPLY seen
  int64_t send_window_ = 0;     // what the peer lets us send
  int64_t recv_window_ = 0;     // what we still let the peer send
  int64_t unacked_ = 0;         // read by the consumer, not yet credited back
};

class Session {
 public:
  enum class Role { kServer, kClient };

  Session(base::UniqueFd fd, std::string already_read, const StreamLimits& limits, Role role);
  // Ends the connection and joins the reader. Streams handed out must not be
  // used after this (they hold a pointer to the session).
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Starts the reader thread. Our SETTINGS and session window go out at once
  // (client) or after the client's first frame (server: see Start()).
  absl::Status Start();

  // Server: the next stream the client opened; DeadlineExceeded at
  // `deadline`, Unavailable once the connection is gone.
  absl::StatusOr<std::shared_ptr<Stream>> Accept(absl::Time deadline);
  // Client: opens a stream with `headers` (does not wait for the reply).
  absl::StatusOr<std::shared_ptr<Stream>> Open(const HeaderList& headers);

  // Runs `cb` once when the connection is gone (at once if it is already).
  void OnGone(std::function<void()> cb);
  bool gone() const;
  // Why the connection ended (OK while it is up or after a clean close).
  absl::Status error() const;

  // Graceful end: GOAWAY(OK), no more writes from us, then waits up to
  // `linger` for the peer to close so our last frames are read, not lost to
  // a reset; then closes.
  void Finish(absl::Duration linger);
  // Ends the connection now.
  void Close();

  // For tests: bytes buffered across streams (received, not yet read).
  size_t buffered_bytes() const;

 private:
  friend class Stream;

  void ReadLoop();
  absl::Status HandleFrame(Frame& f);
  absl::Status HandleSynStream(Frame& f);
  absl::Status HandleSynReply(Frame& f);
  absl::Status HandleData(Frame& f);
  absl::Status HandleSettings(const Frame& f);
  absl::Status HandleWindowUpdate(const Frame& f);
  // Fails the connection: GOAWAY(status) best effort, marks it gone.
  void Fail(const absl::Status& why, uint32_t goaway_status);
  void MarkGone(const absl::Status& why);
  // Writes whole frames; serialized by write_mu_. A socket that takes no
  // bytes for idle_timeout fails the connection.
  absl::Status WriteRaw(std::string_view bytes);
  // Compresses `headers` and writes the frame built by `build` from the
  // block, under write_mu_ so compression order is wire order.
  absl::Status WriteHeaderFrame(const HeaderList& headers,
                                const std::function<std::string(std::string_view block)>& build);
  absl::Status WriteLocked(std::string_view bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  void RemoveIfDone(Stream& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<size_t> DoRead(Stream& s, char* buf, size_t len);
  absl::Status DoWrite(Stream& s, std::string_view data, bool fin);
  void DoReset(Stream& s, uint32_t status);
  void DoCancelRead(Stream& s);
  absl::Status DoWaitReply(Stream& s, absl::Duration timeout);

  base::UniqueFd fd_;
  std::string already_read_;
  const StreamLimits limits_;
  const Role role_;
  FrameParser parser_;  // reader thread only
  std::string hello_;   // server: our SETTINGS, sent after the client's first frame; reader thread only once started
  std::unique_ptr<HeaderDecoder> decoder_;  // reader thread only
  std::thread reader_;

  absl::Mutex write_mu_;
  std::unique_ptr<HeaderEncoder> encoder_ ABSL_GUARDED_BY(write_mu_);
  bool write_closed_ ABSL_GUARDED_BY(write_mu_) = false;

  mutable absl::Mutex mu_ ABSL_ACQUIRED_AFTER(write_mu_);
  absl::CondVar cv_;  // any change below; waiters re-check their condition
  absl::flat_hash_map<uint32_t, std::shared_ptr<Stream>> streams_ ABSL_GUARDED_BY(mu_);
  std::deque<std::shared_ptr<Stream>> accept_queue_ ABSL_GUARDED_BY(mu_);
  uint32_t last_peer_stream_id_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t next_stream_id_ ABSL_GUARDED_BY(mu_) = 1;  // client side
  int64_t peer_initial_window_ ABSL_GUARDED_BY(mu_) = kDefaultWindow;
  int64_t session_send_window_ ABSL_GUARDED_BY(mu_) = kDefaultWindow;
  int64_t session_recv_window_ ABSL_GUARDED_BY(mu_) = kDefaultWindow;
  int64_t session_unacked_ ABSL_GUARDED_BY(mu_) = 0;
  bool peer_flow_control_ ABSL_GUARDED_BY(mu_) = false;  // the peer sent SETTINGS or WINDOW_UPDATE
  bool ignore_send_windows_ ABSL_GUARDED_BY(mu_) = false;
  bool gone_ ABSL_GUARDED_BY(mu_) = false;
  bool peer_goaway_ ABSL_GUARDED_BY(mu_) = false;
  bool reader_done_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  std::vector<std::function<void()>> gone_callbacks_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kvcri::streaming::spdy
