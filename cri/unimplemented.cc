// RPCs not served yet: each answers UNIMPLEMENTED naming itself.
#include "cri/grpc_status.h"
#include "cri/runtime_service.h"

namespace kvcri::cri {

grpc::Status RuntimeService::CheckpointContainer(grpc::ServerContext*, const pb::CheckpointContainerRequest*, pb::CheckpointContainerResponse*) {
  return Unimplemented("CheckpointContainer");
}

}  // namespace kvcri::cri
