// Fuzz target udp_frame: the Ethernet/IPv4/UDP frame parser the DHCP responder reads guest frames with.
#include "cni/dhcp_packet.h"
#include "test/fuzz/fuzz_targets.h"

namespace kvcri::fuzz {

namespace dhcp = cni::dhcp;
constexpr std::string_view kTarget = "udp_frame";

void FuzzUdpFrame(FuzzInput in) {
  absl::StatusOr<dhcp::UdpFrame> f = dhcp::ParseUdpFrame(in);
  if (!f.ok()) {
    KVCRI_FUZZ_CHECK(kTarget, absl::IsInvalidArgument(f.status()));
    return;
  }
  // The payload lies inside the frame.
  KVCRI_FUZZ_CHECK(kTarget, f->payload.size() + 14 + 20 + 8 <= in.size());
  // A frame we build from what was parsed parses to the same datagram.
  std::string built = dhcp::BuildUdpFrame(*f);
  absl::StatusOr<dhcp::UdpFrame> again = dhcp::ParseUdpFrame(AsBytes(built));
  KVCRI_FUZZ_CHECK(kTarget, again.ok());
  KVCRI_FUZZ_CHECK(kTarget, again->payload == f->payload && again->src_ip == f->src_ip && again->dst_ip == f->dst_ip &&
                                again->src_port == f->src_port && again->dst_port == f->dst_port &&
                                again->dst_mac == f->dst_mac);
}

}  // namespace kvcri::fuzz

KVCRI_FUZZ_ENTRY(kvcri::fuzz::FuzzUdpFrame)
