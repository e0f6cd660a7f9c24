// Reading ttrpc frames from a socket without ever holding more than one frame's bounded data, and writing them.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "shim/ttrpc/frame.h"

namespace kvcri::shim::ttrpc {

struct Frame {
  FrameHeader header;
  std::string data;
};

enum class ReadOutcome {
  kFrame,       // `frame` is a whole frame
  kWouldBlock,  // non-blocking fd: no more bytes now; call Next again when it is readable
  kEnd,         // the peer closed the connection at a frame boundary
  kRefused,     // a frame over the bound: its data was skipped, `frame.header` says which stream
};

struct ReadResult {
  ReadOutcome outcome = ReadOutcome::kWouldBlock;
  Frame frame;           // kFrame: header and data; kRefused: the header only
  absl::Status refusal;  // kRefused: RESOURCE_EXHAUSTED to answer on frame.header.stream_id
};

// Cuts frames out of a connection. It reads only the bytes of the frame in
// hand (header, then data), never into the next one, so it holds no bytes
// between frames and a caller can hand the fd to someone else after any
// frame. The data buffer grows as data arrives (64 KiB first, then doubling)
// and never beyond the frame's announced length (or a string's 30-byte
// minimum), itself at most `max_data_length`: a peer that announces 4 MiB and
// sends 10 bytes costs 64 KiB, not 4 MiB. A longer frame is not buffered at
// all: its data is read through a fixed 16 KiB scratch buffer and dropped,
// then reported as kRefused, as ttrpc's own reader does, so the connection
// stays in sync.
//
// Works on a blocking fd (Next returns once it has a result) and on a
// non-blocking one (kWouldBlock keeps the partial frame for the next call).
// Borrows `fd`: the connection that owns it outlives the reader.
class FrameReader {
 public:
  explicit FrameReader(int fd, uint32_t max_data_length = kMaxDataLength) : fd_(fd), max_(max_data_length) {}

  // A frame, a refusal, the end, or (non-blocking) no bytes for now. Errors:
  // DATA_LOSS when the peer closes inside a frame, the errno of a failed
  // read. After an error the connection is out of sync: close it.
  absl::StatusOr<ReadResult> Next();

  // Bytes of the frame in progress held now (header bytes and data so far).
  size_t buffered() const { return header_have_ + data_.size(); }
  // Heap memory reserved for the data of the frame in progress (0 while it
  // fits the string's inline buffer).
  size_t reserved() const { return data_.capacity() > kInlineCapacity ? data_.capacity() : 0; }

 private:
  enum class Stage { kHeader, kData, kSkip };
  static constexpr size_t kFirstReserve = 64 << 10;

  static inline const size_t kInlineCapacity = std::string().capacity();

  // More room for data: 64 KiB first, then twice the capacity, never past
  // the frame's length.
  void Grow();
  ReadResult TakeFrame();

  int fd_;
  uint32_t max_;
  Stage stage_ = Stage::kHeader;
  std::array<char, kHeaderBytes> header_buf_{};
  size_t header_have_ = 0;
  FrameHeader header_;
  std::string data_;
  uint32_t skip_left_ = 0;
  absl::Status refusal_;  // kSkip: what to report once the data is skipped
};

// Writes one frame (header and data) to a connected socket, all of it;
// blocking fds only. Refuses data over kMaxDataLength. MSG_NOSIGNAL: a peer
// that went away is EPIPE, not a SIGPIPE that kills the shim.
absl::Status WriteFrame(int fd, uint32_t stream_id, uint8_t type, uint8_t flags, std::string_view data);

}  // namespace kvcri::shim::ttrpc
