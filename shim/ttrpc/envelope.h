// The ttrpc Request/Response envelope (proto/ttrpc.proto) to and from absl::Status and bytes.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "shim/ttrpc/proto/ttrpc.pb.h"

namespace kvcri::shim::ttrpc {

// The Request in a Request frame's data; INVALID_ARGUMENT when it does not
// parse (what ttrpc answers such a frame with, on its stream id).
absl::StatusOr<pb::Request> ParseRequest(std::string_view data);

// A successful Response carrying `payload`, without a status: byte for byte
// what containerd 1.6's ttrpc server sends (grpc-go's status.FromError(nil)
// is a nil status, which is not encoded), so an OK reply with an empty
// message is a frame of zero data bytes.
pb::Response OkResponse(std::string payload);

// A failed Response: `status`'s code (absl's numbers are gRPC's) and message.
// The message is made valid UTF-8 (a bad byte becomes '?'): it is a proto3
// string, which strict parsers on the other side refuse otherwise, and our
// messages quote paths and peer input.
pb::Response ErrorResponse(const absl::Status& status);

// The call's outcome a Response reports: OK when the status is absent or its
// code is 0, else that code and message. An unknown code number becomes UNKNOWN.
absl::Status StatusOf(const pb::Response& response);

// `text` with every byte that is not part of a valid UTF-8 sequence replaced by '?'.
std::string ValidUtf8(std::string_view text);

}  // namespace kvcri::shim::ttrpc
