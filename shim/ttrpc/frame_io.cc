// FrameReader and WriteFrame: ttrpc frames over a socket (frame_io.h).
#include "shim/ttrpc/frame_io.h"

#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"

namespace kvcri::shim::ttrpc {
namespace {

// One read(2), EINTR retried. >0: bytes read; 0: end of stream; -1: errno set.
ssize_t ReadSome(int fd, char* dst, size_t want) {
  for (;;) {
    ssize_t n = ::read(fd, dst, want);
    if (n >= 0 || errno != EINTR) return n;
  }
}

}  // namespace

void FrameReader::Grow() {
  size_t target = data_.size() == 0 ? kFirstReserve : 2 * data_.capacity();
  target = std::min<size_t>(target, header_.length);
  if (target <= data_.capacity()) return;
  // A fresh string reserves exactly what is asked (libstdc++ rounds a growth
  // of an existing buffer up to twice its capacity, which could overshoot the
  // frame's length); copying what arrived so far is amortised by doubling.
  std::string grown;
  grown.reserve(target);
  grown.append(data_);
  data_ = std::move(grown);
}

ReadResult FrameReader::TakeFrame() {
  ReadResult r;
  r.outcome = ReadOutcome::kFrame;
  r.frame.header = header_;
  r.frame.data = std::move(data_);
  data_ = std::string();
  header_have_ = 0;
  stage_ = Stage::kHeader;
  return r;
}

absl::StatusOr<ReadResult> FrameReader::Next() {
  for (;;) {
    char* dst = nullptr;
    size_t want = 0;
    std::array<char, 16 << 10> scratch;  // kSkip only: the refused data goes through here
    switch (stage_) {
      case Stage::kHeader:
        dst = header_buf_.data() + header_have_;
        want = kHeaderBytes - header_have_;
        break;
      case Stage::kData: {
        // Read into the room there is; grow only once it is full, so the
        // buffer follows what arrives rather than what was announced.
        if (data_.size() == 0 || data_.size() == data_.capacity()) Grow();
        size_t left = header_.length - data_.size();
        want = std::min(left, data_.capacity() - data_.size());
        size_t old = data_.size();
        data_.resize(old + want);  // within the capacity: no reallocation
        dst = data_.data() + old;
        break;
      }
      case Stage::kSkip:
        dst = scratch.data();
        want = std::min<size_t>(skip_left_, scratch.size());
        break;
    }

    ssize_t n = ReadSome(fd_, dst, want);
    int read_errno = errno;
    if (stage_ == Stage::kData) data_.resize(data_.size() - want + (n > 0 ? n : 0));  // keep only what arrived
    if (n < 0) {
      if (read_errno == EAGAIN || read_errno == EWOULDBLOCK) return ReadResult{};
      return absl::ErrnoToStatus(read_errno, "read of a ttrpc frame");
    }
    if (n == 0) {
      if (stage_ == Stage::kHeader && header_have_ == 0) return ReadResult{ReadOutcome::kEnd, {}, {}};
      switch (stage_) {
        case Stage::kHeader:
          return absl::DataLossError(absl::StrCat("connection closed ", header_have_, " bytes into a ", kHeaderBytes,
                                                  "-byte ttrpc frame header"));
        case Stage::kData:
          return absl::DataLossError(absl::StrCat("connection closed after ", data_.size(), " of the ", header_.length,
                                                  " data bytes of a ttrpc frame on stream ", header_.stream_id));
        case Stage::kSkip:
          return absl::DataLossError(absl::StrCat("connection closed with ", skip_left_,
                                                  " bytes of a refused ttrpc frame on stream ", header_.stream_id,
                                                  " still to come"));
      }
    }

    switch (stage_) {
      case Stage::kHeader: {
        header_have_ += static_cast<size_t>(n);
        if (header_have_ < kHeaderBytes) break;
        header_ = *DecodeHeader(std::string_view(header_buf_.data(), kHeaderBytes));  // 10 bytes: cannot fail
        if (absl::Status s = CheckDataLength(header_.length, header_.stream_id, max_); !s.ok()) {
          skip_left_ = header_.length;
          stage_ = Stage::kSkip;
          refusal_ = std::move(s);
          break;
        }
        if (header_.length == 0) return TakeFrame();
        stage_ = Stage::kData;
        break;
      }
      case Stage::kData:
        if (data_.size() == header_.length) return TakeFrame();
        break;
      case Stage::kSkip:
        skip_left_ -= static_cast<uint32_t>(n);
        if (skip_left_ == 0) {
          ReadResult r;
          r.outcome = ReadOutcome::kRefused;
          r.frame.header = header_;
          r.refusal = std::exchange(refusal_, absl::OkStatus());
          header_have_ = 0;
          stage_ = Stage::kHeader;
          return r;
        }
        break;
    }
  }
}

absl::Status WriteFrame(int fd, uint32_t stream_id, uint8_t type, uint8_t flags, std::string_view data) {
  if (absl::Status s = CheckOutgoingLength(data.size(), stream_id); !s.ok()) return s;
  std::string header = EncodeHeader({static_cast<uint32_t>(data.size()), stream_id, type, flags});
  iovec iov[2] = {{header.data(), header.size()}, {const_cast<char*>(data.data()), data.size()}};
  size_t first = 0;
  while (first < 2) {
    msghdr msg{};
    msg.msg_iov = iov + first;
    msg.msg_iovlen = 2 - first;
    ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::ErrnoToStatus(errno, absl::StrCat("write of a ttrpc frame on stream ", stream_id));
    }
    size_t done = static_cast<size_t>(n);
    while (first < 2 && done >= iov[first].iov_len) {
      done -= iov[first].iov_len;
      ++first;
    }
    if (first < 2) {
      iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + done;
      iov[first].iov_len -= done;
    }
  }
  return absl::OkStatus();
}

}  // namespace kvcri::shim::ttrpc
