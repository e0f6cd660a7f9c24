// Fuzz target ipv6_responder: a guest's Ethernet frame through Ipv6Responder::HandleFrame (RS, NS, DHCPv6), as DhcpServer feeds it.
#include "cni/ipv6_packet.h"
#include "cni/ipv6_responder.h"
#include "test/fuzz/fuzz_targets.h"

namespace kvcri::fuzz {

namespace ip6 = cni::ip6;
namespace dhcp6 = cni::dhcp6;
constexpr std::string_view kTarget = "ipv6_responder";

namespace {

constexpr cni::dhcp::Mac kTapMac = {0xfe, 0x54, 0x00, 0x00, 0x00, 0x01};
constexpr cni::dhcp::Mac kRouterMac = {0x0a, 0x58, 0x0a, 0x59, 0x00, 0x01};

// The lease of the corpus' frames (their source MAC), as a dual-stack bridge + host-local Pod gets it.
const cni::Ipv6Responder& Responder() {
  static const cni::Ipv6Responder* r = [] {
    cni::Lease6 l;
    l.mac = "0a:58:0a:59:00:02";
    l.ip = "fd00:10:89::2";
    l.prefix_len = 64;
    l.router_mac = "0a:58:0a:59:00:01";
    l.dns = {"fd00:10:96::a"};
    l.searches = {"default.svc.cluster.local", "svc.cluster.local", "cluster.local"};
    l.mtu = 1450;
    absl::StatusOr<cni::Ipv6Responder> made = cni::Ipv6Responder::Create(l, kTapMac);
    if (!made.ok()) FuzzFail(kTarget, std::string(made.status().message()));
    return new cni::Ipv6Responder(*std::move(made));
  }();
  return *r;
}

}  // namespace

void FuzzIpv6Responder(FuzzInput in) {
  // DhcpServer drops frames longer than its 2048-byte buffer before this.
  if (in.size() > 2048) return;
  std::optional<cni::Ipv6Responder::FrameReply> reply = Responder().HandleFrame(in);
  if (!reply) return;
  // What we send is one IPv6 frame from the router's identity, to the asker,
  // with a correct upper-layer checksum, and at most one frame per frame.
  absl::StatusOr<ip6::Frame> f = ip6::ParseFrame(AsBytes(reply->frame));
  KVCRI_FUZZ_CHECK(kTarget, f.ok());
  KVCRI_FUZZ_CHECK(kTarget, f->src_mac == kRouterMac);
  KVCRI_FUZZ_CHECK(kTarget, f->src == Responder().self_address());
  KVCRI_FUZZ_CHECK(kTarget, ip6::UpperChecksum(f->src, f->dst, f->next_header, f->payload) == 0);
  KVCRI_FUZZ_CHECK(kTarget, reply->frame.size() <= 1514);
  if (reply->kind == "ra" || reply->kind == "na") {
    KVCRI_FUZZ_CHECK(kTarget, f->next_header == ip6::kIcmp6 && f->hop_limit == 255);
    return;
  }
  KVCRI_FUZZ_CHECK(kTarget, reply->kind == "advertise" || reply->kind == "reply");
  absl::StatusOr<ip6::UdpView> udp = ip6::ParseUdp(f->payload);
  KVCRI_FUZZ_CHECK(kTarget, udp.ok() && udp->src_port == dhcp6::kServerPort && udp->dst_port == dhcp6::kClientPort);
  absl::StatusOr<dhcp6::Message> m = dhcp6::ParseMessage(udp->data);
  KVCRI_FUZZ_CHECK(kTarget, m.ok() && m->Find(dhcp6::opt::kServerId) != nullptr);
  // Any address handed out is the Pod's.
  for (const auto& [code, value] : m->options) {
    if (code != dhcp6::opt::kIaNa) continue;
    absl::StatusOr<dhcp6::IaNa> ia = dhcp6::ParseIaNa(value);
    KVCRI_FUZZ_CHECK(kTarget, ia.ok());
    for (const auto& [c, v] : ia->options) {
      if (c == dhcp6::opt::kIaAddr) KVCRI_FUZZ_CHECK(kTarget, dhcp6::IaAddrAddress(v) == Responder().ip());
    }
  }
}

}  // namespace kvcri::fuzz

KVCRI_FUZZ_ENTRY(kvcri::fuzz::FuzzIpv6Responder)
