// DhcpServer: one thread answering DHCPv4, DHCPv6 and router solicitations for every Pod's guest.
#pragma once

// One thread answering every Pod's guest: DHCPv4 (DhcpResponder) and, on
// NICs with an IPv6 address, router solicitations, neighbour solicitations
// for the router and DHCPv6 (Ipv6Responder), plus unsolicited router
// advertisements when a NIC starts being served and every
// kPeriodicRaInterval. Each Pod gets an
// AF_PACKET socket opened inside its netns and bound to its tap, so the
// server needs no IP there and nothing it sends can reach the Pod network;
// a single epoll loop serves all of them.

#include <linux/filter.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "cni/dhcp_responder.h"
#include "cni/ipv6_responder.h"
#include "config/base/unique_fd.h"

namespace kvcri::base {
class MetricFamily;
}  // namespace kvcri::base

namespace kvcri::cni {

// The seam sandbox/ and cri/ depend on; fakes live in test/fakes/.
class DhcpService {
 public:
  virtual ~DhcpService() = default;
  // Starts answering the guest of `pod_id` on `tap_name` in `netns` (one
  // Add per guest NIC that has an address: IPv4 by DHCPv4, IPv6 by RA and
  // DHCPv6). Replaces an earlier Add for the same pod and tap (e.g. after a
  // restart).
  virtual absl::Status Add(std::string_view pod_id, const std::filesystem::path& netns, const Lease& lease,
                           std::string_view tap_name = "tap0") = 0;
  // Stops answering on every tap of the pod; OK for an unknown pod.
  virtual absl::Status Remove(std::string_view pod_id) = 0;
};

// The classic BPF program on each Pod's DHCP socket: incoming (not
// PACKET_OUTGOING) IPv4 UDP to port 67 (first fragments, any IP header
// length), and IPv6 with no extension header carrying a router or neighbour
// solicitation or UDP to port 547; every other frame stays in the kernel.
// Exposed for tests.
absl::StatusOr<std::vector<sock_filter>> DhcpSocketFilter();

// Bounds one guest's Info lines about replies: a guest that asks in a loop
// must not fill the node's log. The first reply logs at Info, then at most
// one per `interval`; the ones in between are counted and the next Info line
// says how many.
class ReplyLogLimiter {
 public:
  explicit ReplyLogLimiter(absl::Duration interval) : interval_(interval) {}
  // True when a reply at `now` may log at Info; then *suppressed is the count
  // of replies demoted since the previous Info line.
  bool Allow(absl::Time now, uint64_t* suppressed);

 private:
  absl::Duration interval_;
  absl::Time last_ = absl::InfinitePast();
  uint64_t suppressed_ = 0;
};

// What DhcpServer counts; null members are not kept.
struct DhcpMetrics {
  // kvcri_dhcp_leases (a gauge): the leases being served, one per VM NIC.
  base::MetricFamily* leases = nullptr;
  // kvcri_dhcp_replies_total{type="offer"|"ack"|"nak"|"advertise"|"reply"}
  // (a counter): DHCPv4 and DHCPv6 replies sent.
  base::MetricFamily* replies = nullptr;
};

class DhcpServer final : public DhcpService {
 public:
  // Starts the serving thread.
  static absl::StatusOr<std::unique_ptr<DhcpServer>> Start(DhcpMetrics metrics = {});
  // Stops the thread and closes every socket.
  ~DhcpServer() override;
  DhcpServer(const DhcpServer&) = delete;
  DhcpServer& operator=(const DhcpServer&) = delete;

  // InvalidArgument for a bad lease; NotFound when the netns or tap is
  // missing.
  absl::Status Add(std::string_view pod_id, const std::filesystem::path& netns, const Lease& lease,
                   std::string_view tap_name = "tap0") override;
  absl::Status Remove(std::string_view pod_id) override;

  // Frames the socket of `pod_id` on `tap_name` has passed up to us (after
  // its filter), for tests and diagnostics. NotFound for an unknown pod/tap.
  absl::StatusOr<uint64_t> FramesSeen(std::string_view pod_id, std::string_view tap_name = "tap0");

 private:
  struct Guest {
    std::string pod_id;
    std::string tap_name;
    base::UniqueFd sock;
    dhcp::Mac tap_mac{};
    std::optional<DhcpResponder> v4;
    std::optional<Ipv6Responder> v6;
    uint64_t frames_seen = 0;
    ReplyLogLimiter info_log{absl::Seconds(60)};
  };

  DhcpServer(base::UniqueFd epoll, base::UniqueFd wake, DhcpMetrics metrics);
  void Loop();
  void Serve(uint64_t key);
  // Sends every IPv6 guest an unsolicited RA when one is due; returns the
  // epoll_wait timeout (ms) until the next.
  int PeriodicRas();
  void Send(Guest& g, const std::string& frame, std::string_view kind) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CountLeases() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const base::UniqueFd epoll_;
  const base::UniqueFd wake_;  // eventfd: written once to stop Loop()
  const DhcpMetrics metrics_;
  absl::Mutex mu_;
  uint64_t next_key_ ABSL_GUARDED_BY(mu_) = 1;  // epoll key; never reused, unlike fds
  absl::flat_hash_map<uint64_t, Guest> guests_ ABSL_GUARDED_BY(mu_);
  using GuestName = std::pair<std::string, std::string>;                // pod id, tap
  absl::flat_hash_map<GuestName, uint64_t> keys_ ABSL_GUARDED_BY(mu_);  // -> key
  absl::Time next_ra_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace kvcri::cni
