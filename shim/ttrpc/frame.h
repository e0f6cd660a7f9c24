// ttrpc framing: the 10-byte frame header (data length, stream id, type, flags), its codec and the 4 MiB data bound.
#pragma once

// Wire format (containerd/ttrpc PROTOCOL.md, channel.go; docs/containerd-shim.md
// section 2): bytes 0-3 data length and 4-7 stream id, both big-endian
// uint32; byte 8 message type; byte 9 flags. The data follows. A frame whose
// data is over 4 MiB is refused: ttrpc's reader skips its data and answers
// RESOURCE_EXHAUSTED on its stream, so the connection stays in sync.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kvcri::shim::ttrpc {

inline constexpr size_t kHeaderBytes = 10;
inline constexpr uint32_t kMaxDataLength = 4u << 20;  // ttrpc's messageLengthMax

// Message types (byte 8).
inline constexpr uint8_t kTypeRequest = 0x01;
inline constexpr uint8_t kTypeResponse = 0x02;
inline constexpr uint8_t kTypeData = 0x03;  // ttrpc 1.2 streaming; containerd 1.6 (ttrpc 1.1) never sends it

// Flags (byte 9), by type (ttrpc 1.2). A Request with no flags is unary, the
// only kind the Task and Events services use.
inline constexpr uint8_t kFlagRemoteClosed = 0x01;  // Request, Data
inline constexpr uint8_t kFlagRemoteOpen = 0x02;    // Request
inline constexpr uint8_t kFlagNoData = 0x04;        // Data

struct FrameHeader {
  uint32_t length = 0;     // data bytes after the header
  uint32_t stream_id = 0;  // odd: opened by the client
  // Kept as the byte on the wire: a frame of an unknown type is skipped by
  // the server for forward compatibility, not an error of the codec.
  uint8_t type = 0;
  uint8_t flags = 0;

  bool operator==(const FrameHeader&) const = default;
};

// The 10 header bytes of `h`.
std::string EncodeHeader(const FrameHeader& h);

// The header in the first 10 bytes of `bytes`; InvalidArgument when there are
// fewer. Any length decodes: the bound is CheckDataLength's to apply.
absl::StatusOr<FrameHeader> DecodeHeader(std::string_view bytes);

// OK when a frame of `length` data bytes on `stream_id` is within `max`;
// otherwise RESOURCE_EXHAUSTED naming the length, the bound and the stream
// (the code ttrpc answers an oversize frame with).
absl::Status CheckDataLength(uint32_t length, uint32_t stream_id, uint32_t max = kMaxDataLength);

// OK when `length` data bytes may be sent; RESOURCE_EXHAUSTED otherwise (the
// peer would refuse the frame).
absl::Status CheckOutgoingLength(size_t length, uint32_t stream_id);

// Header plus data. Refuses data over kMaxDataLength rather than send a frame
// the peer would refuse.
absl::StatusOr<std::string> EncodeFrame(uint32_t stream_id, uint8_t type, uint8_t flags, std::string_view data);

}  // namespace kvcri::shim::ttrpc
