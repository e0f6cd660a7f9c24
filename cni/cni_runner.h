// The CniRunner seam (CNI ADD, CHECK, DEL for a Pod) and the AttachSpec it is given.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cni/result.h"

namespace kvcri::cni {

// runtimeConfig "portMappings" entry (CNI CONVENTIONS.md).
struct CniPortMapping {
  int32_t host_port = 0;
  int32_t container_port = 0;
  std::string protocol = "tcp";  // lowercase: tcp, udp, sctp
  std::string host_ip;           // empty = all addresses

  bool operator==(const CniPortMapping&) const = default;
};

// runtimeConfig "bandwidth": rates in bit/s, bursts in bits; 0 = unset.
struct CniBandwidth {
  uint64_t ingress_rate = 0;
  uint64_t ingress_burst = 0;
  uint64_t egress_rate = 0;
  uint64_t egress_burst = 0;

  bool empty() const { return ingress_rate == 0 && egress_rate == 0; }
  bool operator==(const CniBandwidth&) const = default;
};

// runtimeConfig "dns".
struct CniDnsConfig {
  std::vector<std::string> servers;
  std::vector<std::string> searches;
  std::vector<std::string> options;

  bool empty() const {
    return servers.empty() && searches.empty() && options.empty();
  }
  bool operator==(const CniDnsConfig&) const = default;
};

// Everything one attachment of a Pod sandbox to the default network needs.
struct AttachSpec {
  std::string container_id;  // the sandbox id (CNI_CONTAINERID)
  std::string netns;         // netns path (CNI_NETNS)
  std::string ifname = "eth0";
  // CNI_ARGS, containerd style.
  std::string pod_namespace;
  std::string pod_name;
  std::string pod_uid;
  // Capability arguments; each goes only to plugins whose "capabilities"
  // declare it.
  std::vector<CniPortMapping> port_mappings;
  CniBandwidth bandwidth;
  CniDnsConfig dns;

  bool operator==(const AttachSpec&) const = default;
};

// Runs the default CNI network's plugin chain for Pod sandboxes. Calls for
// different container ids may run concurrently; the caller serializes calls
// for one id.
class CniRunner {
 public:
  virtual ~CniRunner() = default;

  // ADD through the whole chain. On failure the chain has been DEL'd again
  // and nothing is cached. On success the result, the exact config and the
  // spec are cached on disk for DEL/CHECK after a restart.
  virtual absl::StatusOr<CniResult> Add(const AttachSpec& spec) = 0;
  // CHECK (cniVersion >= 0.4.0) against the cached ADD result.
  virtual absl::Status Check(const AttachSpec& spec) = 0;
  // DEL in reverse order, with the cached config when there is one (the
  // conflist on disk may have changed since ADD). Idempotent: OK when nothing
  // was ever added. Teardown continues past a failing plugin; the cache
  // entry is removed only when every plugin succeeded.
  virtual absl::Status Del(const AttachSpec& spec) = 0;
  // The cached ADD result for a sandbox; NotFound when there is none.
  virtual absl::StatusOr<CniResult> GetCachedResult(
      std::string_view container_id, std::string_view ifname = "eth0") = 0;
};

// CNI_ARGS pairs for `spec`, in containerd's order, IgnoreUnknown first.
std::vector<std::pair<std::string, std::string>> CniArgsFor(
    const AttachSpec& spec);

// Parses a Kubernetes quantity ("10M", "1.5Gi", "100k", "1e6") to its
// integer value rounded up, like resource.Quantity.Value().
absl::StatusOr<int64_t> ParseQuantity(std::string_view text);

// The bandwidth from the kubernetes.io/ingress-bandwidth and
// kubernetes.io/egress-bandwidth annotations, as containerd builds it:
// rates in bit/s (1k..1P, else InvalidArgument naming the annotation),
// burst = 2^32-1 where a rate is set. Empty when neither is present.
absl::StatusOr<CniBandwidth> BandwidthFromAnnotations(
    const std::map<std::string, std::string>& annotations);

}  // namespace kvcri::cni
