// Conversions between our ttrpc envelope and absl::Status (envelope.h).
#include "shim/ttrpc/envelope.h"

#include <cstdint>
#include <utility>

#include "absl/strings/str_cat.h"

namespace kvcri::shim::ttrpc {

absl::StatusOr<pb::Request> ParseRequest(std::string_view data) {
  pb::Request req;
  if (!req.ParseFromArray(data.data(), static_cast<int>(data.size()))) {
    return absl::InvalidArgumentError(
        absl::StrCat("unmarshal request error: ", data.size(), " bytes are not a ttrpc Request"));
  }
  return req;
}

pb::Response OkResponse(std::string payload) {
  pb::Response resp;
  resp.set_payload(std::move(payload));
  return resp;
}

pb::Response ErrorResponse(const absl::Status& status) {
  pb::Response resp;
  resp.mutable_status()->set_code(static_cast<int32_t>(status.code()));
  absl::string_view message = status.message();  // absl::string_view is not std::string_view in Debian's absl
  resp.mutable_status()->set_message(ValidUtf8(std::string_view(message.data(), message.size())));
  return resp;
}

absl::Status StatusOf(const pb::Response& response) {
  if (!response.has_status() || response.status().code() == 0) return absl::OkStatus();
  int32_t code = response.status().code();
  // gRPC defines 0..16; absl::StatusCode has the same numbers.
  absl::StatusCode c = (code > 0 && code <= 16) ? static_cast<absl::StatusCode>(code) : absl::StatusCode::kUnknown;
  return absl::Status(c, response.status().message());
}

std::string ValidUtf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    auto b = static_cast<unsigned char>(text[i]);
    size_t len = 0;
    uint32_t min = 0;  // the smallest code point of that length: shorter forms are overlong
    if (b < 0x80) {
      len = 1;
    } else if ((b & 0xe0) == 0xc0) {
      len = 2;
      min = 0x80;
    } else if ((b & 0xf0) == 0xe0) {
      len = 3;
      min = 0x800;
    } else if ((b & 0xf8) == 0xf0) {
      len = 4;
      min = 0x10000;
    }
    bool ok = len > 0 && i + len <= text.size();
    uint32_t cp = len == 1 ? b : (b & (0x7f >> len));
    for (size_t k = 1; ok && k < len; ++k) {
      auto c = static_cast<unsigned char>(text[i + k]);
      ok = (c & 0xc0) == 0x80;
      cp = (cp << 6) | (c & 0x3f);
    }
    // Overlong forms, UTF-16 surrogates and code points past U+10FFFF are not UTF-8 either.
    if (ok && len > 1) ok = cp >= min && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff);
    if (ok) {
      out.append(text.substr(i, len));
      i += len;
    } else {
      out.push_back('?');
      ++i;
    }
  }
  return out;
}

}  // namespace kvcri::shim::ttrpc
