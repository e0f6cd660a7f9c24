// A SPDY/3.1 connection: reader thread, stream table, flow control both ways, PING, RST_STREAM, GOAWAY.
#include "cri/streaming/spdy_session.h"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

#include "config/base/str.h"
#include "config/base/log.h"
#include "config/base/status_macros.h"

namespace kvcri::streaming::spdy {
namespace {

int PollMillis(int seconds) {
  return seconds <= 0 || seconds > INT_MAX / 1000 ? -1 : seconds * 1000;
}

}  // namespace

absl::Status Stream::WaitReply(absl::Duration timeout) { return session_->DoWaitReply(*this, timeout); }
absl::StatusOr<size_t> Stream::Read(char* buf, size_t len) { return session_->DoRead(*this, buf, len); }
absl::Status Stream::Write(std::string_view data) {
  if (data.empty()) return absl::OkStatus();
  return session_->DoWrite(*this, data, /*fin=*/false);
}
absl::Status Stream::CloseWrite() { return session_->DoWrite(*this, {}, /*fin=*/true); }
void Stream::Reset(uint32_t status) { session_->DoReset(*this, status); }
void Stream::CancelRead() { session_->DoCancelRead(*this); }

Session::Session(base::UniqueFd fd, std::string already_read, const StreamLimits& limits, Role role)
    : fd_(std::move(fd)),
      already_read_(std::move(already_read)),
      limits_(limits),
      role_(role),
      parser_(limits.max_frame_bytes) {}

Session::~Session() {
  Close();
  if (reader_.joinable()) reader_.join();
}

absl::Status Session::Start() {
  ASSIGN_OR_RETURN(decoder_, HeaderDecoder::Create(limits_.max_header_block_bytes));
  {
    ASSIGN_OR_RETURN(std::unique_ptr<HeaderEncoder> encoder, HeaderEncoder::Create());
    absl::MutexLock l(&write_mu_);
    encoder_ = std::move(encoder);
  }
  const uint32_t window = std::clamp<uint32_t>(limits_.receive_window, 1, kMaxWindow);
  std::string hello = EncodeSettings(0, {{0, kSettingMaxConcurrentStreams, static_cast<uint32_t>(limits_.max_streams)},
                                         {0, kSettingInitialWindowSize, window}});
  // The session window starts at 64 KiB whatever SETTINGS say; raise it to
  // one stream's window (we give session credit back as data arrives, so it
  // never limits more than the stream windows do).
  if (window > kDefaultWindow) {
    hello += EncodeWindowUpdate(0, window - kDefaultWindow);
    absl::MutexLock l(&mu_);
    session_recv_window_ = window;
  }
  if (role_ == Role::kClient) {
    RETURN_IF_ERROR(WriteRaw(hello));
  } else {
    // client-go reads the 101 through a bufio.Reader and then reads frames
    // from the raw connection: bytes we sent early would vanish in that
    // buffer. So the server speaks only after the client's first frame (as
    // spdystream does, which never speaks first).
    hello_ = std::move(hello);
  }
  reader_ = std::thread([this] { ReadLoop(); });
  return absl::OkStatus();
}

void Session::ReadLoop() {
  parser_.Feed(already_read_);
  already_read_.clear();
  std::string buf(64 << 10, '\0');
  absl::Status end;
  while (true) {
    bool stop = false;
    while (!stop) {
      absl::StatusOr<std::optional<Frame>> next = parser_.Next();
      if (!next.ok()) {
        Fail(next.status(), kGoAwayProtocolError);
        stop = true;
        break;
      }
      if (!next->has_value()) break;
      if (!hello_.empty()) {
        WriteRaw(hello_).IgnoreError();  // a dead connection shows on the next read
        hello_.clear();
      }
      if (absl::Status s = HandleFrame(**next); !s.ok()) {
        Fail(s, kGoAwayProtocolError);
        stop = true;
      }
      if (gone()) stop = true;
    }
    if (stop || gone()) break;
    pollfd p{fd_.get(), POLLIN, 0};
    const int rc = ::poll(&p, 1, PollMillis(limits_.idle_timeout_seconds));
    if (rc < 0 && errno == EINTR) continue;
    if (rc == 0) {
      Fail(absl::DeadlineExceededError(base::StrCat("SPDY connection idle for ", limits_.idle_timeout_seconds, " s")),
           kGoAwayOk);
      break;
    }
    const ssize_t n = rc < 0 ? -1 : ::read(fd_.get(), buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      MarkGone(absl::ErrnoToStatus(errno, "read from the SPDY connection"));
      break;
    }
    if (n == 0) {
      // The peer closed its side: SPDY has no half-closed connection, so
      // writers blocked on a peer that no longer reads are released too.
      MarkGone(absl::OkStatus());
      ::shutdown(fd_.get(), SHUT_RDWR);
      break;
    }
    parser_.Feed(std::string_view(buf.data(), static_cast<size_t>(n)));
  }
  absl::MutexLock l(&mu_);
  reader_done_ = true;
  cv_.SignalAll();
}

absl::Status Session::HandleFrame(Frame& f) {
  switch (f.type) {
    case FrameType::kSynStream:
      return HandleSynStream(f);
    case FrameType::kSynReply:
      return HandleSynReply(f);
    case FrameType::kHeaders: {
      // Decoded only to keep the zlib context in step; we use no trailers.
      RETURN_IF_ERROR(decoder_->Decode(f.payload).status());
      if (f.flags & kFlagFin) {
        absl::MutexLock l(&mu_);
        if (auto it = streams_.find(f.stream_id); it != streams_.end()) {
          it->second->remote_fin_ = true;
          RemoveIfDone(*it->second);
          cv_.SignalAll();
        }
      }
      return absl::OkStatus();
    }
    case FrameType::kData:
      return HandleData(f);
    case FrameType::kRstStream: {
      absl::MutexLock l(&mu_);
      if (auto it = streams_.find(f.stream_id); it != streams_.end()) {
        it->second->reset_ = true;
        streams_.erase(it);
        cv_.SignalAll();
      }
      return absl::OkStatus();
    }
    case FrameType::kSettings:
      return HandleSettings(f);
    case FrameType::kPing: {
      // The initiator's parity: clients use odd ids, servers even. Echo the
      // peer's pings; one with our parity answers a ping of ours.
      const bool from_client = (f.ping_id & 1) == 1;
      if (from_client == (role_ == Role::kServer)) return WriteRaw(EncodePing(f.ping_id));
      return absl::OkStatus();
    }
    case FrameType::kGoAway: {
      absl::MutexLock l(&mu_);
      peer_goaway_ = true;
      cv_.SignalAll();
      return absl::OkStatus();
    }
    case FrameType::kWindowUpdate:
      return HandleWindowUpdate(f);
  }
  return absl::OkStatus();
}

absl::Status Session::HandleSynStream(Frame& f) {
  // Always decode: skipping a block would desynchronize the zlib context.
  ASSIGN_OR_RETURN(HeaderList headers, decoder_->Decode(f.payload));
  if (role_ == Role::kClient) return WriteRaw(EncodeRstStream(f.stream_id, kRstRefusedStream));  // no server push
  if ((f.stream_id & 1) == 0) {
    return absl::InvalidArgumentError(base::StrCat("SPDY SYN_STREAM: client stream id ", f.stream_id, " is even"));
  }
  std::shared_ptr<Stream> stream;
  {
    absl::MutexLock l(&mu_);
    if (f.stream_id <= last_peer_stream_id_) {
      return absl::InvalidArgumentError(base::StrCat("SPDY SYN_STREAM: stream id ", f.stream_id,
                                                     " is not above the last one, ", last_peer_stream_id_));
    }
    last_peer_stream_id_ = f.stream_id;
    if (!peer_goaway_ && streams_.size() < limits_.max_streams && accept_queue_.size() < limits_.max_streams) {
      stream.reset(new Stream(this, f.stream_id, std::move(headers)));
      stream->send_window_ = peer_initial_window_;
      stream->recv_window_ = std::clamp<int64_t>(limits_.receive_window, 1, kMaxWindow);
      stream->remote_fin_ = (f.flags & kFlagFin) != 0;
      stream->local_fin_ = (f.flags & kFlagUnidirectional) != 0;
      streams_[f.stream_id] = stream;
    }
  }
  if (stream == nullptr) {
    base::LogDebug("SPDY stream refused", {{"stream", std::to_string(f.stream_id)}, {"reason", "too many streams"}});
    return WriteRaw(EncodeRstStream(f.stream_id, kRstRefusedStream));
  }
  // The reply goes out before anyone can write on the stream: spdystream
  // drops data that arrives before the SYN_REPLY.
  if (!stream->local_fin_) {
    RETURN_IF_ERROR(WriteHeaderFrame({}, [id = f.stream_id](std::string_view block) {
      return EncodeSynReply(id, 0, block);
    }));
  }
  absl::MutexLock l(&mu_);
  RemoveIfDone(*stream);
  accept_queue_.push_back(std::move(stream));
  cv_.SignalAll();
  return absl::OkStatus();
}

absl::Status Session::HandleSynReply(Frame& f) {
  RETURN_IF_ERROR(decoder_->Decode(f.payload).status());  // we use no reply headers, but the context must advance
  if (role_ == Role::kServer) {
    return absl::InvalidArgumentError(base::StrCat("SPDY SYN_REPLY from the client for stream ", f.stream_id));
  }
  std::shared_ptr<Stream> in_use;  // a second SYN_REPLY for it
  {
    absl::MutexLock l(&mu_);
    auto it = streams_.find(f.stream_id);
    if (it == streams_.end()) return absl::OkStatus();
    Stream& s = *it->second;
    if (s.replied_) {
      in_use = it->second;
    } else {
      s.replied_ = true;
      if (f.flags & kFlagFin) s.remote_fin_ = true;
      RemoveIfDone(s);
    }
    cv_.SignalAll();
  }
  if (in_use != nullptr) DoReset(*in_use, kRstStreamInUse);
  return absl::OkStatus();
}

absl::Status Session::HandleData(Frame& f) {
  const int64_t len = static_cast<int64_t>(f.payload.size());
  uint32_t rst = 0;
  int64_t session_credit = 0;
  int64_t stream_credit = 0;
  {
    absl::MutexLock l(&mu_);
    if (peer_flow_control_ && len > session_recv_window_) {
      return absl::InvalidArgumentError(base::StrCat("SPDY data frame of ", len,
                                                     " bytes overruns the session window of ",
                                                     session_recv_window_));
    }
    // Session credit goes back at once: the stream windows bound memory.
    session_recv_window_ -= std::min(len, session_recv_window_);
    session_unacked_ += len;
    if (session_unacked_ >= std::max<int64_t>(limits_.receive_window / 2, 1)) {
      session_credit = std::min<int64_t>(session_unacked_, kMaxWindow - session_recv_window_);
      session_recv_window_ += session_credit;
      session_unacked_ = 0;
    }
    auto it = streams_.find(f.stream_id);
    const bool peer_parity = (f.stream_id & 1) == (role_ == Role::kServer ? 1u : 0u);
    if (it == streams_.end()) {
      // Never opened: an error; already closed: data in flight, dropped.
      if (role_ == Role::kServer && peer_parity && f.stream_id > last_peer_stream_id_) rst = kRstInvalidStream;
    } else {
      std::shared_ptr<Stream> s = it->second;
      if (s->remote_fin_) {
        rst = kRstStreamAlreadyClosed;
      } else if (len > s->recv_window_ && peer_flow_control_) {
        rst = kRstFlowControlError;
        base::LogDebug("SPDY stream overran its window",
                {{"stream", std::to_string(s->id_)}, {"bytes", std::to_string(len)},
                 {"window", std::to_string(s->recv_window_)}});
      } else if (s->read_cancelled_) {
        // Nobody reads this stream any more: drop the data and give its
        // window straight back.
        stream_credit = len;
        if (f.flags & kFlagFin) {
          s->remote_fin_ = true;
          RemoveIfDone(*s);
        }
      } else {
        // A peer without flow control gets backpressure: we stop reading the
        // socket until the consumer made room.
        // A consumer that takes nothing for the idle timeout (a stream we
        // never read, such as an error stream) must not wedge the connection.
        std::string_view rest = f.payload;
        const size_t cap = std::max<size_t>(limits_.receive_window, 1);
        const absl::Duration stall = absl::Seconds(std::max(limits_.idle_timeout_seconds, 1));
        while (!rest.empty()) {
          absl::Time stall_end = absl::Now() + stall;
          while (s->recv_.size() >= cap && !s->reset_ && !gone_) {
            if (cv_.WaitWithDeadline(&mu_, stall_end) && s->recv_.size() >= cap && !s->reset_ && !gone_) {
              return absl::DeadlineExceededError(base::StrCat("SPDY stream ", s->id_, ": nothing read of a full buffer for ",
                                                              limits_.idle_timeout_seconds, " s"));
            }
          }
          if (s->reset_ || gone_) break;
          const size_t n = std::min(rest.size(), cap - s->recv_.size());
          s->recv_.append(rest.substr(0, n));
          rest.remove_prefix(n);
          cv_.SignalAll();
        }
        s->recv_window_ -= std::min(len, std::max<int64_t>(s->recv_window_, 0));
        if ((f.flags & kFlagFin) && !s->reset_) {
          s->remote_fin_ = true;
          RemoveIfDone(*s);
        }
        cv_.SignalAll();
      }
      if (rst != 0 && rst != kRstStreamAlreadyClosed) {
        s->reset_ = true;
        s->recv_.clear();  // a stream we reset for a protocol error delivers nothing more
        streams_.erase(s->id_);
        cv_.SignalAll();
      }
    }
  }
  if (session_credit > 0) RETURN_IF_ERROR(WriteRaw(EncodeWindowUpdate(0, static_cast<uint32_t>(session_credit))));
  if (stream_credit > 0 && rst == 0 && !(f.flags & kFlagFin)) {
    RETURN_IF_ERROR(WriteRaw(EncodeWindowUpdate(f.stream_id, static_cast<uint32_t>(stream_credit))));
  }
  if (rst != 0) return WriteRaw(EncodeRstStream(f.stream_id, rst));
  return absl::OkStatus();
}

absl::Status Session::HandleSettings(const Frame& f) {
  absl::MutexLock l(&mu_);
  peer_flow_control_ = true;
  for (const Setting& s : f.settings) {
    if (s.id != kSettingInitialWindowSize) continue;
    if (s.value > kMaxWindow) {
      return absl::InvalidArgumentError(base::StrCat("SPDY SETTINGS: initial window size ", s.value, " is above 2^31-1"));
    }
    const int64_t delta = static_cast<int64_t>(s.value) - peer_initial_window_;
    peer_initial_window_ = s.value;
    for (auto& [id, stream] : streams_) stream->send_window_ += delta;
  }
  cv_.SignalAll();
  return absl::OkStatus();
}

absl::Status Session::HandleWindowUpdate(const Frame& f) {
  std::shared_ptr<Stream> overflowed;
  {
    absl::MutexLock l(&mu_);
    peer_flow_control_ = true;
    cv_.SignalAll();
    if (f.stream_id == 0) {
      session_send_window_ += f.delta_window;
      if (session_send_window_ > kMaxWindow) {
        return absl::InvalidArgumentError("SPDY WINDOW_UPDATE: the session window grows past 2^31-1");
      }
      return absl::OkStatus();
    }
    auto it = streams_.find(f.stream_id);
    if (it == streams_.end()) return absl::OkStatus();
    it->second->send_window_ += f.delta_window;
    if (it->second->send_window_ > kMaxWindow) overflowed = it->second;
  }
  if (overflowed) DoReset(*overflowed, kRstFlowControlError);
  return absl::OkStatus();
}

void Session::RemoveIfDone(Stream& s) {
  if (s.reset_ || (s.local_fin_ && s.remote_fin_)) streams_.erase(s.id_);
}

absl::StatusOr<size_t> Session::DoRead(Stream& s, char* buf, size_t len) {
  int64_t credit = 0;
  size_t n = 0;
  {
    absl::MutexLock l(&mu_);
    while (s.recv_.empty() && !s.remote_fin_ && !s.reset_ && !s.read_cancelled_ && !gone_) cv_.Wait(&mu_);
    if (s.read_cancelled_) return absl::CancelledError(base::StrCat("SPDY stream ", s.id_, ": reading was cancelled"));
    // What arrived before a reset is still delivered, as spdystream (client-go,
    // kubelet, containerd) does: containerd's server resets the error stream
    // right after writing an exec's exit status to it.
    if (s.reset_ && s.recv_.empty()) return absl::CancelledError(base::StrCat("SPDY stream ", s.id_, " was reset"));
    if (s.recv_.empty()) {
      if (s.remote_fin_) return 0;
      return absl::UnavailableError("the SPDY connection is gone");
    }
    n = std::min(len, s.recv_.size());
    std::memcpy(buf, s.recv_.data(), n);
    s.recv_.erase(0, n);
    s.unacked_ += static_cast<int64_t>(n);
    if (!s.remote_fin_ && !s.reset_ && s.unacked_ >= std::max<int64_t>(limits_.receive_window / 2, 1)) {
      credit = std::min<int64_t>(s.unacked_, kMaxWindow - std::max<int64_t>(s.recv_window_, 0));
      s.recv_window_ += credit;
      s.unacked_ = 0;
    }
    cv_.SignalAll();  // a reader blocked on a full buffer
  }
  if (credit > 0) WriteRaw(EncodeWindowUpdate(s.id_, static_cast<uint32_t>(credit))).IgnoreError();  // gone: reads tell
  return n;
}

void Session::DoCancelRead(Stream& s) {
  int64_t credit = 0;
  {
    absl::MutexLock l(&mu_);
    if (s.read_cancelled_) return;
    s.read_cancelled_ = true;
    // What is buffered will never be read: give its window back so the peer
    // is not stalled by a consumer that is gone (later data is dropped and
    // credited in HandleData).
    s.unacked_ += static_cast<int64_t>(s.recv_.size());
    s.recv_.clear();
    if (!s.remote_fin_ && !s.reset_ && s.unacked_ > 0) {
      credit = std::min<int64_t>(s.unacked_, kMaxWindow - std::max<int64_t>(s.recv_window_, 0));
      s.recv_window_ += credit;
      s.unacked_ = 0;
    }
    cv_.SignalAll();
  }
  if (credit > 0) WriteRaw(EncodeWindowUpdate(s.id_, static_cast<uint32_t>(credit))).IgnoreError();  // gone: nothing to credit
}

absl::Status Session::DoWrite(Stream& s, std::string_view data, bool fin) {
  const size_t max_chunk = std::max<size_t>(1, std::min(kMaxDataFramePayload, limits_.max_frame_bytes));
  do {
    size_t n = 0;
    bool last = false;
    {
      absl::MutexLock l(&mu_);
      if (s.reset_) return absl::CancelledError(base::StrCat("SPDY stream ", s.id_, " was reset"));
      if (s.local_fin_) {
        if (fin && data.empty()) return absl::OkStatus();  // CloseWrite is idempotent
        return absl::FailedPreconditionError(base::StrCat("SPDY stream ", s.id_, ": write after CloseWrite"));
      }
      if (gone_) return absl::UnavailableError("the SPDY connection is gone");
      if (!data.empty()) {
        const absl::Time grace_end = absl::Now() + kLegacyPeerGrace;
        while (!s.reset_ && !gone_ && !ignore_send_windows_ && (s.send_window_ <= 0 || session_send_window_ <= 0)) {
          if (peer_flow_control_) {
            cv_.Wait(&mu_);
          } else if (cv_.WaitWithDeadline(&mu_, grace_end) && !peer_flow_control_) {
            // client-go's spdystream never sends WINDOW_UPDATE.
            ignore_send_windows_ = true;
            base::LogInfo("SPDY peer does no flow control; sending without windows", {});
          }
        }
        if (s.reset_) return absl::CancelledError(base::StrCat("SPDY stream ", s.id_, " was reset"));
        if (gone_) return absl::UnavailableError("the SPDY connection is gone");
        n = std::min(max_chunk, data.size());
        if (!ignore_send_windows_) {
          n = static_cast<size_t>(std::min<int64_t>(static_cast<int64_t>(n), std::min(s.send_window_, session_send_window_)));
        }
        s.send_window_ -= static_cast<int64_t>(n);
        session_send_window_ -= static_cast<int64_t>(n);
      }
      last = fin && n == data.size();
      if (last) {
        s.local_fin_ = true;
        RemoveIfDone(s);
        cv_.SignalAll();
      }
    }
    RETURN_IF_ERROR(WriteRaw(EncodeData(s.id_, last ? kFlagFin : 0, data.substr(0, n))));
    data.remove_prefix(n);
    if (last) break;
  } while (!data.empty() || fin);
  return absl::OkStatus();
}

void Session::DoReset(Stream& s, uint32_t status) {
  {
    absl::MutexLock l(&mu_);
    if (s.reset_ || (s.local_fin_ && s.remote_fin_) || gone_) return;
    s.reset_ = true;
    s.recv_.clear();  // our own reset abandons what is buffered
    streams_.erase(s.id_);
    cv_.SignalAll();
  }
  WriteRaw(EncodeRstStream(s.id_, status)).IgnoreError();  // a dead connection needs no reset
}

absl::Status Session::DoWaitReply(Stream& s, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::MutexLock l(&mu_);
  while (!s.replied_ && !s.reset_ && !gone_) {
    if (cv_.WaitWithDeadline(&mu_, deadline)) break;
  }
  if (s.replied_) return absl::OkStatus();
  if (s.reset_) return absl::CancelledError(base::StrCat("SPDY stream ", s.id_, " was reset before its reply"));
  if (gone_) return absl::UnavailableError("the SPDY connection is gone");
  return absl::DeadlineExceededError(base::StrCat("no SYN_REPLY for SPDY stream ", s.id_));
}

absl::StatusOr<std::shared_ptr<Stream>> Session::Accept(absl::Time deadline) {
  absl::MutexLock l(&mu_);
  while (accept_queue_.empty() && !gone_ && !peer_goaway_) {
    if (cv_.WaitWithDeadline(&mu_, deadline) && accept_queue_.empty() && !gone_ && !peer_goaway_) {
      return absl::DeadlineExceededError("no new SPDY stream before the deadline");
    }
  }
  if (!accept_queue_.empty()) {
    std::shared_ptr<Stream> s = std::move(accept_queue_.front());
    accept_queue_.pop_front();
    return s;
  }
  if (gone_) return absl::UnavailableError("the SPDY connection is gone");
  return absl::UnavailableError("the SPDY client sent GOAWAY");
}

absl::StatusOr<std::shared_ptr<Stream>> Session::Open(const HeaderList& headers) {
  absl::MutexLock w(&write_mu_);  // ids must reach the wire in increasing order
  std::shared_ptr<Stream> stream;
  {
    absl::MutexLock l(&mu_);
    if (gone_ || peer_goaway_) return absl::UnavailableError("the SPDY connection is going away");
    if (next_stream_id_ > kMaxStreamId) return absl::ResourceExhaustedError("SPDY stream ids are used up");
    stream.reset(new Stream(this, next_stream_id_, headers));
    next_stream_id_ += 2;
    stream->send_window_ = peer_initial_window_;
    stream->recv_window_ = std::clamp<int64_t>(limits_.receive_window, 1, kMaxWindow);
    streams_[stream->id_] = stream;
  }
  ASSIGN_OR_RETURN(std::string block, encoder_->Encode(headers));
  RETURN_IF_ERROR(WriteLocked(EncodeSynStream(stream->id_, 0, 0, 0, block)));
  return stream;
}

void Session::OnGone(std::function<void()> cb) {
  {
    absl::MutexLock l(&mu_);
    if (!gone_) {
      gone_callbacks_.push_back(std::move(cb));
      return;
    }
  }
  cb();
}

bool Session::gone() const {
  absl::MutexLock l(&mu_);
  return gone_;
}

absl::Status Session::error() const {
  absl::MutexLock l(&mu_);
  return error_;
}

size_t Session::buffered_bytes() const {
  absl::MutexLock l(&mu_);
  size_t total = 0;
  for (const auto& [id, s] : streams_) total += s->recv_.size();
  return total;
}

void Session::Fail(const absl::Status& why, uint32_t goaway_status) {
  base::LogInfo("SPDY connection failed", {{"error", std::string(why.message())}});
  uint32_t last = 0;
  {
    absl::MutexLock l(&mu_);
    last = last_peer_stream_id_;
  }
  {
    absl::MutexLock w(&write_mu_);
    WriteLocked(EncodeGoAway(last, goaway_status)).IgnoreError();  // best effort: we are closing anyway
    write_closed_ = true;  // the GOAWAY is the last frame
  }
  MarkGone(why);
  ::shutdown(fd_.get(), SHUT_RDWR);
}

void Session::MarkGone(const absl::Status& why) {
  std::vector<std::function<void()>> callbacks;
  {
    absl::MutexLock l(&mu_);
    if (gone_) return;
    gone_ = true;
    error_ = why;
    callbacks.swap(gone_callbacks_);
    cv_.SignalAll();
  }
  for (auto& cb : callbacks) cb();
}

void Session::Finish(absl::Duration linger) {
  uint32_t last = 0;
  {
    absl::MutexLock l(&mu_);
    last = last_peer_stream_id_;
  }
  {
    absl::MutexLock w(&write_mu_);
    if (!gone()) WriteLocked(EncodeGoAway(last, kGoAwayOk)).IgnoreError();  // the peer may be gone already
    write_closed_ = true;
    ::shutdown(fd_.get(), SHUT_WR);
  }
  {
    const absl::Time deadline = absl::Now() + linger;
    absl::MutexLock l(&mu_);
    while (!reader_done_ && reader_.joinable()) {
      if (cv_.WaitWithDeadline(&mu_, deadline)) break;
    }
  }
  Close();
}

void Session::Close() {
  ::shutdown(fd_.get(), SHUT_RDWR);  // wakes the reader; ENOTCONN after the peer left is fine
  MarkGone(absl::OkStatus());
}

absl::Status Session::WriteRaw(std::string_view bytes) {
  absl::MutexLock w(&write_mu_);
  return WriteLocked(bytes);
}

absl::Status Session::WriteHeaderFrame(const HeaderList& headers,
                                       const std::function<std::string(std::string_view)>& build) {
  absl::MutexLock w(&write_mu_);
  ASSIGN_OR_RETURN(std::string block, encoder_->Encode(headers));
  return WriteLocked(build(block));
}

absl::Status Session::WriteLocked(std::string_view bytes) {
  if (write_closed_) return absl::UnavailableError("the SPDY connection is closed for writing");
  const int timeout = PollMillis(limits_.idle_timeout_seconds);
  while (!bytes.empty()) {
    ssize_t n = ::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == ENOTSOCK) n = ::write(fd_.get(), bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p{fd_.get(), POLLOUT, 0};
      const int rc = ::poll(&p, 1, timeout);
      if (rc == 0) {
        // A peer that takes nothing for this long would block every writer.
        write_closed_ = true;
        ::shutdown(fd_.get(), SHUT_RDWR);
        return absl::DeadlineExceededError("the SPDY peer takes no bytes");
      }
      continue;
    }
    if (n < 0) {
      write_closed_ = true;
      return absl::ErrnoToStatus(errno, "write to the SPDY connection");
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

}  // namespace kvcri::streaming::spdy
