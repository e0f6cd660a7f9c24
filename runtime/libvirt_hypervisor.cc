// Hypervisor over libvirt: domains from VmSpecs, power, state, lifecycle events.
#include "runtime/libvirt_hypervisor.h"

#include <fcntl.h>
#include <libvirt/libvirt-qemu.h>
#include <libxml/parser.h>
#include <libxml/relaxng.h>
#include <libxml/xmlschemastypes.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <optional>

#include "absl/time/clock.h"
#include "config/base/file_util.h"
#include "config/base/log.h"
#include "config/base/metrics.h"
#include "config/base/netns_exec.h"
#include "config/base/rollback.h"
#include "config/base/status_macros.h"
#include "config/base/str.h"
#include "config/base/unique_fd.h"
#include "runtime/domain_xml.h"
#include "runtime/libvirt_connection.h"
#include "runtime/libvirt_handles.h"
#include "runtime/nvram_slice.h"
#include "runtime/vm_state.h"

namespace kvcri::runtime {

using base::StrCat;

namespace {

std::string Quoted(std::string_view op, std::string_view name) { return StrCat(op, " \"", name, "\""); }

absl::StatusOr<DomainPtr> Lookup(virConnectPtr conn, std::string_view name) {
  std::string n(name);
  DomainPtr dom(virDomainLookupByName(conn, n.c_str()));
  if (!dom) return LibvirtError(Quoted("virDomainLookupByName", name));
  return dom;
}

absl::StatusOr<VmStatus> StateOf(virDomainPtr dom, std::string_view name) {
  int state = 0, reason = 0;
  if (virDomainGetState(dom, &state, &reason, 0) < 0) return LibvirtError(Quoted("virDomainGetState", name));
  return VmStatusFromLibvirtState(state, reason);
}

// What virDomainGetDiskErrors says about a VM paused on an I/O error:
// "vda: no space left on the host; vdb: I/O error". Best effort: "" if
// libvirt cannot say (the pause itself is what matters).
std::string DiskErrors(virDomainPtr dom) {
  virDomainDiskError errors[16];
  int n = virDomainGetDiskErrors(dom, errors, 16, 0);
  if (n <= 0) return "";
  std::string out;
  for (int i = 0; i < n; ++i) {
    const char* what = errors[i].error == VIR_DOMAIN_DISK_ERROR_NO_SPACE ? "no space left on the host"
                       : errors[i].error == VIR_DOMAIN_DISK_ERROR_UNSPEC ? "I/O error on the host"
                                                                         : "no error";
    if (!out.empty()) out += "; ";
    out += StrCat(errors[i].disk != nullptr ? errors[i].disk : "?", ": ", what);
    free(errors[i].disk);
  }
  return out;
}

// Forces a domain off; a domain that is not running is fine.
absl::Status DestroyDomain(virDomainPtr dom, std::string_view name) {
  if (virDomainIsActive(dom) == 0) return absl::OkStatus();
  if (virDomainDestroy(dom) == 0) return absl::OkStatus();
  // It stopped between the check and the destroy.
  if (LastLibvirtErrorCode() == VIR_ERR_OPERATION_INVALID && virDomainIsActive(dom) == 0) return absl::OkStatus();
  return LibvirtError(Quoted("virDomainDestroy", name));
}

// Whether the domain keeps its UEFI variable store on a block device (a
// persistent VM's): libvirt's UNDEFINE_NVRAM would unlink that device node.
bool HasBlockNvram(virDomainPtr dom) {
  char* xml = virDomainGetXMLDesc(dom, VIR_DOMAIN_XML_INACTIVE);
  if (xml == nullptr) return true;  // unknown: keeping a file beats unlinking a device
  const bool block = std::string_view(xml).find("<nvram type='block'") != std::string_view::npos;
  std::free(xml);
  return block;
}

absl::Status UndefineDomain(virDomainPtr dom, std::string_view name) {
  // NVRAM and managed-save data would otherwise survive the definition; a
  // block NVRAM is the Pod's volume and stays.
  unsigned flags = (HasBlockNvram(dom) ? VIR_DOMAIN_UNDEFINE_KEEP_NVRAM : VIR_DOMAIN_UNDEFINE_NVRAM) |
                   VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
                   VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA;
  if (virDomainUndefineFlags(dom, flags) == 0) return absl::OkStatus();
  if (LastLibvirtErrorCode() == VIR_ERR_INVALID_ARG) {
    // Drivers without NVRAM or checkpoints (the test driver) reject those flags.
    flags = VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA;
    if (virDomainUndefineFlags(dom, flags) == 0) return absl::OkStatus();
  }
  if (LastLibvirtErrorCode() == VIR_ERR_NO_DOMAIN) return absl::OkStatus();
  return LibvirtError(Quoted("virDomainUndefineFlags", name));
}

}  // namespace

absl::StatusOr<std::unique_ptr<LibvirtHypervisor>> LibvirtHypervisor::Open(const LibvirtHypervisorOptions& options) {
  if (options.uri.empty()) return absl::InvalidArgumentError("libvirt uri is empty");
  if (options.errors != nullptr) SetLibvirtErrorCounter(options.errors);
  ASSIGN_OR_RETURN(std::unique_ptr<LibvirtConnection> conn, LibvirtConnection::Open(options.uri));
  std::unique_ptr<LibvirtHypervisor> hv(new LibvirtHypervisor(std::move(conn), options));
  if (options.boot_durations != nullptr) {
    hv->agent_callback_id_ = virConnectDomainEventRegisterAny(
        hv->conn_->get(), nullptr, VIR_DOMAIN_EVENT_ID_AGENT_LIFECYCLE,
        VIR_DOMAIN_EVENT_CALLBACK(&LibvirtHypervisor::OnAgentEvent), hv.get(), nullptr);
    // Only a metric is lost: VMs run the same.
    if (hv->agent_callback_id_ < 0) {
      base::LogWarn("VM boot durations are not measured: no agent lifecycle events",
                    {{"error", std::string(LibvirtError("virConnectDomainEventRegisterAny").message())}});
    }
  }
  return hv;
}

LibvirtHypervisor::LibvirtHypervisor(std::unique_ptr<LibvirtConnection> conn, LibvirtHypervisorOptions options)
    : options_(std::move(options)),
      conn_(std::move(conn)),
      log_dir_(EmbedRootOf(options_.uri).empty() ? std::filesystem::path()
                                                 : EmbedRootOf(options_.uri) / "log" / "qemu"),
      run_dir_(EmbedRootOf(options_.uri).empty() ? std::filesystem::path()
                                                 : EmbedRootOf(options_.uri) / "run" / "qemu") {
  // Create() defines domains with VIR_DOMAIN_DEFINE_VALIDATE, so the
  // embedded driver parses libvirt's RelaxNG schema in our process, from
  // several threads at once when Pods start together. libxml2 2.9 (Debian
  // 12) registers its XSD and RelaxNG type libraries lazily and without a
  // lock: two first validations at once can see a half-registered library
  // ("Error type 'unsignedLong' is not exported by type library", seen in
  // port_forward_test). Registering them here, on the thread that builds the
  // daemon before it serves, makes the later lazy calls no-ops.
  xmlInitParser();
  xmlSchemaInitTypes();
  xmlRelaxNGInitTypes();
}

std::filesystem::path LibvirtHypervisor::DomainLogPath(std::string_view name) const {
  if (log_dir_.empty() || name.empty() || name.find('/') != std::string_view::npos || name[0] == '.') return {};
  return log_dir_ / StrCat(name, ".log");
}

LibvirtHypervisor::~LibvirtHypervisor() {
  int id;
  {
    absl::MutexLock l(&mu_);
    id = event_callback_id_;
    on_event_ = nullptr;
  }
  if (id >= 0) virConnectDomainEventDeregisterAny(conn_->get(), id);
  if (agent_callback_id_ >= 0) virConnectDomainEventDeregisterAny(conn_->get(), agent_callback_id_);
  // The counter may go with whoever owns it once we are gone.
  if (options_.errors != nullptr) SetLibvirtErrorCounter(nullptr);
}

// libvirt calls this on its event loop thread when a guest's
// qemu-guest-agent opens (or closes) its channel.
void LibvirtHypervisor::OnAgentEvent(virConnectPtr, virDomainPtr dom, int state, int, void* opaque) {
  if (state != VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_CONNECTED) return;
  auto* self = static_cast<LibvirtHypervisor*>(opaque);
  const char* name = virDomainGetName(dom);
  if (name == nullptr) return;
  absl::Time resumed;
  {
    absl::MutexLock l(&self->mu_);
    auto it = self->booting_.find(name);
    if (it == self->booting_.end() || it->second == absl::InfinitePast()) return;
    resumed = it->second;
    self->booting_.erase(it);
  }
  const absl::Duration took = absl::Now() - resumed;
  self->options_.boot_durations->Observe({}, absl::ToDoubleSeconds(took));
  base::LogInfo("guest agent connected", {{"domain", name}, {"boot_ms", StrCat(absl::ToInt64Milliseconds(took))}});
}

void LibvirtHypervisor::ForgetBoot(std::string_view name) {
  if (options_.boot_durations == nullptr) return;
  absl::MutexLock l(&mu_);
  booting_.erase(std::string(name));
}

absl::Status LibvirtHypervisor::Ready() {
  int alive = virConnectIsAlive(conn_->get());
  if (alive == 1) return absl::OkStatus();
  if (alive < 0) return LibvirtError(Quoted("virConnectIsAlive", conn_->uri()));
  return absl::UnavailableError(Quoted("libvirt connection is closed:", conn_->uri()));
}

absl::Status LibvirtHypervisor::Create(const VmSpec& spec) {
  // Held until QEMU has opened it: the loop device detaches itself when QEMU
  // exits (runtime/nvram_slice.h).
  std::optional<NvramSlice> nvram;
  VmSpec sliced;
  const VmSpec* effective = &spec;
  if (spec.firmware != Firmware::kBios && spec.uefi.nvram_is_device) {
    std::error_code ec;
    const uint64_t size = std::filesystem::file_size(spec.uefi.vars_template, ec);
    if (ec) {
      return absl::FailedPreconditionError(
          StrCat("size of \"", spec.uefi.vars_template.native(), "\": ", ec.message()));
    }
    absl::StatusOr<NvramSlice> slice =
        NvramSlice::Attach(spec.uefi.nvram, size, spec.uefi.nvram_node, spec.uid, spec.gid);
    if (!slice.ok()) {
      return absl::Status(slice.status().code(), StrCat("UEFI variable store: ", slice.status().message()));
    }
    nvram = std::move(*slice);
    sliced = spec;
    sliced.uefi.nvram = nvram->node();
    effective = &sliced;
  }
  ASSIGN_OR_RETURN(std::string xml, BuildDomainXml(*effective, DomainXmlOptions{options_.emulator}));
  {
    absl::MutexLock l(&mu_);
    if (!creating_.insert(spec.name).second) {
      return absl::AlreadyExistsError(StrCat("domain \"", spec.name, "\" is being created"));
    }
  }
  // Destroyed last: the name stays reserved until the rollback has run.
  struct Unmark {
    LibvirtHypervisor* self;
    std::string name;
    ~Unmark() {
      absl::MutexLock l(&self->mu_);
      self->creating_.erase(name);
    }
  } unmark{this, spec.name};
  base::Rollback undo;

  virConnectPtr conn = conn_->get();
  if (DomainPtr existing(virDomainLookupByName(conn, spec.name.c_str())); existing) {
    return absl::AlreadyExistsError(StrCat("domain \"", spec.name, "\" already exists"));
  }
  DomainPtr dom(virDomainDefineXMLFlags(conn, xml.c_str(), VIR_DOMAIN_DEFINE_VALIDATE));
  if (!dom) return LibvirtError(Quoted("virDomainDefineXML", spec.name));
  // The undo looks the domain up again: `dom` is gone by the time it runs.
  undo.Add("destroy and undefine domain", [conn, name = spec.name]() -> absl::Status {
    absl::StatusOr<DomainPtr> d = Lookup(conn, name);
    if (absl::IsNotFound(d.status())) return absl::OkStatus();
    RETURN_IF_ERROR(d.status());
    absl::Status first = DestroyDomain(d->get(), name);
    base::KeepFirstError(&first, UndefineDomain(d->get(), name));
    return first;
  });
  absl::Time t0 = absl::Now();
  auto start = [&]() -> absl::Status {
    if (virDomainCreateWithFlags(dom.get(), spec.start_paused ? VIR_DOMAIN_START_PAUSED : 0) < 0) {
      return LibvirtError(Quoted("virDomainCreateWithFlags", spec.name));
    }
    return absl::OkStatus();
  };
  // The embedded driver forks QEMU from the calling thread: started from a
  // thread inside the Pod's network namespace, QEMU opens the Pod's tap there
  // (CheckUriSupportsPodNetns refuses URIs where this cannot hold).
  RETURN_IF_ERROR(spec.netns.empty() ? start() : base::RunInNetns(spec.netns, start));
  undo.Dismiss();
  if (options_.boot_durations != nullptr) {
    absl::MutexLock l(&mu_);
    booting_[spec.name] = spec.start_paused ? absl::InfinitePast() : absl::Now();
  }
  base::LogInfo("domain started", {{"domain", spec.name},
                                   {"container", spec.container_id},
                                   {"paused", spec.start_paused ? "true" : "false"},
                                   {"took_ms", StrCat(absl::ToInt64Milliseconds(absl::Now() - t0))}});
  return absl::OkStatus();
}

absl::Status LibvirtHypervisor::Resume(std::string_view name) {
  ASSIGN_OR_RETURN(DomainPtr dom, Lookup(conn_->get(), name));
  if (virDomainResume(dom.get()) < 0) return LibvirtError(Quoted("virDomainResume", name));
  if (options_.boot_durations != nullptr) {
    // Only a new VM's first resume starts its boot clock; resumes after a
    // host I/O error pause do not.
    absl::MutexLock l(&mu_);
    if (auto it = booting_.find(std::string(name)); it != booting_.end() && it->second == absl::InfinitePast()) {
      it->second = absl::Now();
    }
  }
  return absl::OkStatus();
}

absl::Status LibvirtHypervisor::PowerButton(std::string_view name) {
  ASSIGN_OR_RETURN(DomainPtr dom, Lookup(conn_->get(), name));
  if (virDomainIsActive(dom.get()) == 0) return absl::OkStatus();
  if (virDomainShutdownFlags(dom.get(), VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN) == 0) return absl::OkStatus();
  if (LastLibvirtErrorCode() == VIR_ERR_INVALID_ARG && virDomainShutdown(dom.get()) == 0) {
    return absl::OkStatus();  // drivers without the ACPI flag (the test driver)
  }
  if (virDomainIsActive(dom.get()) == 0) return absl::OkStatus();  // it went off meanwhile
  return LibvirtError(Quoted("virDomainShutdownFlags", name));
}

absl::Status LibvirtHypervisor::Destroy(std::string_view name) {
  ForgetBoot(name);
  absl::StatusOr<DomainPtr> dom = Lookup(conn_->get(), name);
  if (absl::IsNotFound(dom.status())) return absl::OkStatus();
  RETURN_IF_ERROR(dom.status());
  return DestroyDomain(dom->get(), name);
}

absl::Status LibvirtHypervisor::Remove(std::string_view name) {
  ForgetBoot(name);
  absl::StatusOr<DomainPtr> dom = Lookup(conn_->get(), name);
  if (!absl::IsNotFound(dom.status())) {
    RETURN_IF_ERROR(dom.status());
    RETURN_IF_ERROR(DestroyDomain(dom->get(), name));
    RETURN_IF_ERROR(UndefineDomain(dom->get(), name));
    base::LogInfo("domain removed", {{"domain", std::string(name)}});
  }
  // libvirt keeps the QEMU log after undefine: one file per VM ever run.
  // Also when the domain is gone already, so a retried Remove finishes it.
  if (std::filesystem::path log = DomainLogPath(name); !log.empty()) {
    RETURN_IF_ERROR(base::RemoveFile(log));
    // And each virtiofsd's, "<name>-fs<N>-virtiofsd.log" beside it.
    std::error_code ec;
    const std::string prefix = StrCat(name, "-fs");
    for (const auto& e : std::filesystem::directory_iterator(log.parent_path(), ec)) {
      const std::string f = e.path().filename();
      if (f.rfind(prefix, 0) == 0 && f.size() > prefix.size() + 14 && f.ends_with("-virtiofsd.log")) {
        RETURN_IF_ERROR(base::RemoveFile(e.path()));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<VmStatus> LibvirtHypervisor::Status(std::string_view name) {
  absl::StatusOr<DomainPtr> dom = Lookup(conn_->get(), name);
  if (absl::IsNotFound(dom.status())) return VmStatus{VmPhase::kMissing, 0, ""};
  RETURN_IF_ERROR(dom.status());
  absl::StatusOr<VmStatus> st = StateOf(dom->get(), name);
  if (absl::IsNotFound(st.status())) return VmStatus{VmPhase::kMissing, 0, ""};  // removed meanwhile
  if (st.ok() && st->reason == kIoErrorReason) st->message = DiskErrors(dom->get());
  return st;
}

absl::StatusOr<std::vector<VmListing>> LibvirtHypervisor::List() {
  virDomainPtr* raw = nullptr;
  int n = virConnectListAllDomains(conn_->get(), &raw, 0);
  if (n < 0) return LibvirtError("virConnectListAllDomains");
  std::vector<DomainPtr> doms;
  doms.reserve(n);
  for (int i = 0; i < n; ++i) doms.emplace_back(raw[i]);
  free(raw);

  std::string uri(kMetadataUri);
  std::vector<VmListing> out;
  for (const DomainPtr& dom : doms) {
    const char* name = virDomainGetName(dom.get());
    LibvirtString meta(virDomainGetMetadata(dom.get(), VIR_DOMAIN_METADATA_ELEMENT, uri.c_str(), 0));
    if (!meta) {
      int code = LastLibvirtErrorCode();
      if (code == VIR_ERR_NO_DOMAIN_METADATA || code == VIR_ERR_NO_DOMAIN) continue;  // not ours, or gone
      return LibvirtError(Quoted("virDomainGetMetadata", name));
    }
    absl::StatusOr<VmMetadata> m = ParseMetadataXml(meta.get());
    if (!m.ok()) {
      base::LogWarn("skipping domain with unreadable metadata",
                    {{"domain", name}, {"error", std::string(m.status().message())}});
      continue;
    }
    absl::StatusOr<VmStatus> st = StateOf(dom.get(), name);
    if (absl::IsNotFound(st.status())) continue;
    RETURN_IF_ERROR(st.status());
    out.push_back(VmListing{name, m->pod_id, m->container_id, st->phase, st->reason});
  }
  return out;
}

namespace {

std::string_view LifecycleEventName(int event) {
  switch (event) {
    case VIR_DOMAIN_EVENT_DEFINED: return "defined";
    case VIR_DOMAIN_EVENT_UNDEFINED: return "undefined";
    case VIR_DOMAIN_EVENT_STARTED: return "started";
    case VIR_DOMAIN_EVENT_SUSPENDED: return "suspended";
    case VIR_DOMAIN_EVENT_RESUMED: return "resumed";
    case VIR_DOMAIN_EVENT_STOPPED: return "stopped";
    case VIR_DOMAIN_EVENT_SHUTDOWN: return "shutdown";
    case VIR_DOMAIN_EVENT_PMSUSPENDED: return "pmsuspended";
    case VIR_DOMAIN_EVENT_CRASHED: return "crashed";
    default: return "other";
  }
}

}  // namespace

// libvirt calls this on its event loop thread (LibvirtConnection's).
int LibvirtHypervisor::OnLifecycleEvent(virConnectPtr, virDomainPtr dom, int event, int detail, void* opaque) {
  auto* self = static_cast<LibvirtHypervisor*>(opaque);
  const char* name = virDomainGetName(dom);
  if (name == nullptr) return 0;
  VmEvent e{name, StrCat(LifecycleEventName(event), "/", detail)};
  absl::MutexLock l(&self->mu_);
  if (self->on_event_) self->on_event_(e);
  return 0;
}

absl::Status LibvirtHypervisor::Subscribe(std::function<void(const VmEvent&)> on_event) {
  {
    absl::MutexLock l(&mu_);
    on_event_ = std::move(on_event);
    if (event_callback_id_ >= 0) return absl::OkStatus();
  }
  int id = virConnectDomainEventRegisterAny(conn_->get(), nullptr, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                            VIR_DOMAIN_EVENT_CALLBACK(&LibvirtHypervisor::OnLifecycleEvent), this,
                                            nullptr);
  if (id < 0) {
    absl::Status err = LibvirtError("virConnectDomainEventRegisterAny");
    if (LastLibvirtErrorCode() == VIR_ERR_NO_SUPPORT) return absl::UnimplementedError(err.message());
    return err;
  }
  absl::MutexLock l(&mu_);
  event_callback_id_ = id;
  return absl::OkStatus();
}

absl::Status CheckUriSupportsPodNetns(std::string_view uri) {
  // The embedded driver runs QEMU as our child, forked from the thread that
  // asked for it, so QEMU starts inside the Pod's network namespace and finds
  // the Pod's tap. The test driver runs no QEMU. Any other URI reaches a
  // libvirtd that forks QEMU in its own namespace, where the tap does not
  // exist, so VM Pods could never get their network.
  if (uri.rfind("qemu:///embed?", 0) == 0 || uri.rfind("test://", 0) == 0) return absl::OkStatus();
  return absl::FailedPreconditionError(
      StrCat("libvirt.uri \"", uri,
             "\" is not supported: libvirtd starts QEMU in its own network namespace, where the Pod's tap device "
             "created in the Pod network namespace does not exist, so VM Pods would have no network; use the "
             "embedded driver (leave libvirt.uri empty for qemu:///embed?root=<root>/libvirt)"));
}

namespace {

// A pid file or a /proc file of a process, read with a bound: /proc/<pid>/
// cmdline of QEMU is a few KiB.
absl::StatusOr<std::string> ReadBounded(const std::filesystem::path& path, size_t max) {
  base::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid()) return absl::ErrnoToStatus(errno, StrCat("open \"", path.native(), "\""));
  std::string out(max, '\0');
  size_t got = 0;
  while (got < max) {
    ssize_t n = ::read(fd.get(), out.data() + got, max - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::ErrnoToStatus(errno, StrCat("read \"", path.native(), "\""));
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  out.resize(got);
  return out;
}

absl::StatusOr<int> ReadPidFile(const std::filesystem::path& path) {
  ASSIGN_OR_RETURN(std::string text, ReadBounded(path, 32));
  int pid = 0;
  for (char ch : text) {
    if (ch == '\n') break;
    if (ch < '0' || ch > '9' || pid > 100000000) return absl::DataLossError(StrCat("\"", path.native(), "\" holds no pid"));
    pid = pid * 10 + (ch - '0');
  }
  if (pid <= 1) return absl::DataLossError(StrCat("\"", path.native(), "\" holds no pid"));
  return pid;
}

// Appends every descendant of the pids in `pids` (from /proc/<pid>/stat's
// ppid), each once. One pass over /proc per generation; QEMU has none,
// virtiofsd one.
void AddDescendants(std::vector<int>* pids) {
  std::vector<std::pair<int, int>> parent_of;  // (pid, ppid)
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    absl::StatusOr<std::string> stat = ReadBounded(entry.path() / "stat", 1024);
    if (!stat.ok()) continue;  // gone meanwhile
    // "pid (comm) state ppid ...": comm may hold spaces and parens.
    const size_t close = stat->rfind(')');
    if (close == std::string::npos || close + 4 >= stat->size()) continue;
    const char* p = stat->c_str() + close + 4;  // past ") S "
    parent_of.emplace_back(std::atoi(name.c_str()), std::atoi(p));
  }
  for (size_t i = 0; i < pids->size(); ++i) {
    for (const auto& [pid, ppid] : parent_of) {
      if (ppid == (*pids)[i] && std::find(pids->begin(), pids->end(), pid) == pids->end()) pids->push_back(pid);
    }
  }
}

}  // namespace

absl::StatusOr<std::vector<int>> LibvirtHypervisor::Processes(std::string_view name) {
  if (run_dir_.empty()) {
    return absl::UnimplementedError("the VM's processes are known only with libvirt's embedded driver");
  }
  ASSIGN_OR_RETURN(DomainPtr dom, Lookup(conn_->get(), name));
  if (virDomainIsActive(dom.get()) != 1) return absl::FailedPreconditionError(StrCat("domain \"", name, "\" is not running"));
  const unsigned int dom_id = virDomainGetID(dom.get());
  std::vector<int> out;
  ASSIGN_OR_RETURN(int qemu, ReadPidFile(run_dir_ / StrCat(name, ".pid")));
  // A pid file outliving its QEMU could name a reused pid: this one must be
  // our domain's QEMU (its command line has "-name guest=<name>,...").
  ASSIGN_OR_RETURN(std::string cmdline, ReadBounded(StrCat("/proc/", qemu, "/cmdline"), 256 << 10));
  if (cmdline.find(StrCat(std::string_view("\0guest=", 7), name, ",")) == std::string::npos) {
    return absl::FailedPreconditionError(StrCat("process ", qemu, " of \"", name, ".pid\" is not the domain's QEMU"));
  }
  out.push_back(qemu);
  // virtiofsd's pid files: "<short name>-<alias>-fs.pid" in the same dir,
  // libvirt's short name being "<id>-<first 20 bytes of the name>".
  const std::string prefix = StrCat(dom_id, "-", name.substr(0, 20), "-");
  constexpr std::string_view kSuffix = "-fs.pid";
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(run_dir_, ec)) {
    const std::string file = entry.path().filename().string();
    if (file.size() <= prefix.size() + kSuffix.size() || file.rfind(prefix, 0) != 0 ||
        file.compare(file.size() - kSuffix.size(), kSuffix.size(), kSuffix) != 0) {
      continue;
    }
    absl::StatusOr<int> pid = ReadPidFile(entry.path());
    if (!pid.ok()) return pid.status();
    absl::StatusOr<std::string> comm = ReadBounded(StrCat("/proc/", *pid, "/comm"), 64);
    if (!comm.ok() || comm->rfind("virtiofsd", 0) != 0) {
      return absl::FailedPreconditionError(StrCat("process ", *pid, " of \"", file, "\" is not a virtiofsd"));
    }
    out.push_back(*pid);
  }
  if (ec) return absl::ErrnoToStatus(ec.value(), StrCat("list \"", run_dir_.native(), "\""));
  // virtiofsd forks its sandboxed worker before we get here (the pid file
  // names the parent): every descendant goes along.
  AddDescendants(&out);
  return out;
}

absl::StatusOr<VmStats> LibvirtHypervisor::Stats(std::string_view name) {
  ASSIGN_OR_RETURN(DomainPtr dom, Lookup(conn_->get(), name));
  virDomainInfo info;
  if (virDomainGetInfo(dom.get(), &info) < 0) return LibvirtError(Quoted("virDomainGetInfo", name));
  if (info.state != VIR_DOMAIN_RUNNING && info.state != VIR_DOMAIN_PAUSED && info.state != VIR_DOMAIN_BLOCKED) {
    return absl::FailedPreconditionError(StrCat("domain \"", name, "\" is not running"));
  }
  VmStats s;
  s.timestamp = absl::Now();
  s.cpu_ns = info.cpuTime;
  s.memory_actual_bytes = static_cast<uint64_t>(info.memory) * 1024;
  virDomainMemoryStatStruct mem[VIR_DOMAIN_MEMORY_STAT_NR];
  int n = virDomainMemoryStats(dom.get(), mem, VIR_DOMAIN_MEMORY_STAT_NR, 0);
  for (int i = 0; i < n; ++i) {  // n < 0 (unsupported): keep what GetInfo gave
    switch (mem[i].tag) {
      case VIR_DOMAIN_MEMORY_STAT_RSS: s.memory_rss_bytes = mem[i].val * 1024; break;
      case VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON: s.memory_actual_bytes = mem[i].val * 1024; break;
      case VIR_DOMAIN_MEMORY_STAT_UNUSED: s.memory_unused_bytes = mem[i].val * 1024; break;
      default: break;
    }
  }
  return s;
}

namespace {

absl::Status CheckRunning(virDomainPtr dom, std::string_view name) {
  int state = 0, reason = 0;
  if (virDomainGetState(dom, &state, &reason, 0) < 0) return LibvirtError(Quoted("virDomainGetState", name));
  if (state != VIR_DOMAIN_RUNNING && state != VIR_DOMAIN_PAUSED && state != VIR_DOMAIN_BLOCKED) {
    return absl::FailedPreconditionError(StrCat("domain \"", name, "\" is not running"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status LibvirtHypervisor::PlugVcpus(std::string_view name, int vcpus) {
  ASSIGN_OR_RETURN(DomainPtr dom, Lookup(conn_->get(), name));
  RETURN_IF_ERROR(CheckRunning(dom.get(), name));
  const int max = virDomainGetVcpusFlags(dom.get(), static_cast<unsigned>(VIR_DOMAIN_AFFECT_LIVE) | VIR_DOMAIN_VCPU_MAXIMUM);
  if (max < 0) return LibvirtError(Quoted("virDomainGetVcpusFlags (maximum)", name));
  if (vcpus < 1 || vcpus > max) {
    return absl::InvalidArgumentError(
        StrCat("domain \"", name, "\" has ", max, " vCPU slots; ", vcpus, " vCPUs cannot be set without a reboot"));
  }
  const int current = virDomainGetVcpusFlags(dom.get(), VIR_DOMAIN_AFFECT_LIVE);
  if (current < 0) return LibvirtError(Quoted("virDomainGetVcpusFlags", name));
  if (current >= vcpus) return absl::OkStatus();  // never unplugs; a retried resize converges
  const absl::Time t0 = absl::Now();
  // QEMU device_add of x86 CPUs, announced to the guest through ACPI.
  if (virDomainSetVcpusFlags(dom.get(), static_cast<unsigned>(vcpus), VIR_DOMAIN_AFFECT_LIVE) < 0) {
    return LibvirtError(Quoted("virDomainSetVcpusFlags", name));
  }
  base::LogInfo("vCPUs set", {{"domain", std::string(name)},
                              {"from", StrCat(current)},
                              {"to", StrCat(vcpus)},
                              {"took_ms", StrCat(absl::ToInt64Milliseconds(absl::Now() - t0))}});
  return absl::OkStatus();
}

absl::Status LibvirtHypervisor::SetMemory(std::string_view name, int64_t mib) {
  ASSIGN_OR_RETURN(DomainPtr dom, Lookup(conn_->get(), name));
  RETURN_IF_ERROR(CheckRunning(dom.get(), name));
  const unsigned long max_kib = virDomainGetMaxMemory(dom.get());
  if (max_kib == 0) return LibvirtError(Quoted("virDomainGetMaxMemory", name));
  if (mib < 1 || static_cast<uint64_t>(mib) * 1024 > max_kib) {
    return absl::InvalidArgumentError(StrCat("domain \"", name, "\" booted with ", max_kib / 1024, " MiB; ", mib,
                                             " MiB is above it (the balloon only shrinks the guest)"));
  }
  // The balloon's target: the guest driver gives pages back (or takes them
  // again) on its own time; libvirt returns once QEMU has the new target.
  if (virDomainSetMemoryFlags(dom.get(), static_cast<unsigned long>(mib) * 1024, VIR_DOMAIN_AFFECT_LIVE) < 0) {
    return LibvirtError(Quoted("virDomainSetMemoryFlags", name));
  }
  base::LogInfo("balloon target set", {{"domain", std::string(name)}, {"mib", StrCat(mib)}});
  return absl::OkStatus();
}

absl::StatusOr<std::string> LibvirtHypervisor::GuestAgentCommand(std::string_view name, std::string_view command_json,
                                                                 absl::Duration timeout) {
  ASSIGN_OR_RETURN(DomainPtr dom, Lookup(conn_->get(), name));
  // libvirt takes whole seconds; at least one, or 0 would mean "don't wait".
  const int64_t seconds = std::clamp<int64_t>(absl::ToInt64Seconds(absl::Ceil(timeout, absl::Seconds(1))), 1, 3600);
  const std::string cmd(command_json);
  const absl::Time t0 = absl::Now();
  LibvirtString reply(virDomainQemuAgentCommand(dom.get(), cmd.c_str(), static_cast<int>(seconds), 0));
  if (!reply) {
    const int code = LastLibvirtErrorCode();
    absl::Status err = LibvirtError(Quoted("virDomainQemuAgentCommand", name));
    // libvirt says VIR_ERR_AGENT_UNRESPONSIVE both when no agent is
    // connected and when it did not answer in time; the clock tells which.
    if (code == VIR_ERR_AGENT_UNRESPONSIVE) {
      if (absl::Now() - t0 >= absl::Seconds(seconds)) return absl::DeadlineExceededError(err.message());
      return absl::UnavailableError(err.message());
    }
    return err;
  }
  return std::string(reply.get());
}

absl::StatusOr<bool> LibvirtHypervisor::GuestChannelConnected(std::string_view name, std::string_view channel) {
  ASSIGN_OR_RETURN(DomainPtr dom, Lookup(conn_->get(), name));
  LibvirtString xml(virDomainGetXMLDesc(dom.get(), 0));  // live XML: carries the channel state
  if (!xml) return LibvirtError(Quoted("virDomainGetXMLDesc", name));
  return ParseChannelConnected(xml.get(), channel);
}

}  // namespace kvcri::runtime
