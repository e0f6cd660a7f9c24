// DhcpServer: per-Pod AF_PACKET sockets on the taps and the one epoll thread answering them.
#include "cni/dhcp_server.h"

#include <arpa/inet.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/time/clock.h"
#include "cni/bpf_program.h"
#include "config/base/log.h"
#include "config/base/metrics.h"
#include "config/base/netns_exec.h"
#include "config/base/status_macros.h"
#include "config/base/str.h"

namespace kvcri::cni {
namespace {

constexpr uint64_t kWakeKey = 0;
constexpr int kMaxPacketsPerWake = 64;

absl::Status Errno(int err, std::string_view op, std::string_view tap) {
  return absl::ErrnoToStatus(err, base::StrCat(op, " on \"", tap, "\""));
}

struct TapSocket {
  base::UniqueFd fd;
  dhcp::Mac mac{};
};

// Runs inside the Pod netns. The socket starts deaf (protocol 0), gets its
// filter, then is bound to the tap: it never sees a frame from elsewhere.
absl::StatusOr<TapSocket> OpenTapSocket(std::string_view tap) {
  if (tap.empty() || tap.size() >= IFNAMSIZ) {
    return absl::InvalidArgumentError(base::StrCat("tap name \"", tap, "\" must be 1..15 characters"));
  }
  TapSocket out;
  out.fd = base::UniqueFd(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!out.fd.valid()) return Errno(errno, "socket(AF_PACKET)", tap);
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, tap.data(), tap.size());
  if (::ioctl(out.fd.get(), SIOCGIFINDEX, &ifr) != 0) {
    int err = errno;
    return err == ENODEV ? absl::NotFoundError(base::StrCat("tap \"", tap, "\" does not exist"))
                         : Errno(err, "SIOCGIFINDEX", tap);
  }
  const int ifindex = ifr.ifr_ifindex;
  if (::ioctl(out.fd.get(), SIOCGIFHWADDR, &ifr) != 0) return Errno(errno, "SIOCGIFHWADDR", tap);
  std::memcpy(out.mac.data(), ifr.ifr_hwaddr.sa_data, out.mac.size());

  // ETH_P_ALL because tc on the tap steals frames from protocol-specific
  // sockets; ETH_P_ALL taps run first.
  absl::StatusOr<std::vector<sock_filter>> code = DhcpSocketFilter();
  if (!code.ok()) return code.status();
  sock_fprog prog{static_cast<unsigned short>(code->size()), code->data()};
  if (::setsockopt(out.fd.get(), SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) != 0) {
    return Errno(errno, "SO_ATTACH_FILTER", tap);
  }
  sockaddr_ll addr{};
  addr.sll_family = AF_PACKET;
  addr.sll_protocol = htons(ETH_P_ALL);
  addr.sll_ifindex = ifindex;
  if (::bind(out.fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return Errno(errno, "bind AF_PACKET", tap);
  }
  return out;
}

std::string_view TypeName(dhcp::MessageType t) {
  switch (t) {
    case dhcp::MessageType::kOffer:
      return "offer";
    case dhcp::MessageType::kAck:
      return "ack";
    case dhcp::MessageType::kNak:
      return "nak";
    default:
      return "other";
  }
}

constexpr int kMaxWaitMs = 3600 * 1000;

}  // namespace

absl::StatusOr<std::vector<sock_filter>> DhcpSocketFilter() {
  bpf::Assembler a("dhcp socket");
  const bpf::Assembler::Label accept = a.NewLabel(), drop = a.NewLabel();
  constexpr auto kNext = bpf::Assembler::kNext;
  // Our own replies and frames redirected to the guest leave through the tap.
  a.Stmt(BPF_LD | BPF_W | BPF_ABS, static_cast<uint32_t>(SKF_AD_OFF + SKF_AD_PKTTYPE));
  a.JumpIfEqual(PACKET_OUTGOING, drop, kNext);
  const bpf::Assembler::Label ipv6 = a.NewLabel(), icmp6 = a.NewLabel();
  a.LoadHalf(12);
  a.JumpIfEqual(ETH_P_IP, kNext, ipv6);
  a.LoadByte(14 + 9);
  a.JumpIfEqual(IPPROTO_UDP, kNext, drop);
  a.LoadHalf(14 + 6);
  a.JumpIfAnySet(0x1fff, drop, kNext);    // a later fragment has no UDP header
  a.Stmt(BPF_LDX | BPF_B | BPF_MSH, 14);  // X = IPv4 header length, options included
  a.LoadHalfX(14 + 2);
  a.JumpIfEqual(dhcp::kServerPort, accept, drop);
  // IPv6: the next header right after the fixed header (RS, NS and DHCPv6
  // clients use no extension header).
  a.Bind(ipv6);
  a.JumpIfEqual(ETH_P_IPV6, kNext, drop);
  a.LoadByte(14 + 6);
  a.JumpIfEqual(ip6::kIcmp6, icmp6, kNext);
  a.JumpIfEqual(ip6::kUdp, kNext, drop);
  a.LoadHalf(14 + 40 + 2);
  a.JumpIfEqual(dhcp6::kServerPort, accept, drop);
  a.Bind(icmp6);
  a.LoadByte(14 + 40);
  a.JumpIfEqual(ip6::nd::kRouterSolicit, accept, kNext);
  a.JumpIfEqual(ip6::nd::kNeighborSolicit, accept, drop);
  a.Bind(accept);
  a.Return(0xffff);
  a.Bind(drop);
  a.Return(0);
  return a.Finish();
}

bool ReplyLogLimiter::Allow(absl::Time now, uint64_t* suppressed) {
  if (now - last_ < interval_) {
    ++suppressed_;
    return false;
  }
  last_ = now;
  *suppressed = suppressed_;
  suppressed_ = 0;
  return true;
}

absl::StatusOr<std::unique_ptr<DhcpServer>> DhcpServer::Start(DhcpMetrics metrics) {
  base::UniqueFd epoll(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll.valid()) return absl::ErrnoToStatus(errno, "epoll_create1 for the DHCP server");
  base::UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake.valid()) return absl::ErrnoToStatus(errno, "eventfd for the DHCP server");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWakeKey;
  if (::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, wake.get(), &ev) != 0) {
    return absl::ErrnoToStatus(errno, "epoll_ctl add eventfd for the DHCP server");
  }
  std::unique_ptr<DhcpServer> server(new DhcpServer(std::move(epoll), std::move(wake), metrics));
  if (metrics.leases != nullptr) metrics.leases->Set({}, 0);
  server->thread_ = std::thread([s = server.get()] { s->Loop(); });
  return server;
}

DhcpServer::DhcpServer(base::UniqueFd epoll, base::UniqueFd wake, DhcpMetrics metrics)
    : epoll_(std::move(epoll)), wake_(std::move(wake)), metrics_(metrics), next_ra_(absl::Now() + kPeriodicRaInterval) {}

void DhcpServer::CountLeases() {
  if (metrics_.leases != nullptr) metrics_.leases->Set({}, static_cast<double>(guests_.size()));
}

DhcpServer::~DhcpServer() {
  uint64_t one = 1;
  if (::write(wake_.get(), &one, sizeof one) != sizeof one) {
    // An eventfd write only fails on counter overflow; nothing else to do.
    base::LogError("dhcp server stop signal failed", {{"error", std::strerror(errno)}});
  }
  if (thread_.joinable()) thread_.join();
}

absl::Status DhcpServer::Add(std::string_view pod_id, const std::filesystem::path& netns, const Lease& lease,
                             std::string_view tap_name) {
  std::optional<DhcpResponder> v4;
  if (!lease.ip.empty()) {
    ASSIGN_OR_RETURN(v4, DhcpResponder::Create(lease));
  }
  if (!v4 && !lease.v6) {
    return absl::InvalidArgumentError(base::StrCat("lease for pod \"", pod_id, "\" has neither an IPv4 nor an IPv6 address"));
  }
  TapSocket sock;
  absl::Status s = base::RunInNetns(netns, [&]() -> absl::Status {
    ASSIGN_OR_RETURN(sock, OpenTapSocket(tap_name));
    return absl::OkStatus();
  });
  if (!s.ok()) {
    return absl::Status(s.code(), base::StrCat("dhcp for pod \"", pod_id, "\" in netns \"", netns.string(),
                                               "\": ", base::Sv(s.message())));
  }
  // After the socket: the responder answers from the tap's MAC. A bad lease
  // closes the socket again (RAII) before anything is registered.
  std::optional<Ipv6Responder> v6;
  if (lease.v6) {
    ASSIGN_OR_RETURN(v6, Ipv6Responder::Create(*lease.v6, sock.mac));
  }
  const GuestName name{std::string(pod_id), std::string(tap_name)};
  absl::MutexLock lock(&mu_);
  if (auto it = keys_.find(name); it != keys_.end()) {
    // Closing the fd drops it from the epoll set as well.
    guests_.erase(it->second);
    keys_.erase(it);
  }
  const uint64_t key = next_key_++;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = key;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, sock.fd.get(), &ev) != 0) {
    return absl::ErrnoToStatus(errno, base::StrCat("epoll_ctl add dhcp socket for pod \"", pod_id, "\""));
  }
  base::LogInfo("dhcp serving", {{"pod", std::string(pod_id)},
                                 {"mac", lease.mac},
                                 {"ip", lease.ip},
                                 {"ip6", lease.v6 ? lease.v6->ip : ""},
                                 {"router6", v6 && v6->names_router() ? ip6::FormatAddr(v6->self_address()) : ""},
                                 {"tap", std::string(tap_name)}});
  auto it = guests_.emplace(key, Guest{std::string(pod_id), std::string(tap_name), std::move(sock.fd),
                                                   sock.mac, std::move(v4), std::move(v6)}).first;
  keys_.emplace(name, key);
  CountLeases();
  // A guest that booted before this Add (a daemon restart) sends no more
  // solicitations: tell it now.
  if (it->second.v6) Send(it->second, it->second.v6->RouterAdvertisement(), "ra");
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> DhcpServer::FramesSeen(std::string_view pod_id, std::string_view tap_name) {
  absl::MutexLock lock(&mu_);
  auto it = keys_.find(GuestName{std::string(pod_id), std::string(tap_name)});
  if (it == keys_.end()) {
    return absl::NotFoundError(base::StrCat("no DHCP socket for pod \"", pod_id, "\" on \"", tap_name, "\""));
  }
  return guests_.at(it->second).frames_seen;
}

absl::Status DhcpServer::Remove(std::string_view pod_id) {
  absl::MutexLock lock(&mu_);
  // Every NIC of the Pod; a Pod has a handful, the map a few hundred.
  std::vector<GuestName> names;
  for (const auto& [name, key] : keys_) {
    if (name.first == pod_id) names.push_back(name);
  }
  for (const GuestName& name : names) {
    auto it = keys_.find(name);
    guests_.erase(it->second);  // closes the socket, which leaves the epoll set
    keys_.erase(it);
    base::LogInfo("dhcp stopped", {{"pod", name.first}, {"tap", name.second}});
  }
  if (!names.empty()) CountLeases();
  return absl::OkStatus();
}

void DhcpServer::Send(Guest& g, const std::string& frame, std::string_view kind) {
  if (::send(g.sock.get(), frame.data(), frame.size(), 0) < 0) {
    // A tap no VM holds yet (ENETDOWN/EIO) is normal before the VM starts.
    base::LogDebug("dhcp send failed",
                   {{"pod", g.pod_id}, {"tap", g.tap_name}, {"kind", std::string(kind)}, {"error", std::strerror(errno)}});
    return;
  }
  if (metrics_.replies != nullptr && (kind == "advertise" || kind == "reply")) {
    metrics_.replies->Add({std::string(kind)});
  }
}

int DhcpServer::PeriodicRas() {
  absl::MutexLock lock(&mu_);
  const absl::Time now = absl::Now();
  // A wall clock stepped back must not silence the RAs past the router
  // lifetime: never wait longer than one interval.
  if (next_ra_ - now > kPeriodicRaInterval) next_ra_ = now + kPeriodicRaInterval;
  if (now >= next_ra_) {
    for (auto& [key, g] : guests_) {
      if (g.v6) Send(g, g.v6->RouterAdvertisement(), "ra");
    }
    next_ra_ = now + kPeriodicRaInterval;
  }
  return static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(next_ra_ - now) + 1, kMaxWaitMs));
}

void DhcpServer::Loop() {
  epoll_event events[16];
  for (;;) {
    int n = ::epoll_wait(epoll_.get(), events, 16, PeriodicRas());
    if (n < 0) {
      if (errno == EINTR) continue;
      base::LogError("dhcp server epoll_wait failed; DHCP stops", {{"error", std::strerror(errno)}});
      return;
    }
    for (int i = 0; i < n; ++i) {
      if (events[i].data.u64 == kWakeKey) return;
      Serve(events[i].data.u64);
    }
  }
}

void DhcpServer::Serve(uint64_t key) {
  absl::MutexLock lock(&mu_);
  auto it = guests_.find(key);
  if (it == guests_.end()) return;  // removed after epoll_wait returned
  Guest& g = it->second;
  uint8_t buf[2048];
  for (int i = 0; i < kMaxPacketsPerWake; ++i) {
    sockaddr_ll from{};
    socklen_t from_len = sizeof from;
    ssize_t n =
        ::recvfrom(g.sock.get(), buf, sizeof buf, MSG_TRUNC, reinterpret_cast<sockaddr*>(&from), &from_len);
    if (n < 0) {
      if (errno != EAGAIN && errno != EINTR) {
        // ENETDOWN once the tap is deleted; Remove() follows.
        base::LogDebug("dhcp recv failed", {{"pod", g.pod_id}, {"tap", g.tap_name}, {"error", std::strerror(errno)}});
      }
      return;
    }
    ++g.frames_seen;
    if (from.sll_pkttype == PACKET_OUTGOING || static_cast<size_t>(n) > sizeof buf) continue;
    const std::span<const uint8_t> frame(buf, static_cast<size_t>(n));
    if (n >= 14 && buf[12] == 0x86 && buf[13] == 0xdd) {
      if (!g.v6) continue;
      auto reply6 = g.v6->HandleFrame(frame);
      if (!reply6) continue;
      Send(g, reply6->frame, reply6->kind);
      uint64_t suppressed = 0;
      if (reply6->kind == "reply" && g.info_log.Allow(absl::Now(), &suppressed)) {
        base::LogInfo("dhcpv6 reply", {{"pod", g.pod_id},
                                       {"tap", g.tap_name},
                                       {"ip6", ip6::FormatAddr(g.v6->ip())},
                                       {"suppressed", std::to_string(suppressed)}});
      }
      continue;
    }
    if (!g.v4) continue;
    auto reply = g.v4->HandleFrame(frame, g.tap_mac);
    if (!reply) continue;
    if (::send(g.sock.get(), reply->frame.data(), reply->frame.size(), 0) < 0) {
      base::LogWarn("dhcp send failed", {{"pod", g.pod_id}, {"error", std::strerror(errno)}});
      continue;
    }
    if (metrics_.replies != nullptr) metrics_.replies->Add({std::string(TypeName(reply->type))});
    // Offers precede every ack; acks and naks log at Info, but at most once
    // a minute per guest (a client asking in a loop must not flood the log).
    uint64_t suppressed = 0;
    const bool info = reply->type != dhcp::MessageType::kOffer && g.info_log.Allow(absl::Now(), &suppressed);
    if (info) {
      base::LogInfo("dhcp reply", {{"pod", g.pod_id},
                                   {"tap", g.tap_name},
                                   {"type", std::string(TypeName(reply->type))},
                                   {"ip", dhcp::FormatIp4(g.v4->ip())},
                                   {"suppressed", std::to_string(suppressed)}});
    } else {
      base::LogDebug(
          "dhcp reply",
          {{"pod", g.pod_id}, {"type", std::string(TypeName(reply->type))}, {"ip", dhcp::FormatIp4(g.v4->ip())}});
    }
  }
}

}  // namespace kvcri::cni
