// Sandbox records to CNI attach specs, DHCP info, stored NICs and the cloud-init seed.
#include "cri/pod_network_spec.h"

#include "config/base/status_macros.h"
#include "config/base/str.h"

namespace kvcri::cri {

absl::StatusOr<cni::AttachSpec> AttachSpecFor(const sandbox::SandboxRecord& sb) {
  cni::AttachSpec spec;
  spec.container_id = sb.id;
  spec.netns = sb.netns_path;
  spec.pod_namespace = sb.metadata.namespace_;
  spec.pod_name = sb.metadata.name;
  spec.pod_uid = sb.metadata.uid;
  for (const sandbox::PortMapping& pm : sb.port_mappings) {
    if (pm.host_port <= 0) continue;  // only mappings with a host port reach CNI (as in containerd)
    cni::CniPortMapping m;
    m.host_port = pm.host_port;
    m.container_port = pm.container_port;
    m.protocol = std::string(sandbox::ProtocolName(pm.protocol));
    m.host_ip = pm.host_ip;
    spec.port_mappings.push_back(std::move(m));
  }
  ASSIGN_OR_RETURN(spec.bandwidth, cni::BandwidthFromAnnotations(sb.annotations));
  spec.dns.servers = sb.dns.servers;
  spec.dns.searches = sb.dns.searches;
  spec.dns.options = sb.dns.options;
  return spec;
}

cni::GuestDhcpInfo GuestDhcpFor(const sandbox::SandboxRecord& sb) {
  return {sb.dns.servers, sb.dns.searches, sb.hostname.empty() ? sb.metadata.name : sb.hostname};
}

sandbox::GuestNic GuestNicFrom(const cni::WiredNic& nic) {
  sandbox::GuestNic g;
  g.cni_ifname = nic.cni_ifname;
  g.tap_name = nic.tap_name;
  g.mac = nic.mac;
  g.mtu = nic.mtu;
  for (const cni::IpPrefix& p : nic.addresses) g.addresses.push_back(p.Cidr());
  g.gateway4 = nic.gateway4;
  g.gateway6 = nic.gateway6;
  g.gateway6_mac = nic.gateway6_mac;
  for (const cni::IpRoute& r : nic.routes) g.routes.push_back({r.dst, r.gateway});
  return g;
}

cni::WiredNic WiredNicFrom(const sandbox::GuestNic& g) {
  cni::WiredNic nic;
  nic.cni_ifname = g.cni_ifname;
  nic.tap_name = g.tap_name;
  nic.mac = g.mac;
  nic.mtu = g.mtu;
  for (const std::string& cidr : g.addresses) {
    size_t slash = cidr.find('/');
    cni::IpPrefix p;
    p.address = cidr.substr(0, slash);
    p.prefix_len = slash == std::string::npos ? 0 : std::atoi(cidr.c_str() + slash + 1);
    nic.addresses.push_back(std::move(p));
  }
  nic.gateway4 = g.gateway4;
  nic.gateway6 = g.gateway6;
  nic.gateway6_mac = g.gateway6_mac;
  for (const sandbox::GuestRoute& r : g.routes) nic.routes.push_back({r.dst, r.gateway});
  return nic;
}

sandbox::NetworkStatus NetworkStatusFrom(const std::vector<cni::WiredNic>& nics, std::string_view primary_ifname) {
  sandbox::NetworkStatus status;
  size_t primary = 0;
  for (size_t i = 0; i < nics.size(); ++i) {
    if (nics[i].cni_ifname == primary_ifname) {
      primary = i;
      break;
    }
  }
  auto add = [&](const cni::WiredNic& nic) {
    for (const cni::IpPrefix& p : nic.addresses) {
      if (status.ip.empty()) {
        status.ip = p.address;
      } else {
        status.additional_ips.push_back(p.address);
      }
    }
  };
  if (!nics.empty()) add(nics[primary]);
  for (size_t i = 0; i < nics.size(); ++i) {
    if (i != primary) add(nics[i]);
  }
  for (const cni::WiredNic& nic : nics) status.nics.push_back(GuestNicFrom(nic));
  return status;
}

namespace {

// The NIC as the guest's network-config states it.
runtime::SeedNic SeedNicFrom(const sandbox::GuestNic& g) {
  runtime::SeedNic nic;
  nic.ifname = g.cni_ifname;
  nic.mac = g.mac;
  nic.mtu = g.mtu;
  nic.addresses = g.addresses;
  for (const sandbox::GuestRoute& r : g.routes) nic.routes.push_back({r.dst, r.gateway});
  return nic;
}

}  // namespace

runtime::CloudInitSeed SeedFor(const sandbox::SandboxRecord& sb) {
  runtime::CloudInitSeed seed;
  seed.instance_id = sb.metadata.uid.empty() ? sb.id : sb.metadata.uid;
  seed.hostname = sb.hostname.empty() ? sb.metadata.name : sb.hostname;
  if (auto it = sb.annotations.find(std::string(runtime::kUserDataAnnotation)); it != sb.annotations.end()) {
    seed.user_data = it->second;
  }
  std::vector<runtime::SeedNic> nics;
  for (const sandbox::GuestNic& g : sb.network.nics) {
    if (!g.tap_name.empty()) nics.push_back(SeedNicFrom(g));
  }
  if (!nics.empty()) seed.network_config = runtime::NetworkConfigV2(nics, sb.dns.servers, sb.dns.searches);
  return seed;
}

std::vector<runtime::NicSpec> NicSpecsFor(const sandbox::SandboxRecord& sb) {
  std::vector<runtime::NicSpec> out;
  for (const sandbox::GuestNic& g : sb.network.nics) {
    if (g.tap_name.empty()) continue;
    runtime::NicSpec nic;
    nic.tap_name = g.tap_name;
    nic.mac = g.mac;
    nic.mtu = g.mtu;
    out.push_back(nic);
  }
  return out;
}

}  // namespace kvcri::cri
