// ContainerRunner: starts, signals, stops and observes plain-image containers in a Pod micro-VM through its kvcri-agent, with all state in the bundle files on the Pod share.
#pragma once

// A container is a bundle directory on the host's side of the Pod's
// virtio-fs share, <share>/<id>, which the guest sees as
// /run/kvcri/pod/<id>: config.json (runtime_spec.h), rootfs/ (the caller
// mounts it), and what the guest writes there: stdout, stderr (the
// container's output, appended) and exit (ParseExitFile). Nothing of a
// container's state is held in memory, so a daemon restarted under running
// containers carries on from the files: running = no exit file yet.
//
// The guest is untrusted: the exit file is read with O_NOFOLLOW, at most a
// few bytes, and parsed strictly; crun's error text is cut and sanitized.

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "runtime/agent/agent_client.h"
#include "runtime/agent/agent_protocol.h"

namespace kvcri::runtime::microvm {

// Where the Pod share is mounted in the guest (guest_init.h kPodShareDir).
inline constexpr char kGuestShareDir[] = "/run/kvcri/pod";
// In the share's root, written before the micro-VM boots: the Pod's sysctls,
// "name=value" per line, which the guest's init applies (guest_init.cc).
inline constexpr char kSysctlFile[] = ".kvcri-sysctls";

struct Bundle {
  std::string id;                 // the container's id: crun's id and the directory's name
  std::filesystem::path host_dir;  // <share>/<id>
  std::string guest_dir;           // /run/kvcri/pod/<id>
};
Bundle BundleFor(const std::filesystem::path& share, const std::string& id);

class ContainerRunner {
 public:
  // The VM's agent connection, made or re-made on use (AgentPool).
  using AgentFn = std::function<absl::StatusOr<std::shared_ptr<agent::AgentClient>>()>;
  explicit ContainerRunner(AgentFn agent) : agent_(std::move(agent)) {}

  // Writes config.json (atomically). The caller has made host_dir and rootfs/.
  absl::Status WriteSpec(const Bundle& b, const nlohmann::json& spec) const;
  // `crun run` SPAWNed detached, output and exit into the bundle; the pid of
  // crun in the guest. FailedPrecondition when the container ran before
  // (its exit file exists): a container runs once, kubelet makes a new one.
  absl::StatusOr<uint32_t> Start(const Bundle& b) const;
  // After Start: waits until the container's process exists (crun's pid
  // file appears in the bundle, so an exec finds it) or it has exited,
  // until `deadline`. DeadlineExceeded when neither happened.
  absl::Status WaitStarted(const Bundle& b, absl::Time deadline) const;
  // nullopt while it runs; its exit once the guest wrote it. DataLoss for
  // an exit file that is not one.
  absl::StatusOr<std::optional<agent::ExitFile>> Exited(const Bundle& b) const;
  // Polls the exit file until `deadline`: the exit, or nullopt still running.
  absl::StatusOr<std::optional<agent::ExitFile>> WaitExit(const Bundle& b, absl::Time deadline) const;
  // `crun kill <id> <signo>`. OK when it has exited already.
  absl::Status Signal(const Bundle& b, int signo) const;
  // SIGTERM (or `stop_signal`), up to `grace` for the exit, then SIGKILL and
  // up to `kill_wait` more. The exit.
  absl::StatusOr<agent::ExitFile> Stop(const Bundle& b, absl::Duration grace, int stop_signal = 15,
                                       absl::Duration kill_wait = absl::Seconds(10)) const;
  // Forgets the container in the guest (`crun delete --force`, which also
  // kills what is left). The bundle's files are the caller's to remove.
  absl::Status Delete(const Bundle& b) const;

 private:
  // Runs `argv` in the guest, waits up to `timeout`; its exit code, and
  // stderr (cut) in *err.
  absl::StatusOr<int> RunInGuest(const std::vector<std::string>& argv, absl::Duration timeout, std::string* err) const;
  AgentFn agent_;
};

}  // namespace kvcri::runtime::microvm
