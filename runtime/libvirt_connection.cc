// LibvirtConnection: opening libvirt (embed root and its qemu.conf) and the event loop thread.
#include "runtime/libvirt_connection.h"

#include <sys/stat.h>

#include <mutex>

#include "config/base/file_util.h"
#include "config/base/log.h"
#include "config/base/str.h"

namespace kvcri::runtime {

using base::StrCat;

namespace {

constexpr std::string_view kEmbedPrefix = "qemu:///embed?root=";
constexpr std::string_view kConfHeader = "# Written by kubevirt-cri";

void IgnoreLibvirtError(void*, virErrorPtr) {}

absl::Status InitLibvirtOnce() {
  // libvirt's event loop implementation and error handler are process-wide
  // by design: registered once per process, never unregistered. This
  // once_flag is the only process-wide state of runtime/.
  static std::once_flag once;
  static int rc = 0;
  std::call_once(once, [] {
    // Errors reach callers as Status; libvirt's default handler would also
    // print each one (including expected "Domain not found") to stderr.
    virSetErrorFunc(nullptr, IgnoreLibvirtError);
    rc = virEventRegisterDefaultImpl();
  });
  if (rc < 0) return LibvirtError("virEventRegisterDefaultImpl");
  return absl::OkStatus();
}

}  // namespace

std::filesystem::path EmbedRootOf(std::string_view uri) {
  if (uri.substr(0, kEmbedPrefix.size()) != kEmbedPrefix) return {};
  std::string_view root = uri.substr(kEmbedPrefix.size());
  root = root.substr(0, root.find('&'));
  return std::filesystem::path(std::string(root));
}

std::string EmbedQemuConf() {
  return StrCat(kConfHeader, " for its embedded QEMU driver; edit freely after removing this line.\n",
                "stdio_handler = \"file\"\n",
                "user = \"root\"\n",
                "group = \"root\"\n",
                "dynamic_ownership = 0\n",
                "remember_owner = 0\n",
                "security_driver = \"none\"\n",
                "seccomp_sandbox = 1\n",
                // swtpm (a vTPM, which only unconfined VMs get: their QEMU
                // is root too) as root: its default user tss cannot
                // traverse the daemon's 0700 root to reach its state.
                "swtpm_user = \"root\"\n",
                "swtpm_group = \"root\"\n",
                // kubevirt-cri puts QEMU and virtiofsd into the Pod's cgroup
                // itself (runtime/cgroup/cgroup_placer.h): libvirt making
                // its own (machine.slice, /machine/qemu-embed-...) would
                // take the VM out of kubelet's accounting again.
                "cgroup_controllers = [ ]\n");
}

absl::Status PrepareEmbedRoot(const std::filesystem::path& root) {
  // Each QEMU runs under its VM's uid and opens its own files below
  // lib/qemu/domain-N-… (master key, monitor): it must traverse the root,
  // though not list it. libvirt makes lib/ and run/ 0755 itself; etc/ (the
  // domain definitions and this file) stays 0700.
  if (absl::Status s = base::MakeDirs(root, 0711); !s.ok()) return s;
  if (::chmod(root.c_str(), 0711) != 0) {  // a root made 0700 by an older version
    return absl::ErrnoToStatus(errno, StrCat("chmod \"", root.native(), "\""));
  }
  std::filesystem::path conf = root / "etc" / "qemu.conf";
  absl::StatusOr<std::string> existing = base::ReadFile(conf);
  if (existing.ok()) {
    if (existing->rfind(kConfHeader, 0) != 0) return absl::OkStatus();  // the operator's own
    if (*existing == EmbedQemuConf()) return absl::OkStatus();
  } else if (!absl::IsNotFound(existing.status())) {
    return existing.status();
  }
  if (absl::Status s = base::MakeDirs(conf.parent_path(), 0700); !s.ok()) return s;
  return base::WriteFileAtomic(conf, EmbedQemuConf(), 0600);
}

absl::StatusOr<std::unique_ptr<LibvirtConnection>> LibvirtConnection::Open(const std::string& uri) {
  std::filesystem::path root = EmbedRootOf(uri);
  if (!root.empty()) {
    if (absl::Status s = PrepareEmbedRoot(root); !s.ok()) return s;
  }
  std::unique_ptr<LibvirtConnection> c(new LibvirtConnection());
  c->uri_ = uri;
  if (absl::Status s = c->StartEventLoop(); !s.ok()) return s;
  c->conn_.reset(virConnectOpen(uri.c_str()));
  if (!c->conn_) {
    absl::Status err = LibvirtError(StrCat("virConnectOpen \"", uri, "\""));
    std::string_view msg = base::Sv(err.message());
    if (msg.find("Failed to parse user") != std::string_view::npos) {
      // Debian's QEMU driver looks up its compiled-in user before reading
      // qemu.conf, so the user must exist even though QEMU runs as root.
      return absl::FailedPreconditionError(
          StrCat(msg, " (the libvirt QEMU driver needs its system user even when qemu.conf says user = \"root\"; ",
                 "install libvirt-daemon-system or run: groupadd --system libvirt-qemu && ",
                 "useradd --system --gid libvirt-qemu --no-create-home libvirt-qemu)"));
    }
    return absl::UnavailableError(err.message());
  }
  base::LogInfo("libvirt connected", {{"uri", uri}});
  return c;
}

absl::Status LibvirtConnection::StartEventLoop() {
  if (absl::Status s = InitLibvirtOnce(); !s.ok()) return s;
  // A disabled timer; StopEventLoop() arms it to wake the loop so it sees stop_.
  wake_timer_ = virEventAddTimeout(-1, [](int, void*) {}, nullptr, nullptr);
  if (wake_timer_ < 0) return LibvirtError("virEventAddTimeout");
  loop_ = std::thread([this] {
    while (!stop_.load()) {
      if (virEventRunDefaultImpl() < 0) {
        base::LogWarn("libvirt event loop iteration failed", {{"error", virGetLastErrorMessage()}});
      }
    }
  });
  return absl::OkStatus();
}

void LibvirtConnection::StopEventLoop() {
  if (!loop_.joinable()) return;
  stop_.store(true);
  virEventUpdateTimeout(wake_timer_, 0);
  loop_.join();
  virEventRemoveTimeout(wake_timer_);
}

LibvirtConnection::~LibvirtConnection() {
  conn_.reset();  // may need the event loop (embedded driver callbacks)
  StopEventLoop();
}

}  // namespace kvcri::runtime
