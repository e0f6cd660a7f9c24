// DhcpResponder: the OFFER/ACK/NAK decisions for one guest, and its Lease from the wired NIC.
#include "cni/dhcp_responder.h"

#include <charconv>

#include "config/base/status_macros.h"
#include "config/base/str.h"

namespace kvcri::cni {
namespace {

using dhcp::Ip4;
using dhcp::MessageType;
namespace opt = dhcp::opt;

// Used as server identifier when the Pod network has no gateway: link-local,
// never a Pod IP.
constexpr Ip4 kFallbackServerId = 0xa9fe0101;  // 169.254.1.1

absl::Status Field(const absl::Status& s, std::string_view field) {
  return absl::InvalidArgumentError(base::StrCat("lease.", field, ": ", base::Sv(s.message())));
}

absl::StatusOr<dhcp::Route4> ParseRoute(const IpRoute& r) {
  size_t slash = r.dst.find('/');
  if (slash == std::string::npos) {
    return absl::InvalidArgumentError(base::StrCat("route \"", r.dst, "\" is not a CIDR"));
  }
  dhcp::Route4 out;
  ASSIGN_OR_RETURN(out.dst, dhcp::ParseIp4(std::string_view(r.dst).substr(0, slash)));
  std::string_view len = std::string_view(r.dst).substr(slash + 1);
  auto [p, ec] = std::from_chars(len.data(), len.data() + len.size(), out.prefix_len);
  if (ec != std::errc() || p != len.data() + len.size() || out.prefix_len < 0 || out.prefix_len > 32) {
    return absl::InvalidArgumentError(base::StrCat("route \"", r.dst, "\" has a bad prefix length"));
  }
  out.dst &= dhcp::PrefixToMask(out.prefix_len);
  if (!r.gateway.empty()) {
    ASSIGN_OR_RETURN(out.gateway, dhcp::ParseIp4(r.gateway));
  }
  return out;
}

}  // namespace

absl::StatusOr<Lease> LeaseFromWiredNic(const WiredNic& nic, const std::vector<std::string>& dns,
                                        const std::vector<std::string>& searches, std::string_view hostname) {
  Lease lease;
  for (const IpPrefix& a : nic.addresses) {
    if (!a.ipv6()) {
      lease.ip = a.address;
      lease.prefix_len = a.prefix_len;
      break;
    }
  }
  for (const IpPrefix& a : nic.addresses) {
    if (a.ipv6()) {
      Lease6 v6;
      v6.mac = nic.mac;
      v6.ip = a.address;
      v6.prefix_len = a.prefix_len;
      v6.router_mac = nic.gateway6_mac;
      v6.dns = dns;
      v6.searches = searches;
      v6.mtu = nic.mtu;
      lease.v6 = std::move(v6);
      break;
    }
  }
  if (lease.ip.empty() && !lease.v6) {
    return absl::FailedPreconditionError(base::StrCat("interface \"", nic.cni_ifname, "\" has no IP address"));
  }
  lease.mac = nic.mac;
  lease.gateway = nic.gateway4;
  for (const IpRoute& r : nic.routes) {
    if (r.dst.find(':') == std::string::npos) lease.routes.push_back(r);
  }
  lease.dns = dns;
  lease.searches = searches;
  lease.hostname = std::string(hostname);
  lease.mtu = nic.mtu;
  return lease;
}

absl::StatusOr<DhcpResponder> DhcpResponder::Create(const Lease& lease) {
  DhcpResponder r;
  auto mac = dhcp::ParseMac(lease.mac);
  if (!mac.ok()) return Field(mac.status(), "mac");
  r.mac_ = *mac;
  auto ip = dhcp::ParseIp4(lease.ip);
  if (!ip.ok()) return Field(ip.status(), "ip");
  r.ip_ = *ip;
  if (lease.prefix_len < 1 || lease.prefix_len > 32) {
    return absl::InvalidArgumentError(
        base::StrCat("lease.prefix_len ", lease.prefix_len, " is not in 1..32"));
  }
  if (lease.lease_seconds < 60) {
    return absl::InvalidArgumentError(
        base::StrCat("lease.lease_seconds ", lease.lease_seconds, " is under 60"));
  }
  r.lease_seconds_ = lease.lease_seconds;
  const Ip4 mask = dhcp::PrefixToMask(lease.prefix_len);

  dhcp::Message m;  // scratch for the option setters
  m.SetIp4Option(opt::kSubnetMask, mask);
  if (lease.prefix_len < 31) m.SetIp4Option(opt::kBroadcast, (r.ip_ & mask) | ~mask);
  r.server_id_ = kFallbackServerId;
  Ip4 gateway = 0;
  if (!lease.gateway.empty()) {
    auto gw = dhcp::ParseIp4(lease.gateway);
    if (!gw.ok()) return Field(gw.status(), "gateway");
    gateway = *gw;
    r.server_id_ = gateway;
    m.SetIp4Option(opt::kRouter, gateway);
  }
  std::vector<Ip4> dns;
  for (const std::string& d : lease.dns) {
    if (d.find(':') != std::string::npos) continue;  // DHCPv4 cannot carry IPv6 servers
    auto ip4 = dhcp::ParseIp4(d);
    if (!ip4.ok()) return Field(ip4.status(), "dns");
    dns.push_back(*ip4);
  }
  if (!dns.empty()) m.SetIp4ListOption(opt::kDns, dns);
  if (!lease.searches.empty()) {
    auto encoded = dhcp::EncodeDomainSearch(lease.searches);
    if (!encoded.ok()) return Field(encoded.status(), "searches");
    m.options[opt::kDomainSearch] = *std::move(encoded);
    std::string first = lease.searches.front();
    while (!first.empty() && first.back() == '.') first.pop_back();
    m.options[opt::kDomainName] = first;
  }
  if (!lease.hostname.empty()) m.options[opt::kHostName] = lease.hostname.substr(0, 255);
  if (lease.mtu > 0) {
    if (lease.mtu < 68 || lease.mtu > 65535) {
      return absl::InvalidArgumentError(base::StrCat("lease.mtu ", lease.mtu, " is not in 68..65535"));
    }
    std::string v;
    v.push_back(static_cast<char>(lease.mtu >> 8));
    v.push_back(static_cast<char>(lease.mtu & 0xff));
    m.options[opt::kMtu] = v;
  }
  // RFC 3442: a client that gets 121 ignores the router option, so when we
  // send 121 it lists the default route too.
  std::vector<dhcp::Route4> routes;
  bool beyond_default = false;
  bool has_default = false;
  for (const IpRoute& ir : lease.routes) {
    if (ir.dst.find(':') != std::string::npos) continue;
    auto route = ParseRoute(ir);
    if (!route.ok()) return Field(route.status(), "routes");
    if (route->prefix_len == 0)
      has_default = true;
    else
      beyond_default = true;
    routes.push_back(*route);
  }
  if (beyond_default) {
    if (!has_default && gateway != 0) routes.insert(routes.begin(), dhcp::Route4{0, 0, gateway});
    m.options[opt::kClasslessRoutes] = dhcp::EncodeClasslessRoutes(routes);
  }
  r.options_ = std::move(m.options);
  return r;
}

dhcp::Message DhcpResponder::Reply(const dhcp::Message& req, MessageType type) const {
  dhcp::Message rep;
  rep.op = 2;
  rep.xid = req.xid;
  rep.flags = req.flags;
  rep.giaddr = req.giaddr;
  rep.chaddr = req.chaddr;
  rep.options[opt::kMessageType] = std::string(1, static_cast<char>(type));
  rep.SetIp4Option(opt::kServerId, server_id_);
  if (type == MessageType::kNak) return rep;
  for (const auto& [code, value] : options_) rep.options[code] = value;
  if (type == MessageType::kAck && req.type() == MessageType::kInform) {
    rep.ciaddr = req.ciaddr;  // RFC 2131 4.3.5: no yiaddr, no lease time
    return rep;
  }
  rep.yiaddr = ip_;
  rep.SetU32Option(opt::kLeaseTime, lease_seconds_);
  rep.SetU32Option(opt::kRenewal, lease_seconds_ / 2);
  rep.SetU32Option(opt::kRebinding, static_cast<uint32_t>(uint64_t{lease_seconds_} * 7 / 8));
  return rep;
}

std::optional<dhcp::Message> DhcpResponder::Handle(const dhcp::Message& req) const {
  if (req.op != 1 || req.htype != 1 || req.hlen != 6 || req.chaddr != mac_) return std::nullopt;
  std::optional<MessageType> type = req.type();
  if (!type) return std::nullopt;
  switch (*type) {
    case MessageType::kDiscover:
      return Reply(req, MessageType::kOffer);
    case MessageType::kRequest: {
      std::optional<Ip4> server = req.Ip4Option(opt::kServerId);
      if (server && *server != server_id_) return std::nullopt;  // chose another server
      // SELECTING/INIT-REBOOT name the address in option 50; RENEWING and
      // REBINDING in ciaddr.
      Ip4 requested = req.Ip4Option(opt::kRequestedIp).value_or(req.ciaddr);
      return Reply(req, requested == ip_ ? MessageType::kAck : MessageType::kNak);
    }
    case MessageType::kInform:
      return Reply(req, MessageType::kAck);
    default:  // RELEASE, DECLINE: the address is the Pod's for its life anyway.
      return std::nullopt;
  }
}

std::optional<DhcpResponder::FrameReply> DhcpResponder::HandleFrame(std::span<const uint8_t> frame,
                                                                    const dhcp::Mac& server_mac) const {
  auto udp = dhcp::ParseUdpFrame(frame);
  if (!udp.ok() || udp->dst_port != dhcp::kServerPort) return std::nullopt;
  auto req = dhcp::ParseMessage(
      std::span(reinterpret_cast<const uint8_t*>(udp->payload.data()), udp->payload.size()));
  if (!req.ok()) return std::nullopt;
  std::optional<dhcp::Message> rep = Handle(*req);
  if (!rep) return std::nullopt;

  dhcp::UdpFrame out;
  out.src_mac = server_mac;
  out.src_ip = server_id_;
  out.src_port = dhcp::kServerPort;
  out.dst_port = dhcp::kClientPort;
  const bool nak = rep->type() == MessageType::kNak;
  if (!nak && req->ciaddr != 0) {
    out.dst_ip = req->ciaddr;
    out.dst_mac = req->chaddr;
  } else if (nak || (req->flags & dhcp::kBroadcastFlag)) {
    out.dst_ip = 0xffffffff;
    out.dst_mac.fill(0xff);
  } else {
    // The client has no IP yet, but a packet socket can address its MAC.
    out.dst_ip = rep->yiaddr;
    out.dst_mac = req->chaddr;
  }
  out.payload = dhcp::SerializeMessage(*rep);
  return FrameReply{dhcp::BuildUdpFrame(out), *rep->type()};
}

}  // namespace kvcri::cni
