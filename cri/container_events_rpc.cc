// GetContainerEvents: one hub subscription per stream, served until the client cancels or the daemon stops.
#include "cri/grpc_status.h"
#include "cri/runtime_service.h"

namespace kvcri::cri {

grpc::Status RuntimeService::GetContainerEvents(grpc::ServerContext* ctx, const pb::GetEventsRequest*,
                                                grpc::ServerWriter<pb::ContainerEventResponse>* writer) {
  if (events_ == nullptr) return Unimplemented("GetContainerEvents");
  // GetEventsRequest has no fields: every subscriber gets every event.
  std::unique_ptr<ContainerEventHub::Subscription> sub = events_->Subscribe(ctx->peer());
  if (sub == nullptr) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "GetContainerEvents: the runtime is shutting down");
  }
  return ServeContainerEvents(ctx, writer, sub.get());
}

}  // namespace kvcri::cri
