// StartShim and DeleteShim: the socket, the re-exec with fd 3, the address file, the cleanup answer (start.h).
#include "shim/containerd/start.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <vector>

#include "config/base/file_util.h"
#include "config/base/log.h"
#include "config/base/status_macros.h"
#include "config/base/str.h"
#include "config/base/unique_fd.h"
#include "shim/containerd/lost_shim.h"
#include "shim/containerd/names.h"
#include "shim/containerd/proto/task.pb.h"
#include "shim/containerd/shim_pod.h"
#include "shim/ttrpc/client.h"
#include "shim/ttrpc/unix_socket.h"

namespace kvcri::shim::containerd {
namespace {

// The server's argv: the flags containerd gave `start`, no subcommand.
std::vector<std::string> ServeArgv(const ShimArgs& args, const std::filesystem::path& self) {
  std::vector<std::string> argv = {self.string(), "-namespace", args.namespace_name, "-address", args.address,
                                   "-publish-binary", args.publish_binary, "-id", args.id};
  if (args.debug) argv.push_back("-debug");
  return argv;
}

// One above our own oom_score_adj, as runc's shim sets its server's: the
// shim goes before containerd when the node runs out of memory.
void AdjustOomScore(pid_t pid) {
  std::ifstream in("/proc/self/oom_score_adj");
  int own = 0;
  if (!(in >> own)) return;
  int adj = own + 1 > 1000 ? 1000 : own + 1;
  std::ofstream out(base::StrCat("/proc/", pid, "/oom_score_adj"));
  out << adj;
}

absl::Status Launch(const ShimArgs& args, const std::filesystem::path& self, const base::UniqueFd& listener) {
  std::vector<std::string> argv_s = ServeArgv(args, self);
  std::vector<char*> argv;
  for (std::string& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  base::UniqueFd devnull(::open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!devnull.valid()) return absl::ErrnoToStatus(errno, "open \"/dev/null\"");
  const int listen_fd = listener.get();
  const int null_fd = devnull.get();
  pid_t pid = ::fork();  // `start` is single-threaded: fork then exec is safe
  if (pid < 0) return absl::ErrnoToStatus(errno, "fork of the shim server");
  if (pid == 0) {
    ::setsid();
    // fd 3 is the listener: dup2 clears close-on-exec on the copy.
    if (listen_fd == 3) {
      ::fcntl(3, F_SETFD, 0);
    } else if (::dup2(listen_fd, 3) < 0) {
      _exit(127);
    }
    ::dup2(null_fd, 0);
    ::dup2(null_fd, 1);
    ::dup2(null_fd, 2);
    ::execv(argv[0], argv.data());
    _exit(127);
  }
  AdjustOomScore(pid);
  base::LogDebug("shim server launched", {{"pid", base::StrCat(pid)}, {"id", args.id}});
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> StartShim(const ShimArgs& args, const std::filesystem::path& self,
                                      const std::filesystem::path& bundle) {
  ASSIGN_OR_RETURN(std::string config, ReadBundleConfig(bundle));
  ASSIGN_OR_RETURN(std::string group, GroupingId(config, args.id));
  ASSIGN_OR_RETURN(std::string address, SocketAddress(args.address, args.namespace_name, group));
  ASSIGN_OR_RETURN(std::string path, SocketPathOf(address));
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  if (ec) return absl::InternalError(base::StrCat("create \"", std::filesystem::path(path).parent_path().string(), "\": ", ec.message()));
  absl::StatusOr<base::UniqueFd> listener = ttrpc::ListenUnix(path, 0600);
  if (absl::IsAlreadyExists(listener.status())) {
    if (ttrpc::UnixSocketAnswers(path)) {
      // The Pod's shim is up (its sandbox task started it): this task joins it.
      RETURN_IF_ERROR(WriteAddressFile(bundle, address));
      return address;
    }
    RETURN_IF_ERROR(base::RemoveFile(path));  // a dead shim's socket
    listener = ttrpc::ListenUnix(path, 0600);
  }
  if (!listener.ok()) return listener.status();
  absl::Status launched = Launch(args, self, *listener);
  if (!launched.ok()) {
    base::RemoveFile(path).IgnoreError();  // nobody will serve it; the start error is what matters
    return launched;
  }
  RETURN_IF_ERROR(WriteAddressFile(bundle, address));
  return address;
}

absl::StatusOr<std::string> DeleteShim(const ShimArgs& args, const std::filesystem::path& bundle) {
  absl::StatusOr<std::string> path = SocketPathInAddressFile(bundle);
  if (path.ok() && ttrpc::UnixSocketAnswers(*path)) {
    // The Pod's shim lives and owns the records. containerd runs `delete`
    // when it lost its connection for this task (a Create or Start whose
    // caller gave up) and forgets the task afterwards: the shim must drop
    // it too, or it keeps a task nobody deletes and never shuts down. A
    // task it no longer has (the usual case: its Delete came first) is fine.
    pb::DeleteRequest req;
    req.set_id(args.id);
    pb::DeleteResponse resp;
    absl::StatusOr<std::unique_ptr<ttrpc::Client>> client = ttrpc::Client::Dial(*path);
    absl::Status s = client.ok() ? (*client)->CallMessage(kTaskService, kTaskDelete, req, &resp, absl::Seconds(60))
                                 : client.status();
    if (s.ok()) {
      base::LogInfo("delete: the Pod's shim dropped the task", {{"id", args.id}});
      return EncodeDeleteResponse(resp.pid(), resp.exit_status(), absl::Now());
    }
    base::LogDebug("delete: the Pod's shim still serves",
                   {{"id", args.id}, {"bundle", bundle.string()}, {"delete", std::string(s.message())}});
    return EncodeDeleteResponse(0, kKilledExitStatus, absl::Now());
  }
  if (path.ok()) base::LogIfError(base::RemoveFile(*path), "delete: stale shim socket");
  VmExit exit{kKilledExitStatus, absl::Now()};
  absl::StatusOr<std::string> config = ReadBundleConfig(bundle);
  absl::StatusOr<config::Config> node = config.ok() ? LoadNodeConfig() : config.status();
  if (node.ok()) {
    // The shim was lost (killed): its VM and records are still there.
    ASSIGN_OR_RETURN(exit, CleanUpLostShim(*node, args.id, *config, bundle));
  } else {
    base::LogWarn("delete: nothing to clean up", {{"id", args.id}, {"error", std::string(node.status().message())}});
  }
  return EncodeDeleteResponse(0, exit.status, exit.at);
}

}  // namespace kvcri::shim::containerd
