#pragma once

// cloud-init NoCloud seed for a Pod's guest: meta-data, user-data and
// network-config (v2) on a small VFAT disk labelled "cidata", written
// without external tools.

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cni/cloud_init_vfat.h"
#include "cni/tap.h"

namespace kvcri::cni {

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

// network-config version 2: one ethernet matched by the NIC's MAC and renamed
// to nic.cni_ifname, with static addresses, routes (those with a gateway),
// MTU, nameservers and search domains.
std::string NetworkConfigV2(const WiredNic& nic, const std::vector<std::string>& nameservers,
                            const std::vector<std::string>& searches);

// The files of the seed, in the order they go on the disk.
absl::StatusOr<std::vector<VfatFile>> SeedFiles(const CloudInitSeed& seed);

// Builds the image and writes it atomically to `path` (mode 0600: user-data
// may hold secrets; libvirt's dynamic ownership hands it to QEMU).
absl::Status WriteSeedImage(const std::filesystem::path& path, const CloudInitSeed& seed);

}  // namespace kvcri::cni
