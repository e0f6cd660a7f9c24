// ToGrpc and Unimplemented: the gRPC status of every answer cri/ gives.
#pragma once

#include <grpcpp/support/status.h>

#include <string_view>

#include "absl/status/status.h"

namespace kvcri::cri {

// The one place where module errors become gRPC status codes.
grpc::Status ToGrpc(const absl::Status& status);

// UNIMPLEMENTED naming the RPC, for calls this runtime does not serve (yet).
grpc::Status Unimplemented(std::string_view rpc);

}  // namespace kvcri::cri
