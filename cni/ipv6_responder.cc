// Ipv6Responder: router advertisements, NDP answers for the router, DHCPv6 for one guest NIC.
#include "cni/ipv6_responder.h"

#include <cstring>

#include "config/base/big_endian.h"
#include "config/base/str.h"

namespace kvcri::cni {
namespace {

using base::GetBe16;
using base::GetBe32;
using base::PutBe16;
using base::PutBe32;

using dhcp6::MessageType;
namespace opt6 = dhcp6::opt;

constexpr uint8_t kNdHopLimit = 255;  // RFC 4861: NDP is only believed with 255
constexpr uint8_t kUdpHopLimit = 64;
constexpr uint32_t kInfinite = 0xffffffff;


void PutAddr(std::string* out, const ip6::Addr& a) { out->append(reinterpret_cast<const char*>(a.data()), 16); }

absl::Status Field(const absl::Status& s, std::string_view field) {
  return absl::InvalidArgumentError(base::StrCat("lease6.", field, ": ", base::Sv(s.message())));
}

// RFC 8415 10: DNS names in RFC 1035 wire format, not compressed.
absl::StatusOr<std::string> EncodeNames(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& name : names) {
    std::string_view rest = name;
    if (rest.ends_with('.')) rest.remove_suffix(1);
    const size_t start = out.size();
    while (!rest.empty()) {
      size_t dot = rest.find('.');
      std::string_view label = rest.substr(0, dot);
      if (label.empty() || label.size() > 63) {
        return absl::InvalidArgumentError(base::StrCat("search domain \"", name, "\" has an empty or >63-byte label"));
      }
      out.push_back(static_cast<char>(label.size()));
      out += label;
      rest = dot == std::string_view::npos ? std::string_view() : rest.substr(dot + 1);
    }
    out.push_back(0);
    if (out.size() - start > 255) {
      return absl::InvalidArgumentError(base::StrCat("search domain \"", name, "\" is longer than 255 bytes"));
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<Ipv6Responder> Ipv6Responder::Create(const Lease6& lease, const dhcp::Mac& tap_mac) {
  Ipv6Responder r;
  auto mac = dhcp::ParseMac(lease.mac);
  if (!mac.ok()) return Field(mac.status(), "mac");
  r.mac_ = *mac;
  auto ip = ip6::ParseAddr(lease.ip);
  if (!ip.ok()) return Field(ip.status(), "ip");
  if (ip6::IsLinkLocal(*ip) || ip6::IsUnspecified(*ip) || (*ip)[0] == 0xff) {
    return absl::InvalidArgumentError(base::StrCat("lease6.ip: \"", lease.ip, "\" is not a unicast global address"));
  }
  r.ip_ = *ip;
  if (lease.prefix_len < 1 || lease.prefix_len > 128) {
    return absl::InvalidArgumentError(
        base::StrCat("lease6.prefix_len: ", lease.prefix_len, " is outside 1..128"));
  }
  r.prefix_len_ = lease.prefix_len;
  if (!lease.router_mac.empty()) {
    auto router = dhcp::ParseMac(lease.router_mac);
    if (!router.ok()) return Field(router.status(), "router_mac");
    r.router_ = *router;
  }
  r.self_mac_ = r.router_.value_or(tap_mac);
  r.self_ll_ = ip6::LinkLocalFromMac(r.self_mac_);
  for (const std::string& d : lease.dns) {
    if (d.find(':') == std::string::npos) continue;
    auto a = ip6::ParseAddr(d);
    if (!a.ok()) return Field(a.status(), "dns");
    if (r.dns_.size() < 8) r.dns_.push_back(*a);  // resolv.conf uses three; RDNSS stays small
  }
  auto names = EncodeNames(lease.searches);
  if (!names.ok()) return Field(names.status(), "searches");
  // Kubernetes allows 32 search domains of 2048 characters in all; a
  // DHCPv6 reply must stay one frame. Whole names are dropped from the end
  // (resolvers use the first ones first), as for DHCPv4's option 119.
  for (std::vector<std::string> kept = lease.searches; names->size() > 1024 && !kept.empty();) {
    kept.pop_back();
    names = EncodeNames(kept);
  }
  r.search_list_ = *std::move(names);
  if (lease.mtu < 0 || lease.mtu > 65535) {
    return absl::InvalidArgumentError(base::StrCat("lease6.mtu: ", lease.mtu, " is outside 0..65535"));
  }
  r.mtu_ = lease.mtu;
  if (lease.lease_seconds < 60) {
    return absl::InvalidArgumentError(base::StrCat("lease6.lease_seconds: ", lease.lease_seconds, " is below 60"));
  }
  r.lease_seconds_ = lease.lease_seconds;
  r.server_duid_ = dhcp6::DuidLl(tap_mac);
  return r;
}

std::string Ipv6Responder::RaFrame(const dhcp::Mac& dst_mac, const ip6::Addr& dst) const {
  std::string body;
  body.push_back(64);  // current hop limit
  body.push_back(static_cast<char>(0x80 | 0x40));  // M: address by DHCPv6; O: other config too
  PutBe16(&body, router_ ? kRouterLifetimeSeconds : 0);
  PutBe32(&body, 0);  // reachable time: unspecified
  PutBe32(&body, 0);  // retrans timer: unspecified
  body += ip6::nd::LinkAddrOption(ip6::nd::kOptSourceLinkAddr, self_mac_);
  if (mtu_ > 0) {
    body.push_back(ip6::nd::kOptMtu);
    body.push_back(1);
    PutBe16(&body, 0);
    PutBe32(&body, static_cast<uint32_t>(mtu_));
  }
  if (prefix_len_ < 128) {
    body.push_back(ip6::nd::kOptPrefixInfo);
    body.push_back(4);
    body.push_back(static_cast<char>(prefix_len_));
    body.push_back(static_cast<char>(0x80));  // L: on-link; not A: no SLAAC address
    PutBe32(&body, kInfinite);                 // valid
    PutBe32(&body, kInfinite);                 // preferred
    PutBe32(&body, 0);
    PutAddr(&body, ip6::Prefix(ip_, prefix_len_));
  }
  if (!dns_.empty()) {
    body.push_back(ip6::nd::kOptRdnss);
    body.push_back(static_cast<char>(1 + 2 * dns_.size()));
    PutBe16(&body, 0);
    PutBe32(&body, 3 * static_cast<uint32_t>(absl::ToInt64Seconds(kPeriodicRaInterval)));
    for (const ip6::Addr& a : dns_) PutAddr(&body, a);
  }
  ip6::Frame f;
  f.dst_mac = dst_mac;
  f.src_mac = self_mac_;
  f.src = self_ll_;
  f.dst = dst;
  f.next_header = ip6::kIcmp6;
  f.hop_limit = kNdHopLimit;
  f.payload = ip6::Icmp6(f.src, f.dst, ip6::nd::kRouterAdvert, 0, body);
  return ip6::BuildFrame(f);
}

std::string Ipv6Responder::RouterAdvertisement() const {
  return RaFrame(ip6::MulticastMac(ip6::kAllNodes), ip6::kAllNodes);
}

std::optional<Ipv6Responder::FrameReply> Ipv6Responder::HandleFrame(std::span<const uint8_t> frame) const {
  auto f = ip6::ParseFrame(frame);
  if (!f.ok() || f->src_mac != mac_) return std::nullopt;
  if (f->next_header == ip6::kUdp) {
    auto udp = ip6::ParseUdp(f->payload);
    if (!udp.ok() || udp->dst_port != dhcp6::kServerPort || udp->src_port != dhcp6::kClientPort) return std::nullopt;
    if (f->dst != dhcp6::kAllServers && f->dst != self_ll_) return std::nullopt;
    return Dhcp(*f, udp->data);
  }
  // ICMPv6: NDP only counts with hop limit 255 (it came from this link).
  if (f->payload.size() < 4 || f->hop_limit != kNdHopLimit) return std::nullopt;
  const uint8_t type = static_cast<uint8_t>(f->payload[0]);
  if (type == ip6::nd::kRouterSolicit && f->payload[1] == 0 && f->payload.size() >= 8) {
    return FrameReply{RaFrame(ip6::MulticastMac(ip6::kAllNodes), ip6::kAllNodes), "ra"};
  }
  std::optional<ip6::Addr> target = ip6::nd::SolicitTarget(f->payload);
  if (!target || !router_ || *target != self_ll_) return std::nullopt;
  // RFC 4861 7.2.4: solicited (S) unless the asker is doing DAD (source ::),
  // then to all nodes; R: this is a router; O: override the cache.
  const bool dad = ip6::IsUnspecified(f->src);
  std::string body;
  PutBe32(&body, 0x80000000u | (dad ? 0 : 0x40000000u) | 0x20000000u);
  PutAddr(&body, self_ll_);
  body += ip6::nd::LinkAddrOption(ip6::nd::kOptTargetLinkAddr, self_mac_);
  ip6::Frame out;
  out.dst = dad ? ip6::kAllNodes : f->src;
  out.dst_mac = dad ? ip6::MulticastMac(ip6::kAllNodes) : f->src_mac;
  out.src_mac = self_mac_;
  out.src = self_ll_;
  out.next_header = ip6::kIcmp6;
  out.hop_limit = kNdHopLimit;
  out.payload = ip6::Icmp6(out.src, out.dst, ip6::nd::kNeighborAdvert, 0, body);
  return FrameReply{ip6::BuildFrame(out), "na"};
}

void Ipv6Responder::AddConfig(dhcp6::Message* m) const {
  if (!dns_.empty()) {
    std::string v;
    for (const ip6::Addr& a : dns_) PutAddr(&v, a);
    m->Add(opt6::kDnsServers, std::move(v));
  }
  if (!search_list_.empty()) m->Add(opt6::kDomainList, search_list_);
}

std::string Ipv6Responder::Ia(uint32_t iaid) const {
  dhcp6::IaNa ia;
  ia.iaid = iaid;
  ia.t1 = lease_seconds_ / 2;
  ia.t2 = static_cast<uint32_t>(uint64_t{lease_seconds_} * 4 / 5);
  ia.options.emplace_back(opt6::kIaAddr, dhcp6::IaAddr(ip_, lease_seconds_, lease_seconds_));
  return dhcp6::SerializeIaNa(ia);
}

std::optional<Ipv6Responder::FrameReply> Ipv6Responder::Dhcp(const ip6::Frame& f, std::string_view data) const {
  if (!ip6::IsLinkLocal(f.src)) return std::nullopt;  // RFC 8415 13.1: clients send from link-local
  auto req = dhcp6::ParseMessage(data);
  if (!req.ok()) return std::nullopt;
  const std::string* client_id = req->Find(opt6::kClientId);
  const std::string* server_id = req->Find(opt6::kServerId);
  const auto type = static_cast<MessageType>(req->type);
  // RFC 8415 16: which messages must, may or must not name a server.
  switch (type) {
    case MessageType::kSolicit:
    case MessageType::kConfirm:
    case MessageType::kRebind:
      if (client_id == nullptr || server_id != nullptr) return std::nullopt;
      break;
    case MessageType::kRequest:
    case MessageType::kRenew:
    case MessageType::kRelease:
    case MessageType::kDecline:
      if (client_id == nullptr || server_id == nullptr || *server_id != server_duid_) return std::nullopt;
      break;
    case MessageType::kInformationRequest:
      if (server_id != nullptr && *server_id != server_duid_) return std::nullopt;
      if (req->Find(opt6::kIaNa) != nullptr) return std::nullopt;  // RFC 8415 16.12: discarded
      break;
    default:
      return std::nullopt;  // server-to-client and relay messages
  }
  dhcp6::Message rep;
  rep.xid = req->xid;
  const bool rapid = type == MessageType::kSolicit && req->Find(opt6::kRapidCommit) != nullptr;
  rep.type = static_cast<uint8_t>(type == MessageType::kSolicit && !rapid ? MessageType::kAdvertise
                                                                           : MessageType::kReply);
  rep.Add(opt6::kServerId, server_duid_);
  if (client_id != nullptr) rep.Add(opt6::kClientId, *client_id);
  if (rapid) rep.Add(opt6::kRapidCommit, "");
  switch (type) {
    case MessageType::kSolicit:
    case MessageType::kRequest:
    case MessageType::kRenew:
    case MessageType::kRebind: {
      // The first IA_NA the client sent gets the one Pod address (its IAID
      // is the client's); any further IA is answered NoAddrsAvail inside it
      // (RFC 8415 18.3.2): there is one address.
      bool any = false;
      for (const auto& [code, value] : req->options) {
        if (code != opt6::kIaNa) continue;
        auto ia = dhcp6::ParseIaNa(value);
        if (!ia.ok()) return std::nullopt;
        if (!any) {
          rep.Add(opt6::kIaNa, Ia(ia->iaid));
        } else {
          dhcp6::IaNa none;
          none.iaid = ia->iaid;
          none.options.emplace_back(opt6::kStatusCode,
                                    dhcp6::StatusCode(dhcp6::status::kNoAddrsAvail, "one address per interface"));
          rep.Add(opt6::kIaNa, dhcp6::SerializeIaNa(none));
        }
        any = true;
      }
      if (!any) rep.Add(opt6::kStatusCode, dhcp6::StatusCode(dhcp6::status::kNoAddrsAvail, "only IA_NA is served"));
      if (type == MessageType::kSolicit && !rapid) rep.Add(opt6::kPreference, std::string(1, '\xff'));
      AddConfig(&rep);
      break;
    }
    case MessageType::kConfirm: {
      // Success when every address the client has is the Pod's (RFC 8415 18.3.3).
      bool on_link = true, any = false;
      for (const auto& [code, value] : req->options) {
        if (code != opt6::kIaNa) continue;
        auto ia = dhcp6::ParseIaNa(value);
        if (!ia.ok()) return std::nullopt;
        for (const auto& [c, v] : ia->options) {
          if (c != opt6::kIaAddr) continue;
          std::optional<ip6::Addr> a = dhcp6::IaAddrAddress(v);
          any = true;
          if (!a || *a != ip_) on_link = false;
        }
      }
      if (!any) return std::nullopt;  // nothing to confirm: no reply (18.3.3)
      rep.Add(opt6::kStatusCode, on_link ? dhcp6::StatusCode(dhcp6::status::kSuccess, "")
                                         : dhcp6::StatusCode(dhcp6::status::kNotOnLink, "not this Pod's address"));
      break;
    }
    case MessageType::kRelease:
    case MessageType::kDecline:
      // The address is the Pod's for its life; the client is told it is done.
      rep.Add(opt6::kStatusCode, dhcp6::StatusCode(dhcp6::status::kSuccess, ""));
      break;
    case MessageType::kInformationRequest:
      AddConfig(&rep);
      break;
    default:
      return std::nullopt;
  }
  ip6::Frame out;
  out.dst_mac = f.src_mac;
  out.src_mac = self_mac_;
  out.src = self_ll_;
  out.dst = f.src;
  out.next_header = ip6::kUdp;
  out.hop_limit = kUdpHopLimit;
  out.payload = ip6::Udp6(out.src, out.dst, dhcp6::kServerPort, dhcp6::kClientPort, dhcp6::SerializeMessage(rep));
  return FrameReply{ip6::BuildFrame(out), rep.type == static_cast<uint8_t>(MessageType::kAdvertise) ? "advertise"
                                                                                                   : "reply"};
}

}  // namespace kvcri::cni
