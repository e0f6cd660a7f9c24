// The cloud-init seed: meta-data and network-config as YAML, the files, the image on disk.
#include "runtime/cloud_init_seed.h"

#include <algorithm>
#include <cstdio>

#include "config/base/file_util.h"
#include "config/base/status_macros.h"
#include "config/base/str.h"

namespace kvcri::runtime {
namespace {

// A YAML double-quoted scalar (JSON string syntax is valid YAML).
std::string Quote(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\x%02x", c);
          out += buf;
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out += "\"";
  return out;
}

std::string QuotedList(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += ", ";
    out += Quote(items[i]);
  }
  return out + "]";
}

}  // namespace

std::string MetaData(const CloudInitSeed& seed) {
  std::string out = base::StrCat("instance-id: ", Quote(seed.instance_id), "\n");
  if (!seed.hostname.empty()) out += base::StrCat("local-hostname: ", Quote(seed.hostname), "\n");
  return out;
}

std::string NetworkConfigV2(const std::vector<SeedNic>& nics, const std::vector<std::string>& nameservers,
                            const std::vector<std::string>& searches) {
  std::string out = "version: 2\nethernets:\n";
  std::vector<std::string> names;
  bool dns_written = false;
  for (size_t i = 0; i < nics.size(); ++i) {
    const SeedNic& nic = nics[i];
    std::string name = nic.ifname;
    // A key used twice would make the YAML ambiguous; renaming two NICs to
    // one name cannot work in the guest either.
    if (name.empty() || std::find(names.begin(), names.end(), name) != names.end()) name = base::StrCat("eth", i);
    names.push_back(name);
    out += base::StrCat("  ", name, ":\n");
    out += base::StrCat("    match:\n      macaddress: ", Quote(nic.mac), "\n");
    out += base::StrCat("    set-name: ", Quote(name), "\n");
    if (nic.addresses.empty()) {
      // An L2-only network: no addresses from CNI, so nothing to state but
      // the name; the guest's own configuration (user-data) decides the rest.
      if (nic.mtu > 0) out += base::StrCat("    mtu: ", nic.mtu, "\n");
      continue;
    }
    // Static config only: DHCP stays available in the guest, but two sources
    // racing for one interface help nobody.
    out += "    dhcp4: false\n    dhcp6: false\n";
    // Said either way, never left to the guest's default (on in Linux): an
    // IPv4-only Pod takes no router advertisements at all, and an IPv6 Pod
    // only gets its gateway's (the tc filter on eth0 drops the rest).
    const bool ipv6 = std::any_of(nic.addresses.begin(), nic.addresses.end(),
                                  [](const std::string& a) { return a.find(':') != std::string::npos; });
    out += base::StrCat("    accept-ra: ", ipv6 ? "true" : "false", "\n");
    out += "    addresses:\n";
    for (const std::string& a : nic.addresses) out += base::StrCat("      - ", Quote(a), "\n");
    if (nic.mtu > 0) out += base::StrCat("    mtu: ", nic.mtu, "\n");
    bool header = false;
    for (const SeedRoute& r : nic.routes) {
      // On-link routes need "scope: link", which not every cloud-init renderer
      // understands; CNI routes without a gateway are rare, so they are left out.
      if (r.gateway.empty()) continue;
      if (!header) out += "    routes:\n";
      header = true;
      out += base::StrCat("      - to: ", Quote(r.dst), "\n        via: ", Quote(r.gateway), "\n");
    }
    // The Pod's DNS is one resolver configuration: said once, on the first
    // NIC with an address (the Pod network's, in CNI's order).
    if (!dns_written && (!nameservers.empty() || !searches.empty())) {
      dns_written = true;
      out += "    nameservers:\n";
      if (!nameservers.empty()) out += base::StrCat("      addresses: ", QuotedList(nameservers), "\n");
      if (!searches.empty()) out += base::StrCat("      search: ", QuotedList(searches), "\n");
    }
  }
  return out;
}

absl::StatusOr<std::vector<VfatFile>> SeedFiles(const CloudInitSeed& seed) {
  if (seed.instance_id.empty()) return absl::InvalidArgumentError("cloud-init seed instance_id is empty");
  std::vector<VfatFile> files;
  files.push_back({"meta-data", MetaData(seed)});
  files.push_back({"user-data", seed.user_data.empty() ? std::string(kDefaultUserData) : seed.user_data});
  if (!seed.network_config.empty()) files.push_back({"network-config", seed.network_config});
  for (const VfatFile& f : seed.extra_files) files.push_back(f);
  return files;
}

// vendor-data: cloud-init merges it under the user's user-data, which may
// turn it off (vendor_data: {enabled: false}). The seed is mounted only while
// cloud-init reads it, so runcmd mounts it again by its label to copy the
// binary. runcmd runs once per instance; the enabled unit starts the agent
// on later boots.
constexpr std::string_view kAgentVendorData = R"yaml(#cloud-config
write_files:
  - path: /etc/systemd/system/kvcri-agent.service
    permissions: '0644'
    content: |
      [Unit]
      Description=kubevirt-cri guest agent (exec, port-forward)
      [Service]
      ExecStart=/usr/local/bin/kvcri-agent
      Restart=always
      RestartSec=1
      [Install]
      WantedBy=multi-user.target
runcmd:
  - - sh
    - -c
    - |
      set -e
      d=$(mktemp -d)
      mount -o ro "$(blkid -L cidata || echo /dev/disk/by-label/cidata)" "$d"
      install -m 0755 "$d/kvcri-agent" /usr/local/bin/kvcri-agent
      umount "$d"; rmdir "$d"
      if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
        systemctl daemon-reload; systemctl enable kvcri-agent; systemctl start --no-block kvcri-agent
      else
        nohup /usr/local/bin/kvcri-agent >/var/log/kvcri-agent.log 2>&1 &
      fi
)yaml";

absl::StatusOr<std::vector<VfatFile>> GuestAgentSeedFiles(const std::filesystem::path& binary) {
  absl::StatusOr<std::string> bin = base::ReadFile(binary);
  if (!bin.ok()) {
    return absl::FailedPreconditionError(base::StrCat("annotation ", kGuestAgentAnnotation, "=", kGuestAgentInject,
                                                      ": cannot read the guest agent \"", binary.string(),
                                                      "\": ", base::Sv(bin.status().message())));
  }
  std::vector<VfatFile> files;
  files.push_back({"kvcri-agent", std::move(*bin)});
  files.push_back({"vendor-data", std::string(kAgentVendorData)});
  return files;
}

absl::Status WriteSeedImage(const std::filesystem::path& path, const CloudInitSeed& seed) {
  ASSIGN_OR_RETURN(std::vector<VfatFile> files, SeedFiles(seed));
  auto image = BuildVfatImage(kSeedLabel, files);
  if (!image.ok()) {
    return absl::Status(image.status().code(), base::StrCat("cloud-init seed \"", path.string(),
                                                            "\": ", base::Sv(image.status().message())));
  }
  return base::WriteFileAtomic(path, *image, 0600);
}

}  // namespace kvcri::runtime
