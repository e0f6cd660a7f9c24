// ToGrpc: absl::Status to grpc::Status with the same code and message.
#include "cri/grpc_status.h"

#include "config/base/str.h"

namespace kvcri::cri {

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl and gRPC share the canonical code numbering.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

grpc::Status Unimplemented(std::string_view rpc) {
  return grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                      base::StrCat(rpc, " is not implemented by kubevirt-cri"));
}

}  // namespace kvcri::cri
