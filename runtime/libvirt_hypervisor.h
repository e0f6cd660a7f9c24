// Hypervisor over libvirt (the embedded QEMU driver in production, test:///default in tests).
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "runtime/hypervisor.h"

typedef struct _virConnect* virConnectPtr;
typedef struct _virDomain* virDomainPtr;

namespace kvcri::base {
class MetricFamily;
}  // namespace kvcri::base

namespace kvcri::runtime {

class LibvirtConnection;

struct LibvirtHypervisorOptions {
  // e.g. "qemu:///embed?root=/var/lib/kubevirt-cri/libvirt" (config::Config::LibvirtUri()),
  // "qemu:///system", or "test:///default" in tests.
  std::string uri;
  // QEMU binary written to <emulator>; empty lets libvirt choose.
  std::string emulator;
  // kvcri_vm_boot_duration_seconds, a histogram without labels: from a new
  // VM's first Resume to its qemu-guest-agent connecting (libvirt's agent
  // lifecycle event), the moment a guest has booted far enough to run its
  // services. Guests without qemu-guest-agent are not observed. Null: off.
  base::MetricFamily* boot_durations = nullptr;
  // kvcri_libvirt_errors_total{operation}, a counter: failed libvirt calls
  // by libvirt function (runtime/libvirt_handles.h says which failures are
  // answers and not counted). Process-wide once set. Null: not counted.
  base::MetricFamily* errors = nullptr;
};

// Hypervisor over libvirt. VMs are persistent domains: they outlive this
// object and the process (QEMU is daemonised), and a new instance on the same
// URI finds them again through the metadata written at Create.
//
// The embedded driver ("qemu:///embed?root=...") can be opened with only one
// root per process, and one process at a time per root.
// OK for URIs whose QEMU starts in the calling thread's network namespace
// (the embedded driver) and for the test driver; FailedPrecondition saying
// why for every other URI (qemu:///system, remote URIs). Checked at start-up.
absl::Status CheckUriSupportsPodNetns(std::string_view uri);

class LibvirtHypervisor : public Hypervisor {
 public:
  static absl::StatusOr<std::unique_ptr<LibvirtHypervisor>> Open(const LibvirtHypervisorOptions& options);
  ~LibvirtHypervisor() override;

  absl::Status Ready() override;
  absl::Status Create(const VmSpec& spec) override;
  absl::Status Resume(std::string_view name) override;
  absl::Status PowerButton(std::string_view name) override;
  absl::Status Destroy(std::string_view name) override;
  absl::Status Remove(std::string_view name) override;
  absl::StatusOr<VmStatus> Status(std::string_view name) override;
  absl::StatusOr<std::vector<VmListing>> List() override;
  absl::StatusOr<VmStats> Stats(std::string_view name) override;
  absl::Status PlugVcpus(std::string_view name, int vcpus) override;
  absl::Status SetMemory(std::string_view name, int64_t mib) override;
  absl::Status Subscribe(std::function<void(const VmEvent&)> on_event) override;
  std::filesystem::path DomainLogPath(std::string_view name) const override;
  absl::StatusOr<std::string> GuestAgentCommand(std::string_view name, std::string_view command_json,
                                                absl::Duration timeout) override;
  absl::StatusOr<bool> GuestChannelConnected(std::string_view name, std::string_view channel) override;
  // From the pid files libvirt keeps in <embed root>/run/qemu: "<name>.pid"
  // (QEMU) and "<id>-<name, first 20 bytes>-<alias>-fs.pid" (virtiofsd),
  // plus their children; each pid is checked
  // against /proc (QEMU's -name guest=<name>, virtiofsd's comm).
  // Unimplemented for URIs other than the embedded driver.
  absl::StatusOr<std::vector<int>> Processes(std::string_view name) override;

 private:
  LibvirtHypervisor(std::unique_ptr<LibvirtConnection> conn, LibvirtHypervisorOptions options);

  const LibvirtHypervisorOptions options_;
  const std::unique_ptr<LibvirtConnection> conn_;
  const std::filesystem::path log_dir_;  // <embed root>/log/qemu; empty for other URIs
  const std::filesystem::path run_dir_;  // <embed root>/run/qemu; empty for other URIs
  absl::Mutex mu_;
  // Names being created: a second Create of the same name must not redefine
  // (libvirt's define replaces an existing definition of that name).
  absl::flat_hash_set<std::string> creating_ ABSL_GUARDED_BY(mu_);
  std::function<void(const VmEvent&)> on_event_ ABSL_GUARDED_BY(mu_);
  int event_callback_id_ ABSL_GUARDED_BY(mu_) = -1;
  // For boot_durations: VMs created paused and not yet resumed (InfinitePast)
  // or resumed and waiting for their agent (the resume time). Entries go at
  // the agent's connect, Destroy or Remove: at most one per domain.
  absl::flat_hash_map<std::string, absl::Time> booting_ ABSL_GUARDED_BY(mu_);
  int agent_callback_id_ = -1;  // set in Open, before any other thread sees us

  static int OnLifecycleEvent(virConnectPtr conn, virDomainPtr dom, int event, int detail, void* opaque);
  static void OnAgentEvent(virConnectPtr conn, virDomainPtr dom, int state, int reason, void* opaque);
  void ForgetBoot(std::string_view name);
};

}  // namespace kvcri::runtime
