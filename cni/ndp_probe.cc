// ResolveRouterMac: one neighbour solicitation for the IPv6 gateway through a packet socket on the CNI interface.
#include "cni/ndp_probe.h"

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <span>

#include "absl/time/clock.h"
#include "config/base/str.h"
#include "config/base/unique_fd.h"

namespace kvcri::cni {
namespace {

constexpr int kTries = 10;
constexpr size_t kMaxFramesRead = 4096;  // a busy eth0 must not keep us here past the deadline anyway

std::string Solicitation(const dhcp::Mac& own_mac, const ip6::Addr& own, const ip6::Addr& target) {
  std::string body(4, '\0');  // reserved
  body.append(reinterpret_cast<const char*>(target.data()), target.size());
  body += ip6::nd::LinkAddrOption(ip6::nd::kOptSourceLinkAddr, own_mac);
  ip6::Frame f;
  f.dst = ip6::SolicitedNode(target);
  f.dst_mac = ip6::MulticastMac(f.dst);
  f.src_mac = own_mac;
  f.src = own;
  f.next_header = ip6::kIcmp6;
  f.hop_limit = 255;
  f.payload = ip6::Icmp6(f.src, f.dst, ip6::nd::kNeighborSolicit, 0, body);
  return ip6::BuildFrame(f);
}

// The advertised MAC when `frame` is the answer to our solicitation: a
// neighbour advertisement for `target`, solicited (S), to our address and
// MAC; its target link-layer option, else the frame's source. Anything else
// on the link (another guest's unsolicited advertisement) is not believed.
std::optional<dhcp::Mac> Advertised(std::span<const uint8_t> frame, const ip6::Addr& target, const dhcp::Mac& own_mac,
                                    const ip6::Addr& own_address) {
  auto f = ip6::ParseFrame(frame);
  if (!f.ok() || f->next_header != ip6::kIcmp6 || f->hop_limit != 255) return std::nullopt;
  if (f->dst_mac != own_mac || f->dst != own_address) return std::nullopt;
  const std::string& m = f->payload;
  if (m.size() < 24 || static_cast<uint8_t>(m[0]) != ip6::nd::kNeighborAdvert || m[1] != 0) return std::nullopt;
  if ((static_cast<uint8_t>(m[4]) & 0x40) == 0) return std::nullopt;  // not solicited
  if (std::memcmp(m.data() + 8, target.data(), target.size()) != 0) return std::nullopt;
  for (size_t at = 24; at + 8 <= m.size();) {
    const size_t len = static_cast<uint8_t>(m[at + 1]) * size_t{8};
    if (len == 0 || at + len > m.size()) break;
    if (static_cast<uint8_t>(m[at]) == ip6::nd::kOptTargetLinkAddr) {
      dhcp::Mac mac;
      std::memcpy(mac.data(), m.data() + at + 2, mac.size());
      return mac;
    }
    at += len;
  }
  return f->src_mac;
}

}  // namespace

absl::StatusOr<dhcp::Mac> ResolveRouterMac(std::string_view ifname, const dhcp::Mac& own_mac,
                                           const ip6::Addr& own_address, const ip6::Addr& gateway,
                                           absl::Duration timeout) {
  if (ifname.empty() || ifname.size() >= IFNAMSIZ) {
    return absl::InvalidArgumentError(base::StrCat("interface name \"", ifname, "\" must be 1..15 characters"));
  }
  base::UniqueFd fd(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, htons(ETH_P_ALL)));
  if (!fd.valid()) return absl::ErrnoToStatus(errno, "socket(AF_PACKET) for the IPv6 gateway probe");
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, ifname.data(), ifname.size());
  if (::ioctl(fd.get(), SIOCGIFINDEX, &ifr) != 0) {
    return absl::ErrnoToStatus(errno, base::StrCat("SIOCGIFINDEX \"", ifname, "\""));
  }
  sockaddr_ll addr{};
  addr.sll_family = AF_PACKET;
  addr.sll_protocol = htons(ETH_P_ALL);
  addr.sll_ifindex = ifr.ifr_ifindex;
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return absl::ErrnoToStatus(errno, base::StrCat("bind AF_PACKET on \"", ifname, "\""));
  }
  const std::string ns = Solicitation(own_mac, own_address, gateway);
  const absl::Time deadline = absl::Now() + timeout;
  size_t frames = 0;
  uint8_t buf[2048];
  for (int attempt = 0; attempt < kTries; ++attempt) {
    if (::send(fd.get(), ns.data(), ns.size(), 0) < 0) {
      return absl::ErrnoToStatus(errno, base::StrCat("send neighbour solicitation on \"", ifname, "\""));
    }
    const absl::Time try_end = std::min(deadline, absl::Now() + timeout / kTries);
    for (;;) {
      const int64_t ms = absl::ToInt64Milliseconds(try_end - absl::Now());
      if (ms <= 0 || frames >= kMaxFramesRead) break;
      pollfd p{fd.get(), POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(ms)) <= 0) continue;
      // Bounded by frames and by time: a flooded eth0 must not hold RunPodSandbox.
      while (frames < kMaxFramesRead && absl::Now() < try_end) {
        sockaddr_ll from{};
        socklen_t from_len = sizeof from;
        ssize_t n = ::recvfrom(fd.get(), buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &from_len);
        if (n < 0) break;
        ++frames;
        if (from.sll_pkttype == PACKET_OUTGOING) continue;
        if (auto mac = Advertised(std::span(buf, static_cast<size_t>(n)), gateway, own_mac, own_address)) return *mac;
      }
    }
  }
  return absl::DeadlineExceededError(base::StrCat("no neighbour advertisement for IPv6 gateway \"",
                                                  ip6::FormatAddr(gateway), "\" on \"", ifname, "\" within ",
                                                  absl::FormatDuration(timeout)));
}

}  // namespace kvcri::cni
