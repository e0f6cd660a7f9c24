// containerd-shim-kubevirt-v1: containerd's runtime v2 shim for kubevirt Pods (start, delete, serve).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "config/base/log.h"
#include "config/base/str.h"
#include "config/base/unique_fd.h"
#include "shim/containerd/bootstrap.h"
#include "shim/containerd/event_publisher.h"
#include "shim/containerd/names.h"
#include "shim/containerd/start.h"
#include "shim/containerd/shim_pod.h"
#include "shim/containerd/task_service.h"
#include "shim/containerd/vm_tasks.h"
#include "shim/ttrpc/server.h"
#include "shim/ttrpc/unix_socket.h"

#ifndef KVCRI_VERSION
#define KVCRI_VERSION "dev"
#endif

namespace kvcri::shim::containerd {
namespace {

std::filesystem::path SelfPath() {
  std::error_code ec;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::filesystem::path() : self;
}

// containerd's `log` FIFO in the bundle becomes our stderr, so the shim's
// log lines land in containerd's log (containerd reads it).
void OpenLogFifo() {
  base::UniqueFd fd(::open(std::string(kBundleLogFifo).c_str(), O_WRONLY | O_CLOEXEC | O_NONBLOCK));
  if (!fd.valid()) return;  // not under containerd (a test): keep stderr
  // Writes must block when containerd is slow, not fail.
  ::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) & ~O_NONBLOCK);
  ::dup2(fd.get(), STDERR_FILENO);
}

int Serve(const ShimArgs& args) {
  OpenLogFifo();
  if (args.debug) base::SetLogLevel(base::LogLevel::kDebug);
  base::UniqueFd listener;
  std::string socket_path;
  if (!args.socket.empty()) {
    absl::StatusOr<std::string> path = SocketPathOf(args.socket.starts_with("unix://") ? args.socket
                                                                                       : "unix://" + args.socket);
    absl::StatusOr<base::UniqueFd> fd = path.ok() ? ttrpc::ListenUnix(*path, 0600) : path.status();
    if (!fd.ok()) {
      base::LogError("shim cannot listen", {{"socket", args.socket}, {"error", std::string(fd.status().message())}});
      return 1;
    }
    listener = std::move(*fd);
    socket_path = *path;
  } else {
    listener.Reset(3);  // from `start`
    ::fcntl(3, F_SETFD, FD_CLOEXEC);
    if (absl::StatusOr<std::string> p = SocketPathInAddressFile("."); p.ok()) socket_path = *p;
  }
  // Signals arrive on a signalfd thread; every thread has them blocked, and
  // SIGPIPE is ignored (a gone peer is EPIPE on that connection).
  ::signal(SIGPIPE, SIG_IGN);
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  base::UniqueFd sigfd(::signalfd(-1, &stop, SFD_CLOEXEC));

  const char* ttrpc_env = std::getenv(std::string(kTtrpcAddressEnv).c_str());
  std::string ttrpc_address = ttrpc_env != nullptr ? ttrpc_env : base::StrCat(args.address, ".ttrpc");
  if (ttrpc_address.starts_with("unix://")) ttrpc_address.erase(0, 7);

  ttrpc::Server server;
  int status = 0;
  {
    EventPublisher publisher(ttrpc_address, args.namespace_name);
    TaskServiceOptions options;
    options.version = KVCRI_VERSION;
    options.shutdown = [&server] { server.Shutdown(); };
    // The node's config (the daemon's file): read once; an unreadable one
    // fails the sandbox task with its error, which containerd reports.
    absl::StatusOr<config::Config> node = LoadNodeConfig();
    if (!node.ok()) base::LogError("shim config", {{"error", std::string(node.status().message())}});
    // containerd's own socket (-address): the images' labels are read there.
    ContainerdApi api{args.address.starts_with("unix://") ? args.address.substr(7) : args.address, args.namespace_name};
    options.open_vm = [node, api](std::string_view sandbox_id, VmTasks::ExitFn on_exit,
                                  VmExecs::ExitFn on_exec_exit) -> absl::StatusOr<std::unique_ptr<VmTasks>> {
      if (!node.ok()) return node.status();
      return VmTasks::Open(*node, sandbox_id, std::move(on_exit), std::move(on_exec_exit), api);
    };
    TaskService tasks(PublishTo(&publisher), options);
    tasks.Register(&server);
    // Serve may also end by a Shutdown call: then `done` wakes this thread.
    int done_fds[2] = {-1, -1};
    if (::pipe2(done_fds, O_CLOEXEC) != 0) {
      base::LogError("shim cannot make its wake-up pipe");
      return 1;
    }
    base::UniqueFd done_read(done_fds[0]), done_write(done_fds[1]);
    std::thread signals([&] {
      pollfd fds[2] = {{sigfd.get(), POLLIN, 0}, {done_read.get(), POLLIN, 0}};
      while (::poll(fds, 2, -1) < 0 && errno == EINTR) {
      }
      signalfd_siginfo info{};
      if (fds[0].revents & POLLIN &&
          ::read(sigfd.get(), &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
        base::LogInfo("shim stops on a signal", {{"signal", base::StrCat(info.ssi_signo)}});
      }
      server.Shutdown();
    });
    base::LogInfo("shim serving", {{"id", args.id}, {"namespace", args.namespace_name}, {"socket", socket_path}});
    absl::Status served = server.Serve(std::move(listener));
    if (!served.ok()) {
      base::LogError("shim server failed", {{"error", std::string(served.message())}});
      status = 1;
    }
    done_write.Reset();  // wakes the signal thread when no signal came
    signals.join();
  }  // tasks (their pause processes) and then the publisher (its last events) end here
  if (!socket_path.empty()) ::unlink(socket_path.c_str());
  return status;
}

int Main(int argc, char** argv) {
  absl::StatusOr<ShimArgs> args = ParseShimArgs(argc, argv);
  if (!args.ok()) {
    std::fprintf(stderr, "containerd-shim-kubevirt-v1: %s\n", std::string(args.status().message()).c_str());
    return 2;
  }
  if (args->version) {
    std::printf("containerd-shim-kubevirt-v1 %s\n", KVCRI_VERSION);
    return 0;
  }
  std::error_code ec;
  const std::filesystem::path cwd = std::filesystem::current_path(ec);
  if (args->subcommand == kSubcommandStart) {
    // containerd takes all of stdout and stderr as the address: errors go
    // there too, and the exit code says which it is.
    absl::StatusOr<std::string> address = StartShim(*args, SelfPath(), cwd);
    if (!address.ok()) {
      std::fprintf(stdout, "containerd-shim-kubevirt-v1 start: %s", std::string(address.status().message()).c_str());
      return 1;
    }
    std::fputs(address->c_str(), stdout);
    return 0;
  }
  if (args->subcommand == kSubcommandDelete) {
    absl::StatusOr<std::string> out = DeleteShim(*args, args->bundle.empty() ? cwd : std::filesystem::path(args->bundle));
    if (!out.ok()) {
      std::fprintf(stderr, "containerd-shim-kubevirt-v1 delete: %s\n", std::string(out.status().message()).c_str());
      return 1;
    }
    std::fwrite(out->data(), 1, out->size(), stdout);
    return 0;
  }
  return Serve(*args);
}

}  // namespace
}  // namespace kvcri::shim::containerd

int main(int argc, char** argv) { return kvcri::shim::containerd::Main(argc, argv); }
