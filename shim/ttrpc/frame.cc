// The ttrpc frame header codec and the data bound (frame.h).
#include "shim/ttrpc/frame.h"

#include "absl/strings/str_cat.h"
#include "config/base/big_endian.h"

namespace kvcri::shim::ttrpc {

std::string EncodeHeader(const FrameHeader& h) {
  std::string out;
  out.reserve(kHeaderBytes);
  base::PutBe32(&out, h.length);
  base::PutBe32(&out, h.stream_id);
  out.push_back(static_cast<char>(h.type));
  out.push_back(static_cast<char>(h.flags));
  return out;
}

absl::StatusOr<FrameHeader> DecodeHeader(std::string_view bytes) {
  if (bytes.size() < kHeaderBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("ttrpc frame header needs ", kHeaderBytes, " bytes, got ", bytes.size()));
  }
  FrameHeader h;
  h.length = base::GetBe32(bytes, 0);
  h.stream_id = base::GetBe32(bytes, 4);
  h.type = static_cast<uint8_t>(bytes[8]);
  h.flags = static_cast<uint8_t>(bytes[9]);
  return h;
}

absl::Status CheckDataLength(uint32_t length, uint32_t stream_id, uint32_t max) {
  if (length <= max) return absl::OkStatus();
  return absl::ResourceExhaustedError(
      absl::StrCat("ttrpc frame on stream ", stream_id, " has ", length, " data bytes, over the maximum of ", max));
}

absl::Status CheckOutgoingLength(size_t length, uint32_t stream_id) {
  if (length <= kMaxDataLength) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat("refusing to send a ttrpc frame of ", length,
                                                   " data bytes on stream ", stream_id, ": over the maximum of ",
                                                   kMaxDataLength));
}

absl::StatusOr<std::string> EncodeFrame(uint32_t stream_id, uint8_t type, uint8_t flags, std::string_view data) {
  if (absl::Status s = CheckOutgoingLength(data.size(), stream_id); !s.ok()) return s;
  std::string out = EncodeHeader({static_cast<uint32_t>(data.size()), stream_id, type, flags});
  out.append(data);
  return out;
}

}  // namespace kvcri::shim::ttrpc
