// RPCs not served yet: each answers UNIMPLEMENTED naming itself.
#include "cri/grpc_status.h"
#include "cri/runtime_service.h"

namespace kvcri::cri {

grpc::Status RuntimeService::RunPodSandbox(grpc::ServerContext*, const pb::RunPodSandboxRequest*, pb::RunPodSandboxResponse*) {
  return Unimplemented("RunPodSandbox");
}

grpc::Status RuntimeService::StopPodSandbox(grpc::ServerContext*, const pb::StopPodSandboxRequest*, pb::StopPodSandboxResponse*) {
  return Unimplemented("StopPodSandbox");
}

grpc::Status RuntimeService::RemovePodSandbox(grpc::ServerContext*, const pb::RemovePodSandboxRequest*, pb::RemovePodSandboxResponse*) {
  return Unimplemented("RemovePodSandbox");
}

grpc::Status RuntimeService::PodSandboxStatus(grpc::ServerContext*, const pb::PodSandboxStatusRequest*, pb::PodSandboxStatusResponse*) {
  return Unimplemented("PodSandboxStatus");
}

grpc::Status RuntimeService::ListPodSandbox(grpc::ServerContext*, const pb::ListPodSandboxRequest*, pb::ListPodSandboxResponse*) {
  return Unimplemented("ListPodSandbox");
}

grpc::Status RuntimeService::CreateContainer(grpc::ServerContext*, const pb::CreateContainerRequest*, pb::CreateContainerResponse*) {
  return Unimplemented("CreateContainer");
}

grpc::Status RuntimeService::StartContainer(grpc::ServerContext*, const pb::StartContainerRequest*, pb::StartContainerResponse*) {
  return Unimplemented("StartContainer");
}

grpc::Status RuntimeService::StopContainer(grpc::ServerContext*, const pb::StopContainerRequest*, pb::StopContainerResponse*) {
  return Unimplemented("StopContainer");
}

grpc::Status RuntimeService::RemoveContainer(grpc::ServerContext*, const pb::RemoveContainerRequest*, pb::RemoveContainerResponse*) {
  return Unimplemented("RemoveContainer");
}

grpc::Status RuntimeService::ListContainers(grpc::ServerContext*, const pb::ListContainersRequest*, pb::ListContainersResponse*) {
  return Unimplemented("ListContainers");
}

grpc::Status RuntimeService::ContainerStatus(grpc::ServerContext*, const pb::ContainerStatusRequest*, pb::ContainerStatusResponse*) {
  return Unimplemented("ContainerStatus");
}

grpc::Status RuntimeService::UpdateContainerResources(grpc::ServerContext*, const pb::UpdateContainerResourcesRequest*, pb::UpdateContainerResourcesResponse*) {
  return Unimplemented("UpdateContainerResources");
}

grpc::Status RuntimeService::ReopenContainerLog(grpc::ServerContext*, const pb::ReopenContainerLogRequest*, pb::ReopenContainerLogResponse*) {
  return Unimplemented("ReopenContainerLog");
}

grpc::Status RuntimeService::ExecSync(grpc::ServerContext*, const pb::ExecSyncRequest*, pb::ExecSyncResponse*) {
  return Unimplemented("ExecSync");
}

grpc::Status RuntimeService::Exec(grpc::ServerContext*, const pb::ExecRequest*, pb::ExecResponse*) {
  return Unimplemented("Exec");
}

grpc::Status RuntimeService::Attach(grpc::ServerContext*, const pb::AttachRequest*, pb::AttachResponse*) {
  return Unimplemented("Attach");
}

grpc::Status RuntimeService::PortForward(grpc::ServerContext*, const pb::PortForwardRequest*, pb::PortForwardResponse*) {
  return Unimplemented("PortForward");
}

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

grpc::Status RuntimeService::GetContainerEvents(grpc::ServerContext*, const pb::GetEventsRequest*,
                                                grpc::ServerWriter<pb::ContainerEventResponse>*) {
  return Unimplemented("GetContainerEvents");
}

ImageService::ImageService(RuntimeDeps deps) : deps_(std::move(deps)) {}

grpc::Status ImageService::ListImages(grpc::ServerContext*, const pb::ListImagesRequest*, pb::ListImagesResponse*) {
  return Unimplemented("ListImages");
}

grpc::Status ImageService::ImageStatus(grpc::ServerContext*, const pb::ImageStatusRequest*, pb::ImageStatusResponse*) {
  return Unimplemented("ImageStatus");
}

grpc::Status ImageService::PullImage(grpc::ServerContext*, const pb::PullImageRequest*, pb::PullImageResponse*) {
  return Unimplemented("PullImage");
}

grpc::Status ImageService::RemoveImage(grpc::ServerContext*, const pb::RemoveImageRequest*, pb::RemoveImageResponse*) {
  return Unimplemented("RemoveImage");
}

grpc::Status ImageService::ImageFsInfo(grpc::ServerContext*, const pb::ImageFsInfoRequest*, pb::ImageFsInfoResponse*) {
  return Unimplemented("ImageFsInfo");
}

}  // namespace kvcri::cri
