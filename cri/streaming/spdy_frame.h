// SPDY/3.1 framing: the frame types, their wire encoding and an incremental parser for bytes from an untrusted peer.
#pragma once

// Wire format (draft-mbelshe-httpbis-spdy-00 / SPDY/3.1): every frame starts
// with 8 bytes. Control frames: 1 bit set, 15-bit version (3), 16-bit type,
// 8-bit flags, 24-bit length. Data frames: 1 bit clear, 31-bit stream id,
// 8-bit flags, 24-bit length. Header blocks stay compressed here; the session
// runs them through its one zlib context per direction (spdy_headers.h),
// because the contexts must see every block in wire order.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace kvcri::streaming::spdy {

inline constexpr uint16_t kVersion = 3;
inline constexpr size_t kFrameHeaderBytes = 8;
inline constexpr uint32_t kMaxStreamId = 0x7fffffff;
inline constexpr uint32_t kMaxWindow = 0x7fffffff;   // 2^31-1
inline constexpr uint32_t kDefaultWindow = 64 << 10;  // streams and the session start with this
inline constexpr uint32_t kMaxFrameLength = 0xffffff;  // what 24 bits can say

enum class FrameType : uint16_t {
  kData = 0,  // not a control type: a data frame
  kSynStream = 1,
  kSynReply = 2,
  kRstStream = 3,
  kSettings = 4,
  kPing = 6,
  kGoAway = 7,
  kHeaders = 8,
  kWindowUpdate = 9,
};

inline constexpr uint8_t kFlagFin = 0x01;             // data, SYN_STREAM, SYN_REPLY, HEADERS
inline constexpr uint8_t kFlagUnidirectional = 0x02;  // SYN_STREAM
inline constexpr uint8_t kFlagClearSettings = 0x01;   // SETTINGS

enum RstStatus : uint32_t {
  kRstProtocolError = 1,
  kRstInvalidStream = 2,
  kRstRefusedStream = 3,
  kRstUnsupportedVersion = 4,
  kRstCancel = 5,
  kRstInternalError = 6,
  kRstFlowControlError = 7,
  kRstStreamInUse = 8,
  kRstStreamAlreadyClosed = 9,
  kRstFrameTooLarge = 11,
};

enum GoAwayStatus : uint32_t { kGoAwayOk = 0, kGoAwayProtocolError = 1, kGoAwayInternalError = 2 };

enum SettingId : uint32_t { kSettingMaxConcurrentStreams = 4, kSettingInitialWindowSize = 7 };

struct Setting {
  uint8_t flags = 0;
  uint32_t id = 0;  // 24 bits
  uint32_t value = 0;
};

// One parsed frame; which fields mean something depends on `type`.
struct Frame {
  FrameType type = FrameType::kData;
  uint8_t flags = 0;
  // Data, SYN_STREAM, SYN_REPLY, RST_STREAM, HEADERS, WINDOW_UPDATE (0: the
  // session); GOAWAY: the last good stream id.
  uint32_t stream_id = 0;
  uint32_t associated_stream_id = 0;  // SYN_STREAM
  uint8_t priority = 0;               // SYN_STREAM, 0 (highest) to 7
  uint32_t status = 0;                // RST_STREAM, GOAWAY
  uint32_t ping_id = 0;               // PING
  uint32_t delta_window = 0;          // WINDOW_UPDATE
  std::vector<Setting> settings;      // SETTINGS
  // Data frames: the payload; SYN_STREAM, SYN_REPLY, HEADERS: the compressed
  // header block.
  std::string payload;
};

// Cuts frames out of a byte stream. A frame longer than `max_frame_bytes`
// is refused from its 8-byte header, before any of it is buffered, so the
// parser never holds more than that plus what one Feed brought.
class FrameParser {
 public:
  explicit FrameParser(size_t max_frame_bytes) : max_frame_bytes_(max_frame_bytes) {}
  void Feed(std::string_view bytes) { buf_.append(bytes); }
  // The next whole frame; nullopt when more bytes are needed; InvalidArgument
  // naming the problem for a malformed frame (the connection must end: the
  // stream is out of sync). Unknown control types (CREDENTIAL, NOOP) are
  // skipped as the spec asks.
  absl::StatusOr<std::optional<Frame>> Next();
  size_t buffered() const { return buf_.size() - pos_; }

 private:
  size_t max_frame_bytes_;
  std::string buf_;
  size_t pos_ = 0;
};

// Encoders. Stream ids and windows are masked to 31 bits; callers pass valid
// values (the session owns those invariants).
std::string EncodeData(uint32_t stream_id, uint8_t flags, std::string_view data);
std::string EncodeSynStream(uint32_t stream_id, uint32_t associated_stream_id, uint8_t priority, uint8_t flags,
                            std::string_view header_block);
std::string EncodeSynReply(uint32_t stream_id, uint8_t flags, std::string_view header_block);
std::string EncodeHeaders(uint32_t stream_id, uint8_t flags, std::string_view header_block);
std::string EncodeRstStream(uint32_t stream_id, uint32_t status);
std::string EncodeSettings(uint8_t flags, const std::vector<Setting>& settings);
std::string EncodePing(uint32_t id);
std::string EncodeGoAway(uint32_t last_good_stream_id, uint32_t status);
std::string EncodeWindowUpdate(uint32_t stream_id, uint32_t delta);
// Any control frame (tests use it to build malformed ones).
std::string EncodeControl(uint16_t version, uint16_t type, uint8_t flags, std::string_view payload);

}  // namespace kvcri::streaming::spdy
