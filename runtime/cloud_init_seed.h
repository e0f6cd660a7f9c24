// The cloud-init NoCloud seed disk of a Pod's VM: meta-data, user-data, network-config.
#pragma once

// A VM disk builder: the seed is a small VFAT disk labelled "cidata"
// (runtime/vfat_image.h), written without external tools.

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/vfat_image.h"

namespace kvcri::runtime {

// The Pod annotation whose value becomes user-data.
inline constexpr std::string_view kUserDataAnnotation = "kubevirt-cri.io/user-data";
inline constexpr std::string_view kDefaultUserData = "#cloud-config\n{}\n";
inline constexpr std::string_view kSeedLabel = "cidata";

struct CloudInitSeed {
  std::string instance_id;     // Pod UID or sandbox ID: a new one re-runs per-instance modules
  std::string hostname;        // local-hostname, the Pod name
  std::string user_data;       // annotation value; empty -> kDefaultUserData
  std::string network_config;  // NetworkConfigV2(...); empty -> file omitted
  // More root-directory files (e.g. vendor-data, volume hints). Names must
  // not clash with the three above.
  std::vector<VfatFile> extra_files;
};

// "instance-id: ...\nlocal-hostname: ...\n" with values quoted.
std::string MetaData(const CloudInitSeed& seed);

// A route handed to the guest.
struct SeedRoute {
  std::string dst;      // CIDR; "0.0.0.0/0" / "::/0" for defaults
  std::string gateway;  // empty for on-link routes
};

// The guest NIC's static configuration: what the Pod network wired (cri/
// converts it from the sandbox record).
struct SeedNic {
  std::string ifname;                  // the name in the guest; empty: "eth0"
  std::string mac;                     // how the guest finds the NIC
  int mtu = 0;                         // 0: not set
  std::vector<std::string> addresses;  // CIDR, IPv4 first
  std::vector<SeedRoute> routes;
};

// network-config version 2: one ethernet per NIC, in order, matched by its
// MAC and renamed to its ifname, with static addresses, routes (those with a
// gateway), MTU; accept-ra true only when the NIC has an IPv6 address. The
// nameservers and search domains go on the first NIC that has an address. A
// NIC without addresses (an L2-only network) is listed with its name and MTU
// only. Names that repeat or are empty become "eth<i>".
std::string NetworkConfigV2(const std::vector<SeedNic>& nics, const std::vector<std::string>& nameservers,
                            const std::vector<std::string>& searches);

// The files of the seed, in the order they go on the disk.
absl::StatusOr<std::vector<VfatFile>> SeedFiles(const CloudInitSeed& seed);

// The Pod annotation that opts a cloud-init guest into kvcri-agent:
// kGuestAgentInject puts the binary on the seed, with vendor-data that
// installs and starts it (docs/exec.md). The user's user-data stays as is.
inline constexpr std::string_view kGuestAgentAnnotation = "kubevirt-cri.io/guest-agent";
inline constexpr std::string_view kGuestAgentInject = "inject";
// Where the .deb installs the guest binary (runtime/CMakeLists.txt).
inline constexpr std::string_view kGuestAgentBinary = "/usr/share/kubevirt-cri/guest/kvcri-agent";

// The seed files that install kvcri-agent from the seed: the binary
// ("kvcri-agent") and "vendor-data" (cloud-config: a systemd unit, and a
// runcmd that copies the binary off the seed and starts it, with a plain
// background start where there is no systemd). FailedPrecondition when
// `binary` cannot be read.
absl::StatusOr<std::vector<VfatFile>> GuestAgentSeedFiles(const std::filesystem::path& binary);

// Builds the image and writes it atomically to `path` (mode 0600: user-data
// may hold secrets; libvirt's dynamic ownership hands it to QEMU).
absl::Status WriteSeedImage(const std::filesystem::path& path, const CloudInitSeed& seed);

}  // namespace kvcri::runtime
