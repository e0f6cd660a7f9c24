// The CRI gRPC services of VM Pods: thin adapters over the Pod orchestrator and the image store.
#pragma once

#include <grpcpp/grpcpp.h>

#include <string>

#include "absl/status/statusor.h"
#include "config/config.h"
#include "cri/container_events.h"
#include "cri/proto/api.grpc.pb.h"
#include "cri/pod_lifecycle.h"
#include "cri/runtime_deps.h"
#include "cri/stats_collector.h"
#include "sandbox/sandbox_store.h"

namespace kvcri::cri {

namespace pb = ::runtime::v1;

// runtime.v1.RuntimeService for VM Pods. Each method validates its request,
// converts it into a typed draft, calls the Pod orchestrator (PodLifecycle)
// and translates the answer; the methods live in one file per RPC group.
class RuntimeService final : public pb::RuntimeService::Service {
 public:
  // `pods` (borrowed) does the work; this class validates, converts and
  // translates, as cri-o's server/cri/v1/rpc_*.go do. `events` (borrowed,
  // may be null: UNIMPLEMENTED) serves GetContainerEvents.
  RuntimeService(RuntimeDeps deps, PodLifecycle* pods, ContainerEventHub* events = nullptr);

  // version_status.cc
  grpc::Status Version(grpc::ServerContext*, const pb::VersionRequest*, pb::VersionResponse*) override;
  grpc::Status Status(grpc::ServerContext*, const pb::StatusRequest*, pb::StatusResponse*) override;
  grpc::Status UpdateRuntimeConfig(grpc::ServerContext*, const pb::UpdateRuntimeConfigRequest*,
                                   pb::UpdateRuntimeConfigResponse*) override;
  grpc::Status RuntimeConfig(grpc::ServerContext*, const pb::RuntimeConfigRequest*,
                             pb::RuntimeConfigResponse*) override;

  // sandbox_run.cc, sandbox_stop_remove.cc, sandbox_status_list.cc
  grpc::Status RunPodSandbox(grpc::ServerContext*, const pb::RunPodSandboxRequest*, pb::RunPodSandboxResponse*) override;
  grpc::Status StopPodSandbox(grpc::ServerContext*, const pb::StopPodSandboxRequest*, pb::StopPodSandboxResponse*) override;
  grpc::Status RemovePodSandbox(grpc::ServerContext*, const pb::RemovePodSandboxRequest*, pb::RemovePodSandboxResponse*) override;
  grpc::Status PodSandboxStatus(grpc::ServerContext*, const pb::PodSandboxStatusRequest*, pb::PodSandboxStatusResponse*) override;
  grpc::Status ListPodSandbox(grpc::ServerContext*, const pb::ListPodSandboxRequest*, pb::ListPodSandboxResponse*) override;
  // container_create.cc, container_lifecycle.cc, container_status_list.cc
  grpc::Status CreateContainer(grpc::ServerContext*, const pb::CreateContainerRequest*, pb::CreateContainerResponse*) override;
  grpc::Status StartContainer(grpc::ServerContext*, const pb::StartContainerRequest*, pb::StartContainerResponse*) override;
  grpc::Status StopContainer(grpc::ServerContext*, const pb::StopContainerRequest*, pb::StopContainerResponse*) override;
  grpc::Status RemoveContainer(grpc::ServerContext*, const pb::RemoveContainerRequest*, pb::RemoveContainerResponse*) override;
  grpc::Status ListContainers(grpc::ServerContext*, const pb::ListContainersRequest*, pb::ListContainersResponse*) override;
  grpc::Status ContainerStatus(grpc::ServerContext*, const pb::ContainerStatusRequest*, pb::ContainerStatusResponse*) override;
  // exec_attach.cc: ExecSync through the exec dispatcher; Exec, Attach and
  // PortForward hand out a URL on the streaming server.
  grpc::Status ExecSync(grpc::ServerContext*, const pb::ExecSyncRequest*, pb::ExecSyncResponse*) override;
  grpc::Status Exec(grpc::ServerContext*, const pb::ExecRequest*, pb::ExecResponse*) override;
  grpc::Status Attach(grpc::ServerContext*, const pb::AttachRequest*, pb::AttachResponse*) override;
  grpc::Status PortForward(grpc::ServerContext*, const pb::PortForwardRequest*, pb::PortForwardResponse*) override;
  // stats.cc: usage from StatsCollector (cgroup, hypervisor, netns, disk)
  // and cAdvisor-named metrics for kubelet's /metrics/cadvisor.
  grpc::Status ContainerStats(grpc::ServerContext*, const pb::ContainerStatsRequest*, pb::ContainerStatsResponse*) override;
  grpc::Status ListContainerStats(grpc::ServerContext*, const pb::ListContainerStatsRequest*,
                                  pb::ListContainerStatsResponse*) override;
  grpc::Status PodSandboxStats(grpc::ServerContext*, const pb::PodSandboxStatsRequest*, pb::PodSandboxStatsResponse*) override;
  grpc::Status ListPodSandboxStats(grpc::ServerContext*, const pb::ListPodSandboxStatsRequest*,
                                   pb::ListPodSandboxStatsResponse*) override;
  grpc::Status ListMetricDescriptors(grpc::ServerContext*, const pb::ListMetricDescriptorsRequest*,
                                     pb::ListMetricDescriptorsResponse*) override;
  grpc::Status ListPodSandboxMetrics(grpc::ServerContext*, const pb::ListPodSandboxMetricsRequest*,
                                     pb::ListPodSandboxMetricsResponse*) override;
  // unimplemented.cc: answered UNIMPLEMENTED with the RPC's name.
  grpc::Status UpdateContainerResources(grpc::ServerContext*, const pb::UpdateContainerResourcesRequest*,
                                        pb::UpdateContainerResourcesResponse*) override;
  grpc::Status ReopenContainerLog(grpc::ServerContext*, const pb::ReopenContainerLogRequest*,
                                  pb::ReopenContainerLogResponse*) override;
  grpc::Status CheckpointContainer(grpc::ServerContext*, const pb::CheckpointContainerRequest*,
                                   pb::CheckpointContainerResponse*) override;
  // container_events_rpc.cc: a server stream until the client cancels or the hub closes.
  grpc::Status GetContainerEvents(grpc::ServerContext*, const pb::GetEventsRequest*,
                                  grpc::ServerWriter<pb::ContainerEventResponse>*) override;

  // The collector behind the stats calls (tests look at its sample cache).
  StatsCollector& stats() { return *stats_; }

 private:
  RuntimeDeps deps_;
  PodLifecycle* const pods_;
  ContainerEventHub* const events_;
  std::unique_ptr<StatsCollector> stats_;
};

// runtime.v1.ImageService for VM images.
class ImageService final : public pb::ImageService::Service {
 public:
  explicit ImageService(RuntimeDeps deps);

  grpc::Status ListImages(grpc::ServerContext*, const pb::ListImagesRequest*, pb::ListImagesResponse*) override;
  grpc::Status ImageStatus(grpc::ServerContext*, const pb::ImageStatusRequest*, pb::ImageStatusResponse*) override;
  grpc::Status PullImage(grpc::ServerContext*, const pb::PullImageRequest*, pb::PullImageResponse*) override;
  grpc::Status RemoveImage(grpc::ServerContext*, const pb::RemoveImageRequest*, pb::RemoveImageResponse*) override;
  grpc::Status ImageFsInfo(grpc::ServerContext*, const pb::ImageFsInfoRequest*, pb::ImageFsInfoResponse*) override;

 private:
  RuntimeDeps deps_;
};

}  // namespace kvcri::cri
