// The router services: which runtime owns each CRI call (SideResolver) and the RuntimeService that forwards it.
#pragma once

#include <grpcpp/grpcpp.h>

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "config/config.h"
#include "cri/container_events.h"
#include "cri/proto/api.grpc.pb.h"
#include "cri/tombstones.h"
#include "cri/upstream_client.h"
#include "sandbox/sandbox_store.h"

namespace kvcri::cri {

namespace pb = ::runtime::v1;

// Which runtime serves a call: ours (VMs) or the upstream (containers).
enum class Side { kLocal, kUpstream };

// Decides the side of every call. An ID is ours exactly when our SandboxStore
// holds a sandbox or container with that ID (or an unambiguous prefix of
// one), or when we removed it recently (`removed`, exact IDs only);
// everything else belongs to the upstream. The store is rebuilt from disk at
// start-up, and the upstream keeps its own IDs, so the routing table survives
// a restart (kill -9 included) without a file of its own.
class SideResolver {
 public:
  SideResolver(const config::Config* config, const sandbox::SandboxStore* store, const Tombstones* removed)
      : config_(config), store_(store), removed_(removed) {}

  // RunPodSandbox: a VM handler is ours; any other, the empty one included,
  // is the upstream's.
  Side ForHandler(std::string_view runtime_handler) const;
  Side ForSandbox(std::string_view sandbox_id) const;
  Side ForContainer(std::string_view container_id) const;
  // The side that ran the sandbox this config describes (kubelet pulls a
  // Pod's images after RunPodSandbox): ours when our store has a sandbox with
  // the same metadata, else the upstream.
  Side ForSandboxConfig(const pb::PodSandboxConfig& config) const;

  // The full IDs of our live sandbox `sandbox_id` (ID or unambiguous prefix)
  // and of its containers, sandbox first; empty when the store has no such
  // sandbox.
  std::vector<std::string> LiveSandboxAndContainerIds(std::string_view sandbox_id) const;
  // The full ID of our live container `container_id`, or empty.
  std::string LiveContainerId(std::string_view container_id) const;
  // The full ID of our live sandbox `sandbox_id`, or empty.
  std::string LiveSandboxId(std::string_view sandbox_id) const;

 private:
  const config::Config* config_;
  const sandbox::SandboxStore* store_;
  const Tombstones* removed_;
};

// runtime.v1.RuntimeService in front of both runtimes: our VM service (called
// directly, no extra hop) and the upstream's (one gRPC hop). See docs/node.md.
class RouterRuntimeService final : public pb::RuntimeService::Service {
 public:
  // `removed` is the Tombstones `sides` reads: successful local removals are
  // recorded there. `events` is the hub our side's GetContainerEvents
  // serves from (null: GetContainerEvents is UNIMPLEMENTED).
  RouterRuntimeService(pb::RuntimeService::Service* local, SideResolver sides, UpstreamClient* upstream,
                       Tombstones* removed, ContainerEventHub* events = nullptr);

  grpc::Status Version(grpc::ServerContext*, const pb::VersionRequest*, pb::VersionResponse*) override;
  grpc::Status Status(grpc::ServerContext*, const pb::StatusRequest*, pb::StatusResponse*) override;
  grpc::Status UpdateRuntimeConfig(grpc::ServerContext*, const pb::UpdateRuntimeConfigRequest*,
                                   pb::UpdateRuntimeConfigResponse*) override;
  grpc::Status RuntimeConfig(grpc::ServerContext*, const pb::RuntimeConfigRequest*,
                             pb::RuntimeConfigResponse*) override;

  grpc::Status RunPodSandbox(grpc::ServerContext*, const pb::RunPodSandboxRequest*, pb::RunPodSandboxResponse*) override;
  grpc::Status StopPodSandbox(grpc::ServerContext*, const pb::StopPodSandboxRequest*, pb::StopPodSandboxResponse*) override;
  grpc::Status RemovePodSandbox(grpc::ServerContext*, const pb::RemovePodSandboxRequest*, pb::RemovePodSandboxResponse*) override;
  grpc::Status PodSandboxStatus(grpc::ServerContext*, const pb::PodSandboxStatusRequest*, pb::PodSandboxStatusResponse*) override;
  grpc::Status ListPodSandbox(grpc::ServerContext*, const pb::ListPodSandboxRequest*, pb::ListPodSandboxResponse*) override;

  grpc::Status CreateContainer(grpc::ServerContext*, const pb::CreateContainerRequest*, pb::CreateContainerResponse*) override;
  grpc::Status StartContainer(grpc::ServerContext*, const pb::StartContainerRequest*, pb::StartContainerResponse*) override;
  grpc::Status StopContainer(grpc::ServerContext*, const pb::StopContainerRequest*, pb::StopContainerResponse*) override;
  grpc::Status RemoveContainer(grpc::ServerContext*, const pb::RemoveContainerRequest*, pb::RemoveContainerResponse*) override;
  grpc::Status ListContainers(grpc::ServerContext*, const pb::ListContainersRequest*, pb::ListContainersResponse*) override;
  grpc::Status ContainerStatus(grpc::ServerContext*, const pb::ContainerStatusRequest*, pb::ContainerStatusResponse*) override;
  grpc::Status UpdateContainerResources(grpc::ServerContext*, const pb::UpdateContainerResourcesRequest*,
                                        pb::UpdateContainerResourcesResponse*) override;
  grpc::Status ReopenContainerLog(grpc::ServerContext*, const pb::ReopenContainerLogRequest*,
                                  pb::ReopenContainerLogResponse*) override;
  grpc::Status ExecSync(grpc::ServerContext*, const pb::ExecSyncRequest*, pb::ExecSyncResponse*) override;
  grpc::Status Exec(grpc::ServerContext*, const pb::ExecRequest*, pb::ExecResponse*) override;
  grpc::Status Attach(grpc::ServerContext*, const pb::AttachRequest*, pb::AttachResponse*) override;
  grpc::Status PortForward(grpc::ServerContext*, const pb::PortForwardRequest*, pb::PortForwardResponse*) override;
  grpc::Status ContainerStats(grpc::ServerContext*, const pb::ContainerStatsRequest*, pb::ContainerStatsResponse*) override;
  grpc::Status ListContainerStats(grpc::ServerContext*, const pb::ListContainerStatsRequest*,
                                  pb::ListContainerStatsResponse*) override;
  grpc::Status PodSandboxStats(grpc::ServerContext*, const pb::PodSandboxStatsRequest*, pb::PodSandboxStatsResponse*) override;
  grpc::Status ListPodSandboxStats(grpc::ServerContext*, const pb::ListPodSandboxStatsRequest*,
                                   pb::ListPodSandboxStatsResponse*) override;
  grpc::Status CheckpointContainer(grpc::ServerContext*, const pb::CheckpointContainerRequest*,
                                   pb::CheckpointContainerResponse*) override;
  // Our events and the upstream's on one stream (see the .cc).
  grpc::Status GetContainerEvents(grpc::ServerContext*, const pb::GetEventsRequest*,
                                  grpc::ServerWriter<pb::ContainerEventResponse>*) override;
  grpc::Status ListMetricDescriptors(grpc::ServerContext*, const pb::ListMetricDescriptorsRequest*,
                                     pb::ListMetricDescriptorsResponse*) override;
  grpc::Status ListPodSandboxMetrics(grpc::ServerContext*, const pb::ListPodSandboxMetricsRequest*,
                                     pb::ListPodSandboxMetricsResponse*) override;

 private:
  using Local = pb::RuntimeService::Service;
  using Stub = pb::RuntimeService::StubInterface;

  // One call to the side that owns it.
  template <typename Req, typename Resp>
  grpc::Status Route(Side side, std::string_view rpc, grpc::ServerContext* ctx, const Req* req, Resp* resp,
                     grpc::Status (Local::*local)(grpc::ServerContext*, const Req*, Resp*),
                     grpc::Status (Stub::*remote)(grpc::ClientContext*, const Req&, Resp*));
  // Whether a call about an ID acts (Stop, Remove, Exec, ...) or only reads.
  enum class Use { kRead, kAct };
  // The side of a call about sandbox/container `id`. When `id` is a proper
  // prefix of one of our IDs, the upstream is asked whether it also holds a
  // match (its Status call with the prefix): if so, the prefix is ambiguous
  // and the call goes nowhere (INVALID_ARGUMENT naming both sides). While the
  // upstream cannot answer, a read stays ours, an action is refused
  // (UNAVAILABLE): the prefix may have meant one of its Pods.
  absl::StatusOr<Side> SandboxSide(grpc::ServerContext* ctx, std::string_view id, Use use);
  absl::StatusOr<Side> ContainerSide(grpc::ServerContext* ctx, std::string_view id, Use use);
  // The ambiguity check above, for a local `full_id` that `id` is a prefix of.
  absl::Status CheckPrefixNotUpstream(std::string_view what, std::string_view id, const std::string& full_id,
                                      const grpc::Status& upstream_answer, Use use);
  // Route() to the side of a sandbox or container ID; a refused ID answers
  // the refusal and reaches neither side.
  template <typename Req, typename Resp>
  grpc::Status RouteSandbox(std::string_view id, Use use, std::string_view rpc, grpc::ServerContext* ctx,
                            const Req* req, Resp* resp,
                            grpc::Status (Local::*local)(grpc::ServerContext*, const Req*, Resp*),
                            grpc::Status (Stub::*remote)(grpc::ClientContext*, const Req&, Resp*));
  template <typename Req, typename Resp>
  grpc::Status RouteContainer(std::string_view id, Use use, std::string_view rpc, grpc::ServerContext* ctx,
                              const Req* req, Resp* resp,
                              grpc::Status (Local::*local)(grpc::ServerContext*, const Req*, Resp*),
                              grpc::Status (Stub::*remote)(grpc::ClientContext*, const Req&, Resp*));
  // A List*: both sides with the same request (filters included), the
  // upstream's items appended to ours. A down or failing upstream leaves its
  // part out (logged); UNIMPLEMENTED on one side counts as an empty part.
  // A failing VM side fails the call (kStrict: kubelet must not take a
  // partial ListPodSandbox for the truth), or, for stats and metrics
  // (kEitherSide), is logged and the upstream's part answered alone.
  enum class MergeMode { kStrict, kEitherSide };
  template <typename Req, typename Resp>
  grpc::Status Merge(std::string_view rpc, grpc::ServerContext* ctx, const Req* req, Resp* resp,
                     grpc::Status (Local::*local)(grpc::ServerContext*, const Req*, Resp*),
                     grpc::Status (Stub::*remote)(grpc::ClientContext*, const Req&, Resp*),
                     MergeMode mode = MergeMode::kStrict);

  Local* local_;
  SideResolver sides_;
  UpstreamClient* upstream_;
  Tombstones* removed_;
  ContainerEventHub* events_;
};

}  // namespace kvcri::cri
