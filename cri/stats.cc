// ContainerStats, ListContainerStats, PodSandboxStats, ListPodSandboxStats and the CRI metrics calls.
#include "absl/container/flat_hash_set.h"
#include "absl/time/clock.h"
#include "config/base/metrics.h"
#include "config/base/str.h"
#include "cri/filters.h"
#include "cri/grpc_status.h"
#include "cri/runtime_service.h"
#include "cri/stats_convert.h"
#include "cri/validate.h"

namespace kvcri::cri {
namespace {

using base::StrCat;

// Observes how long one call spent collecting, in
// kvcri_stats_collection_duration_seconds{rpc}.
class CollectionTimer {
 public:
  CollectionTimer(base::MetricFamily* family, const char* rpc) : family_(family), rpc_(rpc) {}
  ~CollectionTimer() {
    if (family_ != nullptr) family_->Observe({rpc_}, absl::ToDoubleSeconds(absl::Now() - start_));
  }

 private:
  base::MetricFamily* const family_;
  const char* const rpc_;
  const absl::Time start_ = absl::Now();
};

std::vector<sandbox::ContainerRecord> ContainersOf(const sandbox::SandboxStore& store, const std::string& sandbox_id) {
  return store.ListContainers([&](const sandbox::ContainerRecord& r) { return r.sandbox_id == sandbox_id; });
}

// Every ID the store holds: what the collector's CPU samples may keep.
absl::flat_hash_set<std::string> LiveIds(const sandbox::SandboxStore& store) {
  absl::flat_hash_set<std::string> ids;
  store.ListSandboxes([&](const sandbox::SandboxRecord& r) {
    ids.insert(r.id);
    return false;
  });
  store.ListContainers([&](const sandbox::ContainerRecord& r) {
    ids.insert(r.id);
    return false;
  });
  return ids;
}

}  // namespace

grpc::Status RuntimeService::ContainerStats(grpc::ServerContext*, const pb::ContainerStatsRequest* req,
                                            pb::ContainerStatsResponse* resp) {
  if (absl::Status s = ValidateIdArgument("container_id", req->container_id()); !s.ok()) return ToGrpc(s);
  CollectionTimer timer(deps_.stats_duration, "ContainerStats");
  // Container() settles a VM that just exited, so it answers without CPU.
  absl::StatusOr<sandbox::ContainerRecord> c = pods_->Container(req->container_id());
  if (!c.ok()) return ToGrpc(c.status());
  ToPb(stats_->Container(*c), resp->mutable_stats());
  return grpc::Status::OK;
}

// Every container, running or not (a stopped one has no CPU or memory), as
// containerd lists them; IDs match by prefix as in ListContainers.
grpc::Status RuntimeService::ListContainerStats(grpc::ServerContext*, const pb::ListContainerStatsRequest* req,
                                                pb::ListContainerStatsResponse* resp) {
  CollectionTimer timer(deps_.stats_duration, "ListContainerStats");
  const pb::ContainerStatsFilter& f = req->filter();
  const bool unfiltered = f.id().empty() && f.pod_sandbox_id().empty() && f.label_selector().empty();
  std::vector<sandbox::ContainerRecord> records = deps_.store->ListContainers([&](const sandbox::ContainerRecord& r) {
    return MatchesIdFilter(r.id, f.id()) && MatchesIdFilter(r.sandbox_id, f.pod_sandbox_id()) &&
           MatchesSelector(r.labels, f.label_selector());
  });
  for (const sandbox::ContainerRecord& r : records) ToPb(stats_->Container(r), resp->add_stats());
  if (unfiltered) stats_->ForgetAllBut(LiveIds(*deps_.store));
  return grpc::Status::OK;
}

grpc::Status RuntimeService::PodSandboxStats(grpc::ServerContext*, const pb::PodSandboxStatsRequest* req,
                                             pb::PodSandboxStatsResponse* resp) {
  if (absl::Status s = ValidateIdArgument("pod_sandbox_id", req->pod_sandbox_id()); !s.ok()) return ToGrpc(s);
  CollectionTimer timer(deps_.stats_duration, "PodSandboxStats");
  absl::StatusOr<sandbox::SandboxRecord> sb = pods_->Sandbox(req->pod_sandbox_id());
  if (!sb.ok()) return ToGrpc(sb.status());
  // As containerd: a Pod that is not ready has no network and no VM to measure.
  if (sb->state != sandbox::SandboxState::kReady) {
    return ToGrpc(absl::FailedPreconditionError(
        StrCat("pod_sandbox_id \"", sb->id, "\": the sandbox is not ready, so it has no stats")));
  }
  ToPb(stats_->Pod(*sb, ContainersOf(*deps_.store, sb->id)), resp->mutable_stats());
  return grpc::Status::OK;
}

// Ready sandboxes only, as containerd answers.
grpc::Status RuntimeService::ListPodSandboxStats(grpc::ServerContext*, const pb::ListPodSandboxStatsRequest* req,
                                                 pb::ListPodSandboxStatsResponse* resp) {
  CollectionTimer timer(deps_.stats_duration, "ListPodSandboxStats");
  const pb::PodSandboxStatsFilter& f = req->filter();
  const bool unfiltered = f.id().empty() && f.label_selector().empty();
  std::vector<sandbox::SandboxRecord> pods = deps_.store->ListSandboxes([&](const sandbox::SandboxRecord& r) {
    return r.state == sandbox::SandboxState::kReady && MatchesIdFilter(r.id, f.id()) &&
           MatchesSelector(r.labels, f.label_selector());
  });
  for (const sandbox::SandboxRecord& sb : pods) {
    ToPb(stats_->Pod(sb, ContainersOf(*deps_.store, sb.id)), resp->add_stats());
  }
  if (unfiltered) stats_->ForgetAllBut(LiveIds(*deps_.store));
  return grpc::Status::OK;
}

grpc::Status RuntimeService::ListMetricDescriptors(grpc::ServerContext*, const pb::ListMetricDescriptorsRequest*,
                                                   pb::ListMetricDescriptorsResponse* resp) {
  AddMetricDescriptors(resp);
  return grpc::Status::OK;
}

grpc::Status RuntimeService::ListPodSandboxMetrics(grpc::ServerContext*, const pb::ListPodSandboxMetricsRequest*,
                                                   pb::ListPodSandboxMetricsResponse* resp) {
  CollectionTimer timer(deps_.stats_duration, "ListPodSandboxMetrics");
  std::vector<sandbox::SandboxRecord> pods = deps_.store->ListSandboxes(
      [](const sandbox::SandboxRecord& r) { return r.state == sandbox::SandboxState::kReady; });
  for (const sandbox::SandboxRecord& sb : pods) {
    PodUsage u = stats_->Pod(sb, ContainersOf(*deps_.store, sb.id), StatsCollector::Guest::kRead);
    ToPbMetrics(u, resp->add_pod_metrics());
  }
  return grpc::Status::OK;
}

}  // namespace kvcri::cri
