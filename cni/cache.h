// ResultCache: what a successful CNI ADD leaves on disk, so DEL and CHECK work after a restart.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kvcri::cni {

// What a successful ADD leaves on disk so DEL/CHECK work after a restart and
// after the conflist changed.
struct CacheEntry {
  std::string network_name;
  std::string container_id;
  std::string ifname;
  std::string netns;
  std::string config_source;  // the conflist file it came from, informational
  std::string config_json;  // the exact network config list used (JSON object)
  std::vector<std::pair<std::string, std::string>> cni_args;
  std::string
      capability_args_json;  // JSON object: every capability argument offered
  std::string result_json;   // the final ADD result (JSON object)

  bool operator==(const CacheEntry&) const = default;

  std::string ToJson() const;
  // InvalidArgument for corrupt JSON, a missing field or an unknown version.
  static absl::StatusOr<CacheEntry> FromJson(std::string_view text);
};

// <dir>/results/<network>-<container id>-<ifname>, libcni's layout, written
// atomically. Our own versioned format inside ("kind": "kvcriCniCacheV1").
class ResultCache {
 public:
  explicit ResultCache(std::filesystem::path dir) : dir_(std::move(dir)) {}

  std::filesystem::path PathFor(std::string_view network,
                                std::string_view container_id,
                                std::string_view ifname) const;
  absl::Status Put(const CacheEntry& entry);
  // NotFound when absent.
  absl::StatusOr<CacheEntry> Get(std::string_view network,
                                 std::string_view container_id,
                                 std::string_view ifname) const;
  // Every readable entry for the container and interface, whatever network
  // it was made for (the network may have been renamed since). Unreadable
  // files are logged and skipped.
  absl::StatusOr<std::vector<CacheEntry>> FindByContainer(
      std::string_view container_id, std::string_view ifname) const;
  // A missing entry is OK.
  absl::Status Remove(std::string_view network, std::string_view container_id,
                      std::string_view ifname);

 private:
  std::filesystem::path dir_;
};

}  // namespace kvcri::cni
