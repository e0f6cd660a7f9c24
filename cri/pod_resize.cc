// PodLifecycle::UpdateResources: in-place resize of a VM container (vCPU hot-plug, balloon, the cgroup's CPU limits).
#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "config/base/log.h"
#include "config/base/status_macros.h"
#include "config/base/str.h"
#include "cri/exec_dispatch.h"
#include "cri/pod_lifecycle.h"
#include "cri/vm_size.h"
#include "runtime/hypervisor.h"
#include "runtime/qemu_guest_agent.h"
#include "sandbox/sandbox_store.h"

namespace kvcri::cri {

using base::StrCat;
using Mode = OpTracker::Mode;

namespace {

// How long the guest gets to see and online hot-plugged vCPUs: the ACPI
// notification reaches a TCG guest in well under a second, but a busy guest
// or an agent still starting may take longer.
constexpr absl::Duration kOnlineWait = absl::Seconds(20);
constexpr absl::Duration kOnlinePoll = absl::Milliseconds(250);

// For guests without qemu-guest-agent, through kvcri-agent (busybox sh is
// enough): CPUs 0..$1-1 online, the others offline; prints how many are
// online. cpu0 has no online file on x86.
constexpr char kOnlineScript[] =
    "n=0; for d in /sys/devices/system/cpu/cpu[0-9]*; do i=${d##*cpu}; "
    "if [ -e \"$d/online\" ]; then want=0; [ \"$i\" -lt \"$1\" ] && want=1; "
    "[ \"$(cat \"$d/online\")\" = $want ] || echo $want >\"$d/online\" 2>/dev/null; "
    "[ \"$(cat \"$d/online\")\" = 1 ] && n=$((n+1)); "
    "else n=$((n+1)); fi; done; echo $n";

}  // namespace

void PodLifecycle::GuestVcpus(const sandbox::ContainerRecord& c, int vcpus) {
  runtime::QemuGuestAgent qga(deps_.hypervisor);
  const absl::Time deadline = absl::Now() + kOnlineWait;
  bool use_exec = false;
  int online = 0;
  std::string last_error;
  while (true) {
    if (!use_exec) {
      absl::StatusOr<int> n = qga.SetOnlineVcpus(c.domain_name, vcpus, absl::Seconds(30));
      if (!n.ok()) {
        last_error = std::string(n.status().message());
        // No qemu-guest-agent, or one that refuses guest-set-vcpus: a shell
        // through whichever agent answers (ExecDispatcher picks kvcri-agent).
        if (deps_.exec == nullptr || !(absl::IsUnavailable(n.status()) || absl::IsUnimplemented(n.status()) ||
                                       absl::IsFailedPrecondition(n.status()))) {
          break;
        }
        use_exec = true;
        continue;
      }
      online = *n;
    } else {
      absl::StatusOr<ExecSyncResult> r =
          deps_.exec->ExecSync(c.id, {"/bin/sh", "-c", kOnlineScript, "kvcri-vcpus", StrCat(vcpus)}, absl::Seconds(30));
      int n = 0;
      if (!r.ok() || r->exit_code != 0 || !absl::SimpleAtoi(absl::StripAsciiWhitespace(r->stdout_data), &n)) {
        last_error = StrCat(last_error, "; exec: ",
                            r.ok() ? StrCat("the vCPU script exited ", r->exit_code, ": ", r->stderr_data.substr(0, 200))
                                   : std::string(r.status().message()));
        break;  // no agent at all: nothing to wait for
      }
      online = n;
    }
    // A hot-plugged CPU shows up in the guest a moment after libvirt
    // returns: until then there is nothing to online yet.
    if (online == vcpus || absl::Now() + kOnlinePoll >= deadline) break;
    absl::SleepFor(kOnlinePoll);
  }
  if (online == vcpus) {
    base::LogInfo("guest runs on its vCPUs", {{"id", c.id}, {"online", StrCat(online)},
                                             {"via", use_exec ? "exec" : "qemu-guest-agent"}});
    return;
  }
  // The vCPUs are plugged and the cgroup's quota holds either way; a guest
  // whose udev onlines CPUs itself (most distributions) needs no agent to
  // grow, only to shrink.
  base::LogWarn("guest does not run on the requested vCPUs",
                {{"id", c.id}, {"want", StrCat(vcpus)}, {"online", StrCat(online)}, {"error", last_error}});
}

// Crash safety: the live changes come first and the record is written only
// after all of them succeeded, so a record never claims a size the VM does
// not have. Every live step is idempotent (libvirt is not called for vCPUs
// the VM already has, the guest's online set is set, not toggled, the balloon target and the cgroup files are
// plain writes) and is applied on every call, never skipped because the
// record already says so. A crash (or a failed step) between libvirt and the
// record write leaves the VM resized and the record at the old values:
// ContainerStatus reports the old resources, kubelet sees the resize has not
// completed and sends it again, and that call converges VM and record.
// Nothing is left for recovery to do.
absl::Status PodLifecycle::UpdateResources(std::string_view id_arg, const ContainerResources& asked) {
  ASSIGN_OR_RETURN(std::string id, deps_.store->ResolveContainerId(id_arg));
  ASSIGN_OR_RETURN(sandbox::ContainerRecord c, deps_.store->GetContainer(id));
  ASSIGN_OR_RETURN(OpTracker::Hold pod_hold,
                   ops_.Acquire(c.sandbox_id, Mode::kShared, "UpdateContainerResources", options_.op_wait));
  ASSIGN_OR_RETURN(OpTracker::Hold hold,
                   ops_.Acquire(id, Mode::kExclusive, "UpdateContainerResources", options_.op_wait));
  ASSIGN_OR_RETURN(c, deps_.store->GetContainer(id));  // re-read under the mark
  if (!c.load_error.empty()) {
    return absl::FailedPreconditionError(StrCat("container \"", id, "\" has an unreadable record: ", c.load_error));
  }
  // As containerd does: a field left 0 or empty keeps what is in force
  // (`crictl update --cpu-quota …` alone must not reset the memory to the
  // default size). kubelet always sends every field.
  ContainerResources want = asked;
  if (want.memory_limit_bytes == 0) want.memory_limit_bytes = c.resources.memory_limit_in_bytes;
  if (want.cpu_quota == 0 && want.cpu_period == 0) {
    want.cpu_quota = c.resources.cpu_quota;
    want.cpu_period = c.resources.cpu_period;
  }
  if (want.cpu_shares == 0) want.cpu_shares = c.resources.cpu_shares;
  if (want.cpuset_cpus.empty()) want.cpuset_cpus = c.resources.cpuset_cpus;
  if (want.cpuset_mems.empty()) want.cpuset_mems = c.resources.cpuset_mems;
  ASSIGN_OR_RETURN(VmSize size, SizeVm(deps_.config->vm, want, "linux."));
  const sandbox::ContainerLinuxResources res = RecordResources(want);

  if (c.state == sandbox::ContainerState::kCreated && c.phase == sandbox::Phase::kReady) {
    // Not booted yet: as containerd updates a created container's spec, the
    // new size is what StartContainer boots with.
    const int max_vcpus = std::max(deps_.config->vm.max_vcpus, size.vcpus);
    RETURN_IF_ERROR(deps_.store
                        ->UpdateContainer(id,
                                          [&](sandbox::ContainerRecord& r) {
                                            r.vcpus = size.vcpus;
                                            r.max_vcpus = max_vcpus;
                                            r.memory_mib = size.memory_mib;
                                            r.max_memory_mib = size.memory_mib;
                                            r.resources = res;
                                            return absl::OkStatus();
                                          })
                        .status());
    base::LogInfo("container resized before start", {{"id", id}, {"vcpus", StrCat(size.vcpus)},
                                                     {"memory_mib", StrCat(size.memory_mib)}});
    return absl::OkStatus();
  }
  if (c.state != sandbox::ContainerState::kRunning) {
    return absl::FailedPreconditionError(StrCat("container \"", id, "\" is ", sandbox::ContainerStateName(c.state),
                                                "; only a created or running container can be resized"));
  }

  // The maximums were fixed when the VM started (0: a record from before
  // resizing, whose VM has exactly its boot size).
  const int max_vcpus = std::max(c.max_vcpus, c.vcpus);
  const int64_t max_mib = std::max(c.max_memory_mib, c.memory_mib);
  if (size.vcpus > max_vcpus) {
    return absl::InvalidArgumentError(StrCat(
        "linux.cpu_quota ", want.cpu_quota, " / linux.cpu_period ", want.cpu_period, " asks for ", size.vcpus,
        " vCPUs; this VM can be hot-plugged up to ", max_vcpus,
        " (vm.max_vcpus when it started); more needs a new container"));
  }
  if (size.memory_mib > max_mib) {
    return absl::InvalidArgumentError(
        StrCat("linux.memory_limit_in_bytes ", want.memory_limit_bytes, " (", size.memory_mib,
               " MiB) is above this VM's boot memory of ", max_mib,
               " MiB, its maximum: the balloon only shrinks a running guest; more needs a new container"));
  }

  const absl::Time t0 = deps_.clock->Now();
  // Growing plugs vCPUs (PlugVcpus never unplugs, see runtime/hypervisor.h);
  // shrinking leaves them plugged and has the guest offline the extra ones,
  // so a later grow only onlines them again. At most max_vcpus are plugged.
  if (absl::Status s = deps_.hypervisor->PlugVcpus(c.domain_name, size.vcpus); !s.ok()) {
    return absl::Status(s.code(), StrCat("set ", size.vcpus, " vCPUs on container \"", id, "\": ", s.message()));
  }
  // On every call, also a retry: the guest may not have taken the vCPUs of
  // an earlier call yet.
  GuestVcpus(c, size.vcpus);
  if (absl::Status s = deps_.hypervisor->SetMemory(c.domain_name, size.memory_mib); !s.ok()) {
    return absl::Status(s.code(),
                        StrCat("set the balloon of container \"", id, "\" to ", size.memory_mib, " MiB: ", s.message()));
  }
  sandbox::ContainerRecord limited = c;
  limited.resources = res;
  RETURN_IF_ERROR(ApplyCpuLimits(limited));

  RETURN_IF_ERROR(deps_.store
                      ->UpdateContainer(id,
                                        [&](sandbox::ContainerRecord& r) {
                                          r.vcpus = size.vcpus;
                                          r.memory_mib = size.memory_mib;
                                          // Older records learn their maximums here.
                                          r.max_vcpus = max_vcpus;
                                          r.max_memory_mib = max_mib;
                                          r.resources = res;
                                          return absl::OkStatus();
                                        })
                      .status());
  base::LogInfo("container resized",
                {{"id", id},
                 {"vcpus", StrCat(c.vcpus, "->", size.vcpus)},
                 {"memory_mib", StrCat(c.memory_mib, "->", size.memory_mib)},
                 {"took_ms", StrCat(absl::ToInt64Milliseconds(deps_.clock->Now() - t0))}});
  return absl::OkStatus();
}

}  // namespace kvcri::cri
