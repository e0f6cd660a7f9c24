// RuntimeService in front of our VM runtime and the upstream container runtime.
#include "cri/router_runtime_service.h"

#include <algorithm>
#include <set>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "config/base/log.h"

#include "config/base/status_macros.h"
#include "config/base/str.h"
#include "config/base/log.h"
#include "cri/grpc_status.h"
#include "cri/rpc_metrics.h"

namespace kvcri::cri {

using base::StrCat;

Side SideResolver::ForHandler(std::string_view runtime_handler) const {
  const auto& vm = config_->runtime.vm_handlers;
  return std::find(vm.begin(), vm.end(), runtime_handler) != vm.end() ? Side::kLocal : Side::kUpstream;
}

// NotFound is the only answer that means "not ours": an empty or ambiguous
// ID stays here so that our validation names it. A tombstoned ID stays here
// too: our side answers as CRI says for an unknown ID (Stop/Remove OK, Status
// NOT_FOUND, List empty) whether or not the upstream is up.
Side SideResolver::ForSandbox(std::string_view sandbox_id) const {
  if (!absl::IsNotFound(store_->ResolveSandboxId(sandbox_id).status())) return Side::kLocal;
  return removed_->Contains(sandbox_id) ? Side::kLocal : Side::kUpstream;
}

Side SideResolver::ForContainer(std::string_view container_id) const {
  if (!absl::IsNotFound(store_->ResolveContainerId(container_id).status())) return Side::kLocal;
  return removed_->Contains(container_id) ? Side::kLocal : Side::kUpstream;
}

Side SideResolver::ForSandboxConfig(const pb::PodSandboxConfig& config) const {
  const pb::PodSandboxMetadata& m = config.metadata();
  if (m.uid().empty()) return Side::kUpstream;
  std::vector<sandbox::SandboxRecord> ours = store_->ListSandboxes([&](const sandbox::SandboxRecord& r) {
    return r.metadata.uid == m.uid() && r.metadata.name == m.name() && r.metadata.namespace_ == m.namespace_();
  });
  return ours.empty() ? Side::kUpstream : Side::kLocal;
}

std::vector<std::string> SideResolver::LiveSandboxAndContainerIds(std::string_view sandbox_id) const {
  absl::StatusOr<std::string> id = store_->ResolveSandboxId(sandbox_id);
  if (!id.ok()) return {};
  std::vector<std::string> ids = {*id};
  for (const sandbox::ContainerRecord& c :
       store_->ListContainers([&](const sandbox::ContainerRecord& r) { return r.sandbox_id == *id; })) {
    ids.push_back(c.id);
  }
  return ids;
}

std::string SideResolver::LiveContainerId(std::string_view container_id) const {
  absl::StatusOr<std::string> id = store_->ResolveContainerId(container_id);
  return id.ok() ? *id : std::string();
}

std::string SideResolver::LiveSandboxId(std::string_view sandbox_id) const {
  absl::StatusOr<std::string> id = store_->ResolveSandboxId(sandbox_id);
  return id.ok() ? *id : std::string();
}

RouterRuntimeService::RouterRuntimeService(Local* local, SideResolver sides, UpstreamClient* upstream,
                                           Tombstones* removed, ContainerEventHub* events)
    : local_(local), sides_(sides), upstream_(upstream), removed_(removed), events_(events) {}

template <typename Req, typename Resp>
grpc::Status RouterRuntimeService::Route(Side side, std::string_view rpc, grpc::ServerContext* ctx, const Req* req,
                                         Resp* resp,
                                         grpc::Status (Local::*local)(grpc::ServerContext*, const Req*, Resp*),
                                         grpc::Status (Stub::*remote)(grpc::ClientContext*, const Req&, Resp*)) {
  if (side == Side::kLocal) return (local_->*local)(ctx, req, resp);
  return upstream_->Call(upstream_->runtime(), remote, rpc, ctx, *req, resp);
}

absl::Status RouterRuntimeService::CheckPrefixNotUpstream(std::string_view what, std::string_view id,
                                                          const std::string& full_id,
                                                          const grpc::Status& upstream_answer, Use use) {
  switch (upstream_answer.error_code()) {
    case grpc::StatusCode::NOT_FOUND:
      return absl::OkStatus();  // only ours matches
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      if (use == Use::kRead) return absl::OkStatus();
      return absl::UnavailableError(StrCat(what, " ID prefix \"", id, "\" matches VM ", what, " \"", full_id,
                                           "\", but the upstream runtime \"", upstream_->endpoint(),
                                           "\" cannot say whether it holds a match too (",
                                           upstream_answer.error_message(), "); give the full ID"));
    default:
      // OK (one match there) or an error such as containerd's "multiple IDs
      // found with provided prefix": the upstream holds a match as well.
      return absl::InvalidArgumentError(StrCat(what, " ID prefix \"", id, "\" is ambiguous: it matches VM ", what,
                                               " \"", full_id, "\" and a ", what, " of the upstream runtime \"",
                                               upstream_->endpoint(), "\"; give more characters or the full ID"));
  }
}

absl::StatusOr<Side> RouterRuntimeService::SandboxSide(grpc::ServerContext* ctx, std::string_view id, Use use) {
  const Side side = sides_.ForSandbox(id);
  if (side != Side::kLocal) return side;
  const std::string full = sides_.LiveSandboxId(id);
  if (full.empty() || full == id) return side;  // tombstone, error for our validation, or an exact ID
  pb::PodSandboxStatusRequest req;
  req.set_pod_sandbox_id(std::string(id));
  pb::PodSandboxStatusResponse resp;
  grpc::Status up = upstream_->Call(upstream_->runtime(), &Stub::PodSandboxStatus, "PodSandboxStatus", ctx, req, &resp);
  RETURN_IF_ERROR(CheckPrefixNotUpstream("sandbox", id, full, up, use));
  return side;
}

absl::StatusOr<Side> RouterRuntimeService::ContainerSide(grpc::ServerContext* ctx, std::string_view id, Use use) {
  const Side side = sides_.ForContainer(id);
  if (side != Side::kLocal) return side;
  const std::string full = sides_.LiveContainerId(id);
  if (full.empty() || full == id) return side;
  pb::ContainerStatusRequest req;
  req.set_container_id(std::string(id));
  pb::ContainerStatusResponse resp;
  grpc::Status up = upstream_->Call(upstream_->runtime(), &Stub::ContainerStatus, "ContainerStatus", ctx, req, &resp);
  RETURN_IF_ERROR(CheckPrefixNotUpstream("container", id, full, up, use));
  return side;
}

template <typename Req, typename Resp>
grpc::Status RouterRuntimeService::RouteSandbox(std::string_view id, Use use, std::string_view rpc,
                                                grpc::ServerContext* ctx, const Req* req, Resp* resp,
                                                grpc::Status (Local::*local)(grpc::ServerContext*, const Req*, Resp*),
                                                grpc::Status (Stub::*remote)(grpc::ClientContext*, const Req&, Resp*)) {
  absl::StatusOr<Side> side = SandboxSide(ctx, id, use);
  if (!side.ok()) return ToGrpc(side.status());
  return Route(*side, rpc, ctx, req, resp, local, remote);
}

template <typename Req, typename Resp>
grpc::Status RouterRuntimeService::RouteContainer(std::string_view id, Use use, std::string_view rpc,
                                                  grpc::ServerContext* ctx, const Req* req, Resp* resp,
                                                  grpc::Status (Local::*local)(grpc::ServerContext*, const Req*, Resp*),
                                                  grpc::Status (Stub::*remote)(grpc::ClientContext*, const Req&,
                                                                               Resp*)) {
  absl::StatusOr<Side> side = ContainerSide(ctx, id, use);
  if (!side.ok()) return ToGrpc(side.status());
  return Route(*side, rpc, ctx, req, resp, local, remote);
}

template <typename Req, typename Resp>
grpc::Status RouterRuntimeService::Merge(std::string_view rpc, grpc::ServerContext* ctx, const Req* req, Resp* resp,
                                         grpc::Status (Local::*local)(grpc::ServerContext*, const Req*, Resp*),
                                         grpc::Status (Stub::*remote)(grpc::ClientContext*, const Req&, Resp*),
                                         MergeMode mode) {
  grpc::Status ours = (local_->*local)(ctx, req, resp);
  if (!ours.ok() && ours.error_code() != grpc::StatusCode::UNIMPLEMENTED) {
    if (mode == MergeMode::kStrict) return ours;
    base::LogWarn("VM side of a merged call failed; answering the upstream's part alone",
                  {{"rpc", std::string(rpc)}, {"code", GrpcCodeName(ours.error_code())},
                   {"error", ours.error_message()}});
  }
  if (!ours.ok()) resp->Clear();
  Resp theirs;
  std::unique_ptr<grpc::ClientContext> uctx = upstream_->Merged(ctx);
  grpc::Status up = upstream_->Annotate((upstream_->runtime().*remote)(uctx.get(), *req, &theirs), rpc);
  if (up.ok()) {
    resp->MergeFrom(theirs);
    return grpc::Status::OK;
  }
  // Neither side serves it, or only the upstream does and it is down.
  if (!ours.ok()) return up.error_code() == grpc::StatusCode::UNIMPLEMENTED ? ours : up;
  return grpc::Status::OK;
}

grpc::Status RouterRuntimeService::Version(grpc::ServerContext* ctx, const pb::VersionRequest* req,
                                           pb::VersionResponse* resp) {
  return local_->Version(ctx, req, resp);
}

namespace {

pb::RuntimeCondition* FindCondition(pb::StatusResponse* resp, std::string_view type) {
  for (pb::RuntimeCondition& c : *resp->mutable_status()->mutable_conditions()) {
    if (c.type() == type) return &c;
  }
  return nullptr;
}

}  // namespace

// Conditions both runtimes report (RuntimeReady, NetworkReady) are true only
// when both say so, while the upstream answers. A down upstream does not make
// the node NotReady — the VM Pods do not depend on it — but adds
// UpstreamReady=false naming the endpoint; kubelet only gates on the first two.
grpc::Status RouterRuntimeService::Status(grpc::ServerContext* ctx, const pb::StatusRequest* req,
                                          pb::StatusResponse* resp) {
  grpc::Status ours = local_->Status(ctx, req, resp);
  if (!ours.ok()) return ours;
  pb::StatusResponse theirs;
  std::unique_ptr<grpc::ClientContext> uctx = upstream_->Merged(ctx);
  grpc::Status up = upstream_->Annotate(upstream_->runtime().Status(uctx.get(), *req, &theirs), "Status");
  pb::RuntimeCondition upstream_ready;
  upstream_ready.set_type("UpstreamReady");
  if (!up.ok()) {
    upstream_ready.set_status(false);
    upstream_ready.set_reason("UpstreamUnavailable");
    upstream_ready.set_message(up.error_message());
    *resp->mutable_status()->add_conditions() = upstream_ready;
    return grpc::Status::OK;
  }
  upstream_ready.set_status(true);
  for (const pb::RuntimeCondition& c : theirs.status().conditions()) {
    pb::RuntimeCondition* mine = FindCondition(resp, c.type());
    if (mine == nullptr) {
      *resp->mutable_status()->add_conditions() = c;
      continue;
    }
    if (c.status()) continue;
    const std::string theirs_text = StrCat("upstream \"", upstream_->endpoint(), "\": ", c.reason(),
                                           c.message().empty() ? "" : ": ", c.message());
    if (mine->status()) {
      mine->set_status(false);
      mine->set_reason(StrCat("Upstream", c.reason()));
      mine->set_message(theirs_text);
    } else {
      mine->set_message(StrCat(mine->message(), "; ", theirs_text));
    }
  }
  *resp->mutable_status()->add_conditions() = upstream_ready;
  for (const pb::RuntimeHandler& h : theirs.runtime_handlers()) {
    const auto& have = resp->runtime_handlers();
    if (std::none_of(have.begin(), have.end(), [&](const pb::RuntimeHandler& x) { return x.name() == h.name(); })) {
      *resp->add_runtime_handlers() = h;
    }
  }
  for (const auto& [key, value] : theirs.info()) (*resp->mutable_info())[StrCat("upstream.", key)] = value;
  return grpc::Status::OK;
}

grpc::Status RouterRuntimeService::UpdateRuntimeConfig(grpc::ServerContext* ctx,
                                                       const pb::UpdateRuntimeConfigRequest* req,
                                                       pb::UpdateRuntimeConfigResponse* resp) {
  grpc::Status ours = local_->UpdateRuntimeConfig(ctx, req, resp);
  if (!ours.ok()) return ours;
  return upstream_->Call(upstream_->runtime(), &Stub::UpdateRuntimeConfig, "UpdateRuntimeConfig", ctx, *req, resp);
}

// The cgroup driver kubelet asks for is the container runtime's; VMs do not
// care. While the upstream is down, ours answers (UNIMPLEMENTED: kubelet
// falls back to its own setting).
grpc::Status RouterRuntimeService::RuntimeConfig(grpc::ServerContext* ctx, const pb::RuntimeConfigRequest* req,
                                                 pb::RuntimeConfigResponse* resp) {
  grpc::Status up = upstream_->Call(upstream_->runtime(), &Stub::RuntimeConfig, "RuntimeConfig", ctx, *req, resp);
  if (up.ok()) return up;
  resp->Clear();
  return local_->RuntimeConfig(ctx, req, resp);
}

grpc::Status RouterRuntimeService::RunPodSandbox(grpc::ServerContext* ctx, const pb::RunPodSandboxRequest* req,
                                                 pb::RunPodSandboxResponse* resp) {
  return Route(sides_.ForHandler(req->runtime_handler()), "RunPodSandbox", ctx, req, resp, &Local::RunPodSandbox,
               &Stub::RunPodSandbox);
}

grpc::Status RouterRuntimeService::StopPodSandbox(grpc::ServerContext* ctx, const pb::StopPodSandboxRequest* req,
                                                  pb::StopPodSandboxResponse* resp) {
  return RouteSandbox(req->pod_sandbox_id(), Use::kAct, "StopPodSandbox", ctx, req, resp, &Local::StopPodSandbox,
                      &Stub::StopPodSandbox);
}

// Our removals are tombstoned (see Tombstones). Before the call, because a
// concurrent call about the IDs must not go upstream in the moment between
// our store forgetting them and the tombstone, and because afterwards the
// store no longer knows the sandbox's containers. A tombstone of a removal
// that fails changes nothing: the record is still in the store, which keeps
// the ID ours anyway. Again after success, so the TTL counts from the end of
// a removal that had to stop a VM first.
grpc::Status RouterRuntimeService::RemovePodSandbox(grpc::ServerContext* ctx, const pb::RemovePodSandboxRequest* req,
                                                    pb::RemovePodSandboxResponse* resp) {
  absl::StatusOr<Side> side = SandboxSide(ctx, req->pod_sandbox_id(), Use::kAct);
  if (!side.ok()) return ToGrpc(side.status());
  if (*side == Side::kUpstream) {
    return upstream_->Call(upstream_->runtime(), &Stub::RemovePodSandbox, "RemovePodSandbox", ctx, *req, resp);
  }
  const std::vector<std::string> ids = sides_.LiveSandboxAndContainerIds(req->pod_sandbox_id());
  for (const std::string& id : ids) removed_->Add(id);
  grpc::Status s = local_->RemovePodSandbox(ctx, req, resp);
  if (s.ok()) {
    for (const std::string& id : ids) removed_->Add(id);
  }
  return s;
}

grpc::Status RouterRuntimeService::PodSandboxStatus(grpc::ServerContext* ctx, const pb::PodSandboxStatusRequest* req,
                                                    pb::PodSandboxStatusResponse* resp) {
  return RouteSandbox(req->pod_sandbox_id(), Use::kRead, "PodSandboxStatus", ctx, req, resp, &Local::PodSandboxStatus,
                      &Stub::PodSandboxStatus);
}

grpc::Status RouterRuntimeService::ListPodSandbox(grpc::ServerContext* ctx, const pb::ListPodSandboxRequest* req,
                                                  pb::ListPodSandboxResponse* resp) {
  if (!req->filter().id().empty()) {
    return RouteSandbox(req->filter().id(), Use::kRead, "ListPodSandbox", ctx, req, resp, &Local::ListPodSandbox,
                        &Stub::ListPodSandbox);
  }
  return Merge("ListPodSandbox", ctx, req, resp, &Local::ListPodSandbox, &Stub::ListPodSandbox);
}

grpc::Status RouterRuntimeService::CreateContainer(grpc::ServerContext* ctx, const pb::CreateContainerRequest* req,
                                                   pb::CreateContainerResponse* resp) {
  return RouteSandbox(req->pod_sandbox_id(), Use::kAct, "CreateContainer", ctx, req, resp, &Local::CreateContainer,
                      &Stub::CreateContainer);
}

grpc::Status RouterRuntimeService::StartContainer(grpc::ServerContext* ctx, const pb::StartContainerRequest* req,
                                                  pb::StartContainerResponse* resp) {
  return RouteContainer(req->container_id(), Use::kAct, "StartContainer", ctx, req, resp, &Local::StartContainer,
                        &Stub::StartContainer);
}

grpc::Status RouterRuntimeService::StopContainer(grpc::ServerContext* ctx, const pb::StopContainerRequest* req,
                                                 pb::StopContainerResponse* resp) {
  return RouteContainer(req->container_id(), Use::kAct, "StopContainer", ctx, req, resp, &Local::StopContainer,
                        &Stub::StopContainer);
}

// Tombstoned before and after the call, as in RemovePodSandbox.
grpc::Status RouterRuntimeService::RemoveContainer(grpc::ServerContext* ctx, const pb::RemoveContainerRequest* req,
                                                   pb::RemoveContainerResponse* resp) {
  absl::StatusOr<Side> side = ContainerSide(ctx, req->container_id(), Use::kAct);
  if (!side.ok()) return ToGrpc(side.status());
  if (*side == Side::kUpstream) {
    return upstream_->Call(upstream_->runtime(), &Stub::RemoveContainer, "RemoveContainer", ctx, *req, resp);
  }
  const std::string id = sides_.LiveContainerId(req->container_id());
  if (!id.empty()) removed_->Add(id);
  grpc::Status s = local_->RemoveContainer(ctx, req, resp);
  if (s.ok() && !id.empty()) removed_->Add(id);
  return s;
}

grpc::Status RouterRuntimeService::ListContainers(grpc::ServerContext* ctx, const pb::ListContainersRequest* req,
                                                  pb::ListContainersResponse* resp) {
  if (!req->filter().id().empty()) {
    return RouteContainer(req->filter().id(), Use::kRead, "ListContainers", ctx, req, resp, &Local::ListContainers,
                          &Stub::ListContainers);
  }
  if (!req->filter().pod_sandbox_id().empty()) {
    return RouteSandbox(req->filter().pod_sandbox_id(), Use::kRead, "ListContainers", ctx, req, resp,
                        &Local::ListContainers, &Stub::ListContainers);
  }
  return Merge("ListContainers", ctx, req, resp, &Local::ListContainers, &Stub::ListContainers);
}

grpc::Status RouterRuntimeService::ContainerStatus(grpc::ServerContext* ctx, const pb::ContainerStatusRequest* req,
                                                   pb::ContainerStatusResponse* resp) {
  return RouteContainer(req->container_id(), Use::kRead, "ContainerStatus", ctx, req, resp, &Local::ContainerStatus,
                        &Stub::ContainerStatus);
}

grpc::Status RouterRuntimeService::UpdateContainerResources(grpc::ServerContext* ctx,
                                                            const pb::UpdateContainerResourcesRequest* req,
                                                            pb::UpdateContainerResourcesResponse* resp) {
  return RouteContainer(req->container_id(), Use::kAct, "UpdateContainerResources", ctx, req, resp,
                        &Local::UpdateContainerResources, &Stub::UpdateContainerResources);
}

grpc::Status RouterRuntimeService::ReopenContainerLog(grpc::ServerContext* ctx,
                                                      const pb::ReopenContainerLogRequest* req,
                                                      pb::ReopenContainerLogResponse* resp) {
  return RouteContainer(req->container_id(), Use::kAct, "ReopenContainerLog", ctx, req, resp,
                        &Local::ReopenContainerLog, &Stub::ReopenContainerLog);
}

grpc::Status RouterRuntimeService::ExecSync(grpc::ServerContext* ctx, const pb::ExecSyncRequest* req,
                                            pb::ExecSyncResponse* resp) {
  return RouteContainer(req->container_id(), Use::kAct, "ExecSync", ctx, req, resp, &Local::ExecSync, &Stub::ExecSync);
}

// Streaming calls answer with a URL; kubelet then streams from whichever
// runtime's streaming server that URL names, not through us.
grpc::Status RouterRuntimeService::Exec(grpc::ServerContext* ctx, const pb::ExecRequest* req,
                                        pb::ExecResponse* resp) {
  return RouteContainer(req->container_id(), Use::kAct, "Exec", ctx, req, resp, &Local::Exec, &Stub::Exec);
}

grpc::Status RouterRuntimeService::Attach(grpc::ServerContext* ctx, const pb::AttachRequest* req,
                                          pb::AttachResponse* resp) {
  return RouteContainer(req->container_id(), Use::kAct, "Attach", ctx, req, resp, &Local::Attach, &Stub::Attach);
}

grpc::Status RouterRuntimeService::PortForward(grpc::ServerContext* ctx, const pb::PortForwardRequest* req,
                                               pb::PortForwardResponse* resp) {
  return RouteSandbox(req->pod_sandbox_id(), Use::kAct, "PortForward", ctx, req, resp, &Local::PortForward,
                      &Stub::PortForward);
}

grpc::Status RouterRuntimeService::ContainerStats(grpc::ServerContext* ctx, const pb::ContainerStatsRequest* req,
                                                  pb::ContainerStatsResponse* resp) {
  return RouteContainer(req->container_id(), Use::kRead, "ContainerStats", ctx, req, resp, &Local::ContainerStats,
                        &Stub::ContainerStats);
}

grpc::Status RouterRuntimeService::ListContainerStats(grpc::ServerContext* ctx,
                                                      const pb::ListContainerStatsRequest* req,
                                                      pb::ListContainerStatsResponse* resp) {
  if (!req->filter().id().empty()) {
    return RouteContainer(req->filter().id(), Use::kRead, "ListContainerStats", ctx, req, resp,
                          &Local::ListContainerStats, &Stub::ListContainerStats);
  }
  if (!req->filter().pod_sandbox_id().empty()) {
    return RouteSandbox(req->filter().pod_sandbox_id(), Use::kRead, "ListContainerStats", ctx, req, resp,
                        &Local::ListContainerStats, &Stub::ListContainerStats);
  }
  return Merge("ListContainerStats", ctx, req, resp, &Local::ListContainerStats, &Stub::ListContainerStats,
               MergeMode::kEitherSide);
}

grpc::Status RouterRuntimeService::PodSandboxStats(grpc::ServerContext* ctx, const pb::PodSandboxStatsRequest* req,
                                                   pb::PodSandboxStatsResponse* resp) {
  return RouteSandbox(req->pod_sandbox_id(), Use::kRead, "PodSandboxStats", ctx, req, resp, &Local::PodSandboxStats,
                      &Stub::PodSandboxStats);
}

grpc::Status RouterRuntimeService::ListPodSandboxStats(grpc::ServerContext* ctx,
                                                       const pb::ListPodSandboxStatsRequest* req,
                                                       pb::ListPodSandboxStatsResponse* resp) {
  if (!req->filter().id().empty()) {
    return RouteSandbox(req->filter().id(), Use::kRead, "ListPodSandboxStats", ctx, req, resp,
                        &Local::ListPodSandboxStats, &Stub::ListPodSandboxStats);
  }
  return Merge("ListPodSandboxStats", ctx, req, resp, &Local::ListPodSandboxStats, &Stub::ListPodSandboxStats,
               MergeMode::kEitherSide);
}

grpc::Status RouterRuntimeService::CheckpointContainer(grpc::ServerContext* ctx,
                                                       const pb::CheckpointContainerRequest* req,
                                                       pb::CheckpointContainerResponse* resp) {
  return RouteContainer(req->container_id(), Use::kAct, "CheckpointContainer", ctx, req, resp,
                        &Local::CheckpointContainer, &Stub::CheckpointContainer);
}

namespace {

// The upstream half of a merged GetContainerEvents: a thread reading the
// upstream's stream into the subscriber's queue (bounded like our own
// events), so the caller's thread stays the stream's only writer. The
// upstream failing or restarting does not end our events: the thread
// subscribes again every second, except after UNIMPLEMENTED (containerd 1.6
// has no GetContainerEvents), where our events alone are the stream. Events
// the upstream sent while it was disconnected are lost to this stream;
// kubelet's fallback relist covers them. Destroying it cancels the upstream
// call and joins the thread.
class UpstreamEventPump {
 public:
  UpstreamEventPump(UpstreamClient* upstream, ContainerEventHub::Subscription* sub)
      : upstream_(upstream), sub_(sub), thread_([this] { Run(); }) {}
  ~UpstreamEventPump() {
    {
      absl::MutexLock l(&mu_);
      stop_ = true;
      if (call_ != nullptr) call_->TryCancel();
    }
    thread_.join();
  }
  UpstreamEventPump(const UpstreamEventPump&) = delete;
  UpstreamEventPump& operator=(const UpstreamEventPump&) = delete;

 private:
  void Run() {
    bool said_down = false;  // logged once per outage, not per retry
    while (true) {
      grpc::ClientContext call;
      {
        absl::MutexLock l(&mu_);
        if (stop_) return;
        call_ = &call;
      }
      std::unique_ptr<grpc::ClientReaderInterface<pb::ContainerEventResponse>> reader =
          upstream_->runtime().GetContainerEvents(&call, pb::GetEventsRequest());
      pb::ContainerEventResponse ev;
      bool got = false;
      while (reader->Read(&ev)) {
        got = true;
        sub_->Offer(ev);
      }
      grpc::Status s = reader->Finish();
      absl::MutexLock l(&mu_);
      call_ = nullptr;
      if (stop_) return;
      if (s.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
        base::LogInfo("upstream runtime has no GetContainerEvents; the event stream carries VM Pods only",
                      {{"endpoint", upstream_->endpoint()}});
        return;
      }
      upstream_->Observe(s, "GetContainerEvents");
      if (got) said_down = false;
      if (!said_down) {
        base::LogWarn("upstream container event stream ended; subscribing again every second",
                      {{"endpoint", upstream_->endpoint()}, {"error", s.error_message()}});
        said_down = true;
      }
      mu_.AwaitWithTimeout(absl::Condition(&stop_), absl::Seconds(1));
      if (stop_) return;
    }
  }

  UpstreamClient* const upstream_;
  ContainerEventHub::Subscription* const sub_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* call_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::thread thread_;  // last: starts once the members above exist
};

}  // namespace

// One subscription holds both sides' events; this thread writes them all.
// The client's cancel (or the hub closing at shutdown) ends the loop, and
// the pump's destructor then cancels the upstream call.
grpc::Status RouterRuntimeService::GetContainerEvents(grpc::ServerContext* ctx, const pb::GetEventsRequest*,
                                                      grpc::ServerWriter<pb::ContainerEventResponse>* writer) {
  if (events_ == nullptr) return Unimplemented("GetContainerEvents");
  std::unique_ptr<ContainerEventHub::Subscription> sub = events_->Subscribe(ctx->peer());
  if (sub == nullptr) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "GetContainerEvents: the runtime is shutting down");
  }
  UpstreamEventPump upstream(upstream_, sub.get());
  return ServeContainerEvents(ctx, writer, sub.get());
}

grpc::Status RouterRuntimeService::ListMetricDescriptors(grpc::ServerContext* ctx,
                                                         const pb::ListMetricDescriptorsRequest* req,
                                                         pb::ListMetricDescriptorsResponse* resp) {
  grpc::Status s = Merge("ListMetricDescriptors", ctx, req, resp, &Local::ListMetricDescriptors,
                         &Stub::ListMetricDescriptors, MergeMode::kEitherSide);
  // kubelet keys descriptors by name: both runtimes describe the cAdvisor
  // metrics, and ours come first, so a name the upstream repeats is dropped.
  std::set<std::string> seen;
  auto* d = resp->mutable_descriptors();
  d->erase(std::remove_if(d->begin(), d->end(), [&](const pb::MetricDescriptor& m) { return !seen.insert(m.name()).second; }),
           d->end());
  return s;
}

grpc::Status RouterRuntimeService::ListPodSandboxMetrics(grpc::ServerContext* ctx,
                                                         const pb::ListPodSandboxMetricsRequest* req,
                                                         pb::ListPodSandboxMetricsResponse* resp) {
  return Merge("ListPodSandboxMetrics", ctx, req, resp, &Local::ListPodSandboxMetrics, &Stub::ListPodSandboxMetrics,
               MergeMode::kEitherSide);
}

}  // namespace kvcri::cri
