// NetnsPortForwarder: containerd's port-forward (a dial to 127.0.0.1:<port> inside the Pod's netns) reaching the VM's guest.
#pragma once

// containerd's CRI serves PortForward itself: it enters the sandbox's netns
// and connects to localhost:<port> there (pkg/cri/server/sandbox_portforward_linux.go).
// In a VM Pod nothing listens in the netns: the guest has the Pod's address
// and eth0's traffic goes to its tap. So the shim listens on 127.0.0.1:<P>
// inside the netns and one iptables rule there (nat OUTPUT: TCP to
// 127.0.0.1, any port but P, REDIRECT to P) brings every such dial to it;
// the original port (SO_ORIGINAL_DST) goes to the daemon's exec dispatcher,
// which forwards through kvcri-agent to the guest's own 127.0.0.1:<port>,
// or without it over TCP to the Pod IP, exactly as the daemon's streaming
// server does. The rule and the socket live in the netns and go with it.
// At most kMaxConnections at once; each is copied on a thread of its own.

#include <atomic>
#include <filesystem>
#include <list>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "config/base/unique_fd.h"

namespace kvcri::cri {
class ExecDispatcher;
}  // namespace kvcri::cri

namespace kvcri::shim::containerd {

class NetnsPortForwarder {
 public:
  static constexpr size_t kMaxConnections = 64;

  // Listens in `netns` and installs the redirect with `iptables` (found in
  // /usr/sbin or /sbin); FailedPrecondition with iptables' words when the
  // rule cannot be added.
  static absl::StatusOr<std::unique_ptr<NetnsPortForwarder>> Start(const std::filesystem::path& netns,
                                                                   std::string sandbox_id,
                                                                   cri::ExecDispatcher* dispatcher);
  // Closes the listener, aborts every connection and joins the threads.
  ~NetnsPortForwarder();
  NetnsPortForwarder(const NetnsPortForwarder&) = delete;
  NetnsPortForwarder& operator=(const NetnsPortForwarder&) = delete;

  uint16_t port() const { return port_; }

  class SocketStream;

 private:
  NetnsPortForwarder(std::string sandbox_id, cri::ExecDispatcher* dispatcher)
      : sandbox_id_(std::move(sandbox_id)), dispatcher_(dispatcher) {}
  void AcceptLoop();
  void Serve(base::UniqueFd conn, uint16_t port) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string sandbox_id_;
  cri::ExecDispatcher* const dispatcher_;
  base::UniqueFd listener_;
  base::UniqueFd wake_;  // eventfd: ends the accept loop
  uint16_t port_ = 0;
  std::thread acceptor_;

  struct Conn {
    std::shared_ptr<SocketStream> stream;
    std::thread thread;
    std::atomic<bool> done{false};
  };
  absl::Mutex mu_;
  std::list<Conn> conns_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kvcri::shim::containerd
