// RPCs not served yet: each answers UNIMPLEMENTED naming itself.
#include "cri/grpc_status.h"
#include "cri/runtime_service.h"

namespace kvcri::cri {

grpc::Status RuntimeService::ContainerStats(grpc::ServerContext*, const pb::ContainerStatsRequest*, pb::ContainerStatsResponse*) {
  return Unimplemented("ContainerStats");
}

grpc::Status RuntimeService::ListContainerStats(grpc::ServerContext*, const pb::ListContainerStatsRequest*, pb::ListContainerStatsResponse*) {
  return Unimplemented("ListContainerStats");
}

grpc::Status RuntimeService::PodSandboxStats(grpc::ServerContext*, const pb::PodSandboxStatsRequest*, pb::PodSandboxStatsResponse*) {
  return Unimplemented("PodSandboxStats");
}

grpc::Status RuntimeService::ListPodSandboxStats(grpc::ServerContext*, const pb::ListPodSandboxStatsRequest*, pb::ListPodSandboxStatsResponse*) {
  return Unimplemented("ListPodSandboxStats");
}

grpc::Status RuntimeService::CheckpointContainer(grpc::ServerContext*, const pb::CheckpointContainerRequest*, pb::CheckpointContainerResponse*) {
  return Unimplemented("CheckpointContainer");
}

grpc::Status RuntimeService::ListMetricDescriptors(grpc::ServerContext*, const pb::ListMetricDescriptorsRequest*, pb::ListMetricDescriptorsResponse*) {
  return Unimplemented("ListMetricDescriptors");
}

grpc::Status RuntimeService::ListPodSandboxMetrics(grpc::ServerContext*, const pb::ListPodSandboxMetricsRequest*, pb::ListPodSandboxMetricsResponse*) {
  return Unimplemented("ListPodSandboxMetrics");
}

}  // namespace kvcri::cri
