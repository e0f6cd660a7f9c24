// PodLifecycle, plain-image containers: the Pod micro-VM (boot, stop, removal) and crun containers inside it (create, start, stop, exit, removal).
#include <fcntl.h>
#include <sys/stat.h>

#include <csignal>
#include <set>

#include "absl/time/clock.h"
#include "config/base/clock.h"
#include "config/base/file_util.h"
#include "config/base/log.h"
#include "config/base/rollback.h"
#include "config/base/status_macros.h"
#include "config/base/str.h"
#include "cri/exec_dispatch.h"
#include "cri/pod_lifecycle.h"
#include "cri/pod_network_spec.h"
#include "cri/volumes.h"
#include "runtime/cgroup/cgroup_placer.h"
#include "runtime/console_log.h"
#include "runtime/domain_xml.h"
#include "runtime/hypervisor.h"
#include "runtime/image/image_store.h"
#include "runtime/microvm/container_root.h"
#include "runtime/microvm/share_fs.h"
#include "sandbox/sandbox_store.h"

namespace kvcri::cri {

using base::StrCat;
using Mode = OpTracker::Mode;
namespace mv = runtime::microvm;

namespace {

// The virtio-fs tag the guest's init mounts at /run/kvcri/pod (guest_init.h).
constexpr char kPodShareTag[] = "kvcri-pod";
// A Localhost seccomp profile is JSON a few KiB long; kubelet's own bound
// on files it reads is far above what a profile needs.
constexpr size_t kMaxSeccompProfileBytes = 1 << 20;
// Exit reasons as runc's containers report them.
constexpr char kCompleted[] = "Completed";
constexpr char kError[] = "Error";


// Safe on the kernel command line: a DNS name (CRI validation already
// checks hostnames; this keeps a space or quote from adding a parameter).
bool CmdlineSafe(std::string_view s) {
  for (char ch : s) {
    if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '.' || ch == ':' || ch == '/' ||
          ch == ',')) {
      return false;
    }
  }
  return true;
}

// The guest's network, from the CNI result: it has no DHCP client.
std::string NetworkCmdline(const sandbox::SandboxRecord& sb) {
  std::string out;
  int eth = 0;
  for (const sandbox::GuestNic& g : sb.network.nics) {
    if (g.tap_name.empty()) continue;
    const std::string ifname = StrCat("eth", eth++);  // virtio-net NICs in PCI order, no udev renaming
    for (const std::string& a : g.addresses) {
      const bool v6 = a.find(':') != std::string::npos;
      const std::string& gw = v6 ? g.gateway6 : g.gateway4;
      std::string entry = StrCat(ifname, ",", a, ",", gw);
      if (g.mtu > 0) entry += StrCat(",", g.mtu);
      if (CmdlineSafe(entry)) out += StrCat(" kvcri.ip=", entry);
    }
  }
  return out;
}

std::string ResolvConf(const sandbox::DnsConfig& dns) {
  std::string out;
  if (!dns.searches.empty()) {
    out += "search";
    for (const std::string& s : dns.searches) out += StrCat(" ", s);
    out += "\n";
  }
  for (const std::string& s : dns.servers) out += StrCat("nameserver ", s, "\n");
  if (!dns.options.empty()) {
    out += "options";
    for (const std::string& o : dns.options) out += StrCat(" ", o);
    out += "\n";
  }
  return out;
}

std::string HostsFile(const sandbox::SandboxRecord& sb) {
  std::string out = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";
  if (!sb.network.ip.empty() && !sb.hostname.empty()) out += StrCat(sb.network.ip, "\t", sb.hostname, "\n");
  return out;
}

bool HasMountAt(const ContainerDraft& d, std::string_view path) {
  for (const sandbox::MountSpec& m : d.volumes.mounts) {
    if (m.container_path == path) return true;
  }
  return false;
}

std::string ExitReason(const runtime::agent::ExitFile& e) {
  if (e.oom_kills > 0 && e.code() == 137) return std::string(kOomKilledReason);
  return e.code() == 0 ? kCompleted : kError;
}

// The console copier's entries of a plain container: one per output file.
std::string StderrEntry(std::string_view id) { return StrCat(id, "/stderr"); }

}  // namespace

bool IsPlainContainer(const sandbox::ContainerRecord& c) { return c.boot.kind == sandbox::BootKind::kMicroVm; }

mv::Bundle BundleOf(const sandbox::ContainerRecord& c) {
  return mv::BundleFor(std::filesystem::path(c.bundle_dir).parent_path(), c.id);
}

sandbox::PodVm PodLifecycle::PlanPodVm(const sandbox::SandboxRecord& sb) const {
  sandbox::PodVm v;
  v.domain_name = StrCat(kDomainPrefix, sb.id);
  const std::filesystem::path dir = deps_.config->root / "pods" / sb.id;
  v.dir = dir.string();
  v.share = (dir / "share").string();
  v.console_path = (dir / "console.log").string();
  const std::filesystem::path sockets = VmSocketDir(sb.id);
  v.console_socket = (sockets / "console.sock").string();
  v.agent_socket = (sockets / "agent.sock").string();
  v.kernel = deps_.config->microvm.kernel.string();
  v.initrd = deps_.config->microvm.initramfs.string();
  v.cmdline = "console=ttyS0 panic=-1 quiet";
  if (!sb.hostname.empty() && CmdlineSafe(sb.hostname)) v.cmdline += StrCat(" kvcri.hostname=", sb.hostname);
  v.cmdline += NetworkCmdline(sb);
  v.vcpus = static_cast<int32_t>(deps_.config->microvm.vcpus);
  v.memory_mib = deps_.config->microvm.memory_mib;
  return v;
}

sandbox::ContainerRecord PodLifecycle::PodVmAsRecord(const sandbox::SandboxRecord& sb) const {
  // The Pod micro-VM as PlaceVm and RemoveVmCgroup know a VM: its domain and cgroup.
  sandbox::ContainerRecord r;
  r.id = sb.id;
  r.sandbox_id = sb.id;
  r.domain_name = sb.pod_vm.domain_name;
  r.cgroup_path = sb.pod_vm.cgroup_path;
  r.cgroup_unit = sb.pod_vm.cgroup_unit;
  return r;
}

absl::StatusOr<std::shared_ptr<runtime::agent::AgentClient>> PodLifecycle::PodAgent(const sandbox::SandboxRecord& sb) {
  if (deps_.agents == nullptr) return absl::UnavailableError("no guest agent connections in this process");
  return deps_.agents->Agent(sb.id, sb.pod_vm.agent_socket);
}

mv::ContainerRunner PodLifecycle::RunnerFor(const sandbox::SandboxRecord& sb) {
  return mv::ContainerRunner([this, sb] { return PodAgent(sb); });
}

absl::Status PodLifecycle::CheckMicroVmFiles() const {
  for (const std::filesystem::path& f : {deps_.config->microvm.kernel, deps_.config->microvm.initramfs}) {
    struct stat st;
    if (::stat(f.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
      return absl::FailedPreconditionError(StrCat(
          "plain-image containers run in the Pod micro-VM, whose boot file \"", f.string(),
          "\" (config [microvm] kernel / initramfs) is missing; build them with "
          "/usr/share/kubevirt-cri/microvm/build-microvm.sh ",
          f.parent_path().string(), " (scripts/run.sh does), see docs/microvm.md"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<sandbox::SandboxRecord> PodLifecycle::EnsurePodVm(const std::string& sandbox_id,
                                                                 const std::vector<sandbox::DeviceSpec>& devices,
                                                                 const std::string& container_id) {
  // One boot per Pod: concurrent CreateContainers of the Pod wait here.
  ASSIGN_OR_RETURN(OpTracker::Hold hold, ops_.Acquire(StrCat("podvm/", sandbox_id), Mode::kExclusive,
                                                      "boot the Pod micro-VM", options_.op_wait));
  ASSIGN_OR_RETURN(sandbox::SandboxRecord sb, deps_.store->GetSandbox(sandbox_id));
  const absl::Duration boot_timeout = absl::Seconds(deps_.config->microvm.boot_timeout_seconds);
  if (!sb.pod_vm.domain_name.empty() && sb.pod_vm.started_at != 0) {
    ASSIGN_OR_RETURN(runtime::VmStatus vm, deps_.hypervisor->Status(sb.pod_vm.domain_name));
    if (!IsUp(vm.phase)) {
      return absl::FailedPreconditionError(
          StrCat("the micro-VM of pod sandbox \"", sandbox_id, "\" has stopped (", vm.reason,
                 "); its containers cannot run: stop and remove the sandbox (kubelet makes a new one)"));
    }
    if (!devices.empty()) {
      return absl::UnimplementedError(StrCat(
          "config.devices: the micro-VM of pod sandbox \"", sandbox_id, "\" runs already, and block devices are "
          "given to it only when it boots, by the Pod's first plain container (an init container, say); "
          "hot-plugging them into a running micro-VM is not built yet (docs/microvm.md)"));
    }
    return sb;
  }
  if (!sb.pod_vm.domain_name.empty()) {
    // Named, never marked started: a crash cut a boot short. Start afresh.
    RETURN_IF_ERROR(TearDownPodVm(sb));
    ASSIGN_OR_RETURN(sb, deps_.store->GetSandbox(sandbox_id));
  }
  if (deps_.agents == nullptr) {
    return absl::FailedPreconditionError("plain-image containers need the daemon's guest agent connections, "
                                         "which this process (containerd-shim mode) does not have");
  }
  if (deps_.accelerator == config::Accelerator::kAuto) {
    return absl::FailedPreconditionError(StrCat("no usable accelerator: ", deps_.accelerator_reason));
  }
  sandbox::PodVm plan = PlanPodVm(sb);
  for (const std::string& sock : {plan.console_socket, plan.agent_socket}) {
    if (sock.size() > runtime::kMaxUnixSocketPathLength) {
      return absl::FailedPreconditionError(StrCat("socket path \"", sock, "\" is longer than a unix socket path may be (",
                                                  runtime::kMaxUnixSocketPathLength, "); use a shorter state_dir"));
    }
  }
  if (deps_.cgroups != nullptr) {
    ASSIGN_OR_RETURN(runtime::cgroup::CgroupTarget cg, deps_.cgroups->Plan(sb.cgroup_parent, sb.id));
    plan.cgroup_path = cg.path;
    plan.cgroup_unit = cg.unit;
  }
  // Named on disk before anything exists: a crash from here on leaves what
  // RemoveSandbox (or recovery) finds and takes down.
  ASSIGN_OR_RETURN(sb, deps_.store->UpdateSandbox(sandbox_id, [&](sandbox::SandboxRecord& r) {
    r.pod_vm = plan;
    return absl::OkStatus();
  }));
  base::Rollback undo;
  undo.Add("take the micro-VM down", [this, sb] { return TearDownPodVm(sb); });
  RETURN_IF_ERROR(base::MakeDirs(plan.dir, 0700));
  // The guest's root works in the share as root: 0755 so crun (root in the
  // guest) can use it; the host's paths above it stay 0700.
  if (::mkdir(plan.share.c_str(), 0755) != 0 && errno != EEXIST) {
    return absl::ErrnoToStatus(errno, StrCat("mkdir \"", plan.share, "\""));
  }
  RETURN_IF_ERROR(mv::MountPodShare(plan.share));
  {
    // The Pod's sysctls, for the guest's init to apply before any container
    // runs (values may hold spaces, which the kernel command line cannot).
    std::string lines;
    for (const auto& [name, value] : sb.sysctls) lines += StrCat(name, "=", value, "\n");
    ASSIGN_OR_RETURN(base::UniqueFd share_fd, mv::OpenDir(plan.share));
    RETURN_IF_ERROR(mv::WriteFileAt(share_fd.get(), mv::kSysctlFile, lines, 0644));
  }
  RETURN_IF_ERROR(base::MakeDirs(std::filesystem::path(plan.agent_socket).parent_path(), 0700));

  runtime::VmSpec spec;
  spec.name = plan.domain_name;
  spec.pod_id = sb.id;
  spec.container_id = sb.id;  // the micro-VM is the Pod's, not a container's
  spec.pod_namespace = sb.metadata.namespace_;
  spec.pod_name = sb.metadata.name;
  spec.vcpus = plan.vcpus;
  spec.memory_mib = plan.memory_mib;
  spec.accel = deps_.accelerator;
  spec.kernel = plan.kernel;
  spec.initrd = plan.initrd;
  spec.cmdline = plan.cmdline;
  spec.console_log = plan.console_path;
  spec.console_socket = plan.console_socket;
  spec.agent_socket = plan.agent_socket;
  spec.qga_socket = std::filesystem::path(plan.agent_socket).parent_path() / "qga.sock";
  spec.netns = sb.netns_path;
  spec.start_paused = true;
  spec.nics = NicSpecsFor(sb);
  runtime::FilesystemSpec share;
  share.source_dir = plan.share;
  share.tag = kPodShareTag;
  share.driver = runtime::FsDriver::kVirtiofs;
  spec.filesystems.push_back(share);
  // As a VM-disk container's; the guest's init links each as
  // /dev/disk/by-id/virtio-<serial>.
  for (const sandbox::DeviceSpec& d : devices) spec.disks.push_back(BlockVolumeDisk(d));
  if (!devices.empty()) {
    base::LogInfo("Pod micro-VM boots with block devices", {{"sandbox", sb.id}, {"container", container_id},
                                                            {"devices", StrCat(devices.size())}});
  }
  const absl::Time t0 = deps_.clock->Now();
  RETURN_IF_ERROR(deps_.hypervisor->Create(spec));
  RETURN_IF_ERROR(PlaceVm(PodVmAsRecord(sb)));
  RETURN_IF_ERROR(deps_.hypervisor->Resume(spec.name));
  ASSIGN_OR_RETURN(sb, deps_.store->UpdateSandbox(sandbox_id, [&](sandbox::SandboxRecord& r) {
    r.pod_vm.started_at = absl::ToUnixNanos(deps_.clock->Now());
    return absl::OkStatus();
  }));
  // Ready = kvcri-agent answers on its channel.
  absl::Status agent = absl::DeadlineExceededError("not tried");
  for (const absl::Time deadline = absl::Now() + boot_timeout; absl::Now() < deadline;) {
    absl::StatusOr<std::shared_ptr<runtime::agent::AgentClient>> c = PodAgent(sb);
    agent = c.status();
    if (agent.ok()) break;
    absl::StatusOr<runtime::VmStatus> vm = deps_.hypervisor->Status(spec.name);
    if (vm.ok() && !IsUp(vm->phase)) {
      agent = absl::InternalError(StrCat("the micro-VM stopped while booting (", vm->reason, ")"));
      break;
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  if (!agent.ok()) {
    return absl::Status(agent.code(), StrCat("the Pod micro-VM's agent did not answer within ",
                                             absl::FormatDuration(boot_timeout), ": ", agent.message(),
                                             "; its console is ", plan.console_path));
  }
  undo.Dismiss();
  RecordTimings(sb.id, StrCat("{\"microvmBootMs\":", absl::ToDoubleMilliseconds(deps_.clock->Now() - t0), "}"));
  base::LogInfo("Pod micro-VM ready", {{"sandbox", sb.id},
                                       {"domain", plan.domain_name},
                                       {"boot_ms", StrCat(absl::ToInt64Milliseconds(deps_.clock->Now() - t0))}});
  return sb;
}

absl::Status PodLifecycle::StopPodVm(const sandbox::SandboxRecord& sb) {
  if (sb.pod_vm.domain_name.empty()) return absl::OkStatus();
  if (deps_.agents != nullptr) deps_.agents->ForgetAgent(sb.id);
  return deps_.hypervisor->Destroy(sb.pod_vm.domain_name);
}

absl::Status PodLifecycle::TearDownPodVm(const sandbox::SandboxRecord& sb) {
  if (sb.pod_vm.domain_name.empty()) return absl::OkStatus();
  if (deps_.agents != nullptr) deps_.agents->ForgetAgent(sb.id);
  absl::Status first;
  base::KeepFirstError(&first, deps_.hypervisor->Remove(sb.pod_vm.domain_name));
  if (first.ok()) base::KeepFirstError(&first, RemoveVmCgroup(PodVmAsRecord(sb)));
  // After the domain: virtiofsd serves the share until QEMU is gone.
  if (first.ok() && !sb.pod_vm.share.empty()) base::KeepFirstError(&first, mv::UnmountPodShare(sb.pod_vm.share));
  if (first.ok() && !sb.pod_vm.dir.empty()) base::KeepFirstError(&first, base::RemoveAll(sb.pod_vm.dir));
  if (!sb.pod_vm.agent_socket.empty()) {
    base::KeepFirstError(&first, base::RemoveAll(std::filesystem::path(sb.pod_vm.agent_socket).parent_path()));
  }
  if (!first.ok()) return first;
  if (!sb.load_error.empty()) return absl::OkStatus();
  return deps_.store
      ->UpdateSandbox(sb.id,
                      [](sandbox::SandboxRecord& r) {
                        r.pod_vm = {};
                        return absl::OkStatus();
                      })
      .status();
}

absl::StatusOr<std::string> PodLifecycle::CreatePlainContainer(const ContainerDraft& draft,
                                                               const sandbox::SandboxRecord& sb_in,
                                                               const runtime::image::ImageInfo& image) {
  if (image.layer_dirs.empty()) {
    return absl::FailedPreconditionError(StrCat("image \"", draft.image, "\" (", image.id,
                                                ") is a plain container image without unpacked layers (pulled or "
                                                "imported by a daemon that was not root?); remove and pull it again"));
  }
  RETURN_IF_ERROR(CheckMicroVmFiles());
  mv::ContainerRequest req = draft.process;
  if (req.seccomp == mv::SeccompKind::kLocalhost) {
    const std::string field = "config.linux.security_context.seccomp.localhost_ref";
    if (draft.seccomp_localhost_path.empty() || draft.seccomp_localhost_path[0] != '/') {
      return absl::InvalidArgumentError(StrCat(field, " \"", draft.seccomp_localhost_path, "\" is not an absolute path"));
    }
    absl::StatusOr<std::string> profile =
        base::ReadFileAtMost(draft.seccomp_localhost_path, kMaxSeccompProfileBytes, /*follow_symlinks=*/true);
    if (!profile.ok()) return absl::InvalidArgumentError(StrCat(field, ": ", profile.status().message()));
    req.seccomp_localhost_json = *std::move(profile);
  }
  // A Pod-shared PID namespace is the guest's own: the VM is the Pod, and
  // its PID 1 (kvcri-agent) stands where runc's Pods have the pause process.
  if (req.pid == mv::PidMode::kPod) req.pid = mv::PidMode::kNode;
  req.hostname = sb_in.hostname;

  sandbox::ContainerRecord rec;
  ASSIGN_OR_RETURN(rec.id, IdFor(draft.id));
  req.id = rec.id;
  rec.sandbox_id = sb_in.id;
  rec.metadata = draft.metadata;
  rec.image = draft.image;
  rec.image_ref = image.id;
  rec.labels = draft.labels;
  rec.annotations = draft.annotations;
  rec.log_path = draft.log_path;
  rec.state = sandbox::ContainerState::kCreated;
  rec.phase = sandbox::Phase::kCreating;
  rec.created_at = absl::ToUnixNanos(deps_.clock->Now());
  rec.resources = RecordResources(draft.resources);
  rec.mounts = draft.volumes.mounts;
  rec.devices = draft.volumes.devices;
  rec.boot.kind = sandbox::BootKind::kMicroVm;
  rec.bundle_dir = (std::filesystem::path(PlanPodVm(sb_in).share) / rec.id).string();
  const std::filesystem::path dir = ContainerDir(rec.id);

  // A block device is open in one VM of the node at a time (pod_device_claims.cc).
  RETURN_IF_ERROR(ClaimDevices(rec.id, rec.devices));
  DeviceClaimHold unclaim{this, rec.id};

  base::Rollback undo;
  RETURN_IF_ERROR(PutNewContainer(rec, undo));
  const std::string id = rec.id;
  undo.Add("remove the container's files", [this, rec] { return DeletePlainArtifacts(rec); });
  RETURN_IF_ERROR(base::MakeDirs(dir, 0700));
  // The Pod's micro-VM: booted by its first plain container (the image is
  // pulled by then), shared by the rest.
  ASSIGN_OR_RETURN(sandbox::SandboxRecord sb, EnsurePodVm(sb_in.id, rec.devices, rec.id));

  // The bundle: every step below the share through directory fds (share_fs.h).
  ASSIGN_OR_RETURN(base::UniqueFd share, mv::OpenDir(sb.pod_vm.share));
  ASSIGN_OR_RETURN(base::UniqueFd bundle, mv::MakeDirAt(share.get(), rec.id, 0755));
  {
    ASSIGN_OR_RETURN(base::UniqueFd target, mv::MountTargetAt(bundle.get(), "rootfs", /*directory=*/true));
    // Upper and work directories in the container dir: the guest never
    // sees them, only the merged root.
    RETURN_IF_ERROR(mv::MountContainerRoot(image.layer_dirs, dir / "upper", dir / "work", mv::FdPath(target.get())));
  }
  // The mounted root, opened again through the bundle: the overlay now.
  ASSIGN_OR_RETURN(base::UniqueFd rootfs, mv::OpenDirAt(bundle.get(), "rootfs"));
  ASSIGN_OR_RETURN(mv::UserDb users, mv::ReadUserDb(mv::FdPath(rootfs.get())));

  // CRI mounts (kubelet's /etc/hosts, termination-log, volumes), bound
  // below the bundle and named in the spec by their guest path.
  ASSIGN_OR_RETURN(base::UniqueFd mounts, mv::MakeDirAt(bundle.get(), "mounts", 0755));
  const std::string guest_bundle = StrCat(mv::kGuestShareDir, "/", rec.id);
  for (size_t i = 0; i < draft.volumes.mounts.size(); ++i) {
    const sandbox::MountSpec& m = draft.volumes.mounts[i];
    const bool is_dir = std::filesystem::is_directory(m.host_path);
    const std::string name = StrCat(i);
    ASSIGN_OR_RETURN(base::UniqueFd target, mv::MountTargetAt(mounts.get(), name, is_dir));
    if (absl::Status s = mv::BindMountOnto(m.host_path, target.get(), m.readonly); !s.ok()) {
      return absl::Status(s.code(), StrCat("config.mounts[", i, "] (", m.container_path, "): ", s.message()));
    }
    req.mounts.push_back(mv::BindMount{StrCat(guest_bundle, "/mounts/", name), m.container_path, m.readonly});
  }
  // Block devices: the guest's node of each, by the serial the VM gave it.
  for (const sandbox::DeviceSpec& d : draft.volumes.devices) {
    req.mounts.push_back(mv::BindMount{StrCat("/dev/disk/by-id/virtio-", DiskSerialFor(d.container_path)),
                                       d.container_path, d.permissions.find('w') == std::string::npos});
    req.block_devices = true;
  }
  // What containerd gives every container unless kubelet mounts its own.
  ASSIGN_OR_RETURN(base::UniqueFd etc, mv::MakeDirAt(bundle.get(), "etc", 0755));
  auto pod_file = [&](const char* name, const std::string& content, const char* at) -> absl::Status {
    if (HasMountAt(draft, at)) return absl::OkStatus();
    RETURN_IF_ERROR(mv::WriteFileAt(etc.get(), name, content, 0644));
    req.mounts.push_back(mv::BindMount{StrCat(guest_bundle, "/etc/", name), at, false});
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(pod_file("resolv.conf", ResolvConf(sb.dns), "/etc/resolv.conf"));
  RETURN_IF_ERROR(pod_file("hostname", StrCat(sb.hostname, "\n"), "/etc/hostname"));
  RETURN_IF_ERROR(pod_file("hosts", HostsFile(sb), "/etc/hosts"));

  mv::ImageProcess process;
  process.user = image.user;
  process.env = image.env;
  process.entrypoint = image.entrypoint;
  process.cmd = image.cmd;
  process.working_dir = image.working_dir;
  ASSIGN_OR_RETURN(nlohmann::json spec, mv::BuildRuntimeSpec(req, process, users));
  RETURN_IF_ERROR(mv::WriteFileAt(bundle.get(), "config.json", spec.dump(), 0644));
  nlohmann::json exec_process = spec["process"];
  exec_process.erase("args");

  RETURN_IF_ERROR(deps_.store
                      ->UpdateContainer(id,
                                        [&](sandbox::ContainerRecord& r) {
                                          r.phase = sandbox::Phase::kReady;
                                          r.exec_process = exec_process.dump();
                                          return absl::OkStatus();
                                        })
                      .status());
  undo.Dismiss();
  Emit(ContainerEventType::kCreated, id, sb.id);
  base::LogInfo("container created", {{"id", id},
                                      {"sandbox", sb.id},
                                      {"image", rec.image},
                                      {"boot", std::string(sandbox::BootKindName(rec.boot.kind))},
                                      {"layers", StrCat(image.layer_dirs.size())}});
  return id;
}

void PodLifecycle::RegisterPlainLogs(const sandbox::ContainerRecord& c, const sandbox::SandboxRecord& sb) {
  if (c.log_path.empty() || sb.log_directory.empty() || c.bundle_dir.empty()) return;
  for (const char* stream : {"stdout", "stderr"}) {
    runtime::ConsoleTarget t;
    t.console = std::filesystem::path(c.bundle_dir) / stream;
    t.log_dir = sb.log_directory;
    t.log_rel = c.log_path;
    t.stream = stream;
    // Out of the guest's reach: the share is its to change.
    t.offset_file = ContainerDir(c.id) / StrCat(stream, ".offset");
    t.guest_written = true;
    const std::string entry = std::string_view(stream) == "stdout" ? c.id : StderrEntry(c.id);
    base::LogIfError(deps_.console->Add(entry, t), "container log copy not started");
  }
}

void PodLifecycle::UnregisterPlainLogs(const std::string& id) {
  base::LogIfError(deps_.console->Remove(id), "container log flush");
  base::LogIfError(deps_.console->Remove(StderrEntry(id)), "container log flush");
}

absl::Status PodLifecycle::StartPlainContainer(const sandbox::ContainerRecord& c, const sandbox::SandboxRecord& sb) {
  if (sb.pod_vm.domain_name.empty()) {
    return absl::FailedPreconditionError(StrCat("pod sandbox \"", sb.id, "\" has no micro-VM"));
  }
  ASSIGN_OR_RETURN(runtime::VmStatus vm, deps_.hypervisor->Status(sb.pod_vm.domain_name));
  if (!IsUp(vm.phase)) {
    return absl::FailedPreconditionError(StrCat("the micro-VM of pod sandbox \"", sb.id, "\" has stopped"));
  }
  const absl::Time t0 = deps_.clock->Now();
  // RUNNING and followed before crun starts: output from the first
  // instruction on is copied, and a crash after the SPAWN finds a RUNNING
  // record whose exit file tells the rest.
  ASSIGN_OR_RETURN(sandbox::ContainerRecord started, deps_.store->UpdateContainer(c.id, [&](sandbox::ContainerRecord& r) {
    r.state = sandbox::ContainerState::kRunning;
    r.started_at = absl::ToUnixNanos(deps_.clock->Now());
    return absl::OkStatus();
  }));
  RegisterPlainLogs(started, sb);
  const mv::ContainerRunner runner = RunnerFor(sb);
  const mv::Bundle bundle = BundleOf(c);
  absl::StatusOr<uint32_t> pid = runner.Start(bundle);
  const absl::Duration spawn_took = deps_.clock->Now() - t0;
  // Returned once crun runs the process, as containerd's StartContainer
  // does: an exec probe or postStart hook right after finds it.
  if (pid.ok()) {
    if (absl::Status up = runner.WaitStarted(bundle, absl::Now() + absl::Seconds(60)); !up.ok()) {
      base::LogIfError(runner.Stop(bundle, absl::ZeroDuration()).status(), "stop a container that did not start");
      pid = up;
    }
  }
  if (!pid.ok()) {
    UnregisterPlainLogs(c.id);
    deps_.store
        ->UpdateContainer(c.id,
                          [&](sandbox::ContainerRecord& r) {
                            r.state = sandbox::ContainerState::kExited;
                            r.finished_at = absl::ToUnixNanos(deps_.clock->Now());
                            r.exit_code = 128;
                            r.reason = "StartError";
                            r.message = std::string(pid.status().message());
                            return absl::OkStatus();
                          })
        .IgnoreError();
    Emit(ContainerEventType::kStopped, c.id, c.sandbox_id);
    NotifyExit(c.id);
    return pid.status();
  }
  WatchPlainExit(started);
  Emit(ContainerEventType::kStarted, c.id, c.sandbox_id);
  RecordTimings(c.id, StrCat("{\"startMs\":", absl::ToDoubleMilliseconds(deps_.clock->Now() - t0),
                             ",\"spawnMs\":", absl::ToDoubleMilliseconds(spawn_took), "}"));
  base::LogInfo("container started", {{"id", c.id},
                                      {"sandbox", sb.id},
                                      {"guest_pid", StrCat(*pid)},
                                      {"spawn_ms", StrCat(absl::ToInt64Milliseconds(spawn_took))},
                                      {"took_ms", StrCat(absl::ToInt64Milliseconds(deps_.clock->Now() - t0))}});
  return absl::OkStatus();
}

absl::StatusOr<sandbox::ContainerRecord> PodLifecycle::RefreshPlain(const sandbox::ContainerRecord& c) {
  if (c.state != sandbox::ContainerState::kRunning) return c;
  absl::StatusOr<sandbox::SandboxRecord> sb = deps_.store->GetSandbox(c.sandbox_id);
  if (!sb.ok()) return c;
  const mv::Bundle b = BundleOf(c);
  std::optional<runtime::agent::ExitFile> exit;
  std::string message;
  absl::StatusOr<std::optional<runtime::agent::ExitFile>> read = RunnerFor(*sb).Exited(b);
  if (read.ok()) {
    exit = *read;
  } else {
    // The guest wrote something that is not an exit file: it has ended.
    exit = runtime::agent::ExitFile{false, 255, 0};
    message = std::string(read.status().message());
  }
  if (!exit) {
    // No exit yet: running while the micro-VM is.
    std::string domain = sb->pod_vm.domain_name;
    if (!domain.empty()) {
      ASSIGN_OR_RETURN(runtime::VmStatus vm, deps_.hypervisor->Status(domain));
      if (IsUp(vm.phase)) return c;
    }
    // As containerd reports a task killed with its sandbox: SIGKILL.
    exit = runtime::agent::ExitFile{true, 9, 0};
    message = "the Pod micro-VM stopped while the container ran";
  }
  const int code = exit->code();
  const std::string reason = message.empty() ? ExitReason(*exit) : kError;
  if (reason == kOomKilledReason) {
    message = StrCat("the container's memory limit was reached: the kernel killed ", exit->oom_kills,
                     " of its processes");
  }
  bool changed = false;
  ASSIGN_OR_RETURN(sandbox::ContainerRecord updated, deps_.store->UpdateContainer(c.id, [&](sandbox::ContainerRecord& r) {
    if (r.state != sandbox::ContainerState::kRunning) return absl::OkStatus();
    changed = true;
    r.state = sandbox::ContainerState::kExited;
    r.finished_at = absl::ToUnixNanos(deps_.clock->Now());
    r.exit_code = code;
    r.reason = reason;
    r.message = message;
    return absl::OkStatus();
  }));
  if (changed) {
    UnregisterPlainLogs(c.id);  // copies what is left of both files first
    base::LogInfo("container exited", {{"id", c.id}, {"exit_code", StrCat(code)}, {"reason", reason}});
    Emit(ContainerEventType::kStopped, c.id, c.sandbox_id);
  }
  UnwatchPlainExit(c.id);
  NotifyExit(c.id);
  return updated;
}

void PodLifecycle::WatchPlainExit(const sandbox::ContainerRecord& c) {
  if (c.bundle_dir.empty()) return;
  if (absl::Status s = exit_watcher_.Watch(c.id, c.bundle_dir); !s.ok()) {
    base::LogWarn("exit watch not set; the state poll sees the exit", {{"id", c.id}, {"error", std::string(s.message())}});
  }
  // An exit written before the watch existed.
  if (std::filesystem::exists(std::filesystem::path(c.bundle_dir) / "exit")) OnPlainExit(c.id);
}

void PodLifecycle::UnwatchPlainExit(const std::string& id) { exit_watcher_.Unwatch(id); }

void PodLifecycle::OnPlainExit(const std::string& id) {
  absl::StatusOr<sandbox::ContainerRecord> c = deps_.store->GetContainer(id);
  if (!c.ok() || c->state != sandbox::ContainerState::kRunning) return;
  absl::StatusOr<sandbox::ContainerRecord> r = RefreshPlain(*c);
  if (!r.ok()) base::LogWarn("exit watch: refresh", {{"id", id}, {"error", std::string(r.status().message())}});
}

absl::Status PodLifecycle::StopPlainContainer(const sandbox::ContainerRecord& c, absl::Duration grace) {
  ASSIGN_OR_RETURN(sandbox::SandboxRecord sb, deps_.store->GetSandbox(c.sandbox_id));
  absl::StatusOr<runtime::VmStatus> vm = deps_.hypervisor->Status(sb.pod_vm.domain_name);
  if (vm.ok() && IsUp(vm->phase)) {
    absl::StatusOr<runtime::agent::ExitFile> stopped =
        RunnerFor(sb).Stop(BundleOf(c), grace);
    if (!stopped.ok()) base::LogWarn("container stop", {{"id", c.id}, {"error", std::string(stopped.status().message())}});
  }
  return RefreshPlain(c).status();
}

absl::Status PodLifecycle::DeletePlainArtifacts(const sandbox::ContainerRecord& c) {
  absl::Status first;
  UnregisterPlainLogs(c.id);
  UnwatchPlainExit(c.id);
  absl::StatusOr<sandbox::SandboxRecord> sb = deps_.store->GetSandbox(c.sandbox_id);
  // Without a readable sandbox the share goes with the Pod's directory.
  if (sb.ok() && sb->load_error.empty()) {
    const std::string share = std::filesystem::path(c.bundle_dir).parent_path();
    absl::StatusOr<runtime::VmStatus> vm = sb->pod_vm.domain_name.empty()
                                               ? absl::StatusOr<runtime::VmStatus>(runtime::VmStatus{})
                                               : deps_.hypervisor->Status(sb->pod_vm.domain_name);
    if (vm.ok() && IsUp(vm->phase)) {
      // crun forgets it (and kills what is left of it) in the guest.
      absl::Status deleted = RunnerFor(*sb).Delete(BundleOf(c));
      if (!deleted.ok()) base::LogWarn("crun delete", {{"id", c.id}, {"error", std::string(deleted.message())}});
    }
    absl::StatusOr<base::UniqueFd> share_fd = mv::OpenDir(share);
    if (share_fd.ok()) {
      absl::StatusOr<base::UniqueFd> bundle = mv::OpenDirAt(share_fd->get(), c.id);
      if (bundle.ok()) {
        if (absl::StatusOr<base::UniqueFd> mounts = mv::OpenDirAt(bundle->get(), "mounts"); mounts.ok()) {
          for (size_t i = 0; i < c.mounts.size(); ++i) base::KeepFirstError(&first, mv::UnmountAt(mounts->get(), StrCat(i)));
        }
        base::KeepFirstError(&first, mv::UnmountAt(bundle->get(), "rootfs"));
      }
      if (first.ok()) base::KeepFirstError(&first, mv::RemoveTreeAt(share_fd->get(), c.id));
    } else if (!absl::IsNotFound(share_fd.status())) {
      base::KeepFirstError(&first, share_fd.status());
    }
  }
  if (first.ok()) base::KeepFirstError(&first, base::RemoveAll(ContainerDir(c.id)));
  return first;
}

}  // namespace kvcri::cri
