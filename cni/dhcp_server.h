// DhcpServer: one thread answering DHCPv4 for every Pod's guest, behind the DhcpService seam.
#pragma once

// One thread answering DHCPv4 for every Pod's guest. Each Pod gets an
// AF_PACKET socket opened inside its netns and bound to its tap, so the
// server needs no IP there and nothing it sends can reach the Pod network;
// a single epoll loop serves all of them.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "cni/dhcp_responder.h"
#include "config/base/unique_fd.h"

namespace kvcri::cni {

// The seam sandbox/ and cri/ depend on; fakes live in test/fakes/.
class DhcpService {
 public:
  virtual ~DhcpService() = default;
  // Starts answering the guest of `pod_id` on `tap_name` in `netns`.
  // Replaces an earlier Add for the same pod (e.g. after a restart).
  virtual absl::Status Add(std::string_view pod_id, const std::filesystem::path& netns, const Lease& lease,
                           std::string_view tap_name = "tap0") = 0;
  // Stops answering; OK for an unknown pod.
  virtual absl::Status Remove(std::string_view pod_id) = 0;
};

class DhcpServer final : public DhcpService {
 public:
  // Starts the serving thread.
  static absl::StatusOr<std::unique_ptr<DhcpServer>> Start();
  // Stops the thread and closes every socket.
  ~DhcpServer() override;
  DhcpServer(const DhcpServer&) = delete;
  DhcpServer& operator=(const DhcpServer&) = delete;

  // InvalidArgument for a bad lease; NotFound when the netns or tap is
  // missing.
  absl::Status Add(std::string_view pod_id, const std::filesystem::path& netns, const Lease& lease,
                   std::string_view tap_name = "tap0") override;
  absl::Status Remove(std::string_view pod_id) override;

 private:
  struct Guest {
    std::string pod_id;
    base::UniqueFd sock;
    dhcp::Mac tap_mac{};
    DhcpResponder responder;
  };

  DhcpServer(base::UniqueFd epoll, base::UniqueFd wake);
  void Loop();
  void Serve(uint64_t key);

  const base::UniqueFd epoll_;
  const base::UniqueFd wake_;  // eventfd: written once to stop Loop()
  absl::Mutex mu_;
  uint64_t next_key_ ABSL_GUARDED_BY(mu_) = 1;  // epoll key; never reused, unlike fds
  absl::flat_hash_map<uint64_t, Guest> guests_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, uint64_t> keys_ ABSL_GUARDED_BY(mu_);  // pod id -> key
  std::thread thread_;
};

}  // namespace kvcri::cni
