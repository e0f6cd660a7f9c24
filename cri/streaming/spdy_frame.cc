// SPDY/3.1 frame encoding and the incremental, bounded frame parser.
#include "cri/streaming/spdy_frame.h"

#include "absl/status/status.h"
#include "config/base/str.h"

namespace kvcri::streaming::spdy {
namespace {

uint32_t Get32(std::string_view b, size_t at) {
  return static_cast<uint32_t>(static_cast<uint8_t>(b[at])) << 24 |
         static_cast<uint32_t>(static_cast<uint8_t>(b[at + 1])) << 16 |
         static_cast<uint32_t>(static_cast<uint8_t>(b[at + 2])) << 8 | static_cast<uint8_t>(b[at + 3]);
}

void Put32(std::string& out, uint32_t v) {
  out.push_back(static_cast<char>(v >> 24));
  out.push_back(static_cast<char>(v >> 16));
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v));
}

const char* TypeName(FrameType t) {
  switch (t) {
    case FrameType::kData: return "DATA";
    case FrameType::kSynStream: return "SYN_STREAM";
    case FrameType::kSynReply: return "SYN_REPLY";
    case FrameType::kRstStream: return "RST_STREAM";
    case FrameType::kSettings: return "SETTINGS";
    case FrameType::kPing: return "PING";
    case FrameType::kGoAway: return "GOAWAY";
    case FrameType::kHeaders: return "HEADERS";
    case FrameType::kWindowUpdate: return "WINDOW_UPDATE";
  }
  return "?";
}

absl::Status Malformed(FrameType t, std::string_view what) {
  return absl::InvalidArgumentError(base::StrCat("SPDY ", TypeName(t), " frame: ", what));
}

// Fills the typed fields of a control frame from its payload `p`.
absl::Status ParseControl(Frame& f, std::string_view p) {
  auto need = [&](size_t exact) -> absl::Status {
    if (p.size() != exact) return Malformed(f.type, base::StrCat("length ", p.size(), " is not ", exact));
    return absl::OkStatus();
  };
  auto need_at_least = [&](size_t min) -> absl::Status {
    if (p.size() < min) return Malformed(f.type, base::StrCat("length ", p.size(), " is below ", min));
    return absl::OkStatus();
  };
  auto nonzero_stream = [&]() -> absl::Status {
    if (f.stream_id == 0) return Malformed(f.type, "stream id is 0");
    return absl::OkStatus();
  };
  switch (f.type) {
    case FrameType::kSynStream:
      if (absl::Status s = need_at_least(10); !s.ok()) return s;
      f.stream_id = Get32(p, 0) & kMaxStreamId;
      f.associated_stream_id = Get32(p, 4) & kMaxStreamId;
      f.priority = static_cast<uint8_t>(static_cast<uint8_t>(p[8]) >> 5);
      f.payload.assign(p.substr(10));
      return nonzero_stream();
    case FrameType::kSynReply:
    case FrameType::kHeaders:
      if (absl::Status s = need_at_least(4); !s.ok()) return s;
      f.stream_id = Get32(p, 0) & kMaxStreamId;
      f.payload.assign(p.substr(4));
      return nonzero_stream();
    case FrameType::kRstStream:
      if (absl::Status s = need(8); !s.ok()) return s;
      f.stream_id = Get32(p, 0) & kMaxStreamId;
      f.status = Get32(p, 4);
      if (f.status == 0) return Malformed(f.type, "status code is 0");
      return nonzero_stream();
    case FrameType::kSettings: {
      if (absl::Status s = need_at_least(4); !s.ok()) return s;
      const uint32_t n = Get32(p, 0);
      if (n > (p.size() - 4) / 8 || p.size() != 4 + size_t{n} * 8) {
        return Malformed(f.type, base::StrCat("length ", p.size(), " does not hold ", n, " entries"));
      }
      f.settings.reserve(n);
      for (uint32_t i = 0; i < n; ++i) {
        const uint32_t word = Get32(p, 4 + i * 8);
        f.settings.push_back({static_cast<uint8_t>(word >> 24), word & 0xffffff, Get32(p, 8 + i * 8)});
      }
      return absl::OkStatus();
    }
    case FrameType::kPing:
      if (absl::Status s = need(4); !s.ok()) return s;
      f.ping_id = Get32(p, 0);
      return absl::OkStatus();
    case FrameType::kGoAway:
      if (absl::Status s = need(8); !s.ok()) return s;
      f.stream_id = Get32(p, 0) & kMaxStreamId;
      f.status = Get32(p, 4);
      return absl::OkStatus();
    case FrameType::kWindowUpdate:
      if (absl::Status s = need(8); !s.ok()) return s;
      f.stream_id = Get32(p, 0) & kMaxStreamId;
      f.delta_window = Get32(p, 4) & kMaxWindow;
      if (f.delta_window == 0) return Malformed(f.type, "delta window size is 0");
      return absl::OkStatus();
    case FrameType::kData:
      break;
  }
  return absl::InternalError("ParseControl called for a data frame");
}

bool KnownControlType(uint16_t t) {
  return (t >= 1 && t <= 4) || (t >= 6 && t <= 9);
}

}  // namespace

absl::StatusOr<std::optional<Frame>> FrameParser::Next() {
  while (true) {
    const std::string_view rest = std::string_view(buf_).substr(pos_);
    if (rest.size() < kFrameHeaderBytes) break;
    const uint32_t word0 = Get32(rest, 0);
    const uint32_t word1 = Get32(rest, 4);
    const size_t length = word1 & 0xffffff;
    const bool control = (word0 & 0x80000000u) != 0;
    if (length > max_frame_bytes_) {
      return absl::InvalidArgumentError(
          base::StrCat("SPDY frame length ", length, " exceeds the limit of ", max_frame_bytes_, " bytes"));
    }
    if (control && ((word0 >> 16) & 0x7fff) != kVersion) {
      return absl::InvalidArgumentError(
          base::StrCat("SPDY control frame version ", (word0 >> 16) & 0x7fff, " is not ", kVersion));
    }
    if (rest.size() < kFrameHeaderBytes + length) break;
    const std::string_view payload = rest.substr(kFrameHeaderBytes, length);
    pos_ += kFrameHeaderBytes + length;
    Frame f;
    f.flags = static_cast<uint8_t>(word1 >> 24);
    if (!control) {
      f.type = FrameType::kData;
      f.stream_id = word0 & kMaxStreamId;
      if (f.stream_id == 0) return Malformed(f.type, "stream id is 0");
      f.payload.assign(payload);
    } else {
      const uint16_t type = static_cast<uint16_t>(word0 & 0xffff);
      if (!KnownControlType(type)) continue;  // the spec: ignore unknown control frames
      f.type = static_cast<FrameType>(type);
      if (absl::Status s = ParseControl(f, payload); !s.ok()) return s;
    }
    // Compact once the consumed prefix dominates, keeping Feed amortized O(n).
    if (pos_ > 64 * 1024 && pos_ * 2 > buf_.size()) {
      buf_.erase(0, pos_);
      pos_ = 0;
    }
    return std::optional<Frame>(std::move(f));
  }
  if (pos_ > 0) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  return std::optional<Frame>();
}

std::string EncodeControl(uint16_t version, uint16_t type, uint8_t flags, std::string_view payload) {
  std::string out;
  out.reserve(kFrameHeaderBytes + payload.size());
  Put32(out, 0x80000000u | static_cast<uint32_t>(version & 0x7fff) << 16 | type);
  Put32(out, static_cast<uint32_t>(flags) << 24 | (static_cast<uint32_t>(payload.size()) & 0xffffff));
  out.append(payload);
  return out;
}

namespace {
std::string Control(FrameType type, uint8_t flags, std::string_view payload) {
  return EncodeControl(kVersion, static_cast<uint16_t>(type), flags, payload);
}
}  // namespace

std::string EncodeData(uint32_t stream_id, uint8_t flags, std::string_view data) {
  std::string out;
  out.reserve(kFrameHeaderBytes + data.size());
  Put32(out, stream_id & kMaxStreamId);
  Put32(out, static_cast<uint32_t>(flags) << 24 | (static_cast<uint32_t>(data.size()) & 0xffffff));
  out.append(data);
  return out;
}

std::string EncodeSynStream(uint32_t stream_id, uint32_t associated_stream_id, uint8_t priority, uint8_t flags,
                            std::string_view header_block) {
  std::string p;
  Put32(p, stream_id & kMaxStreamId);
  Put32(p, associated_stream_id & kMaxStreamId);
  p.push_back(static_cast<char>((priority & 0x7) << 5));
  p.push_back(0);  // credential slot: unused in SPDY/3.1
  p.append(header_block);
  return Control(FrameType::kSynStream, flags, p);
}

std::string EncodeSynReply(uint32_t stream_id, uint8_t flags, std::string_view header_block) {
  std::string p;
  Put32(p, stream_id & kMaxStreamId);
  p.append(header_block);
  return Control(FrameType::kSynReply, flags, p);
}

std::string EncodeHeaders(uint32_t stream_id, uint8_t flags, std::string_view header_block) {
  std::string p;
  Put32(p, stream_id & kMaxStreamId);
  p.append(header_block);
  return Control(FrameType::kHeaders, flags, p);
}

std::string EncodeRstStream(uint32_t stream_id, uint32_t status) {
  std::string p;
  Put32(p, stream_id & kMaxStreamId);
  Put32(p, status);
  return Control(FrameType::kRstStream, 0, p);
}

std::string EncodeSettings(uint8_t flags, const std::vector<Setting>& settings) {
  std::string p;
  Put32(p, static_cast<uint32_t>(settings.size()));
  for (const Setting& s : settings) {
    Put32(p, static_cast<uint32_t>(s.flags) << 24 | (s.id & 0xffffff));
    Put32(p, s.value);
  }
  return Control(FrameType::kSettings, flags, p);
}

std::string EncodePing(uint32_t id) {
  std::string p;
  Put32(p, id);
  return Control(FrameType::kPing, 0, p);
}

std::string EncodeGoAway(uint32_t last_good_stream_id, uint32_t status) {
  std::string p;
  Put32(p, last_good_stream_id & kMaxStreamId);
  Put32(p, status);
  return Control(FrameType::kGoAway, 0, p);
}

std::string EncodeWindowUpdate(uint32_t stream_id, uint32_t delta) {
  std::string p;
  Put32(p, stream_id & kMaxStreamId);
  Put32(p, delta & kMaxWindow);
  return Control(FrameType::kWindowUpdate, 0, p);
}

}  // namespace kvcri::streaming::spdy
