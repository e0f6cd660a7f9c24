// Fuzz target dhcp_message: DHCPv4 message parsing, options 119/121 decoding, serialization round trip.
#include "cni/dhcp_packet.h"
#include "test/fuzz/fuzz_targets.h"

namespace kvcri::fuzz {

namespace dhcp = cni::dhcp;
constexpr std::string_view kTarget = "dhcp_message";

void FuzzDhcpMessage(FuzzInput in) {
  absl::StatusOr<dhcp::Message> m = dhcp::ParseMessage(in);
  if (!m.ok()) {
    KVCRI_FUZZ_CHECK(kTarget, absl::IsInvalidArgument(m.status()));
    return;
  }
  (void)m->type();
  (void)m->Ip4Option(dhcp::opt::kRequestedIp);
  // The decoders of the options a guest could send us.
  if (auto it = m->options.find(dhcp::opt::kDomainSearch); it != m->options.end()) {
    absl::StatusOr<std::vector<std::string>> names = dhcp::DecodeDomainSearch(it->second);
    if (names.ok()) {
      // What decodes must encode again, and decode to the same names.
      std::vector<std::string> usable;
      for (const std::string& n : *names) {
        if (!n.empty() && n.back() != '.') usable.push_back(n);
      }
      if (absl::StatusOr<std::string> wire = dhcp::EncodeDomainSearch(usable); wire.ok()) {
        absl::StatusOr<std::vector<std::string>> again = dhcp::DecodeDomainSearch(*wire);
        KVCRI_FUZZ_CHECK(kTarget, again.ok());
        KVCRI_FUZZ_CHECK(kTarget, again->size() == usable.size());
      }
    }
  }
  if (auto it = m->options.find(dhcp::opt::kClasslessRoutes); it != m->options.end()) {
    absl::StatusOr<std::vector<dhcp::Route4>> routes = dhcp::DecodeClasslessRoutes(it->second);
    if (routes.ok()) {
      absl::StatusOr<std::vector<dhcp::Route4>> again =
          dhcp::DecodeClasslessRoutes(dhcp::EncodeClasslessRoutes(*routes));
      KVCRI_FUZZ_CHECK(kTarget, again.ok() && again->size() == routes->size());
    }
  }
  // Serialized and parsed again, the message is the same.
  std::string wire = dhcp::SerializeMessage(*m);
  absl::StatusOr<dhcp::Message> again = dhcp::ParseMessage(AsBytes(wire));
  KVCRI_FUZZ_CHECK(kTarget, again.ok());
  KVCRI_FUZZ_CHECK(kTarget, again->xid == m->xid && again->chaddr == m->chaddr && again->flags == m->flags);
  KVCRI_FUZZ_CHECK(kTarget, again->options == m->options);
}

}  // namespace kvcri::fuzz

KVCRI_FUZZ_ENTRY(kvcri::fuzz::FuzzDhcpMessage)
