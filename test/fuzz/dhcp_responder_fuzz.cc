// Fuzz target dhcp_responder: a guest's Ethernet frame through DhcpResponder::HandleFrame, as DhcpServer feeds it.
#include "cni/dhcp_responder.h"
#include "test/fuzz/fuzz_targets.h"

namespace kvcri::fuzz {

namespace dhcp = cni::dhcp;
constexpr std::string_view kTarget = "dhcp_responder";

namespace {

// The lease of the corpus' frames (their chaddr), as a bridge + host-local Pod gets it.
const cni::DhcpResponder& Responder() {
  static const cni::DhcpResponder* r = [] {
    cni::Lease l;
    l.mac = "0a:58:0a:59:00:02";
    l.ip = "10.89.0.2";
    l.prefix_len = 24;
    l.gateway = "10.89.0.1";
    l.routes = {{"0.0.0.0/0", "10.89.0.1"}, {"10.96.0.0/12", "10.89.0.1"}};
    l.dns = {"10.96.0.10"};
    l.searches = {"default.svc.cluster.local", "svc.cluster.local", "cluster.local"};
    l.hostname = "vm-pod";
    l.mtu = 1450;
    absl::StatusOr<cni::DhcpResponder> made = cni::DhcpResponder::Create(l);
    if (!made.ok()) FuzzFail(kTarget, std::string(made.status().message()));
    return new cni::DhcpResponder(*std::move(made));
  }();
  return *r;
}

}  // namespace

void FuzzDhcpResponder(FuzzInput in) {
  // DhcpServer drops frames longer than its 2048-byte buffer before this.
  if (in.size() > 2048) return;
  const dhcp::Mac server_mac = {0x02, 0x00, 0x00, 0x00, 0x00, 0x01};
  std::optional<cni::DhcpResponder::FrameReply> reply = Responder().HandleFrame(in, server_mac);
  if (!reply) return;
  // What we send is a well-formed DHCP reply from our server port to the client port.
  absl::StatusOr<dhcp::UdpFrame> frame = dhcp::ParseUdpFrame(AsBytes(reply->frame));
  KVCRI_FUZZ_CHECK(kTarget, frame.ok());
  KVCRI_FUZZ_CHECK(kTarget, frame->src_port == dhcp::kServerPort && frame->dst_port == dhcp::kClientPort);
  KVCRI_FUZZ_CHECK(kTarget, frame->src_mac == server_mac);
  absl::StatusOr<dhcp::Message> msg = dhcp::ParseMessage(AsBytes(frame->payload));
  KVCRI_FUZZ_CHECK(kTarget, msg.ok());
  KVCRI_FUZZ_CHECK(kTarget, msg->op == 2 && msg->type() == reply->type);
  KVCRI_FUZZ_CHECK(kTarget, msg->chaddr == Responder().mac());
  KVCRI_FUZZ_CHECK(kTarget, reply->type == dhcp::MessageType::kNak || reply->type == dhcp::MessageType::kOffer ||
                                reply->type == dhcp::MessageType::kAck);
}

}  // namespace kvcri::fuzz

KVCRI_FUZZ_ENTRY(kvcri::fuzz::FuzzDhcpResponder)
