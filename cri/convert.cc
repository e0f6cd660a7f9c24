// Conversions between CRI protos and our records and drafts.
#include "cri/convert.h"

#include <filesystem>

namespace kvcri::cri {

using sandbox::ContainerRecord;
using sandbox::SandboxRecord;

namespace {

template <typename PbMap>
std::map<std::string, std::string> ToStdMap(const PbMap& m) {
  return std::map<std::string, std::string>(m.begin(), m.end());
}

template <typename PbMap>
void FillMap(const std::map<std::string, std::string>& in, PbMap* out) {
  for (const auto& [k, v] : in) (*out)[k] = v;
}

sandbox::Protocol ProtocolFromPb(pb::Protocol p) {
  switch (p) {
    case pb::UDP: return sandbox::Protocol::kUdp;
    case pb::SCTP: return sandbox::Protocol::kSctp;
    default: return sandbox::Protocol::kTcp;
  }
}

}  // namespace

SandboxRecord SandboxRecordFromConfig(const pb::PodSandboxConfig& c) {
  SandboxRecord r;
  r.metadata.name = c.metadata().name();
  r.metadata.namespace_ = c.metadata().namespace_();
  r.metadata.uid = c.metadata().uid();
  r.metadata.attempt = c.metadata().attempt();
  r.labels = ToStdMap(c.labels());
  r.annotations = ToStdMap(c.annotations());
  r.log_directory = c.log_directory();
  r.hostname = c.hostname();
  if (c.has_dns_config()) {
    r.dns.servers.assign(c.dns_config().servers().begin(), c.dns_config().servers().end());
    r.dns.searches.assign(c.dns_config().searches().begin(), c.dns_config().searches().end());
    r.dns.options.assign(c.dns_config().options().begin(), c.dns_config().options().end());
  }
  for (const pb::PortMapping& pm : c.port_mappings()) {
    r.port_mappings.push_back({ProtocolFromPb(pm.protocol()), pm.container_port(), pm.host_port(), pm.host_ip()});
  }
  r.host_network = c.has_linux() && c.linux().has_security_context() &&
                   c.linux().security_context().has_namespace_options() &&
                   c.linux().security_context().namespace_options().network() == pb::NODE;
  if (c.has_linux()) {
    r.cgroup_parent = c.linux().cgroup_parent();
    r.sysctls = ToStdMap(c.linux().sysctls());
  }
  return r;
}

ContainerResources ResourcesFromPb(const pb::LinuxContainerResources& r) {
  ContainerResources out;
  out.cpu_quota = r.cpu_quota();
  out.cpu_period = r.cpu_period();
  out.memory_limit_bytes = r.memory_limit_in_bytes();
  out.cpu_shares = r.cpu_shares();
  out.cpuset_cpus = r.cpuset_cpus();
  out.cpuset_mems = r.cpuset_mems();
  return out;
}

ContainerDraft ContainerDraftFromRequest(const pb::CreateContainerRequest& req, VolumePlan volumes) {
  const pb::ContainerConfig& c = req.config();
  ContainerDraft d;
  d.sandbox_id = req.pod_sandbox_id();
  d.metadata.name = c.metadata().name();
  d.metadata.attempt = c.metadata().attempt();
  d.image = c.image().image();
  d.labels = ToStdMap(c.labels());
  d.annotations = ToStdMap(c.annotations());
  d.log_path = c.log_path();
  if (c.has_linux() && c.linux().has_resources()) d.resources = ResourcesFromPb(c.linux().resources());
  d.volumes = std::move(volumes);
  d.process = ProcessFromPb(c);
  if (c.has_linux() && c.linux().has_security_context() && c.linux().security_context().has_seccomp() &&
      c.linux().security_context().seccomp().profile_type() == pb::SecurityProfile::Localhost) {
    d.seccomp_localhost_path = c.linux().security_context().seccomp().localhost_ref();
  }
  return d;
}

runtime::microvm::ContainerRequest ProcessFromPb(const pb::ContainerConfig& c) {
  namespace mv = runtime::microvm;
  mv::ContainerRequest r;
  r.command.assign(c.command().begin(), c.command().end());
  r.args.assign(c.args().begin(), c.args().end());
  for (const pb::KeyValue& kv : c.envs()) r.env.emplace_back(kv.key(), kv.value());
  r.working_dir = c.working_dir();
  r.tty = c.tty();
  r.stdin = c.stdin();
  if (!c.has_linux()) return r;
  if (c.linux().has_resources()) {
    const pb::LinuxContainerResources& res = c.linux().resources();
    r.resources.cpu_period = res.cpu_period();
    r.resources.cpu_quota = res.cpu_quota();
    r.resources.cpu_shares = res.cpu_shares();
    r.resources.memory_limit_bytes = res.memory_limit_in_bytes();
    r.resources.oom_score_adj = res.oom_score_adj();
    r.resources.cpuset_cpus = res.cpuset_cpus();
    r.resources.cpuset_mems = res.cpuset_mems();
  }
  if (!c.linux().has_security_context()) return r;
  const pb::LinuxContainerSecurityContext& sc = c.linux().security_context();
  if (sc.has_run_as_user()) r.run_as_user = sc.run_as_user().value();
  if (sc.has_run_as_group()) r.run_as_group = sc.run_as_group().value();
  r.run_as_username = sc.run_as_username();
  r.supplemental_groups.assign(sc.supplemental_groups().begin(), sc.supplemental_groups().end());
  r.privileged = sc.privileged();
  r.no_new_privs = sc.no_new_privs();
  r.readonly_rootfs = sc.readonly_rootfs();
  if (sc.has_capabilities()) {
    r.add_capabilities.assign(sc.capabilities().add_capabilities().begin(), sc.capabilities().add_capabilities().end());
    r.drop_capabilities.assign(sc.capabilities().drop_capabilities().begin(),
                               sc.capabilities().drop_capabilities().end());
  }
  // kubelet always sends its defaults (or none for privileged / Unmasked):
  // an empty list from kubelet means "none", as containerd reads it.
  if (sc.masked_paths_size() > 0 || sc.readonly_paths_size() > 0) {
    r.masked_paths.emplace(sc.masked_paths().begin(), sc.masked_paths().end());
    r.readonly_paths.emplace(sc.readonly_paths().begin(), sc.readonly_paths().end());
  }
  if (sc.has_seccomp()) {
    switch (sc.seccomp().profile_type()) {
      case pb::SecurityProfile::RuntimeDefault: r.seccomp = mv::SeccompKind::kRuntimeDefault; break;
      case pb::SecurityProfile::Localhost: r.seccomp = mv::SeccompKind::kLocalhost; break;
      default: r.seccomp = mv::SeccompKind::kUnconfined; break;
    }
  }
  if (sc.has_namespace_options()) {
    switch (sc.namespace_options().pid()) {
      case pb::POD: r.pid = mv::PidMode::kPod; break;
      case pb::NODE: r.pid = mv::PidMode::kNode; break;
      default: r.pid = mv::PidMode::kContainer; break;
    }
  }
  return r;
}

pb::PodSandboxState ToPb(sandbox::SandboxState s) {
  return s == sandbox::SandboxState::kReady ? pb::SANDBOX_READY : pb::SANDBOX_NOTREADY;
}

pb::ContainerState ToPb(sandbox::ContainerState s) {
  switch (s) {
    case sandbox::ContainerState::kCreated: return pb::CONTAINER_CREATED;
    case sandbox::ContainerState::kRunning: return pb::CONTAINER_RUNNING;
    case sandbox::ContainerState::kExited: return pb::CONTAINER_EXITED;
    case sandbox::ContainerState::kUnknown: return pb::CONTAINER_UNKNOWN;
  }
  return pb::CONTAINER_UNKNOWN;
}

static void FillSandboxMetadata(const SandboxRecord& r, pb::PodSandboxMetadata* md) {
  md->set_name(r.metadata.name);
  md->set_namespace_(r.metadata.namespace_);
  md->set_uid(r.metadata.uid);
  md->set_attempt(r.metadata.attempt);
}

void ToPb(const SandboxRecord& r, pb::PodSandbox* out) {
  out->set_id(r.id);
  FillSandboxMetadata(r, out->mutable_metadata());
  out->set_state(ToPb(r.state));
  out->set_created_at(r.created_at);
  FillMap(r.labels, out->mutable_labels());
  FillMap(r.annotations, out->mutable_annotations());
  out->set_runtime_handler(r.runtime_handler);
}

void ToPb(const SandboxRecord& r, pb::PodSandboxStatus* out) {
  out->set_id(r.id);
  FillSandboxMetadata(r, out->mutable_metadata());
  out->set_state(ToPb(r.state));
  out->set_created_at(r.created_at);
  if (!r.network.ip.empty()) {
    out->mutable_network()->set_ip(r.network.ip);
    for (const std::string& ip : r.network.additional_ips) out->mutable_network()->add_additional_ips()->set_ip(ip);
  }
  pb::NamespaceOption* ns = out->mutable_linux()->mutable_namespaces()->mutable_options();
  ns->set_network(r.host_network ? pb::NODE : pb::POD);
  ns->set_pid(pb::POD);
  ns->set_ipc(pb::POD);
  FillMap(r.labels, out->mutable_labels());
  FillMap(r.annotations, out->mutable_annotations());
  out->set_runtime_handler(r.runtime_handler);
}

void ToPb(const ContainerRecord& r, pb::Container* out) {
  out->set_id(r.id);
  out->set_pod_sandbox_id(r.sandbox_id);
  out->mutable_metadata()->set_name(r.metadata.name);
  out->mutable_metadata()->set_attempt(r.metadata.attempt);
  out->mutable_image()->set_image(r.image);
  out->set_image_ref(r.image_ref);
  out->set_image_id(r.image_ref);
  out->set_state(ToPb(r.state));
  out->set_created_at(r.created_at);
  FillMap(r.labels, out->mutable_labels());
  FillMap(r.annotations, out->mutable_annotations());
}

void ToPb(const ContainerRecord& r, const std::string& log_directory, pb::ContainerStatus* out) {
  out->set_id(r.id);
  out->mutable_metadata()->set_name(r.metadata.name);
  out->mutable_metadata()->set_attempt(r.metadata.attempt);
  out->set_state(ToPb(r.state));
  out->set_created_at(r.created_at);
  out->set_started_at(r.started_at);
  out->set_finished_at(r.finished_at);
  out->set_exit_code(r.exit_code);
  out->mutable_image()->set_image(r.image);
  out->set_image_ref(r.image_ref);
  out->set_image_id(r.image_ref);
  // A placeholder of an unreadable record says so; its VM is left running.
  out->set_reason(r.load_error.empty() ? r.reason : "RecordUnreadable");
  out->set_message(r.load_error.empty() ? r.message : r.load_error);
  FillMap(r.labels, out->mutable_labels());
  FillMap(r.annotations, out->mutable_annotations());
  if (!r.log_path.empty() && !log_directory.empty()) {
    out->set_log_path((std::filesystem::path(log_directory) / r.log_path).string());
  }
  // What is in force (kubelet compares it with the Pod's spec to see an
  // in-place resize completed); a placeholder knows nothing.
  if (r.load_error.empty()) {
    pb::LinuxContainerResources* lr = out->mutable_resources()->mutable_linux();
    lr->set_cpu_period(r.resources.cpu_period);
    lr->set_cpu_quota(r.resources.cpu_quota);
    lr->set_cpu_shares(r.resources.cpu_shares);
    lr->set_memory_limit_in_bytes(r.resources.memory_limit_in_bytes);
    lr->set_cpuset_cpus(r.resources.cpuset_cpus);
    lr->set_cpuset_mems(r.resources.cpuset_mems);
  }
  for (const sandbox::MountSpec& m : r.mounts) {
    pb::Mount* pm = out->add_mounts();
    pm->set_container_path(m.container_path);
    pm->set_host_path(m.host_path);
    pm->set_readonly(m.readonly);
  }
}

}  // namespace kvcri::cri
