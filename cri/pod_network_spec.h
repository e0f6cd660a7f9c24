// Translation between sandbox records and the network types of cni/ and the guest's cloud-init seed.
#pragma once

#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "cni/cni_runner.h"
#include "cni/pod_network.h"
#include "cni/tap.h"
#include "runtime/cloud_init_seed.h"
#include "runtime/hypervisor.h"
#include "sandbox/records.h"

namespace kvcri::cri {

// The CNI attachment of a sandbox: ids, netns, CNI_ARGS, port mappings, DNS,
// bandwidth from the kubernetes.io/{ingress,egress}-bandwidth annotations
// (InvalidArgument naming the annotation when it does not parse). The same
// record always gives the same spec, so DEL sees what ADD saw.
absl::StatusOr<cni::AttachSpec> AttachSpecFor(const sandbox::SandboxRecord& sb);

// DNS servers, search domains and hostname for the guest's DHCP lease.
cni::GuestDhcpInfo GuestDhcpFor(const sandbox::SandboxRecord& sb);

// The NIC as stored in the record, and back.
sandbox::GuestNic GuestNicFrom(const cni::WiredNic& nic);
cni::WiredNic WiredNicFrom(const sandbox::GuestNic& nic);

// Pod IPs for PodSandboxStatus and the NICs for the record. `ip` is the
// first address of the primary NIC (the one named `primary_ifname`, else the
// first; IPv4 first); `additional_ips` its other addresses, then those of
// the other NICs in order. kubelet keeps the first IP of each family
// (docs/networking.md), so the Pod IPs stay the primary interface's.
sandbox::NetworkStatus NetworkStatusFrom(const std::vector<cni::WiredNic>& nics,
                                         std::string_view primary_ifname = "eth0");

// The cloud-init NoCloud seed of a Pod's VM: instance-id (Pod UID),
// hostname, user-data from the kubevirt-cri.io/user-data annotation,
// network-config v2 for the wired NICs (when there are any).
runtime::CloudInitSeed SeedFor(const sandbox::SandboxRecord& sb);

// The VM's NICs on the Pod's taps, in the record's (= CNI result's = PCI
// slot) order; interfaces without a tap are left out.
std::vector<runtime::NicSpec> NicSpecsFor(const sandbox::SandboxRecord& sb);

}  // namespace kvcri::cri
